"""Approvals and previews as a person reviews them: each preview's status at the exact second it changes, the
account filter, the pending queue past the newest entries, and what a revocation records."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENTS_MAY_TRADE_PAPER, REMOTE, Clock, Desk, running_desk

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
OTHER_ACCOUNT = "DU7654321"


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


async def statuses(desk: Desk, **args: object) -> list[tuple[str, str]]:
    """(preview id, status) of each listed preview, newest first."""
    entries = await desk.call("list_previews", dict(args))
    return [(entry.preview.preview_id, entry.status) for entry in entries]


async def test_each_preview_status_with_its_approval_and_denial(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        pending = await desk.preview()
        approved_preview = await desk.preview(quantity="2")
        approval = await desk.approve(approved_preview)
        denied = await desk.preview(quantity="3")
        denial = await desk.call("deny_preview", {"preview_id": denied.preview_id, "reason": "too big"})
        revoked_preview = await desk.preview(quantity="4")
        revoked = await desk.approve(revoked_preview)
        await desk.call("revoke_approval", {"approval_id": revoked.approval_id})
        consumed_preview = await desk.preview(quantity="5")
        consumed = await desk.approve(consumed_preview)
        await desk.submit(consumed, "consume")
        entries = {entry.preview.preview_id: entry for entry in await desk.call("list_previews", {})}
        assert {pid: entry.status for pid, entry in entries.items()} == {
            pending.preview_id: "pending",
            approved_preview.preview_id: "approved",
            denied.preview_id: "denied",
            revoked_preview.preview_id: "revoked",
            consumed_preview.preview_id: "consumed",
        }
        assert entries[approved_preview.preview_id].approval_id == approval.approval_id
        assert entries[pending.preview_id].approval_id is None
        assert entries[denied.preview_id].denial == denial
        assert entries[pending.preview_id].denial is None
        assert entries[pending.preview_id].created_by_kind == "local_operator"


async def test_a_status_changes_at_the_second_its_preview_or_approval_expires(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        lone = await desk.preview()
        approved = await desk.preview(quantity="2")
        approval = await desk.approve(approved, ttl_seconds=60)
        assert approval.expires_at < approved.expires_at
        clock.now = approval.expires_at - timedelta(microseconds=1)
        assert (await statuses(desk))[0] == (approved.preview_id, "approved")
        clock.now = approval.expires_at
        assert await statuses(desk) == [(approved.preview_id, "expired"), (lone.preview_id, "pending")]
        clock.now = lone.expires_at - timedelta(microseconds=1)
        assert (await statuses(desk))[1] == (lone.preview_id, "pending")
        clock.now = lone.expires_at
        assert (await statuses(desk))[1] == (lone.preview_id, "expired")
        listed = await desk.call("list_approvals", {"account_id": ACCOUNT})
        assert [(a.approval_id, a.status) for a in listed] == [(approval.approval_id, "expired")]


async def test_an_approval_outlives_its_preview_only_until_the_preview_expires(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        preview = await desk.preview()
        approval = await desk.approve(preview, ttl_seconds=3600)
        assert approval.expires_at > preview.expires_at
        clock.now = preview.expires_at - timedelta(microseconds=1)
        assert await statuses(desk) == [(preview.preview_id, "approved")]
        clock.now = preview.expires_at
        assert await statuses(desk) == [(preview.preview_id, "expired")]


async def test_the_account_filter_and_the_pending_queue_behind_newer_decisions(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        older = await desk.preview()
        other = await desk.preview(account_id=OTHER_ACCOUNT)
        newest = await desk.preview(quantity="2")
        await desk.approve(newest)
        assert await statuses(desk, account_id=ACCOUNT) == [
            (newest.preview_id, "approved"),
            (older.preview_id, "pending"),
        ]
        assert await statuses(desk, account_id=OTHER_ACCOUNT) == [(other.preview_id, "pending")]
        assert await statuses(desk, account_id=ACCOUNT, pending_only=True, limit=1) == [(older.preview_id, "pending")]
        assert await statuses(desk, pending_only=True) == [(other.preview_id, "pending"), (older.preview_id, "pending")]
        assert await statuses(desk, limit=2) == [(newest.preview_id, "approved"), (other.preview_id, "pending")]


async def test_a_revocation_records_when_and_why_and_an_unknown_or_used_approval_is_refused(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        approval = await desk.approved()
        clock.now = NOW + timedelta(seconds=5)
        revoked = await desk.call("revoke_approval", {"approval_id": approval.approval_id, "reason": "changed my mind"})
        assert (revoked.status, revoked.revoked_at, revoked.revoke_reason) == (
            "revoked",
            NOW + timedelta(seconds=5),
            "changed my mind",
        )
        listed = await desk.call("list_approvals", {"account_id": ACCOUNT})
        assert [(a.status, a.revoked_at, a.revoke_reason) for a in listed] == [
            ("revoked", NOW + timedelta(seconds=5), "changed my mind")
        ]
        code = await desk.code_of("revoke_approval", {"approval_id": "ap-" + "0" * 32})
        assert code is ErrorCode.APPROVAL_NOT_FOUND
        used = await desk.approved()
        await desk.submit(used, "used")
        assert await desk.code_of("revoke_approval", {"approval_id": used.approval_id}) is ErrorCode.APPROVAL_CONSUMED
        listed = await desk.call("list_approvals", {"account_id": ACCOUNT})
        assert [a.status for a in listed] == ["consumed", "revoked"]


async def test_the_store_reads_one_approval_with_its_current_status(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        store = desk.gateway._order_desk().store  # pyright: ignore[reportPrivateUsage]
        approval = await desk.approved()
        assert store.approval(approval.approval_id) == approval
        await desk.submit(approval, "used")
        used = store.approval(approval.approval_id)
        assert used is not None and (used.approval_id, used.status) == (approval.approval_id, "consumed")
        assert store.approval("ap-" + "0" * 32) is None


async def test_a_denial_revokes_the_previews_unused_approvals_and_keeps_earlier_revocations(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        preview = await desk.preview()
        first = await desk.approve(preview)
        await desk.call("revoke_approval", {"approval_id": first.approval_id, "reason": "first thoughts"})
        second = await desk.approve(preview)
        clock.now = NOW + timedelta(seconds=7)
        denial = await desk.call("deny_preview", {"preview_id": preview.preview_id, "reason": "no"})
        assert (denial.revoked_approvals, denial.denied_at) == ([second.approval_id], NOW + timedelta(seconds=7))
        listed = {a.approval_id: a for a in await desk.call("list_approvals", {"account_id": ACCOUNT})}
        assert (listed[first.approval_id].status, listed[first.approval_id].revoke_reason) == (
            "revoked",
            "first thoughts",
        )
        assert (listed[second.approval_id].status, listed[second.approval_id].revoke_reason) == (
            "revoked",
            "preview denied",
        )
        assert listed[second.approval_id].revoked_at == NOW + timedelta(seconds=7)
        again = await desk.call("deny_preview", {"preview_id": preview.preview_id, "reason": "still no"})
        assert again == denial


async def test_an_approval_records_who_when_for_how_long_and_which_mode(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW), AGENTS_MAY_TRADE_PAPER) as desk:
        preview = await desk.preview()
        called = await desk.gateway.call(
            "create_approval", {"account_id": ACCOUNT, "preview_id": preview.preview_id}, principal=REMOTE
        )
        approval = called.value
        assert (approval.approved_by, approval.approved_by_kind, approval.approved_by_issuer) == (
            "reviewer",
            "remote",
            "https://as.example",
        )
        assert (approval.approved_at, approval.expires_at) == (NOW, NOW + timedelta(seconds=300))
        assert (approval.mode, approval.status, approval.fingerprint) == ("paper", "approved", preview.fingerprint)
        assert (approval.preview_id, approval.account_id) == (preview.preview_id, ACCOUNT)
        assert approval.audit_event_id == called.audit_event_id
        short = await desk.approve(await desk.preview(quantity="2"), ttl_seconds=45, fingerprint=None)
        assert short.expires_at == NOW + timedelta(seconds=45)


async def test_approval_refusals_name_their_code(tmp_path: Path, sim: SimulatorState) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        preview = await desk.preview()
        args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
        missing = {"account_id": ACCOUNT, "preview_id": "pv-" + "0" * 32}
        assert await desk.code_of("create_approval", missing) is ErrorCode.PREVIEW_NOT_FOUND
        other = {**args, "account_id": OTHER_ACCOUNT}
        assert await desk.code_of("create_approval", other) is ErrorCode.APPROVAL_ACCOUNT_MISMATCH
        wrong = {**args, "fingerprint": "0" * 64}
        assert await desk.code_of("create_approval", wrong) is ErrorCode.APPROVAL_PREVIEW_MISMATCH
        assert (await desk.call("create_approval", {**args, "fingerprint": preview.fingerprint})).status == "approved"
        denied = await desk.preview(quantity="2")
        await desk.call("deny_preview", {"preview_id": denied.preview_id})
        denied_args = {"account_id": ACCOUNT, "preview_id": denied.preview_id}
        assert await desk.code_of("create_approval", denied_args) is ErrorCode.PREVIEW_DENIED
        clock.now = preview.expires_at
        assert await desk.code_of("create_approval", args) is ErrorCode.PREVIEW_EXPIRED


async def test_a_submit_after_the_preview_expired_is_refused_although_the_approval_lives(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        preview = await desk.preview()
        approval = await desk.approve(preview, ttl_seconds=3600)
        clock.now = preview.expires_at
        args = desk.submit_args(approval, "late")
        code = await desk.code_of("submit_paper_order", args, switches=frozenset({"enable_paper"}))
        assert code is ErrorCode.PREVIEW_EXPIRED
        assert sim.placements == []
        clock.now = preview.expires_at - timedelta(microseconds=1)
        placed = await desk.call(
            "submit_paper_order", {**args, "idempotency_key": "in-time"}, switches=frozenset({"enable_paper"})
        )
        assert placed.status == "submitted"


async def test_approvals_listed_for_one_account_and_expired_from_their_expiry_instant(
    tmp_path: Path, sim: SimulatorState
) -> None:
    clock = Clock(NOW)
    async with running_desk(tmp_path / "state", sim, clock) as desk:
        mine = await desk.approve(await desk.preview(), ttl_seconds=60)
        other = await desk.approve(await desk.preview(account_id=OTHER_ACCOUNT), ttl_seconds=120)
        listed = await desk.call("list_approvals", {"account_id": ACCOUNT})
        assert [(a.approval_id, a.status) for a in listed] == [(mine.approval_id, "approved")]
        everyone = await desk.call("list_approvals", {})
        assert {a.approval_id for a in everyone} == {mine.approval_id, other.approval_id}
        clock.now = mine.expires_at - timedelta(microseconds=1)
        assert [a.status for a in await desk.call("list_approvals", {"account_id": ACCOUNT})] == ["approved"]
        clock.now = mine.expires_at
        assert [a.status for a in await desk.call("list_approvals", {"account_id": ACCOUNT})] == ["expired"]
        assert [a.status for a in await desk.call("list_approvals", {"account_id": OTHER_ACCOUNT})] == ["approved"]


async def test_an_approval_without_a_mode_takes_the_mode_the_broker_gives_the_account(tmp_path: Path) -> None:
    paper = SimulatorState()
    async with running_desk(tmp_path / "paper", paper, Clock(NOW)) as desk:
        approval = await desk.call(
            "create_approval", {"account_id": ACCOUNT, "preview_id": (await desk.preview()).preview_id}
        )
        assert approval.mode == "paper"
    live = SimulatorState(profile="live")
    async with running_desk(tmp_path / "live", live, Clock(NOW)) as desk:
        preview = await desk.preview(account_id="U7654321")
        approval = await desk.call("create_approval", {"account_id": "U7654321", "preview_id": preview.preview_id})
        assert approval.mode == "live"
