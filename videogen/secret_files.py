"""A random secret made once and kept in a file (0600), for a single machine on the embedded defaults:
the API's token-signing key when none is configured, the demo account's password."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def kept_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_hex(32)) -> str:
    """The secret in ``path``, made by ``make`` the first time. Written whole or not at all (a process
    killed half-way leaves no empty secret), and when two processes race the first to land wins."""
    path = Path(path)
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(make())
    try:
        os.link(draft, path)  # fails if another process made it meanwhile: theirs is kept
    except FileExistsError:
        if not path.read_text().strip():  # an empty leftover, not a secret: replace it
            os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return path.read_text().strip()
