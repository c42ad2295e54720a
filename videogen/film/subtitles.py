"""Subtitles from the narration, timed by the synthesized speech, as SRT and WebVTT.

Each scene's narration is cut into cues at sentence ends (and at commas when a sentence is too long
for two lines of ``MAX_LINE_CHARS``), and the cue times share out the scene's *measured* speech
duration in proportion to the letters spoken in each cue: the speech engine speaks at a steady rate,
so letters track time well enough for reading, and the last cue ends with the speech.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from videogen.qa import Cue

MAX_LINE_CHARS = 42
MAX_LINES = 2


@dataclass(frozen=True)
class TimedNarration:
    start_s: float  # when the speech starts in the film
    duration_s: float  # how long the synthesized speech lasts
    text: str


def _chunks(text: str) -> list[str]:
    """The narration as cue texts of at most two lines each, words in their order."""
    sentences = [s for s in re.split(r"(?<=[.!?;])\s+", " ".join(text.split())) if s]
    limit = MAX_LINE_CHARS * MAX_LINES
    chunks: list[str] = []
    for sentence in sentences:
        if len(sentence) <= limit:
            chunks.append(sentence)
            continue
        current = ""
        for piece in re.split(r"(?<=,)\s+", sentence):
            for word in piece.split():
                candidate = f"{current} {word}".strip()
                if len(candidate) > limit and current:
                    chunks.append(current)
                    current = word
                else:
                    current = candidate
            if current.endswith(",") and len(current) > limit // 2:
                chunks.append(current)
                current = ""
        if current:
            chunks.append(current)
    return chunks


def cues_for(narrations: Sequence[TimedNarration]) -> list[Cue]:
    cues: list[Cue] = []
    for narration in narrations:
        chunks = _chunks(narration.text)
        weights = [max(1, sum(ch.isalnum() for ch in chunk)) for chunk in chunks]
        total = sum(weights)
        start = narration.start_s
        for chunk, weight in zip(chunks, weights):
            end = start + narration.duration_s * weight / total
            cues.append(Cue(round(start, 3), round(end, 3), "\n".join(textwrap.wrap(chunk, MAX_LINE_CHARS))))
            start = end
    return cues


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(cues: Sequence[Cue]) -> str:
    return "".join(f"{number}\n{_timestamp(cue.start_s, ',')} --> {_timestamp(cue.end_s, ',')}\n{cue.text}\n\n"
                   for number, cue in enumerate(cues, start=1))


def to_webvtt(cues: Sequence[Cue]) -> str:
    # "-->" may not appear in a cue's text; the narration is plain text, so it is written with a space.
    body = "".join(f"{_timestamp(cue.start_s, '.')} --> {_timestamp(cue.end_s, '.')}\n{cue.text.replace('-->', '-- >')}\n\n"
                   for cue in cues)
    return "WEBVTT\n\n" + body


_SRT_TIME = re.compile(r"(\d+):(\d\d):(\d\d)[,.](\d{3})")


def parse_srt(text: str) -> list[Cue]:
    """The cues of an SRT document (what a player reads back)."""
    cues = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if len(lines) < 2 or "-->" not in lines[1]:
            continue
        start, end = (_SRT_TIME.search(part) for part in lines[1].split("-->"))
        seconds = [int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) + int(m.group(4)) / 1000
                   for m in (start, end)]
        cues.append(Cue(seconds[0], seconds[1], "\n".join(lines[2:])))
    return cues
