"""Whether a local service can listen where it is told to (one check for every service we start)."""

from __future__ import annotations

import socket


def port_problem(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now; else the reason (e.g. "Address already in use")."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None
