"""Generation core: the offline tiny model, the real loading path and the denoising call.

One tiny LTX pipeline is built and loaded per module (a few seconds, mostly importing diffusers);
generations are small (64x64, 9 frames, 2-4 steps) so that the file runs in well under a minute on
two CPU cores.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from videogen.errors import JobCanceledError, OutOfMemoryError
from videogen.generation.generate import GeneratedVideo, GenerationParams, frames_to_uint8, generate_frames
from videogen.generation.loader import PipelineCache, load_pipeline, resolve_device
from videogen.generation.registry import BUILTIN_MODELS, ModelSpec
from videogen.generation.tiny_model import (
    build_random_ltx_pipeline,
    build_tiny_ltx,
    save_pipeline_atomically,
)

TINY = BUILTIN_MODELS["tiny"]
TINY_SOURCE = TINY.source  # the folder the tiny model is built into, under the model cache


def params(**overrides) -> GenerationParams:
    values = dict(
        prompt="a red fox running in snow",
        negative_prompt="",
        width=64,
        height=64,
        num_frames=9,
        fps=8,
        steps=2,
        guidance_scale=3.0,
        seed=1234,
    )
    values.update(overrides)
    return GenerationParams(**values)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def pipe(model_cache):
    # The cache is empty: this builds the tiny model through the registry's offline_builder, then
    # loads it back with from_pretrained.
    return load_pipeline(TINY, model_cache=model_cache, device="cpu", cpu_offload=False, vae_tiling=False)


def weight_files(model_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(model_dir)): p.read_bytes() for p in sorted(model_dir.rglob("*.safetensors"))}


# --- the offline model --------------------------------------------------------------------------


def test_tiny_model_is_built_under_the_cache_and_round_trips_offline(pipe, model_cache):
    from diffusers import LTXPipeline

    model_dir = model_cache / TINY_SOURCE
    assert (model_dir / "model_index.json").is_file()
    assert {p.name for p in model_dir.iterdir()} >= {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"}
    assert [p.name for p in model_cache.iterdir()] == [TINY_SOURCE]  # no staging directory left behind

    reloaded = LTXPipeline.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    assert type(reloaded).__name__ == "LTXPipeline"
    assert reloaded.transformer.dtype == torch.float32
    assert not reloaded.text_encoder.training  # dropout off, or seeds would not reproduce
    for name in ("transformer", "vae", "text_encoder"):
        original = getattr(pipe, name).state_dict()
        loaded = getattr(reloaded, name).state_dict()
        assert original.keys() == loaded.keys()
        assert all(torch.equal(original[key], loaded[key]) for key in original), name
    # The code-built tokenizer survives save/load: known words map to ids, unknown ones to <unk>.
    ids = reloaded.tokenizer("A red fox zzzz").input_ids
    assert ids[-1] == reloaded.tokenizer.eos_token_id == 1
    assert reloaded.tokenizer.unk_token_id == 2 and ids.count(2) == 1
    assert len(ids) == 5


def test_tiny_model_weights_are_identical_on_every_build(pipe, model_cache, tmp_path):
    torch.manual_seed(999)
    caller_rng = torch.get_rng_state()
    rebuilt = build_tiny_ltx(tmp_path / "again")
    assert torch.equal(torch.get_rng_state(), caller_rng)  # building does not disturb the caller's RNG
    first = weight_files(model_cache / TINY_SOURCE)
    assert len(first) == 3
    assert weight_files(rebuilt) == first


def test_concurrent_builders_both_succeed_and_leave_one_complete_model(tmp_path):
    target = tmp_path / "raced"
    pipelines = [build_random_ltx_pipeline(), build_random_ltx_pipeline()]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def build(pipeline):
        barrier.wait()
        try:
            results.append(save_pipeline_atomically(pipeline, target))
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(p,)) for p in pipelines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [target, target]
    assert [p.name for p in tmp_path.iterdir()] == ["raced"]
    assert (target / "model_index.json").is_file()
    assert len(weight_files(target)) == 3


# --- loading ------------------------------------------------------------------------------------


def test_registry_spec_loads_as_the_named_pipeline_class_on_cpu_float32(pipe):
    assert type(pipe).__name__ == TINY.pipeline_class
    assert pipe.device.type == "cpu"
    assert pipe.transformer.dtype == torch.float32
    assert pipe.vae.use_tiling is False


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")


def test_unknown_pipeline_class_and_builder_are_reported(model_cache):
    no_such_class = ModelSpec(name="x", source="tiny-ltx", pipeline_class="NoSuchPipeline")
    with pytest.raises(ValueError, match="NoSuchPipeline"):
        load_pipeline(no_such_class, model_cache=model_cache, device="cpu", cpu_offload=False, vae_tiling=False)
    no_such_builder = ModelSpec(name="y", source="y", pipeline_class="LTXPipeline", offline_builder="build_nothing")
    with pytest.raises(ValueError, match="build_nothing"):
        load_pipeline(no_such_builder, model_cache=model_cache, device="cpu", cpu_offload=False, vae_tiling=False)


def test_cuda_only_options_on_cpu(pipe, model_cache):
    # VAE tiling is real on CPU too; CPU offload has nothing to offload to and is ignored there.
    tiled = load_pipeline(TINY, model_cache=model_cache, device="cpu", cpu_offload=True, vae_tiling=True)
    assert tiled.vae.use_tiling is True
    assert not getattr(tiled, "_all_hooks", None)  # no accelerate offload hooks on CPU
    assert tiled.device.type == "cpu"
    # 64x64 is smaller than one VAE tile, so tiling must not change a single byte.
    expected = generate_frames(pipe, params()).frames
    assert np.array_equal(generate_frames(tiled, params()).frames, expected)


def test_pipeline_cache_reuses_loaded_pipelines_and_evicts_the_least_recent(model_cache):
    cache = PipelineCache(max_entries=1)
    options = dict(model_cache=model_cache, device="cpu", cpu_offload=False)
    first = cache.get(TINY, vae_tiling=False, **options)
    assert cache.get(TINY, vae_tiling=False, **options) is first
    tiled = cache.get(TINY, vae_tiling=True, **options)
    assert tiled is not first and tiled.vae.use_tiling is True
    assert len(cache) == 1
    assert cache.get(TINY, vae_tiling=False, **options) is not first  # was evicted, loaded again
    cache.clear()
    assert len(cache) == 0


# --- generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "num_frames", "steps"),
    [(64, 64, 9, 4), (96, 64, 17, 2)],
)
def test_frames_have_the_requested_shape_and_dtype(pipe, width, height, num_frames, steps):
    video = generate_frames(pipe, params(width=width, height=height, num_frames=num_frames, steps=steps))
    assert isinstance(video, GeneratedVideo)
    assert video.frames.shape == (num_frames, height, width, 3)
    assert video.frames.dtype == np.uint8
    assert video.frames.flags["C_CONTIGUOUS"]
    assert video.frames.std() > 1.0  # random weights give noise, not a blank frame
    assert video.seconds > 0


def test_same_seed_gives_identical_frames_and_another_seed_does_not(pipe):
    first = generate_frames(pipe, params(seed=7)).frames
    again = generate_frames(pipe, params(seed=7)).frames
    other = generate_frames(pipe, params(seed=8)).frames
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.mean(first != other) > 0.5


def test_on_step_reports_every_denoising_step(pipe):
    reported = []
    generate_frames(pipe, params(steps=4), on_step=lambda done, total: reported.append((done, total)))
    assert reported == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_cancel_stops_after_the_current_step_and_the_pipeline_stays_usable(pipe):
    reported = []
    with pytest.raises(JobCanceledError):
        generate_frames(
            pipe,
            params(steps=4),
            on_step=lambda done, total: reported.append(done),
            should_cancel=lambda: len(reported) >= 2,
        )
    assert reported == [1, 2]
    with pytest.raises(JobCanceledError, match="before it started"):
        generate_frames(pipe, params(), on_step=reported.append, should_cancel=lambda: True)
    assert reported == [1, 2]
    assert generate_frames(pipe, params(), should_cancel=lambda: False).frames.shape == (9, 64, 64, 3)


class FailingPipeline:
    """Stands in for a pipeline whose call fails the way CUDA fails when memory runs out."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.hooks_freed = False

    def __call__(self, **kwargs):
        raise self.error

    def maybe_free_model_hooks(self) -> None:
        self.hooks_freed = True


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
    ],
)
def test_out_of_memory_becomes_a_transient_error(error):
    failing = FailingPipeline(error)
    with pytest.raises(OutOfMemoryError) as raised:
        generate_frames(failing, params())
    assert raised.value.code == "out_of_memory"
    assert raised.value.__cause__ is error
    assert failing.hooks_freed


def test_other_errors_pass_through_unchanged():
    error = RuntimeError("shape mismatch")
    with pytest.raises(RuntimeError) as raised:
        generate_frames(FailingPipeline(error), params())
    assert raised.value is error


def test_frames_to_uint8_rounds_clips_and_blanks_nan():
    floats = np.array([0.0, 0.5, 0.998, 1.0, 1.2, -0.1, np.nan, np.inf, 0.0019, 0.002], dtype=np.float32)
    assert frames_to_uint8(floats).tolist() == [0, 128, 254, 255, 255, 0, 0, 255, 0, 1]


def test_importing_the_generation_package_does_not_import_torch():
    code = (
        "import sys\n"
        "import videogen.generation.registry, videogen.generation.tiny_model\n"
        "import videogen.generation.loader, videogen.generation.generate\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'tokenizers', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
