"""Pytest fixtures for both state backends, loaded for every test package (`-p postgres_fixtures`).

One PostgreSQL cluster per test session (started on first use), a fresh database per test.
`state_location` is parametrised over `sqlite` and `postgres`, so a test that takes it runs on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ibkr_gateway_core.state import PostgresLocation, StateLocation
from postgres_server import PostgresMissing, PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on loopback for the whole session; fails (never skips) when it is not installed."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a new, empty database."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def state_location(request: pytest.FixtureRequest, tmp_path: Path) -> StateLocation:
    """A fresh state database on each backend in turn."""
    if request.param == "sqlite":
        return tmp_path / "state.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return PostgresLocation(server.new_database())
