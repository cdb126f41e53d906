"""docs/troubleshooting.md lists every action the product can tell a person to take.

Three sources must all be on the page, word for word: the error catalogue (every code and its user
action), every literal `user_action=` (and `*_ACTION` constant) in the packages' sources, and what
`session requirements` says in each broker-session state, produced by running it.
"""

from __future__ import annotations

import ast
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.backend import Backend
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ERROR_CATALOGUE
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.models import SessionRequirements
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.client import CpapiClient
from ibkr_gateway_cpapi.simulator import SimulatorState

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "troubleshooting.md"

MIN_FRAGMENT = 12
"""Shortest constant part of an f-string action that must be on the page (shorter ones are too generic)."""


def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_every_catalogue_code_and_its_action_is_on_the_page() -> None:
    page = _page()
    missing = [
        str(code) for code, info in ERROR_CATALOGUE.items() if f"`{code}`" not in page or info.user_action not in page
    ]
    assert missing == [], f"docs/troubleshooting.md lacks these codes or their user actions: {missing}"


def test_every_code_has_a_row_with_a_meaning() -> None:
    """Each code's row says what it means (the middle column is not empty)."""
    rows = {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([A-Z_]+)` \| ([^|]*) \|", _page(), re.M)}
    assert sorted(rows) == sorted(str(code) for code in ERROR_CATALOGUE)
    assert [code for code, meaning in rows.items() if len(meaning) < 10] == []


def _source_actions() -> Iterator[tuple[str, str]]:
    """(file, text) of every literal user action in the packages' sources; f-strings give their long parts."""
    for path in sorted(ROOT.glob("packages/*/src/**/*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                        constants[target.id] = node.value.value
                        if target.id.endswith("_ACTION"):
                            yield path.name, node.value.value
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "user_action":
                yield from ((path.name, text) for text in _texts(node.value, constants))


def _texts(value: ast.expr, constants: dict[str, str]) -> Iterator[str]:
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        yield value.value
    elif isinstance(value, ast.Name) and value.id in constants:
        yield constants[value.id]
    elif isinstance(value, ast.JoinedStr):
        for part in value.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str) and len(part.value) >= MIN_FRAGMENT:
                yield part.value
    elif isinstance(value, ast.BoolOp):
        for operand in value.values:
            yield from _texts(operand, constants)


def test_every_action_written_in_the_sources_is_on_the_page() -> None:
    page = _page()
    found = list(_source_actions())
    assert len(found) > 20  # the scan sees the sources
    missing = sorted({f"{name}: {text}" for name, text in found if text not in page})
    assert missing == [], "docs/troubleshooting.md lacks these user actions:\n" + "\n".join(missing)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _down() -> Backend:
    return CpapiBackend(CpapiClient(f"https://127.0.0.1:{_closed_port()}", timeout_s=5), name="client_portal_gateway")


STATES: dict[str, Callable[[SimulatorState], None]] = {
    "usable": lambda sim: None,
    "logged_out": SimulatorState.log_out,
    "brokerage_closed": SimulatorState.log_in_sso_only,
    "competing": SimulatorState.set_competing,
}


@pytest.mark.anyio
@pytest.mark.parametrize("state", [*STATES, "gateway_down"])
async def test_every_session_requirements_text_is_on_the_page(state: str, tmp_path: Path) -> None:
    """Run `session requirements` in each session state: each check's words and the action are listed."""
    sim = SimulatorState()
    if state in STATES:
        STATES[state](sim)

    def backend(_: GatewayConfig) -> Backend:
        return _down() if state == "gateway_down" else open_simulator_backend(sim)

    config = GatewayConfig.fake_local(state_dir=tmp_path)
    async with Gateway(config, AuditLog.open(config.audit_path(), b"t" * 32), backend_factory=backend) as gateway:
        answer = await gateway.session_requirements()
    assert isinstance(answer, SessionRequirements)
    assert answer.usable == (state == "usable")
    page = _page()
    texts = [check.detail for check in answer.checks]
    if not answer.usable:
        texts.append(answer.manual_action)
    assert [text for text in texts if text not in page] == []
    if state == "brokerage_closed":  # the login is there: never "nobody is logged in"
        login = next(check for check in answer.checks if check.name == "brokerage_session_authenticated")
        assert login.detail == "Logged in, but the brokerage session is not open."


def test_the_page_is_in_the_site_navigation() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8").replace("!!python", "#"))["nav"]
    assert "troubleshooting.md" in str(nav)
