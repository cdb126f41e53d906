"""A person's decisions on previews through the Gateway door: list with status, deny, and approvals bound to
the fingerprint the person reviewed (the approval desk's operations, issue 14)."""

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.orders import OrderPreview, OrderStore, PreviewEntry
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import READ_ONLY, WITH_LIVE
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

pytestmark = pytest.mark.anyio

AGENT = Principal(kind="remote", subject="agent-7", scopes=WITH_LIVE)
ISSUER = "https://id.example.com"
PERSON = Principal(kind="remote", subject="alice", issuer=ISSUER, client_id="approval-desk", scopes=WITH_LIVE)
READER = Principal(kind="remote", subject="reader", scopes=READ_ONLY)
ACCOUNT = "DU1234567"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Rig:
    def __init__(self, gateway: Gateway, clock: Clock, path: Path) -> None:
        self.gateway, self.clock, self.path = gateway, clock, path

    async def call(self, name: str, args: dict[str, Any], principal: Principal = PERSON) -> Any:
        return (await self.gateway.call(name, args, principal=principal)).value

    async def preview(self, quantity: str = "1") -> OrderPreview:
        args = {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": quantity, "limit_price": "100"}
        return await self.call("preview_order", args, AGENT)

    async def statuses(self, **args: Any) -> dict[str, str]:
        entries: list[PreviewEntry] = await self.call("list_previews", args)
        return {entry.preview.preview_id: entry.status for entry in entries}

    async def refused(self, code: ErrorCode, name: str, args: dict[str, Any], principal: Principal = PERSON) -> None:
        with pytest.raises(GatewayError) as caught:
            await self.call(name, args, principal)
        assert caught.value.code is code, caught.value.message
        newest = (await self.gateway.audit.tail(1))[0].event
        assert (newest.event_id, newest.error_code) == (caught.value.audit_event_id, code.value)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = GatewayConfig.from_mapping(
        {
            "state": {"directory": str(tmp_path / "state")},
            "orders": {"preview_enabled": True, "paper_enabled": True},
            "auth": {"approvers": [{"issuer": ISSUER, "subject": "alice"}]},
        }
    )
    clock = Clock()
    sim = SimulatorState()

    def backend_factory(_: GatewayConfig) -> CpapiBackend:
        return open_simulator_backend(sim, preflight_delays_s=(0.0, 0.0, 0.0))

    audit = AuditLog.open(config.audit_path(), b"k" * 32)
    async with Gateway(config, audit, backend_factory=backend_factory, clock=clock) as gateway:
        yield Rig(gateway, clock, config.audit_path())


async def test_previews_list_with_their_status_as_decisions_are_made(rig: Rig) -> None:
    approved, denied, used, waiting, old = [await rig.preview(str(n)) for n in (1, 2, 3, 4, 5)]
    await rig.call("create_approval", {"account_id": ACCOUNT, "preview_id": approved.preview_id})
    ticket = await rig.call("create_approval", {"account_id": ACCOUNT, "preview_id": used.preview_id})
    submit = {"account_id": ACCOUNT, "approval_id": ticket.approval_id, "idempotency_key": "k-used"}
    await rig.call("submit_paper_order", submit, AGENT)
    denial = await rig.call("deny_preview", {"preview_id": denied.preview_id, "reason": "too big"})
    assert (denial.denied_by, denial.denied_by_kind, denial.reason) == ("alice", "remote", "too big")
    statuses = await rig.statuses()
    assert statuses[approved.preview_id] == "approved"
    assert statuses[denied.preview_id] == "denied"
    assert statuses[used.preview_id] == "consumed"
    assert statuses[waiting.preview_id] == statuses[old.preview_id] == "pending"
    assert set(await rig.statuses(pending_only=True)) == {waiting.preview_id, old.preview_id}
    rig.clock.now += timedelta(hours=2)  # previews expire after 300 s
    assert await rig.statuses(pending_only=True) == {}
    assert (await rig.statuses())[waiting.preview_id] == "expired"
    entries = await rig.call("list_previews", {"limit": 2})
    assert len(entries) == 2  # newest first, bounded
    assert await rig.call("list_previews", {}, READER)  # a read: approvals.read is enough


async def test_a_denied_preview_can_never_be_approved_and_its_approvals_are_revoked(rig: Rig) -> None:
    preview = await rig.preview()
    approval = await rig.call("create_approval", {"account_id": ACCOUNT, "preview_id": preview.preview_id})
    denial = await rig.call("deny_preview", {"preview_id": preview.preview_id, "reason": "no"})
    assert denial.revoked_approvals == [approval.approval_id]
    again = await rig.call("deny_preview", {"preview_id": preview.preview_id, "reason": "twice"})
    assert again.audit_event_id == denial.audit_event_id  # the first denial stands
    await rig.refused(
        ErrorCode.PREVIEW_DENIED, "create_approval", {"account_id": ACCOUNT, "preview_id": preview.preview_id}
    )
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "k-denied"}
    await rig.refused(ErrorCode.APPROVAL_REVOKED, "submit_paper_order", submit, AGENT)
    await rig.refused(ErrorCode.PREVIEW_NOT_FOUND, "deny_preview", {"preview_id": "pv-nothing"})
    await rig.refused(ErrorCode.AUTH_MISSING_SCOPE, "deny_preview", {"preview_id": preview.preview_id}, READER)


async def test_a_used_preview_cannot_be_denied(rig: Rig) -> None:
    preview = await rig.preview()
    approval = await rig.call("create_approval", {"account_id": ACCOUNT, "preview_id": preview.preview_id})
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "k-1"}
    await rig.call("submit_paper_order", submit, AGENT)
    await rig.refused(ErrorCode.APPROVAL_CONSUMED, "deny_preview", {"preview_id": preview.preview_id})


def _rewrite(path: Path, preview_id: str, *, keep_fingerprint: bool) -> None:
    """Change the stored order: ten times the quantity; the stored fingerprint recomputed or left stale."""
    from ibkr_gateway_core.orders import OrderTicket

    with sqlite3.connect(path) as db:
        payload = json.loads(
            db.execute("SELECT payload FROM order_previews WHERE preview_id = ?", (preview_id,)).fetchone()[0]
        )
        payload["ticket"]["quantity"] = "10"
        if not keep_fingerprint:
            payload["fingerprint"] = OrderTicket.model_validate(payload["ticket"]).fingerprint()
        db.execute("UPDATE order_previews SET payload = ? WHERE preview_id = ?", (json.dumps(payload), preview_id))


@pytest.mark.parametrize("keep_fingerprint", [False, True])
async def test_an_approval_binds_the_fingerprint_the_person_reviewed(rig: Rig, keep_fingerprint: bool) -> None:
    preview = await rig.preview()
    other = await rig.preview("2")
    base = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
    await rig.refused(
        ErrorCode.APPROVAL_PREVIEW_MISMATCH, "create_approval", {**base, "fingerprint": other.fingerprint}
    )
    await rig.refused(ErrorCode.INPUT_INVALID_ARGUMENT, "create_approval", {**base, "fingerprint": "not-hex"})
    _rewrite(rig.path, preview.preview_id, keep_fingerprint=keep_fingerprint)
    await rig.refused(
        ErrorCode.APPROVAL_PREVIEW_MISMATCH, "create_approval", {**base, "fingerprint": preview.fingerprint}
    )
    fine = await rig.call(
        "create_approval", {"account_id": ACCOUNT, "preview_id": other.preview_id, "fingerprint": other.fingerprint}
    )
    assert fine.fingerprint == other.fingerprint


async def test_the_change_stamp_moves_with_every_decision_and_holds_no_data(rig: Rig) -> None:
    store = OrderStore.open(rig.path)
    try:
        stamps = [await anyio.to_thread.run_sync(store.change_stamp)]
        preview = await rig.preview()
        stamps.append(await anyio.to_thread.run_sync(store.change_stamp))
        approval = await rig.call("create_approval", {"account_id": ACCOUNT, "preview_id": preview.preview_id})
        stamps.append(await anyio.to_thread.run_sync(store.change_stamp))
        await rig.call("revoke_approval", {"approval_id": approval.approval_id})
        stamps.append(await anyio.to_thread.run_sync(store.change_stamp))
        await rig.call("deny_preview", {"preview_id": preview.preview_id})
        stamps.append(await anyio.to_thread.run_sync(store.change_stamp))
        await rig.call("close_kill_switch", {"reason": "halt"})
        stamps.append(await anyio.to_thread.run_sync(store.change_stamp))
        assert len(set(stamps)) == len(stamps)
        assert stamps[-1] == await anyio.to_thread.run_sync(store.change_stamp)
        assert all(len(stamp) == 16 and ACCOUNT not in stamp for stamp in stamps)
    finally:
        store.close()
