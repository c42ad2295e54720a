"""The generation client: asks the Ray Serve app (``serving/``) for frames over HTTP.

This is what the Dagster op uses when ``VIDEOGEN_SERVE_URL`` is set. It imports neither torch nor
diffusers (the run worker stays a light process), relays the stream's progress events to
``on_step``, stops when ``should_cancel()`` turns true (it closes the connection; the replica then
stops denoising within one step), and maps failures onto the job's error classes: a replica that
crashed, a refused connection or a cut stream are transient (retried with backoff), CUDA out of
memory is transient, a request the service refuses is permanent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import requests

from videogen.errors import JobCanceledError, OutOfMemoryError, TransientError, VideogenError
from videogen.generation.generate import GeneratedVideo, GenerationParams
from videogen.generation.protocol import MODEL_HEADER, REQUEST_ID_HEADER, parse_event, request_body


class GenerationUnavailableError(TransientError):
    """The generation service could not be reached, or its stream broke off (a replica died)."""

    code = "generation_unavailable"


class _Stream:
    """Lines, then raw bytes, from a streamed HTTP response body."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def _fill(self) -> bool:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            return False
        self._buffer += chunk
        return True

    def line(self) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if not self._fill():
                return None

    def exactly(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            if not self._fill():
                return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


@dataclass(frozen=True)
class RemoteGenerator:
    base_url: str
    # Longest wait for the next bytes of the stream (a model load or a queue wait included).
    read_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    cancel_poll_s: float = 0.25

    def generate(
        self,
        model: str,
        params: GenerationParams,
        *,
        request_id: str = "",
        on_step: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> GeneratedVideo:
        if should_cancel is not None and should_cancel():
            raise JobCanceledError("generation canceled before it started")
        body = request_body(model, params, request_id)
        url = self.base_url.rstrip("/") + "/generate"
        started = time.perf_counter()
        try:
            response = requests.post(url, json=body, stream=True, timeout=(self.connect_timeout_s, self.read_timeout_s),
                                     # X-Request-ID: Ray Serve's request id, on every log line of the request.
                                     headers={MODEL_HEADER: model, REQUEST_ID_HEADER: request_id,
                                              "X-Request-ID": request_id or uuid.uuid4().hex})
        except requests.RequestException as exc:
            raise GenerationUnavailableError(f"cannot reach the generation service at {self.base_url}: {exc}") from None
        canceled = threading.Event()
        done = threading.Event()

        def watch_cancel() -> None:
            # The reading thread blocks in recv(); closing the response from here unblocks it.
            while not done.wait(self.cancel_poll_s):
                if should_cancel is not None and should_cancel():
                    canceled.set()
                    response.close()
                    return

        watcher = threading.Thread(target=watch_cancel, name="generation-cancel-watch", daemon=True)
        watcher.start()
        try:
            return self._read(response, params, started, on_step, canceled)
        except (requests.RequestException, OSError, AttributeError, ValueError) as exc:
            # AttributeError/ValueError: urllib3 reading a response closed under it by watch_cancel.
            if canceled.is_set():
                raise JobCanceledError("generation canceled while it ran") from None
            if isinstance(exc, ValueError) and "generation service" in str(exc):
                raise GenerationUnavailableError(str(exc)) from None
            raise GenerationUnavailableError(f"the generation stream from {self.base_url} broke off: {exc}") from None
        finally:
            done.set()
            response.close()
            watcher.join(timeout=5)

    def _read(self, response: requests.Response, params: GenerationParams, started: float,
              on_step: Callable[[int, int], None] | None, canceled: threading.Event) -> GeneratedVideo:
        if response.status_code >= 500:
            raise GenerationUnavailableError(
                f"the generation service answered {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise VideogenError(f"the generation service refused the request ({response.status_code}): "
                                f"{response.text[:300]}", code="generation_refused")
        stream = _Stream(response.iter_content(chunk_size=1 << 16))
        while True:
            line = stream.line()
            if line is None:
                if canceled.is_set():
                    raise JobCanceledError("generation canceled while it ran")
                raise GenerationUnavailableError(
                    f"the generation stream from {self.base_url} ended before the frames (a replica died?)")
            event = parse_event(line)
            kind = event["event"]
            if kind == "progress":
                if on_step is not None:
                    on_step(int(event["step"]), int(event["total"]))
            elif kind == "error":
                raise _error_from_event(event)
            elif kind == "frames":
                shape = tuple(int(n) for n in event["shape"])
                data = stream.exactly(int(event["nbytes"]))
                if data is None:
                    raise GenerationUnavailableError("the generation stream ended in the middle of the frames")
                frames = np.frombuffer(data, dtype=np.dtype(event["dtype"])).reshape(shape)
                expected = (params.num_frames, params.height, params.width, 3)
                if frames.shape != expected:
                    raise VideogenError(f"the generation service returned frames of shape {frames.shape}, "
                                        f"expected {expected}")
                return GeneratedVideo(frames=frames, seconds=float(event.get("seconds") or
                                                                    time.perf_counter() - started))
            # "started" and unknown events: informational


def _error_from_event(event: dict) -> VideogenError:
    code, message = str(event.get("code") or "generation_error"), str(event.get("message") or "")
    if code == OutOfMemoryError.code:
        return OutOfMemoryError(message)
    if event.get("transient"):
        return TransientError(message, code=code)
    return VideogenError(message, code=code)
