"""Each distribution, built as PyPI gets it, installs alone into a fresh venv and works there.

The wheels are built once per session with `uv build --all-packages --no-sources` (each wheel from
its sdist). Every venv then gets one wheel, with only its sibling wheels offered through
`--find-links`, so a package that imports something it does not declare fails here (uv cannot stop
that inside the workspace). Commands run from a temporary directory, outside the checkout, with a
minimal environment.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = {
    "ibkr-gateway-core": "ibkr_gateway_core",
    "ibkr-gateway-cpapi": "ibkr_gateway_cpapi",
    "ibkr-gateway-cli": "ibkr_gateway_cli",
    "ibkr-gateway-mcp": "ibkr_gateway_mcp",
}
SERVER_STACK = ("typer", "mcp", "starlette", "uvicorn")
"""What `pip install ibkr-gateway-core` must not pull (design)."""

LIST_DISTRIBUTIONS = """
import importlib.metadata, json
print(json.dumps(sorted({dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()})))
"""
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in names:
    if name.rsplit(".", 1)[-1] != "__main__":
        importlib.import_module(name)
print(len(names) + 1)
"""


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to build and install the wheels (pip install uv)")
    return uv


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, encoding="utf-8", timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(args[:4])}… failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdists and wheels of the four distributions, built as `scripts/build` builds them."""
    out = tmp_path_factory.mktemp("dist")
    _run([_uv(), "build", "--all-packages", "--no-sources", "--out-dir", str(out)], cwd=ROOT)
    return out


def _wheel(dist_dir: Path, distribution: str) -> Path:
    wheels = sorted(dist_dir.glob(distribution.replace("-", "_") + "-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


class Venv:
    """A fresh virtual environment holding one distribution and what it declares."""

    def __init__(self, path: Path, work: Path) -> None:
        self.path = path
        self.work = work
        self.bin = path / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / ("python.exe" if os.name == "nt" else "python")

    def env(self) -> dict[str, str]:
        """A minimal environment: this venv first on PATH, state in a scratch directory, no workspace."""
        return {
            "PATH": os.pathsep.join([str(self.bin), os.defpath]),
            "HOME": str(self.work),
            "IBKR_AGENT_STATE_DIR": str(self.work / "state"),
            "PYTHONWARNDEFAULTENCODING": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def run(self, *args: str, timeout: float = 120) -> str:
        return _run(list(args), cwd=self.work, env=self.env(), timeout=timeout)

    def distributions(self) -> set[str]:
        return set(json.loads(self.run(str(self.python), "-c", LIST_DISTRIBUTIONS)))

    def import_every_module(self, package: str) -> int:
        return int(self.run(str(self.python), "-c", IMPORT_EVERY_MODULE, package))


InstallAlone = Callable[[str], Venv]


@pytest.fixture(scope="session")
def install_alone(dist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> InstallAlone:
    """The venv holding one distribution's wheel alone, made on first use and then reused."""
    venvs: dict[str, Venv] = {}

    def get(distribution: str) -> Venv:
        if distribution not in venvs:
            base = tmp_path_factory.mktemp(distribution)
            venv = Venv(base / "venv", base / "work")
            venv.work.mkdir()
            _run([_uv(), "venv", "--quiet", "--python", sys.executable, str(venv.path)], cwd=base)
            wheel = _wheel(dist_dir, distribution)
            install = [_uv(), "pip", "install", "--quiet", "--python", str(venv.python)]
            _run([*install, "--find-links", str(dist_dir), str(wheel)], cwd=base)
            venvs[distribution] = venv
        return venvs[distribution]

    return get


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_wheel_holds_py_typed_and_every_package_data_file(dist_dir: Path, distribution: str) -> None:
    """py.typed and each non-Python file of the source package (e.g. the simulator's data) are in the wheel."""
    package = DISTRIBUTIONS[distribution]
    source = ROOT / "packages" / distribution / "src" / package
    data_files = {
        path.relative_to(source.parent).as_posix()
        for path in source.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(_wheel(dist_dir, distribution)) as wheel:
        names = set(wheel.namelist())
    assert f"{package}/py.typed" in names
    assert data_files - names == set()


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_every_module_imports_with_only_the_declared_dependencies(
    install_alone: InstallAlone, distribution: str
) -> None:
    """Nothing imports a package its distribution does not declare."""
    assert install_alone(distribution).import_every_module(DISTRIBUTIONS[distribution]) >= 1


def test_core_installs_without_the_cli_or_server_stack(install_alone: InstallAlone) -> None:
    """`pip install ibkr-gateway-core` pulls none of typer, mcp, starlette, uvicorn (design)."""
    installed = install_alone("ibkr-gateway-core").distributions()
    assert "ibkr-gateway-core" in installed
    assert installed & set(SERVER_STACK) == set()
    assert not installed & {"ibkr-gateway-cpapi", "ibkr-gateway-cli", "ibkr-gateway-mcp"}


def test_cpapi_installs_without_typer_or_mcp_and_runs_the_library_example(install_alone: InstallAlone) -> None:
    """`pip install ibkr-gateway-cpapi` is all the library example needs; the simulator data ships inside."""
    venv = install_alone("ibkr-gateway-cpapi")
    installed = venv.distributions()
    assert {"ibkr-gateway-core", "ibkr-gateway-cpapi"} <= installed
    assert installed & {"typer", "mcp", "ibkr-gateway-cli", "ibkr-gateway-mcp"} == set()
    example = ROOT / "docs_src" / "getting_started" / "tutorial001.py"
    output = venv.run(str(venv.python), str(example))
    assert output.startswith("visible_accounts=") and int(output.split("=")[1]) >= 1


def test_cli_lists_the_simulator_accounts_outside_the_checkout(install_alone: InstallAlone) -> None:
    """The installed `ibkr-agent` works on the embedded simulator with no checkout around."""
    venv = install_alone("ibkr-gateway-cli")
    accounts = json.loads(venv.run(str(venv.bin / "ibkr-agent"), "accounts", "list", "--json"))
    assert "DU1234567" in {account["account_id"] for account in accounts}
    assert Path(venv.work, "state").is_dir()


def test_mcp_installs_alone_and_serves_stdio(install_alone: InstallAlone) -> None:
    """`python -m ibkr_gateway_mcp` runs without the CLI: `--describe` lists tools, stdio answers `initialize`."""
    venv = install_alone("ibkr-gateway-mcp")
    installed = venv.distributions()
    assert {"ibkr-gateway-core", "ibkr-gateway-cpapi", "mcp"} <= installed
    assert "ibkr-gateway-cli" not in installed
    described = json.loads(venv.run(str(venv.python), "-m", "ibkr_gateway_mcp", "--describe"))
    assert "ibkr_accounts_list" in described["tools"]
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
    }
    proc = subprocess.run(
        [str(venv.python), "-m", "ibkr_gateway_mcp"],
        input=json.dumps(initialize) + "\n",
        cwd=venv.work,
        env=venv.env(),
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.splitlines()[0])
    assert answer["id"] == 1
    assert answer["result"]["serverInfo"]["name"]
