"""The bad-input corpus: each request is rejected with its own message a person can act on."""

import pytest
import sqlalchemy as sa

from videogen import stages
from videogen.errors import ValidationError
from videogen.generation.registry import ModelRegistry
from videogen.lifecycle import JobRequest, JobStore
from videogen.validation import validate_request

REGISTRY = ModelRegistry.from_env({})

# (request fields, expected error code, words the message must contain)
BAD_REQUESTS = [
    ({"prompt": ""}, "empty_prompt", "prompt is empty"),
    ({"prompt": "   \n\t "}, "empty_prompt", "prompt is empty"),
    ({"prompt": "x" * 2001}, "prompt_too_long", "2001 characters; the maximum is 2000"),
    ({"prompt": "a fox\x07 in snow"}, "control_characters", "control character U+0007 at character 5"),
    ({"prompt": "a fox\x00 in snow"}, "control_characters", "NUL byte at character 5"),
    ({"prompt": "a fox \x1b[31m red"}, "control_characters", "U+001B"),
    ({"prompt": b"caf\xe9 au lait"}, "invalid_encoding", "not valid UTF-8 (byte 0xe9 at offset 3)"),
    ({"prompt": "ok", "negative_prompt": "blur\x0b"}, "control_characters", "negative_prompt contains control"),
    ({"prompt": "ok", "model": "sora-9000"}, "unknown_model", "model 'sora-9000' is not registered; available: tiny"),
    ({"prompt": "ok", "model": "tiny'; DROP TABLE jobs; --"}, "unknown_model", "is not registered"),
    ({"prompt": "ok", "width": "100"}, "invalid_width", "width 100 is not allowed: use a multiple of 32 from 32 to 256"),
    ({"prompt": "ok", "height": "4096"}, "invalid_height", "height 4096 is not allowed"),
    ({"prompt": "ok", "width": "abc"}, "invalid_width", "width must be a whole number, got 'abc'"),
    ({"prompt": "ok", "num_frames": "10"}, "invalid_num_frames", "use 8k+1 frames (e.g. 9, 17, 25)"),
    ({"prompt": "ok", "num_frames": "0"}, "invalid_num_frames", "num_frames 0 is not allowed"),
    ({"prompt": "ok", "num_frames": "1000001"}, "invalid_num_frames", "from 1 to 121"),
    ({"prompt": "ok", "fps": "0"}, "invalid_fps", "fps 0 is out of range: allowed 1 to 60"),
    ({"prompt": "ok", "fps": "240"}, "invalid_fps", "allowed 1 to 60"),
    ({"prompt": "ok", "steps": "0"}, "invalid_steps", "steps 0 is out of range: allowed 1 to 100"),
    ({"prompt": "ok", "steps": "2.5"}, "invalid_steps", "steps must be a whole number, got '2.5'"),
    ({"prompt": "ok", "guidance_scale": "NaN"}, "invalid_guidance_scale", "must be a finite number"),
    ({"prompt": "ok", "guidance_scale": "loud"}, "invalid_guidance_scale", "must be a number, got 'loud'"),
    ({"prompt": "ok", "seed": "-1"}, "invalid_seed", "seed -1 is out of range"),
    ({"prompt": "ok", "quality_preset": "4K"}, "invalid_quality_preset", "not one of STANDARD, HD, ULTRA"),
]


@pytest.mark.parametrize("fields,code,words", BAD_REQUESTS, ids=[c[1] + "-" + str(i) for i, c in enumerate(BAD_REQUESTS)])
def test_validation_names_the_problem(fields, code, words):
    with pytest.raises(ValidationError) as info:
        validate_request(fields, REGISTRY, seed_if_missing=0)
    assert info.value.code == code
    assert words in info.value.message
    # The field at fault, for a form to show the message next to it: the one field each case spoils.
    assert info.value.field == next((name for name in fields if name != "prompt"), "prompt")


def test_sql_metacharacters_in_a_prompt_are_just_text(engine):
    prompt = "Robert'); DROP TABLE jobs; -- \"quoted\" 100% _under_ \\back"
    request = validate_request({"prompt": prompt}, REGISTRY, seed_if_missing=3)
    assert request.prompt == prompt
    store = JobStore(engine)
    job_id = store.submissions.submit(JobRequest(user_id="o'brien", prompt=prompt), registry=REGISTRY).job_id
    assert store.reads.get(job_id)["prompt"] == prompt and store.reads.get(job_id)["user_id"] == "o'brien"


def test_defaults_and_normalization():
    request = validate_request({"prompt": "a fox", "quality_preset": "hd", "width": " 96 "}, REGISTRY, seed_if_missing=42)
    assert (request.model, request.width, request.height, request.num_frames, request.fps, request.steps) == (
        "tiny", 96, 64, 9, 8, 4)
    assert request.seed == 42 and request.quality_preset == "HD"
    assert str(request.credits) == "0.2212"  # 9 frames × 96 × 64 px × 4 steps / 1e6, rounded up


# Rows inserted straight into the table (any producer can), with values of the wrong type.
STRAIGHT_INSERTS = [
    ("width", "'wide'", "invalid_width", "width must be a whole number, got 'wide'"),
    ("height", "'64px'", "invalid_height", "height must be a whole number"),
    ("num_frames", "'9.5'", "invalid_num_frames", "num_frames must be a whole number, got '9.5'"),
    ("fps", "'true'", "invalid_fps", "fps must be a whole number"),
    ("steps", "'[4]'", "invalid_steps", "steps must be a whole number"),
    ("guidance_scale", "'Infinity'", "invalid_guidance_scale", "finite number"),
    ("seed", "'1e99'", "invalid_seed", "out of range"),
    ("model", "''", None, None),  # empty model → the default model: valid
]


@pytest.mark.parametrize("column,literal,code,words", STRAIGHT_INSERTS)
def test_wrong_types_inserted_straight_into_the_table(engine, column, literal, code, words):
    with engine.begin() as conn:
        job_id = conn.execute(sa.text(
            f"INSERT INTO jobs (user_id, prompt, {column}) VALUES ('sql', 'a fox', {literal}) RETURNING id"
        )).scalar()
    store = JobStore(engine)
    if code is None:
        validated = stages.claim_and_validate(store, REGISTRY, job_id, "run-1")
        assert validated.request.model == "tiny"
        assert store.reads.get(job_id)["model"] == "tiny"
        return
    with pytest.raises(ValidationError):
        stages.claim_and_validate(store, REGISTRY, job_id, "run-1")
    row = store.reads.get(job_id)
    assert row["status"] == "rejected" and row["error_code"] == code and words in row["error_message"]
    assert [e["status"] for e in store.reads.events(job_id)] == ["pending", "queued", "running", "rejected"]


def test_validated_parameters_are_written_back(engine):
    store = JobStore(engine)
    job_id = store.submissions.submit(JobRequest(user_id="ana", prompt="a fox")).job_id
    validated = stages.claim_and_validate(store, REGISTRY, job_id, "run-1")
    row = store.reads.get(job_id)
    assert (row["width"], row["height"], row["num_frames"], row["fps"], row["steps"]) == ("64", "64", "9", "8", "4")
    assert row["seed"] == str(validated.request.seed)
    assert float(row["credits"]) == pytest.approx(0.1475)


# Numbers in messages: whole numbers in full (a value and its limit must never print alike, as
# "9.22337e+18" did for both), fractions exactly; absurd sizes are refused at once, not computed.
NUMBER_MESSAGES = [
    ({"seed": "9223372036854775808"}, "seed 9223372036854775808 is out of range: allowed 0 to 9223372036854775807"),
    ({"seed": "-1"}, "seed -1 is out of range: allowed 0 to 9223372036854775807"),
    ({"seed": "1e99"}, "seed 10000000000000000000…0000 (100 digits) is out of range: allowed 0 to 9223372036854775807"),
    ({"seed": "1e999999999"}, "seed '1e999999999' is far out of range: it has more than 4000 digits"),
    ({"seed": "9" * 5000}, "is far out of range: it has more than 4000 digits"),
    ({"steps": "12345678901234567890"}, "steps 12345678901234567890 is out of range: allowed 1 to 100"),
    ({"fps": "61.0"}, "fps 61 is out of range: allowed 1 to 60"),
    ({"width": "1e20"}, "width 100000000000000000000 is not allowed: use a multiple of 32 from 32 to 256"),
    ({"num_frames": "123456789012345678901"}, "num_frames 123456789012345678901 is not allowed for model 'tiny'"),
    ({"guidance_scale": "20.0000001"}, "guidance_scale 20.0000001 is out of range: allowed 0 to 20"),
    ({"guidance_scale": "-0.5"}, "guidance_scale -0.5 is out of range: allowed 0 to 20"),
    ({"guidance_scale": "1e300"}, "guidance_scale 1e+300 is out of range: allowed 0 to 20"),
    ({"guidance_scale": "9" * 400}, "guidance_scale must be a finite number, got '" + "9" * 40 + "…'"),
]


@pytest.mark.parametrize("fields,message", NUMBER_MESSAGES, ids=[str(i) for i in range(len(NUMBER_MESSAGES))])
def test_numbers_in_messages_are_printed_in_full(fields, message):
    with pytest.raises(ValidationError) as info:
        validate_request({"prompt": "a fox", **fields}, REGISTRY, seed_if_missing=0)
    assert message in info.value.message
    assert "e+18" not in info.value.message and len(info.value.message) < 300


def test_the_largest_seed_is_accepted_and_kept_exactly():
    request = validate_request({"prompt": "a fox", "seed": "9223372036854775807"}, REGISTRY, seed_if_missing=0)
    assert request.seed == 2**63 - 1
