"""Offline builders for random-weight LTX-Video pipelines.

No machine of this project can reach the Hugging Face hub, yet the generation code must exercise the
real loading path (``LTXPipeline.from_pretrained(dir, local_files_only=True)``). So the default model,
``tiny``, is a genuine :class:`diffusers.LTXPipeline` whose components follow diffusers' own fast-test
configuration (``tests/pipelines/ltx/test_ltx.py``), with randomly initialised weights and a T5
tokenizer built in code. It is saved once under the model cache and loaded back like any downloaded
model. Its videos are noise.

Builders are looked up by name from :attr:`ModelSpec.offline_builder` (see :data:`OFFLINE_BUILDERS`)
and all take ``(target_dir)``. The weights are a pure function of the architecture and the seed, so two
builds (two machines, or two processes racing) produce byte-identical tensors.

Benchmark workload: the 128x128, 25-frame, 10-step benchmark uses this same ``tiny`` model. At that
size the transformer attends over 7 x 32 x 32 = 7,168 latent tokens (with classifier-free guidance, a
batch of two), which already costs seconds per generation on two CPU cores, so the fixed per-call
overhead of :func:`videogen.generation.generate.generate_frames` is measured against a real amount of
denoising work. A wider/deeper variant is available through :class:`RandomLtxArchitecture` when a
heavier workload is wanted, without registering another model.

torch, diffusers, transformers and tokenizers are imported inside the functions: importing this
module must stay cheap (the Dagster code location imports the generation package).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Seed of every random-weight build. Changing it (or the architecture) changes the weights, so bump
# the ``revision`` of the registry entry that uses the builder at the same time.
WEIGHTS_SEED = 0

# A small English vocabulary so that typical prompts map to distinct token ids instead of all <unk>.
# T5 convention: <pad> = 0, </s> = 1, <unk> = 2.
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
PROMPT_WORDS = (
    "a an the of in on at with and or to from by over under into through near behind "
    "red orange yellow green blue purple pink black white gray golden silver dark bright "
    "fox cat dog bird horse fish whale lion tiger bear wolf rabbit deer owl eagle dragon robot person "
    "man woman child people car train boat ship plane city street forest mountain river ocean sea "
    "beach desert sky cloud clouds sun moon star stars snow rain fire water light night day sunset "
    "sunrise tree trees flower flowers field garden house castle bridge road space planet "
    "running walking flying swimming dancing jumping sitting standing falling floating driving "
    "slowly quickly gently fast slow big small tiny huge old young beautiful cinematic realistic "
    "video shot camera close up wide aerial view motion scene style detailed high quality"
).split()


@dataclass(frozen=True)
class RandomLtxArchitecture:
    """Sizes of a random-weight LTX pipeline. The defaults are diffusers' LTX fast-test components."""

    # Transformer (LTXVideoTransformer3DModel)
    num_attention_heads: int = 4
    attention_head_dim: int = 8
    num_layers: int = 1
    # VAE (AutoencoderKLLTXVideo): 4x spatial and 4x temporal compression with these scalings
    latent_channels: int = 8
    vae_block_out_channels: tuple[int, ...] = (8, 8, 8, 8)
    # Text encoder (T5)
    text_hidden_size: int = 32
    text_ff_size: int = 37
    text_num_layers: int = 2
    text_num_heads: int = 4
    # Longest prompt the tokenizer keeps; the pipeline pads/truncates to its own max_sequence_length.
    tokenizer_max_length: int = 128

    @property
    def transformer_inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


TINY_ARCHITECTURE = RandomLtxArchitecture()


def build_tokenizer(max_length: int = 128):
    """A T5-style word-level tokenizer built in code (no sentencepiece file, no download).

    Lower-cases, splits on whitespace/punctuation, maps unknown words to ``<unk>`` and appends
    ``</s>`` like T5 does, wrapped in ``PreTrainedTokenizerFast`` so it saves and loads with
    ``save_pretrained``/``from_pretrained`` as part of the pipeline.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + tuple(dict.fromkeys(PROMPT_WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>",
        pair="$A </s> $B </s>",
        special_tokens=[("</s>", vocab["</s>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=max_length,
    )


def build_random_ltx_pipeline(architecture: RandomLtxArchitecture = TINY_ARCHITECTURE, *, seed: int = WEIGHTS_SEED):
    """An in-memory ``LTXPipeline`` with deterministic random weights (float32, CPU)."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    arch = architecture
    tokenizer = build_tokenizer(arch.tokenizer_max_length)
    # fork_rng: seed the weights without changing the caller's global torch RNG state.
    with torch.random.fork_rng(devices=[]):
        # Re-seed before each component, as diffusers' tests do, so that one component's size does
        # not shift the random stream of the next.
        torch.manual_seed(seed)
        transformer = LTXVideoTransformer3DModel(
            in_channels=arch.latent_channels,
            out_channels=arch.latent_channels,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=arch.num_attention_heads,
            attention_head_dim=arch.attention_head_dim,
            cross_attention_dim=arch.transformer_inner_dim,
            num_layers=arch.num_layers,
            caption_channels=arch.text_hidden_size,
        )
        torch.manual_seed(seed)
        # Every decoder argument is explicit: its defaults are the full-size LTX decoder (~1 GB).
        vae = AutoencoderKLLTXVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=arch.latent_channels,
            block_out_channels=arch.vae_block_out_channels,
            decoder_block_out_channels=arch.vae_block_out_channels,
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1),
            timestep_conditioning=False,
            patch_size=1,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        )
        torch.manual_seed(seed)
        text_encoder = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer),
                d_model=arch.text_hidden_size,
                d_kv=arch.text_hidden_size // arch.text_num_heads,
                d_ff=arch.text_ff_size,
                num_layers=arch.text_num_layers,
                num_heads=arch.text_num_heads,
                relative_attention_num_buckets=8,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                decoder_start_token_id=tokenizer.pad_token_id,
            )
        ).eval()  # eval(): dropout in train mode would make the same seed give different frames
    return LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def save_directory_atomically(target_dir: Path, write: Callable[[Path], None], *, complete_marker: str) -> Path:
    """Have ``write`` fill a temporary sibling directory, then rename it to ``target_dir``.

    A reader therefore sees either no directory or a complete model, never a half-written one. When
    another process finishes first (``complete_marker`` is in ``target_dir``), its (identical) copy is
    kept and ours is discarded.
    """
    target_dir = Path(target_dir)
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging_dir = target_dir.parent / f".{target_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        staging_dir.mkdir()
        write(staging_dir)
        try:
            # rename(2) of a directory is atomic and fails when the target exists and is not empty.
            os.rename(staging_dir, target_dir)
        except OSError:
            if not (target_dir / complete_marker).exists():
                raise
            # Lost the race to a concurrent builder: its model is already in place.
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return target_dir


def save_pipeline_atomically(pipeline, target_dir: Path) -> Path:
    """Save a diffusers pipeline with :func:`save_directory_atomically`."""
    return save_directory_atomically(
        target_dir, lambda staging: pipeline.save_pretrained(staging, safe_serialization=True),
        complete_marker="model_index.json")


def build_random_ltx(target_dir: Path, *, architecture: RandomLtxArchitecture = TINY_ARCHITECTURE) -> Path:
    """Build a random-weight LTX pipeline of the given architecture and save it at ``target_dir``."""
    target_dir = Path(target_dir)
    if (target_dir / "model_index.json").exists():
        return target_dir
    return save_pipeline_atomically(build_random_ltx_pipeline(architecture), target_dir)


def build_tiny_ltx(target_dir: Path) -> Path:
    """The ``tiny`` registry model: diffusers' LTX fast-test architecture, random weights, seed 0."""
    return build_random_ltx(target_dir, architecture=TINY_ARCHITECTURE)


# Builders addressable from ``ModelSpec.offline_builder``. Explicit, so that a registry entry can only
# name a function meant for it (not any attribute of this module).
OFFLINE_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "build_tiny_ltx": build_tiny_ltx,
}
