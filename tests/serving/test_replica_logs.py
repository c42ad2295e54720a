"""The Serve replicas log JSON lines, and a request's lines carry the request id that generate_frames
sets (job-<job id>-run-<run id>), so a job's story continues into the generation service."""

from __future__ import annotations

import json

from tests.serving.test_serving import TINY, ray_logs, replica_lines
from tests.waiting import wait_until
from videogen.generation.remote import RemoteGenerator


def test_replica_logs_are_json_and_carry_the_request_id(serve_app):
    logs = ray_logs(serve_app)
    request_id = "job-4242-run-0f1e2d3c"
    RemoteGenerator(serve_app["url"]).generate("tiny", TINY, request_id=request_id)

    def lines_of_the_request() -> list[dict]:
        entries = [json.loads(line) for line in replica_lines(logs)]  # every line is one JSON object
        return [e for e in entries if e.get("request_id") == request_id]

    mine = wait_until(lines_of_the_request, 30, f"the replica to log request {request_id} under {logs}")
    assert all(e["deployment"] == "videogen_TextToVideo" and e["application"] == "videogen" for e in mine)
    assert any(e["route"] == "/generate" and e["message"].startswith("POST /generate 200") for e in mine)
