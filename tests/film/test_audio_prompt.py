"""Audio prompts: spoken by flite, transcribed offline by PocketSphinx, generated as a clip; bad audio
is rejected with its own message."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import sqlalchemy as sa

from tests.in_process import run_job_in_process
from videogen.asr import PocketSphinxTranscriber, transcriber_for
from videogen.audio_prompt import check_and_decode
from videogen.errors import ValidationError
from videogen.film.voices import VoiceRegistry, synthesize

PROMPT = "a red fox running in snow"


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "fox.wav"
    # flite's male US voice: PocketSphinx reads it back in every container (its female voice, once
    # AAC- or Vorbis-coded, is heard as "redd foxx", the comedian's name in its language model).
    synthesize(PROMPT, VoiceRegistry.from_file(None).get("rms"), path)
    return path


def convert(source, target, *codec):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *codec, str(target)], check=True)
    return target


@pytest.mark.parametrize("suffix, codec", [(".wav", ()), (".mp3", ("-c:a", "libmp3lame")),
                                           (".m4a", ("-c:a", "aac")), (".ogg", ("-c:a", "libvorbis"))])
def test_a_spoken_prompt_is_transcribed_from_each_container(spoken, tmp_path, suffix, codec):
    path = spoken if suffix == ".wav" else convert(spoken, tmp_path / f"fox{suffix}", *codec)
    samples, duration, container = check_and_decode(path)
    assert container == suffix[1:].upper() and 1 < duration < 5
    words = PocketSphinxTranscriber().transcribe(samples).split()
    assert "fox" in words and "snow" in words


def rejection(path) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        check_and_decode(path)
    return raised.value


def test_bad_audio_is_rejected_with_its_own_message(tmp_path):
    silent = tmp_path / "silent.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "2", str(silent)],
                   check=True)
    error = rejection(silent)
    assert (error.code, error.message) == ("audio_silent",
                                           "the audio prompt is silent; record the prompt again, closer to the microphone")
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"this is not audio at all" * 100)
    assert (rejection(garbage).code, rejection(garbage).message) == (
        "audio_undecodable", "the audio prompt cannot be decoded as WAV, MP3, M4A or OGG audio")
    video = tmp_path / "clip.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=d=1:s=32x32", str(video)], check=True)
    assert rejection(video).code == "audio_undecodable"
    long = tmp_path / "long.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=61", "-c:a", "libvorbis", str(long)], check=True)
    assert rejection(long).message == "the audio prompt lasts 61.0 s; the maximum is 60 s"
    big = tmp_path / "big.wav"
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 11 * 1024 * 1024, dtype=np.uint8).tobytes())
    assert (rejection(big).code, rejection(big).message) == ("audio_too_large",
                                                             "the audio prompt is 11.0 MiB; the maximum is 10 MiB")
    (tmp_path / "empty.wav").write_bytes(b"")
    assert rejection(tmp_path / "empty.wav").message == "the audio prompt is empty"


def test_the_cli_submits_an_audio_prompt_and_the_run_generates_its_transcript(database_url, tmp_path, spoken):
    from pipelines.generate_video import generate_video
    from resources.storage import StorageResource
    from videogen.lifecycle import JobStore

    env = {**os.environ, "DATABASE_URL": database_url, "VIDEOGEN_HOME": str(tmp_path / "home"),
           "VIDEOGEN_STORAGE_ROOT": str(tmp_path / "storage")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "videogen.cli", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    submitted = cli("submit", "--audio-prompt", str(spoken), "--user", "ana", "--seed", "3", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    garbage = tmp_path / "noise.mp3"
    garbage.write_bytes(b"\x00" * 4096)
    bad_id = json.loads(cli("submit", "--audio-prompt", str(garbage), "--user", "ana", "--json").stdout)["id"]

    storage = StorageResource(root=str(tmp_path / "storage"))
    for job in (job_id, bad_id):
        assert run_job_in_process(generate_video, job, database_url=database_url, tmp_path=tmp_path,
                                  storage=storage).success
    store = JobStore(sa.create_engine(database_url))
    row = store.reads.get(job_id)
    assert row["status"] == "succeeded", row["error_message"]
    assert {"fox", "snow"} <= set(row["transcript"].split()) and row["prompt"] == row["transcript"]
    shown = json.loads(cli("status", str(job_id), "--json").stdout)
    assert shown["transcript"] == row["transcript"]
    assert any((e["message"] or "").startswith("audio prompt (WAV, ") for e in store.reads.events(job_id))
    bad = store.reads.get(bad_id)
    assert (bad["status"], bad["error_code"]) == ("rejected", "audio_undecodable")


def test_a_whisper_model_is_loaded_from_the_model_cache_and_decodes(spoken, tmp_path):
    """The Whisper path (transformers, from_pretrained with local_files_only) on a tiny random-weight
    Whisper built offline: its text is gibberish, but it is the model's own decoding of this audio."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    transcriber = transcriber_for("tiny-whisper", model_cache=tmp_path / "models")
    samples, _, _ = check_and_decode(spoken)
    text = transcriber.transcribe(samples)
    source = tmp_path / "models" / "tiny-whisper-random-weights-v1"
    processor = WhisperProcessor.from_pretrained(source, local_files_only=True)
    model = WhisperForConditionalGeneration.from_pretrained(source, local_files_only=True).eval()
    features = processor(samples.astype(np.float32) / 32768.0, sampling_rate=16000, return_tensors="pt").input_features
    from transformers.generation.utils import GenerationMixin

    prefix = processor.tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|notimestamps|>"])
    with torch.no_grad():
        tokens = GenerationMixin.generate(model, input_features=features, decoder_input_ids=torch.tensor([prefix]),
                                          max_new_tokens=96, do_sample=False)
    expected = processor.batch_decode(tokens, skip_special_tokens=True)[0]
    assert text == " ".join(expected.split()) and tokens.shape[1] > len(prefix)
    # A directory of the model cache named as whisper:<dir> loads the same model.
    assert transcriber_for("whisper:tiny-whisper-random-weights-v1", model_cache=tmp_path / "models").transcribe(
        samples) == text
    with pytest.raises(ValueError, match="VIDEOGEN_ASR_MODEL 'vosk' is not one of: pocketsphinx, tiny-whisper"):
        transcriber_for("vosk", model_cache=tmp_path)
