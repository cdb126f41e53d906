"""Move the four distributions to one new version, with every exact sibling pin, in one step.

    uv run python scripts/bump_version.py 0.2.0            # bump, then `uv lock`
    uv run python scripts/bump_version.py 0.2.0 --no-lock  # bump only
    uv run python scripts/bump_version.py --check          # exit 1 unless versions and pins agree

Edits are textual (comments and layout survive) and checked afterwards by reading the files back
with `tomllib`. The workspace root's own version is not published and is left alone; its pins on
the four members move with them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTIONS = ("ibkr-gateway-core", "ibkr-gateway-cpapi", "ibkr-gateway-cli", "ibkr-gateway-mcp")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?$")
"""Plain release versions (PEP 440 subset): 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev0."""
PIN_RE = re.compile(
    r"""(?P<quote>["'])(?P<name>"""
    + "|".join(map(re.escape, DISTRIBUTIONS))
    + r""")(?P<extras>\[[^\]]*\])?\s*==\s*(?P<version>[^"';,\s]+)"""
)
"""An exact sibling pin at the start of a quoted dependency string, extras allowed (`core[x]==1.0`)."""
PROJECT_VERSION_RE = re.compile(r"""(?m)^(version\s*=\s*)(["'])(?P<version>[^"']+)\2""")


def _pyprojects(root: Path) -> dict[str, Path]:
    return {name: root / "packages" / name / "pyproject.toml" for name in DISTRIBUTIONS}


def _pins(data: dict[str, Any]) -> list[str]:
    """Versions of the sibling pins among a pyproject's dependencies, optional ones included."""
    project = data.get("project", {})
    lists: list[list[str]] = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
    return [match.group("version") for deps in lists for dep in deps if (match := PIN_RE.search(f'"{dep}'))]


def problems(root: Path) -> list[str]:
    """Ways in which the versions and sibling pins disagree; empty when all are in step."""
    found: list[str] = []
    versions: dict[str, str] = {}
    for name, path in _pyprojects(root).items():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        versions[name] = str(data["project"]["version"])
    if len(set(versions.values())) != 1:
        found.append("versions differ: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    expected = versions[DISTRIBUTIONS[0]]
    for path in [*_pyprojects(root).values(), root / "pyproject.toml"]:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        where = path.relative_to(root)
        found.extend(f"{where} pins a sibling at {pin}, not {expected}" for pin in _pins(data) if pin != expected)
    return found


def bump(root: Path, new_version: str) -> list[Path]:
    """Write `new_version` into the four pyprojects and every sibling pin; the files changed.

    Raises:
        SystemExit: when the version is malformed or the files are not in step before the bump.
    """
    if not VERSION_RE.match(new_version):
        raise SystemExit(f"not a release version: {new_version!r} (expected e.g. 0.2.0 or 0.2.0rc1)")
    before = problems(root)
    if before:
        raise SystemExit("versions are not in step; fix by hand first:\n  " + "\n  ".join(before))
    changed: list[Path] = []
    for path in [*_pyprojects(root).values(), root / "pyproject.toml"]:
        text = path.read_text(encoding="utf-8")
        updated = PIN_RE.sub(lambda m: f"{m['quote']}{m['name']}{m['extras'] or ''}=={new_version}", text)
        if path != root / "pyproject.toml":
            updated = _set_project_version(updated, new_version, path)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    after = problems(root)
    if after:
        raise SystemExit("bump left the files out of step:\n  " + "\n  ".join(after))
    return changed


def _set_project_version(text: str, new_version: str, path: Path) -> str:
    """Replace the `version` of the `[project]` table only."""
    start = text.find("[project]")
    if start < 0:
        raise SystemExit(f"{path}: no [project] table")
    next_table = re.search(r"(?m)^\[", text[start + len("[project]") :])
    end = start + len("[project]") + next_table.start() if next_table else len(text)
    section, count = PROJECT_VERSION_RE.subn(
        lambda m: f"{m.group(1)}{m.group(2)}{new_version}{m.group(2)}", text[start:end]
    )
    if count != 1:
        raise SystemExit(f"{path}: expected one version in [project], found {count}")
    return text[:start] + section + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", nargs="?", help="the new version, e.g. 0.2.0")
    parser.add_argument("--check", action="store_true", help="only check that versions and pins agree")
    parser.add_argument("--no-lock", action="store_true", help="do not run `uv lock` afterwards")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    if args.check:
        found = problems(root)
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    if not args.version:
        parser.error("give the new version, or --check")
    for path in bump(root, args.version):
        print(f"updated {path.relative_to(root)}")
    if not args.no_lock:
        subprocess.run(["uv", "lock"], cwd=root, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
