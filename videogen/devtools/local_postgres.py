"""A project-local PostgreSQL cluster, started from the Debian binaries.

The demo command (``scripts/run_main_job.sh``) and the test suite both call :func:`ensure_running`,
so that neither depends on a system service. PostgreSQL refuses to run as root, so when this process
is root the server commands run as the ``postgres`` user through ``runuser``; the data directory is
then owned by ``postgres``.

The cluster listens on 127.0.0.1 only. Local socket connections (used here to create the role and
database) are trusted; TCP connections need the password, like a real deployment.

Usage: ``python -m videogen.devtools.local_postgres start --datadir DIR --port 55432``. It prints a
libpq URL (``postgresql://…``) that ``psql`` takes as is and the code accepts too (see
:func:`videogen.config.normalize_database_url`); :meth:`LocalPostgres.url` gives SQLAlchemy's form.
``--pooled`` also starts PgBouncer in front of the server and prints the URL of its socket, for
Dagster's storage (:class:`LocalPgBouncer`); ``stop`` stops both.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROLE = "videogen"
PASSWORD = "videogen"
DATABASE = "videogen"


def _bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: install the Debian package 'postgresql' "
        "(scripts/bootstrap.sh does) or set DATABASE_URL to an existing server."
    )


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(_as_server_user(cmd), check=True, capture_output=True, text=True, **kwargs)


class PortInUseError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalPostgres:
    datadir: Path
    port: int

    @property
    def socket_dir(self) -> Path:
        return self.datadir

    def url(self, database: str = DATABASE) -> str:
        """For SQLAlchemy: 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed."""
        return f"postgresql+psycopg2://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = DATABASE) -> str:
        """SQLAlchemy's form over the server's Unix socket (trusted: the socket is in the data
        directory, which only its owner can enter). For Dagster's storage: dagster-postgres opens a
        new connection for every query (NullPool), ~160 per run, and over the socket a connection
        skips TCP and the SCRAM exchange (~2 ms of client CPU each): on a 2-core machine, 200 tiny
        runs drain in ~210 s instead of ~290 s (benchmarks/serving_benchmark.py, overhead)."""
        return f"postgresql+psycopg2://{ROLE}@/{database}?host={quote(str(self.socket_dir), safe='')}&port={self.port}"

    def libpq_url(self, database: str = DATABASE) -> str:
        """For ``psql``, libpq and the ``DATABASE_URL`` variable (a libpq URL has no ``+driver``)."""
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _psql(self, sql: str, database: str = "postgres") -> str:
        out = _run(
            [str(_bindir() / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
             "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]
        )
        return out.stdout.strip()

    def is_ready(self) -> bool:
        """Our server answers: on its own socket, so another server on the same port does not count."""
        result = subprocess.run(
            [str(_bindir() / "pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port)], capture_output=True
        )
        return result.returncode == 0

    def check_port_free(self) -> None:
        """Before starting: the TCP port must be free, or another program answers for our server."""
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                raise PortInUseError(
                    f"port {self.port} on 127.0.0.1 is in use by another program (another checkout's local "
                    f"PostgreSQL?): set VIDEOGEN_PG_PORT to a free port, or stop that server"
                ) from None

    def initialize(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.datadir, "postgres", "postgres")
            # The server user must be able to reach its data directory.
            for parent in self.datadir.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        _run([str(_bindir() / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth-local=trust",
              "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"])

    def start(self, timeout_s: float = 60.0) -> None:
        if not self.is_ready():
            self.check_port_free()
        self.initialize()
        if not self.is_ready():
            _run([str(_bindir() / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.datadir / "server.log"),
                  "-w", "-t", str(int(timeout_s)), "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.socket_dir} "
                  "-c max_connections=200 -c fsync=off -c synchronous_commit=off",
                  "start"])
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not become ready on port {self.port} within {timeout_s} s")
            time.sleep(0.2)
        self.ensure_database(DATABASE)

    def ensure_database(self, name: str) -> None:
        if self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'") != "1":
            # CREATEROLE: the KPI migration creates the read-only analyst role.
            self._psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' CREATEDB CREATEROLE")
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
            self._psql(f'CREATE DATABASE "{name}" OWNER {ROLE}')

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            _run([str(_bindir() / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"])

    def restart(self) -> None:
        _run([str(_bindir() / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "restart"])
        deadline = time.monotonic() + 60
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not come back after restart")
            time.sleep(0.2)


class PgBouncerMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalPgBouncer:
    """PgBouncer in session-pooling mode in front of a :class:`LocalPostgres`, for Dagster's storage.

    Why: dagster-postgres opens a new connection for every query (SQLAlchemy's NullPool), about 160
    per run, and each one makes PostgreSQL fork and initialize a backend: ~3.4 ms of CPU per connection
    here, 0.79 CPU-s per tiny request of the 2.11 the whole machine spent on it (measured by process
    group over a backlog of 20 through Serve). PgBouncer hands each new client connection a server connection it keeps
    open (reset with ``DISCARD ALL``), which brought PostgreSQL's share to 0.11 CPU-s. Session mode,
    not transaction mode: every client keeps a server connection to itself for its whole (short)
    life, so session state (``SET statement_timeout``, advisory locks) behaves as without a pooler.

    It listens on a Unix socket only, in ``rundir`` (the socket file is named after ``port``; no TCP
    port is opened), and trusts that socket like the server trusts its own: the directory belongs to
    the server's user. It runs as that user (as PostgreSQL, it refuses root) and daemonizes; ``stop``
    signals the pid in its pidfile.
    """

    server: LocalPostgres
    rundir: Path

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pidfile(self) -> Path:
        return self.rundir / "pgbouncer.pid"

    def socket_url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg2://{ROLE}@/{database}?host={quote(str(self.rundir), safe='')}&port={self.port}"

    def pid(self) -> int | None:
        """The pid in the pidfile if that process is our PgBouncer: a pidfile left by a crash or a
        reboot may name a pid that another program has since been given."""
        try:
            pid = int(self.pidfile.read_text().strip())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        ours = any(Path(arg.decode("utf-8", "replace")).name == "pgbouncer" for arg in argv[:1]) and \
            str(self.rundir / "pgbouncer.ini").encode() in argv
        return pid if ours else None

    def is_running(self) -> bool:
        return self.pid() is not None and (self.rundir / f".s.PGSQL.{self.port}").exists()

    def config(self) -> str:
        return f"""[databases]
* = host={self.server.socket_dir} port={self.server.port}

[pgbouncer]
listen_addr =
listen_port = {self.port}
unix_socket_dir = {self.rundir}
unix_socket_mode = 0700
auth_type = trust
auth_file = {self.rundir / "userlist.txt"}
pool_mode = session
server_reset_query = DISCARD ALL
max_client_conn = 1000
default_pool_size = 50
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
stats_period = 600
logfile = {self.rundir / "pgbouncer.log"}
pidfile = {self.pidfile}
"""

    def start(self, timeout_s: float = 30.0) -> None:
        if self.is_running():
            return
        for stale in (self.pidfile, self.rundir / f".s.PGSQL.{self.port}", self.rundir / f".s.PGSQL.{self.port}.lock"):
            stale.unlink(missing_ok=True)  # left by a PgBouncer that is gone (it refuses to start over them)
        binary = shutil.which("pgbouncer") or next(iter(glob.glob("/usr/sbin/pgbouncer")), None)
        if binary is None:
            raise PgBouncerMissing("PgBouncer not found: install the Debian package 'pgbouncer' "
                                   "(scripts/bootstrap.sh does)")
        self.rundir.mkdir(parents=True, exist_ok=True)
        (self.rundir / "pgbouncer.ini").write_text(self.config())
        (self.rundir / "userlist.txt").write_text(f'"{ROLE}" ""\n')
        if os.geteuid() == 0:
            for path in (self.rundir, *self.rundir.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        self.rundir.chmod(0o700)
        _run([binary, "-d", str(self.rundir / "pgbouncer.ini")])
        deadline = time.monotonic() + timeout_s
        while not self.is_running():
            if time.monotonic() > deadline:
                log = self.rundir / "pgbouncer.log"
                raise RuntimeError(f"PgBouncer did not start within {timeout_s} s: "
                                   f"{log.read_text()[-2000:] if log.exists() else 'no log'}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it exited meanwhile
            return
        deadline = time.monotonic() + timeout_s
        while self.pid() == pid and time.monotonic() < deadline:
            time.sleep(0.05)


def bouncer_for(server: LocalPostgres) -> LocalPgBouncer:
    """The PgBouncer of a project-local server: its run directory sits next to the data directory."""
    return LocalPgBouncer(server, server.datadir.parent / f"{server.datadir.name}-pgbouncer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "url"])
    parser.add_argument("--datadir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=55432)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--sqlalchemy", action="store_true",
                        help="print SQLAlchemy's form (postgresql+psycopg2://) instead of the libpq URL")
    parser.add_argument("--socket", action="store_true",
                        help="print SQLAlchemy's form over the server's Unix socket (for Dagster's storage)")
    parser.add_argument("--pooled", action="store_true",
                        help="start PgBouncer in front of the server too and print SQLAlchemy's form over its "
                             "socket (for Dagster's storage; without PgBouncer installed: the server's socket, "
                             "with a warning)")
    args = parser.parse_args(argv)
    pg = LocalPostgres(args.datadir.resolve(), args.port)
    bouncer = bouncer_for(pg)
    if args.action == "start":
        try:
            pg.start()
        except PortInUseError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if args.database != DATABASE:
            pg.ensure_database(args.database)
    elif args.action == "stop":
        bouncer.stop()
        pg.stop()
        return 0
    if args.pooled:
        try:
            bouncer.start()
            print(bouncer.socket_url(args.database))
        except (PgBouncerMissing, RuntimeError, subprocess.CalledProcessError) as problem:
            reason = getattr(problem, "stderr", None) or problem
            print(f"warning: {str(reason).strip()}; Dagster's storage connects to PostgreSQL directly", file=sys.stderr)
            print(pg.socket_url(args.database))
    elif args.socket:
        print(pg.socket_url(args.database))
    else:
        print(pg.url(args.database) if args.sqlalchemy else pg.libpq_url(args.database))
    return 0


if __name__ == "__main__":
    sys.exit(main())
