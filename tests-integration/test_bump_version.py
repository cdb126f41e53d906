"""scripts/bump_version.py moves the four versions and every exact sibling pin together."""

import importlib.util
import shutil
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = ("ibkr-gateway-core", "ibkr-gateway-cpapi", "ibkr-gateway-cli", "ibkr-gateway-mcp")


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bump_version = _load_script("bump_version")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of the workspace's five pyproject files."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for name in DISTRIBUTIONS:
        (tmp_path / "packages" / name).mkdir(parents=True)
        shutil.copy(ROOT / "packages" / name / "pyproject.toml", tmp_path / "packages" / name / "pyproject.toml")
    return tmp_path


def _read(path: Path) -> dict[str, object]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_the_checkout_is_in_step() -> None:
    """The committed versions and pins agree; release.yml refuses to publish otherwise."""
    assert bump_version.main(["--check"]) == 0


def test_bump_moves_every_version_and_sibling_pin(workspace: Path) -> None:
    """All four versions and every `ibkr-gateway-*==` pin, root included, end up at the new version."""
    assert bump_version.main(["--root", str(workspace), "--no-lock", "1.2.3rc1"]) == 0
    for name in DISTRIBUTIONS:
        project = _read(workspace / "packages" / name / "pyproject.toml")["project"]
        assert isinstance(project, dict)
        assert project["version"] == "1.2.3rc1"
    texts = [path.read_text(encoding="utf-8") for path in workspace.rglob("pyproject.toml")]
    pins = [line for text in texts for line in text.splitlines() if "ibkr-gateway-" in line and "==" in line]
    assert len(pins) >= 4 + 4  # the root's four, plus cpapi, cli and mcp on their siblings
    assert all("==1.2.3rc1" in pin for pin in pins), pins
    assert bump_version.problems(workspace) == []


def test_bump_keeps_extras_on_a_sibling_pin(workspace: Path) -> None:
    """`ibkr-gateway-cpapi[serve]==X` keeps its extra; only the version moves."""
    path = workspace / "packages" / "ibkr-gateway-mcp" / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"ibkr-gateway-cpapi==', '"ibkr-gateway-cpapi[serve] == '), encoding="utf-8")
    assert bump_version.problems(workspace) == []
    bump_version.main(["--root", str(workspace), "--no-lock", "2.0.0"])
    assert '"ibkr-gateway-cpapi[serve]==2.0.0"' in path.read_text(encoding="utf-8")


def test_bump_keeps_comments_and_leaves_the_root_version(workspace: Path) -> None:
    """Edits are textual: the root's own (unpublished) version and the rest of the files stay as they were."""
    root_before = _read(workspace / "pyproject.toml")
    bump_version.main(["--root", str(workspace), "--no-lock", "0.9.0"])
    root_after = _read(workspace / "pyproject.toml")
    assert root_after["project"]["version"] == root_before["project"]["version"]  # type: ignore[index]
    assert root_after["tool"] == root_before["tool"]


@pytest.mark.parametrize("version", ["0.2", "v0.2.0", "0.2.0-beta", ""])
def test_malformed_version_is_refused_and_nothing_changes(workspace: Path, version: str) -> None:
    """Only plain release versions are accepted; a refusal leaves the files untouched."""
    before = {path: path.read_bytes() for path in workspace.rglob("pyproject.toml")}
    with pytest.raises(SystemExit):
        bump_version.main(["--root", str(workspace), "--no-lock", version])
    assert {path: path.read_bytes() for path in workspace.rglob("pyproject.toml")} == before


def test_check_reports_a_package_out_of_step(workspace: Path) -> None:
    """One package at another version is reported, and a bump refuses to start from there."""
    path = workspace / "packages" / "ibkr-gateway-mcp" / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    version = str(_read(path)["project"]["version"])  # type: ignore[index]
    path.write_text(text.replace(f'version = "{version}"', 'version = "9.9.9"', 1), encoding="utf-8")
    assert bump_version.main(["--root", str(workspace), "--check"]) == 1
    with pytest.raises(SystemExit):
        bump_version.main(["--root", str(workspace), "--no-lock", "1.0.0"])
