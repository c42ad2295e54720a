"""Speech recognition engines for audio prompts, chosen by ``VIDEOGEN_ASR_MODEL``.

* ``pocketsphinx`` (default): CMU PocketSphinx with the US English model its PyPI wheel ships. Small,
  fast on a CPU, offline; good enough for short spoken prompts.
* a Whisper model: ``whisper:<source>`` where the source is a directory (relative paths are resolved
  under the model cache) or a Hugging Face id already in the hub cache, loaded with transformers'
  ``WhisperProcessor`` / ``WhisperForConditionalGeneration.from_pretrained(…, local_files_only=True)``
  — the production choice (e.g. ``whisper:openai/whisper-small.en``).
* ``tiny-whisper``: a Whisper with tiny random weights and a byte-level tokenizer, built offline into
  the model cache on first use (like the ``tiny`` video model) so that the Whisper loading and decoding
  path runs in the tests. Its transcripts are gibberish.

torch and transformers are imported only when a Whisper engine transcribes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16_000
DEFAULT_ASR_MODEL = "pocketsphinx"
TINY_WHISPER = "tiny-whisper"
TINY_WHISPER_DIR = "tiny-whisper-random-weights-v1"
WHISPER_PREFIX = "whisper:"
MAX_NEW_TOKENS = 96  # a spoken prompt is a sentence or two


class Transcriber(Protocol):
    name: str

    def transcribe(self, samples: np.ndarray) -> str:
        """Text for 16 kHz mono int16 ``samples`` (may be empty)."""


class PocketSphinxTranscriber:
    name = "pocketsphinx"

    def transcribe(self, samples: np.ndarray) -> str:
        from pocketsphinx import Decoder

        # Half a second of silence on both sides: the recognizer needs to hear where speech starts and ends.
        pad = np.zeros(SAMPLE_RATE // 2, dtype="<i2")
        decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        decoder.start_utt()
        decoder.process_raw(np.concatenate([pad, samples.astype("<i2"), pad]).tobytes(), full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return " ".join(hypothesis.hypstr.split()) if hypothesis is not None else ""


@dataclass
class WhisperTranscriber:
    source: str  # a directory or a hub id
    device: str = "cpu"
    name: str = "whisper"

    @cached_property
    def _loaded(self):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        processor = WhisperProcessor.from_pretrained(self.source, local_files_only=True)
        model = WhisperForConditionalGeneration.from_pretrained(self.source, local_files_only=True)
        return torch, processor, model.to(self.device).eval()

    def transcribe(self, samples: np.ndarray) -> str:
        torch, processor, model = self._loaded
        from transformers.generation.utils import GenerationMixin

        audio = samples.astype(np.float32) / 32768.0
        features = processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features.to(self.device)
        # One 30 s window, greedy, no timestamps, English: a prompt is a sentence or two. The plain
        # sequence-to-sequence decoding from Whisper's own prefix tokens; transformers' long-form
        # Whisper loop (WhisperGenerationMixin) is not needed for one window.
        tokenizer = processor.tokenizer
        multilingual = getattr(model.generation_config, "is_multilingual", False)
        prefix = ["<|startoftranscript|>", *(["<|en|>", "<|transcribe|>"] if multilingual else []), "<|notimestamps|>"]
        prompt = torch.tensor([tokenizer.convert_tokens_to_ids(prefix)], device=self.device)
        with torch.no_grad():
            tokens = GenerationMixin.generate(model, input_features=features, decoder_input_ids=prompt,
                                              max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        return " ".join(processor.batch_decode(tokens, skip_special_tokens=True)[0].split())


def transcriber_for(asr_model: str, *, model_cache: str | os.PathLike[str], device: str = "cpu") -> Transcriber:
    """The engine ``VIDEOGEN_ASR_MODEL`` names; a ValueError names the accepted forms."""
    if asr_model in ("", DEFAULT_ASR_MODEL):
        return PocketSphinxTranscriber()
    if asr_model == TINY_WHISPER:
        return WhisperTranscriber(str(build_tiny_whisper(Path(model_cache) / TINY_WHISPER_DIR)), device=device)
    if asr_model.startswith(WHISPER_PREFIX) and asr_model[len(WHISPER_PREFIX):].strip():
        source = asr_model[len(WHISPER_PREFIX):].strip()
        cached = Path(model_cache) / source
        return WhisperTranscriber(str(cached) if not Path(source).is_absolute() and cached.exists() else source,
                                  device=device)
    raise ValueError(f"VIDEOGEN_ASR_MODEL {asr_model!r} is not one of: pocketsphinx, tiny-whisper, "
                     "whisper:<directory or Hugging Face id>")


# Whisper's special tokens, in the order its tokenizer expects after the byte vocabulary.
_WHISPER_SPECIAL = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>",
                    "<|nocaptions|>", "<|notimestamps|>", "<|startoflm|>", "<|startofprev|>")


def build_tiny_whisper(target_dir: Path, *, seed: int = 0) -> Path:
    """A Whisper with random weights (1 encoder and 1 decoder layer of width 16) and a byte-level
    tokenizer made in code, saved at ``target_dir`` (atomically; an existing build is kept)."""
    target_dir = Path(target_dir)
    if (target_dir / "config.json").exists():
        return target_dir
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from videogen.generation.tiny_model import save_directory_atomically

    def write(staging: Path) -> None:
        vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
        for token in _WHISPER_SPECIAL:
            vocab[token] = len(vocab)
        (staging / "vocab.json").write_text(json.dumps(vocab))
        (staging / "merges.txt").write_text("#version: 0.2\n")
        end = "<|endoftext|>"
        tokenizer = WhisperTokenizer(str(staging / "vocab.json"), str(staging / "merges.txt"), unk_token=end,
                                     bos_token=end, eos_token=end, pad_token=end)
        tokenizer.add_special_tokens({"additional_special_tokens": list(_WHISPER_SPECIAL[1:])})
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _WHISPER_SPECIAL}
        special = {"decoder_start_token_id": ids["<|startoftranscript|>"], "eos_token_id": ids[end],
                   "pad_token_id": ids[end], "bos_token_id": ids[end]}
        config = WhisperConfig(vocab_size=len(vocab), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
                               encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                               decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=128,
                               suppress_tokens=[], begin_suppress_tokens=[], **special)
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config).eval()
        # English-only: no language detection, no timestamps; stop at <|endoftext|>.
        model.generation_config = GenerationConfig(no_timestamps_token_id=ids["<|notimestamps|>"],
                                                   is_multilingual=False, **special)
        processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
        model.save_pretrained(staging)
        processor.save_pretrained(staging)

    return save_directory_atomically(target_dir, write, complete_marker="config.json")
