"""Helpers for cross-package tests: run the installed `ibkr-agent` as a user would."""

import shutil
import subprocess
import sys
from pathlib import Path

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
