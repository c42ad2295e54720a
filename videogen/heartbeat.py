"""A background heartbeat for the process working on a job.

While a stage runs, a daemon thread writes ``jobs.heartbeat_at`` every few seconds and remembers the
job's status. The reconciliation sensor treats a stale heartbeat as a dead worker, and the
generation loop reads :attr:`JobHeartbeat.canceled` between denoising steps (no extra query per step).
"""

from __future__ import annotations

import threading
from types import TracebackType

from videogen.lifecycle import JobStore


class JobHeartbeat:
    def __init__(self, store: JobStore, job_id: int, run_id: str, interval_s: float = 5.0) -> None:
        self._store = store
        self._job_id = job_id
        self._run_id = run_id
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-job-{job_id}", daemon=True)
        self.status: str | None = None

    @property
    def canceled(self) -> bool:
        return self.status == "canceled"

    def beat(self) -> None:
        self.status = self._store.runs.heartbeat(self._job_id, self._run_id)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.beat()
            except Exception:  # a transient DB error must not kill the worker; the next beat retries
                pass

    def start(self) -> "JobHeartbeat":
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval_s + 5)

    def __enter__(self) -> "JobHeartbeat":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
