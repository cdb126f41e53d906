"""Helpers for cross-package tests: run the installed `ibkr-agent` as a user would."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

AUDIT_KEY_ENV = "IBKR_TEST_AUDIT_KEY"


def ibkr_agent() -> list[str]:
    """The installed console script (falls back to the module when the script is not on PATH)."""
    script = Path(sys.executable).with_name("ibkr-agent")
    if script.exists():
        return [str(script)]
    found = shutil.which("ibkr-agent")
    return [found] if found else [sys.executable, "-m", "ibkr_gateway_cli"]


def run_cli(args: list[str], env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `ibkr-agent` as a user would, in a clean environment."""
    return subprocess.run(
        [*ibkr_agent(), *args], capture_output=True, encoding="utf-8", timeout=timeout, check=False, env=env
    )


def client_portal_config(tmp_path: Path, base_url: str) -> Path:
    """A config that points the CLI at a Client Portal URL with the localhost TLS exception."""
    path = tmp_path / "client-portal.yaml"
    path.write_text(
        "broker:\n"
        "  backend: client_portal_gateway\n"
        f"  base_url: {base_url}\n"
        "  verify_tls: false\n"
        "audit:\n"
        f"  hmac_secret_env: {AUDIT_KEY_ENV}\n"
        "state:\n"
        "  directory: client-portal-state\n",
        encoding="utf-8",
    )
    return path


@contextmanager
def serve_simulator(*options: str) -> Iterator[str]:
    """`ibkr-agent simulator serve --port 0 [options]` in a subprocess, over HTTPS; yields its base URL."""
    proc = subprocess.Popen(
        [*ibkr_agent(), "simulator", "serve", "--port", "0", *options],
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


def sim_control(base_url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read (no body) or change the simulator's behaviour through its `/sim/control` endpoint."""
    with httpx2.Client(verify=False, timeout=10) as http:
        answer = (
            http.get(base_url + "/sim/control") if body is None else http.post(base_url + "/sim/control", json=body)
        )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result
