"""Fixtures for cross-package tests: a private state directory, and a live HTTPS simulator."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import AUDIT_KEY_ENV, serve_simulator


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment with a private state directory and an audit key for real configs."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "IBKR_AGENT_STATE_DIR": str(tmp_path / "state"),
        AUDIT_KEY_ENV: "integration-test-audit-key-0123456789abcdef",
        "TERMINAL_WIDTH": "160",
        "PYTHONWARNDEFAULTENCODING": "1",
    }


@pytest.fixture(scope="module")
def https_simulator() -> Iterator[str]:
    """`ibkr-agent simulator serve --port 0` in a subprocess; yields its base URL.

    One per test module: a module that places orders (the replicas behind nginx) must not change what
    another module reads (the read commands compare the simulator's seeded orders with fake mode), so
    every module sees a freshly seeded simulator whatever order the files run in.
    """
    with serve_simulator() as url:
        yield url
