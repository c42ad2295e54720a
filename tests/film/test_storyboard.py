"""Storyboard validation, the film plan (frames, seeds, stretching, cache keys), voices and subtitles."""

import json
import wave
from decimal import Decimal

import pytest

from videogen.errors import ValidationError
from videogen.film import plan as film_plan
from videogen.film.storyboard import MAX_SCENES, scene_seed, validate_storyboard
from videogen.film.subtitles import TimedNarration, cues_for, parse_srt, to_srt, to_webvtt
from videogen.film.voices import SpeechSynthesisError, VoiceRegistry, VoiceSpec, synthesize
from videogen.generation.registry import ModelRegistry

VOICES = VoiceRegistry.from_file(None)
REGISTRY = ModelRegistry.from_file(None)


def scene(**fields) -> dict:
    return {"prompt": "a fox", "duration_s": 2, **fields}


def rejected(board) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        validate_storyboard(board, voices=VOICES)
    return raised.value


@pytest.mark.parametrize("board, code, message", [
    ({"scenes": []}, "storyboard_no_scenes", "storyboard.scenes: is empty; a film needs at least one scene"),
    ({"scenes": [scene()] * 1000}, "storyboard_too_many_scenes",
     f"storyboard.scenes: has 1000 scenes; the maximum is {MAX_SCENES}"),
    ({"scenes": [scene(), scene(duration_s=-1)]}, "invalid_scene_duration",
     "storyboard.scenes[1].duration_s: -1 is out of range: allowed 0.5 to 20 seconds"),
    ({"scenes": [scene(duration_s="soon")]}, "invalid_scene_duration",
     "storyboard.scenes[0].duration_s: must be a number, got 'soon'"),
    ({"scenes": [{"prompt": "a fox"}]}, "invalid_scene_duration",
     "storyboard.scenes[0].duration_s: is missing: say how many seconds the scene lasts"),
    ({"scenes": [scene(prompt="   ")]}, "empty_prompt", "storyboard.scenes[0].prompt: is empty; describe the video you want"),
    ({"scenes": [scene(narration="x" * 601)]}, "narration_too_long",
     "storyboard.scenes[0].narration: is 601 characters; the maximum is 600"),
    ({"scenes": [scene(narration="hi\x00")]}, "control_characters",
     "storyboard.scenes[0].narration: contains a NUL byte at character 2; remove it and resubmit"),
    ({"scenes": [scene(transition="wipe")]}, "invalid_transition",
     "storyboard.scenes[0].transition: 'wipe' is not one of cut, crossfade"),
    ({"scenes": [scene(camera="dolly")]}, "invalid_scene",
     "storyboard.scenes[0]: has unknown fields: camera; allowed: duration_s, narration, prompt, transition"),
    ({"scenes": [scene()], "voice": "hal9000"}, "unknown_voice",
     "storyboard.voice: 'hal9000' is not a known voice; available: awb, de, en-us, es, fr, rms, slt"),
    ({"scenes": [scene()], "music": "jazz"}, "invalid_music",
     'storyboard.music: must be "none", "generated" or {"key": "<object key of an audio file in the bucket>"}'),
    ({"scenes": [scene()], "subtitles": "burned"}, "invalid_subtitles",
     "storyboard.subtitles: are made from the narration, and no scene has any"),
    ({"scenes": [scene(duration_s=20)] * 10}, "storyboard_too_long",
     "storyboard.scenes: last 200 s in all; a film may last at most 180 s"),
    ("{not json", "invalid_storyboard", "storyboard is not valid JSON: Expecting property name enclosed in double "
     "quotes (line 1, column 2)"),
    ([scene()], "invalid_storyboard", 'storyboard must be a JSON object with a list of scenes, e.g. '
     '{"scenes": [{"prompt": "a fox", "duration_s": 3}]}'),
])
def test_a_bad_storyboard_is_rejected_with_its_own_message(board, code, message):
    error = rejected(board)
    assert (error.code, error.message) == (code, message)
    assert error.field.startswith("storyboard")


def test_a_good_storyboard_is_normalized():
    board = validate_storyboard(json.dumps({"scenes": [scene(narration="  Hello.  ", transition="crossfade"),
                                                       scene(duration_s="1.5")],
                                            "music": {"key": "uploads/ana/theme.mp3"}, "subtitles": "sidecar"}),
                                voices=VOICES)
    assert board.voice == "slt" and board.music == "uploads/ana/theme.mp3" and not board.music_generated
    assert [s.duration_s for s in board.scenes] == [2.0, 1.5] and board.scenes[0].narration == "Hello."
    assert board.to_dict()["music"] == {"key": "uploads/ana/theme.mp3"} and board.duration_s == 3.5


def test_a_scene_longer_than_the_model_can_make_is_rejected_at_validation():
    with pytest.raises(ValidationError) as raised:
        film_plan.validate_film({"prompt": "t", "storyboard": {"scenes": [scene(duration_s=16)]}}, REGISTRY,
                                seed_if_missing=1, voices=VOICES)
    assert raised.value.code == "scene_too_long"
    assert raised.value.message == ("storyboard.scenes[0].duration_s: lasts 16 s, 129 frames at 8 fps; model 'tiny' "
                                    "makes at most 121 frames per scene (about 15.12 s at 8 fps)")


def test_the_plan_fixes_frames_seeds_and_stretches_a_scene_to_its_narration(tmp_path):
    raw = {"prompt": "t", "seed": "7", "storyboard": {"scenes": [
        scene(duration_s=1, narration="This narration is much longer than one second of video.",
              transition="crossfade"),
        scene(duration_s=2.5)]}}
    film = film_plan.validate_film(raw, REGISTRY, seed_if_missing=1, voices=VOICES)
    # Priced on the narration's estimated length: 56 characters at 10 a second + 0.5 s = 6.1 s → 49 shown
    # + 4 fade → 57 generated; the second scene 20 shown → 25 generated (64×64, 4 steps).
    assert film.credits == Decimal("0.9339") + Decimal("0.4096")
    plan = film_plan.plan_film(film, REGISTRY, model_revision="r1", voices=VOICES, workdir=tmp_path)
    first, second = plan.scenes
    assert first.speech_s > 2 and first.shown_frames == round((first.speech_s + 0.5) * 8)  # stretched
    assert first.fade_frames == 4 and (first.request.num_frames - 1) % 8 == 0
    assert first.request.num_frames >= first.shown_frames + 4
    assert second.shown_frames == 20 and second.fade_frames == 0 and second.start_s == first.shown_frames / 8
    assert (first.request.seed, second.request.seed) == (scene_seed(7, 0), scene_seed(7, 1))
    assert first.request.seed != second.request.seed and plan.total_frames == first.shown_frames + 20
    # The cache key follows what determines the frames, and only that.
    assert first.cache_key == film_plan.cache_key(first.request, "r1")
    assert first.cache_key != film_plan.cache_key(first.request, "r2")


def test_speech_from_each_engine_and_a_command_voice(tmp_path):
    for name in ("slt", "en-us"):
        speech = synthesize("-v is not an option here", VOICES.get(name), tmp_path / f"{name}.wav")
        with wave.open(str(speech.path)) as audio:
            assert audio.getnframes() / audio.getframerate() == pytest.approx(speech.duration_s) and speech.duration_s > 0.5
    # A production voice is any offline program: the text on stdin, the WAV at {output}.
    command = VoiceSpec("cmd", "command", command=("flite", "-voice", "rms", "-f", "/dev/stdin", "-o", "{output}"))
    assert synthesize("hello there", command, tmp_path / "cmd.wav").duration_s > 0.3
    broken = VoiceSpec("gone", "command", command=("no-such-tts", "{output}"))
    with pytest.raises(SpeechSynthesisError, match="the text-to-speech program 'no-such-tts' of voice 'gone' was not found"):
        synthesize("hello", broken, tmp_path / "x.wav")
    registry_file = tmp_path / "voices.json"
    registry_file.write_text(json.dumps([{"name": "amy", "engine": "command", "command": ["piper", "{output}"]}]))
    assert "amy" in VoiceRegistry.from_file(registry_file)


def test_subtitle_cues_share_the_speech_time_in_order():
    cues = cues_for([TimedNarration(0.0, 3.0, "First sentence here. Second one, somewhat longer than the first."),
                     TimedNarration(4.0, 1.0, "Last.")])
    assert [c.text.replace("\n", " ") for c in cues] == ["First sentence here.",
                                                         "Second one, somewhat longer than the first.", "Last."]
    assert cues[0].start_s == 0 and cues[1].end_s == 3.0 and (cues[2].start_s, cues[2].end_s) == (4.0, 5.0)
    assert parse_srt(to_srt(cues)) == cues
    # 17 of the first narration's 52 letters: 0.981 s of its 3 s.
    assert to_webvtt(cues).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.981\nFirst sentence here.\n\n")


def test_narration_is_priced_and_limited_at_submission_by_its_estimated_length(tmp_path):
    """Stretching to the narration may neither escape the price nor the film's length limit."""
    long_narration = "word " * 110  # 549 characters once stripped: 54.9 s of speech at the estimated rate
    with pytest.raises(ValidationError) as raised:
        film_plan.validate_film({"prompt": "t", "storyboard": {"scenes": [scene(duration_s=0.5, narration=long_narration)]}},
                                REGISTRY, seed_if_missing=1, voices=VOICES)
    assert raised.value.code == "scene_too_long" and raised.value.message.startswith(
        "storyboard.scenes[0].duration_s: with its narration (estimated) the scene lasts 55.375 s, 449 frames at 8 fps")
    many = {"scenes": [scene(duration_s=0.5, narration="x" * 100)] * 24}  # 24 × 10.5 s estimated
    with pytest.raises(ValidationError) as raised:
        film_plan.validate_film({"prompt": "t", "storyboard": many}, REGISTRY, seed_if_missing=1, voices=VOICES)
    assert (raised.value.code, raised.value.message) == (
        "storyboard_too_long", "storyboard.scenes: with their narration (estimated) the scenes last 252 s in all; "
        "a film may last at most 180 s")
    # A storyboard and an audio prompt at once is refused.
    with pytest.raises(ValidationError, match="a job is either a film .storyboard. or a spoken prompt"):
        film_plan.validate_film({"prompt": "t", "audio_prompt_key": "uploads/a/x.wav",
                                 "storyboard": {"scenes": [scene()]}}, REGISTRY, seed_if_missing=1, voices=VOICES)


def test_a_chapter_title_is_one_line_whatever_the_prompt_holds():
    from videogen.film.assembly import Chapter, ffmetadata

    document = ffmetadata([Chapter(0, 1, "Scene 1: a fox\r[CHAPTER]\rTIMEBASE=1/1\nSTART=0; #x")])
    assert document.count("[CHAPTER]") == 2  # the real one, and the prompt's text as part of a title
    assert "title=Scene 1: a fox [CHAPTER] TIMEBASE\\=1/1 START\\=0\\; \\#x\n" in document
    assert document.count("\n") == 6
