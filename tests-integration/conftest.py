"""Fixtures for cross-package tests: a private state directory, and a live HTTPS simulator."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import AUDIT_KEY_ENV, ibkr_agent


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


@pytest.fixture(scope="session")
def https_simulator() -> Iterator[str]:
    """`ibkr-agent simulator serve --port 0` in a subprocess; yields its base URL."""
    proc = subprocess.Popen(
        [*ibkr_agent(), "simulator", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("https://127.0.0.1:"):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"simulator did not start: {line!r} {err}")
        yield line
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
