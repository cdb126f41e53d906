"""An installed pydantic plugin sees nothing an `ibkr-agent` process validates, unless its operator asks.

A plugin is any distribution on the path that declares a `pydantic` entry point; pydantic hands it every
schema and every value validated against it. The spy below is such a distribution, written into a
directory on `PYTHONPATH`: it records each schema pydantic offers it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SPY = """
import os


class Spy:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        with open(os.environ["SPY_LOG"], "a", encoding="utf-8") as log:
            log.write(schema_type_path.name + "\\n")
        return None, None, None


plugin = Spy()
"""


def _ibkr_agent() -> list[str]:
    script = Path(sys.executable).with_name("ibkr-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ibkr_gateway_cli"]


@pytest.fixture
def spy_path(tmp_path: Path) -> Path:
    """A directory holding the spy plugin and the distribution metadata that declares it."""
    site = tmp_path / "site"
    (site / "spy_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "spy_plugin.py").write_text(SPY, encoding="utf-8")
    (site / "spy_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: spy-plugin\nVersion: 1.0\n", encoding="utf-8"
    )
    (site / "spy_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[pydantic]\nspy = spy_plugin:plugin\n", encoding="utf-8"
    )
    return site


def _run(args: list[str], spy_path: Path, tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], str]:
    log = tmp_path / "spy.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(spy_path),
        "SPY_LOG": str(log),
        "IBKR_AGENT_STATE_DIR": str(tmp_path / "state"),
        **extra,
    }
    proc = subprocess.run([*_ibkr_agent(), *args], capture_output=True, encoding="utf-8", env=env, timeout=60)
    return proc, log.read_text(encoding="utf-8") if log.exists() else ""


@pytest.mark.parametrize(
    "args",
    [["health", "--json"], ["accounts", "list", "--json"], ["--json", "positions", "list", "--account", "DU1234567"]],
    ids=["health", "accounts", "positions"],
)
def test_an_installed_pydantic_plugin_sees_nothing(args: list[str], spy_path: Path, tmp_path: Path) -> None:
    proc, seen = _run(args, spy_path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    assert seen == ""


def test_the_typer_path_and_a_usage_error_load_no_plugin_either(spy_path: Path, tmp_path: Path) -> None:
    proc, seen = _run(["health", "--json", "--no-such-flag"], spy_path, tmp_path)
    assert proc.returncode == 2
    assert "No such option" in proc.stderr
    assert seen == ""


@pytest.mark.parametrize("value", ["", "some-other-plugin"])
def test_an_operator_who_sets_the_variable_keeps_their_plugins(value: str, spy_path: Path, tmp_path: Path) -> None:
    """The control: the spy is a working plugin, and a variable the operator set is left as it is."""
    proc, seen = _run(["health", "--json"], spy_path, tmp_path, PYDANTIC_DISABLE_PLUGINS=value)
    assert proc.returncode == 0, proc.stderr
    assert "AuditEvent" in seen.split()
