"""The generated reference pages under docs/reference/ are current and complete.

`scripts/gen_docs.py` renders them from the code; these tests render them again in memory and
compare with the committed files, so a new CLI command, configuration key or error code cannot ship
without its entry. The fix for a failure is `uv run python scripts/gen_docs.py`, then commit.
"""

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "stale: run `uv run python scripts/gen_docs.py` and commit the result"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen_docs = _load_script("gen_docs")


def _committed(name: str) -> str:
    path = ROOT / "docs" / "reference" / name
    assert path.exists(), f"docs/reference/{name} is missing; {REGENERATE}"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(gen_docs.PAGES))
def test_committed_reference_page_matches_the_code(name: str) -> None:
    """Each generated page, rendered now, equals the committed file (we decided: committed, checked)."""
    assert _committed(name) == gen_docs.PAGES[name](), f"docs/reference/{name} is {REGENERATE}"


def _cli_headings() -> set[str]:
    return {line.lstrip("#").strip() for line in _committed("cli.md").splitlines() if line.startswith("#")}


def test_every_cli_command_has_an_entry() -> None:
    """Every command and command group of the typer app has a heading in the CLI reference."""
    paths = gen_docs.cli_commands()
    assert ("accounts", "list") in paths
    missing = [" ".join(path) for path in paths if f"`{' '.join(('ibkr-agent', *path))}`" not in _cli_headings()]
    assert missing == []


def test_every_registry_operation_is_a_documented_command() -> None:
    """Each operation of the registry is a CLI command with an entry, so CLI, MCP and docs agree."""
    from ibkr_gateway_core.registry import OPERATIONS

    headings = _cli_headings()
    commands = set(gen_docs.cli_commands())
    for op in OPERATIONS.values():
        assert op.cli in commands, f"operation {op.name} has no CLI command {op.cli_command!r}"
        assert f"`ibkr-agent {op.cli_command}`" in headings


def test_every_config_key_has_an_entry() -> None:
    """Every leaf key of GatewayConfig, at every depth, is a row of the configuration reference."""
    page = _committed("configuration.md")
    keys = gen_docs.config_keys()
    assert "broker.verify_tls" in keys
    missing = [key for key in keys if f"| `{key}` |" not in page]
    assert missing == []


def test_every_error_code_has_an_entry_with_advice() -> None:
    """Every ErrorCode is catalogued (family, retry advice, user action) and listed on the page."""
    from ibkr_gateway_core.errors import ERROR_CATALOGUE, ErrorCode

    page = _committed("errors.md")
    for code in ErrorCode:
        assert code in ERROR_CATALOGUE, f"{code} has no ERROR_CATALOGUE entry"
        assert ERROR_CATALOGUE[code].user_action.strip(), f"{code} has no user action"
        assert f"| `{code.value}` |" in page


def test_every_public_core_module_is_in_the_api_reference() -> None:
    """Each documented module of ibkr_gateway_core has its own API page; internals have none."""
    modules = gen_docs.api_modules()
    assert {"ibkr_gateway_core.gateway", "ibkr_gateway_core.config", "ibkr_gateway_core.models"} <= set(modules)
    missing = [m for m in modules if f"::: {m}\n" not in _committed("api/" + m.split(".", 1)[1] + ".md")]
    assert missing == []
    pages = "\n".join(_committed(name) for name in gen_docs.PAGES if name.startswith("api/"))
    internals = {"order_store", "keyed_writes", "live_desk", "paper_desk", "read_desk", "_desk", "state", "audit_keys"}
    assert [name for name in internals if f"::: ibkr_gateway_core.{name}\n" in pages] == []
    start = _committed("api/index.md")
    assert "::: ibkr_gateway_core.gateway.Gateway\n" in start and "boost: 0.2" in start


def test_every_mcp_tool_has_an_entry_when_the_tool_reference_exists() -> None:
    """Once docs/reference/mcp-tools.md exists, each registry tool name appears in it."""
    from ibkr_gateway_core.registry import OPERATIONS

    path = ROOT / "docs" / "reference" / "mcp-tools.md"
    if not path.exists():
        pytest.skip("docs/reference/mcp-tools.md is not generated yet (scripts/gen_tool_reference.py)")
    page = path.read_text(encoding="utf-8")
    missing = [op.tool for op in OPERATIONS.values() if op.tool not in page]
    assert missing == []


def _nav_pages(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in cast(list[object], node):
            yield from _nav_pages(item)
    elif isinstance(node, dict):
        for item in cast(dict[str, object], node).values():
            yield from _nav_pages(item)


class _MkdocsLoader(yaml.SafeLoader):
    """Safe loading that keeps mkdocs' `!!python/name:` tags (the Mermaid fence) as plain text."""


_MkdocsLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)


def test_every_docs_page_is_in_the_navigation() -> None:
    """Each markdown page under docs/ is reachable from the mkdocs navigation, and each nav entry exists."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_MkdocsLoader)
    nav = sorted(_nav_pages(config["nav"]))
    pages = sorted(path.relative_to(ROOT / "docs").as_posix() for path in (ROOT / "docs").rglob("*.md"))
    assert nav == pages


def test_every_config_key_has_a_description() -> None:
    """Each key's row says what it does: from its attribute docstring (style guide) or the fallback list."""
    page = _committed("configuration.md")
    undescribed = [line.split("|")[1].strip() for line in page.splitlines() if line.rstrip().endswith("|  |")]
    assert undescribed == []
