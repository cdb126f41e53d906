"""A real PostgreSQL server for tests and benchmarks: Debian's binaries, a temporary cluster, loopback only.

`running_postgres` runs `initdb` and `pg_ctl` from /usr/lib/postgresql/*/bin in a private temporary
directory (as the unprivileged `nobody` when started as root, since PostgreSQL refuses to run as root),
listening on 127.0.0.1 on a free port with `trust` authentication for loopback, and removes it all at
the end. `PostgresServer.new_database` gives each test its own empty database. A missing installation
fails loudly (`PostgresMissing`): tests that need PostgreSQL must never pass by skipping.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "apt-get install -y postgresql"


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    )
    for directory in reversed(candidates):
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    found = shutil.which("pg_ctl")
    if found is not None and shutil.which("initdb") is not None:
        return Path(found).parent
    raise PostgresMissing(f"PostgreSQL server binaries not found: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster on 127.0.0.1."""

    port: int
    directory: Path
    options: str = ""
    """The server options it was started with (`pg_ctl -o`), kept for `crash_and_restart`."""

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URL for `database` as the superuser (no password: loopback trust)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; returns its DSN."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # pyright: ignore[reportArgumentType]
        return self.dsn(name)

    def crash_and_restart(self) -> None:
        """Stop the server as a crash would (`pg_ctl -m immediate`: no shutdown checkpoint, WAL buffers not
        written), then start it again: it recovers from the WAL that reached the disk."""
        _pg_ctl(self.directory, "-m", "immediate", "-w", "stop", check=True)
        _pg_ctl(self.directory, "-o", self.options, "-l", str(self.directory / "log"), "-w", "-t", "60", "start")


def _run_as() -> dict[str, object]:
    """`subprocess.run` arguments that drop root to `nobody` (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("nobody")
    return {"user": user.pw_uid, "group": user.pw_gid}


def _pg_ctl(root: Path, *arguments: str, check: bool = True) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(root)}
    subprocess.run(
        [str(postgres_bin() / "pg_ctl"), "-D", str(root / "data"), *arguments],
        check=check,
        capture_output=True,
        env=env,
        cwd=root,
        timeout=90,
        **_run_as(),  # type: ignore[arg-type]
    )


@contextmanager
def running_postgres(*, durable: bool = False, settings: dict[str, str] | None = None) -> Iterator[PostgresServer]:
    """Start a throwaway cluster; `durable=False` turns fsync off (tests), `True` keeps the defaults (benchmarks).

    `settings` adds server settings (`-c name=value`), e.g. to hold back the WAL writer in a crash test.
    """
    bindir = postgres_bin()
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="ibkr-pg-"))
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])  # type: ignore[arg-type]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(root)}
    port = _free_port()
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "--locale=C",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
        env=env,
        cwd=root,
        timeout=120,
        **run_as,  # type: ignore[arg-type]
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    for name, value in (settings or {}).items():
        options += f" -c {name}={value}"
    _pg_ctl(root, "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
    try:
        yield PostgresServer(port=port, directory=root, options=options)
    finally:
        _pg_ctl(root, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)
