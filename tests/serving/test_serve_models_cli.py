"""`videogen serve-models` refuses to start, with one line a person can act on, when it cannot."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import serving.local as local


def test_a_port_in_use_is_named_before_ray_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(Path(sys.executable).with_name("videogen")), "serve-models", "--port", str(port)],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "VIDEOGEN_HOME": str(tmp_path)})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: port {port} on 127.0.0.1 is in use" in result.stderr
    assert "VIDEOGEN_SERVE_PORT" in result.stderr


def test_not_enough_memory_says_how_much_is_needed(monkeypatch):
    monkeypatch.setattr(local, "available_memory_bytes", lambda: 512 * 1024**2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(local.StartupError, match=r"not enough memory .*: 0\.5 GiB available, it needs about 2 GiB"):
        local.check_can_start("127.0.0.1", port)
