"""JSON log lines: the formatter's fields, the job/run context, and the redaction of secrets."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from videogen.logs import JsonFormatter, bind, handler, log_context, no_context, redact, uvicorn_log_config


@pytest.fixture(autouse=True)
def unbound():
    """Each test without a bound job: one bound by an op run in process earlier in this pytest
    process (the generate_video job's tests) must not show up here."""
    with no_context():
        yield


def logged(emit) -> list[dict]:
    stream = io.StringIO()
    logger = logging.Logger("videogen.test", level=logging.DEBUG)
    logger.addHandler(handler("tests", stream))
    emit(logger)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_the_context_and_extra_fields():
    def emit(logger):
        logger.info("outside")
        with log_context(job_id=42, run_id="r-1"):
            logger.warning("inside %s", "a stage", extra={"stage": "encode"})
        logger.info("after")

    outside, inside, after = logged(emit)
    assert inside["message"] == "inside a stage" and inside["level"] == "warning"
    assert (inside["job_id"], inside["run_id"], inside["stage"], inside["service"]) == (42, "r-1", "encode", "tests")
    assert inside["logger"] == "videogen.test" and inside["ts"].endswith("Z")
    assert "job_id" not in outside and "job_id" not in after


def test_bind_holds_for_the_rest_of_the_thread_only():
    seen: dict[str, list[dict]] = {}

    def worker(name: str, job_id: int) -> None:
        bind(job_id=job_id)
        seen[name] = logged(lambda logger: logger.info("working"))

    threads = [threading.Thread(target=worker, args=(f"t{i}", i)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["t1"][0]["job_id"] == 1 and seen["t2"][0]["job_id"] == 2
    assert "job_id" not in logged(lambda logger: logger.info("main thread"))[0]


def test_a_traceback_is_kept_but_redacted():
    def emit(logger):
        try:
            raise RuntimeError("connect to postgresql://videogen:hunter2@db:5432/videogen failed")
        except RuntimeError:
            logger.exception("the database is unavailable")

    [entry] = logged(emit)
    assert entry["exception"] == "RuntimeError" and "Traceback" in entry["traceback"]
    assert "hunter2" not in json.dumps(entry) and "videogen:[redacted]@db" in entry["traceback"]


@pytest.mark.parametrize("text,secret,kept", [
    ("key vg_0123456789ab_Zm9vYmFyYmF6cXV4cXV1eA-_ used", "Zm9vYmFyYmF6cXV4cXV1eA", "vg_0123456789ab_[redacted]"),
    ("Authorization: Bearer abc.def-ghi_jkl123", "abc.def-ghi_jkl123", "Bearer [redacted]"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1XzEifQ.c2lnbmF0dXJlX2hlcmU there", "c2lnbmF0dXJlX2hlcmU", "[redacted-jwt]"),
    ("GET https://s3.example/b/k.mp4?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAEXAMPLE%2F2026&X-Amz-Signature=9f86d0818",
     "9f86d0818", "X-Amz-Signature=[redacted]"),
    ("https://b.s3.example/k?AWSAccessKeyId=AKIAOLD&Signature=c2lnbg%3D&Expires=1", "c2lnbg", "Signature=[redacted]"),
    ("postgresql+psycopg2://videogen:s3cr3t@127.0.0.1:5432/db", "s3cr3t", "videogen:[redacted]@127.0.0.1"),
    ("login with password=correct-horse&email=a@b.c", "correct-horse", "password=[redacted]"),
])
def test_secrets_are_redacted_from_any_message(text, secret, kept):
    assert secret not in redact(text) and kept in redact(text)
    [entry] = logged(lambda logger: logger.info("%s", text))
    assert secret not in entry["message"]


def test_ordinary_text_is_left_alone():
    text = "job 42 succeeded: 9 frames at 64x64 in 1.2 s (user u_abc, model tiny)"
    assert redact(text) == text


def test_uvicorn_gets_the_same_formatter():
    import importlib

    config = uvicorn_log_config("api")
    factory = dict(config["formatters"]["json"])
    module, _, name = factory.pop("()").rpartition(".")
    formatter = getattr(importlib.import_module(module), name)(**factory)
    assert isinstance(formatter, JsonFormatter) and formatter.service == "api"
    assert config["loggers"]["uvicorn.access"]["handlers"] == ["json"] and config["root"]["handlers"] == ["json"]
