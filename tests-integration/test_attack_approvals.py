"""Attacks on the approval step: only people approve, nobody approves their own preview, an approval is
for one mode. Each test counts what reached the broker and asserts the one code it means."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_core.principal import ApproverRef, Principal, is_approver, role_of
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENT, OPERATOR, PAPER, Clock, Desk, running_desk

pytestmark = pytest.mark.anyio

ISSUER = "https://as.example"
PERSON = Principal(kind="remote", subject="alice", issuer=ISSUER, scopes=WITH_LIVE)
"""A remote subject the configuration lists as an approver."""
BOT_A = Principal(kind="remote", subject="bot-a", issuer=ISSUER, scopes=WITH_LIVE)
BOT_B = Principal(kind="remote", subject="bot-b", issuer=ISSUER, scopes=WITH_LIVE)
IMPOSTOR = Principal(kind="remote", subject="alice", issuer="https://evil.example", scopes=WITH_LIVE)
"""Same subject as the listed person, another issuer: another identity."""

CONFIG: dict[str, Any] = {
    "orders": {"preview_enabled": True, "paper_enabled": True},
    "auth": {"approvers": [{"issuer": ISSUER, "subject": "alice"}]},
}


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


@pytest.fixture
async def desk(tmp_path: Path, sim: SimulatorState) -> AsyncIterator[Desk]:
    async with running_desk(tmp_path / "state", sim, Clock(), CONFIG) as running:
        yield running


def test_roles_follow_kind_issuer_and_subject() -> None:
    approvers = [ApproverRef(issuer=ISSUER, subject="alice")]
    assert role_of(OPERATOR, approvers) == "approver"
    assert role_of(PERSON, approvers) == "approver"
    assert role_of(BOT_A, approvers) == "agent"
    assert role_of(IMPOSTOR, approvers) == "agent"
    stdio_named_alice = Principal(kind="local_agent", subject="alice", issuer=ISSUER, scopes=WITH_LIVE)
    assert not is_approver(stdio_named_alice, approvers)  # stdio never approves, whatever it is called
    assert PERSON.identity != IMPOSTOR.identity


async def test_a_stdio_agent_cannot_approve_the_operators_preview(desk: Desk) -> None:
    preview = await desk.preview(OPERATOR)
    args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
    assert await desk.code_of("create_approval", args, principal=AGENT) is ErrorCode.APPROVAL_APPROVER_REQUIRED
    assert await desk.call("list_approvals", {}) == []


async def test_a_second_remote_agent_cannot_approve_the_firsts_preview(desk: Desk) -> None:
    preview = await desk.preview(BOT_A)
    args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
    assert await desk.code_of("create_approval", args, principal=BOT_B) is ErrorCode.APPROVAL_APPROVER_REQUIRED
    assert await desk.code_of("create_approval", args, principal=IMPOSTOR) is ErrorCode.APPROVAL_APPROVER_REQUIRED
    approval = await desk.call("create_approval", args, principal=PERSON)  # a listed person may
    assert (approval.approved_by, approval.approved_by_kind, approval.approved_by_issuer) == ("alice", "remote", ISSUER)
    placed = await desk.submit(approval, "by-person", principal=BOT_A)
    assert desk.orders_with(placed.client_order_id) == 1


async def test_a_person_does_not_approve_their_own_preview(desk: Desk) -> None:
    preview = await desk.preview(PERSON)
    args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
    fresh_token = PERSON.model_copy(update={"token_id_hash": "another-token", "client_id": "another-client"})
    assert await desk.code_of("create_approval", args, principal=fresh_token) is ErrorCode.APPROVAL_SELF_FORBIDDEN
    assert (await desk.call("create_approval", args, principal=OPERATOR)).approved_by_kind == "local_operator"


async def test_an_approval_for_paper_is_refused_for_live_and_the_reverse(tmp_path: Path, sim: SimulatorState) -> None:
    live_switches = frozenset(
        {"enable_live", "live_scope", "open_kill_switch", "acknowledge_paper_to_live", "live_broker:client-portal"}
    )
    async with running_desk(tmp_path / "state", sim, Clock(), CONFIG) as desk:
        paper = await desk.approved()
        assert paper.mode == "paper"  # DU1234567 is a paper account at the broker
        args = desk.submit_args(paper, "paper-spent-on-live")
        code = await desk.code_of("submit_live_order", args, switches=live_switches)
        assert code is ErrorCode.APPROVAL_MODE_MISMATCH
        live = await desk.approved(mode="live")
        args = desk.submit_args(live, "live-spent-on-paper")
        assert await desk.code_of("submit_paper_order", args, switches=PAPER) is ErrorCode.APPROVAL_MODE_MISMATCH
        assert desk.sim.placements == []
        # both approvals are still good for their own mode
        assert (await desk.submit(paper, "paper-ok")).mode == "paper"
        placed = await desk.call("submit_live_order", desk.submit_args(live, "live-ok"), switches=live_switches)
        assert placed.mode == "live"


async def test_capabilities_tell_an_agent_a_person_must_approve(desk: Desk) -> None:
    agent = await desk.call("capabilities", {}, principal=AGENT)
    assert agent.role == "agent" and agent.approval_required
    assert "approvals create" in agent.how_to_get_approval
    assert any("cannot approve" in note for note in agent.notes)
    person = await desk.call("capabilities", {}, principal=PERSON)
    assert person.role == "approver"


async def test_one_approval_and_ten_concurrent_keys_place_one_order(desk: Desk) -> None:
    """Consuming an approval checks its status in the reserving transaction: ten keys race, one order."""
    approval = await desk.approved()
    results: list[object] = []

    async def one(key: str) -> None:
        try:
            results.append(await desk.submit(approval, key))
        except Exception as exc:
            results.append(exc)

    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(one, f"race-{n}")
    placed = [r for r in results if not isinstance(r, Exception)]
    codes = {getattr(r, "code", None) for r in results if isinstance(r, Exception)}
    assert len(placed) == 1
    assert codes == {ErrorCode.APPROVAL_CONSUMED}
    assert len(desk.sim.placements) == 1


async def test_revoking_a_consumed_approval_is_refused(desk: Desk) -> None:
    approval = await desk.approved()
    await desk.submit(approval, "used")
    args = {"approval_id": approval.approval_id, "reason": "too late"}
    assert await desk.code_of("revoke_approval", args) is ErrorCode.APPROVAL_CONSUMED
    listed = await desk.call("list_approvals", {"account_id": ACCOUNT})
    assert [a.status for a in listed] == ["consumed"]
