"""Waiting on a condition with a deadline (tests never sleep a fixed time for correctness)."""

import time


def wait_until(condition, timeout_s: float, what: str, poll_s: float = 0.5):
    """``condition()``'s first truthy value, polled every ``poll_s``; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
