"""The order workflow over the CPAPI simulator: the seed guide's flow as real processes, every refusal
audited, idempotency under concurrency, and a lost broker answer settled by cOID (issue 4)."""

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_harness import run_cli
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.orders import ApprovalRecord, OrderLifecycle, OrderPreview
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import QuestionRule, SimulatorState

OPERATOR = Principal(kind="local_operator", subject="op", scopes=WITH_LIVE)
AGENT = Principal(kind="local_agent", subject="stdio", scopes=WITH_LIVE)
OTHER_AGENT = Principal(kind="remote", subject="reviewer", issuer="https://as.example", scopes=WITH_LIVE)
ACCOUNT = "DU1234567"
PREVIEW = frozenset({Switch.ENABLE_PREVIEW})
PAPER = frozenset({Switch.ENABLE_PAPER})
LIVE = frozenset(
    {
        Switch.ENABLE_LIVE,
        Switch.LIVE_SCOPE,
        Switch.OPEN_KILL_SWITCH,
        Switch.ACKNOWLEDGE_PAPER_TO_LIVE,
        "live_broker:local-candidate",
    }
)


class Clock:
    """A movable clock for the gateway (the simulator keeps real time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Desk:
    gateway: Gateway
    sim: SimulatorState
    clock: Clock

    async def call(
        self,
        name: str,
        args: dict[str, Any],
        *,
        principal: Principal = OPERATOR,
        switches: frozenset[str] = frozenset(),
    ) -> Any:
        return (await self.gateway.call(name, args, principal=principal, switches=switches)).value

    async def preview(self, principal: Principal = OPERATOR, **changes: object) -> OrderPreview:
        args: dict[str, Any] = {
            "account_id": ACCOUNT,
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "1",
            "limit_price": "100",
            **changes,
        }
        return await self.call("preview_order", args, principal=principal, switches=PREVIEW)

    async def approve(
        self, preview: OrderPreview, principal: Principal = OPERATOR, **changes: object
    ) -> ApprovalRecord:
        args: dict[str, Any] = {"account_id": preview.account_id, "preview_id": preview.preview_id, **changes}
        return await self.call("create_approval", args, principal=principal)

    async def approved(self, *, mode: str = "paper", **changes: str) -> ApprovalRecord:
        return await self.approve(await self.preview(OPERATOR, **changes), mode=mode)

    async def submit(self, approval: ApprovalRecord, key: str, *, live: bool = False, **kw: Any) -> OrderLifecycle:
        args = {"account_id": approval.account_id, "approval_id": approval.approval_id, "idempotency_key": key}
        name = "submit_live_order" if live else "submit_paper_order"
        return await self.call(name, args, switches=kw.pop("switches", LIVE if live else PAPER), **kw)

    async def refused(self, code: ErrorCode, name: str, args: dict[str, Any], **kw: Any) -> GatewayError:
        """The call fails with `code`, and the audit log's newest event records exactly that refusal."""
        with pytest.raises(GatewayError) as caught:
            await self.call(name, args, **kw)
        assert caught.value.code is code, caught.value.message
        newest = (await self.gateway.audit.tail(1))[0].event
        assert newest.event_id == caught.value.audit_event_id
        assert newest.error_code == code.value
        assert newest.result_status in ("refused", "denied_scope")
        return caught.value


def _config(tmp_path: Path, extra: dict[str, Any] | None = None) -> GatewayConfig:
    data: dict[str, Any] = {"state": {"directory": str(tmp_path / "state")}, **(extra or {})}
    return GatewayConfig.from_mapping(data)


async def _desk(tmp_path: Path, sim: SimulatorState, extra: dict[str, Any] | None = None) -> AsyncIterator[Desk]:
    config = _config(tmp_path, extra)
    clock = Clock()
    audit = AuditLog.open(config.audit_path(), b"k" * 32)

    def backend_factory(_: GatewayConfig) -> CpapiBackend:
        return open_simulator_backend(sim, preflight_delays_s=(0.0, 0.0, 0.0))

    async with Gateway(config, audit, backend_factory=backend_factory, clock=clock) as gateway:
        yield Desk(gateway, sim, clock)


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


@pytest.fixture
async def desk(tmp_path: Path, sim: SimulatorState) -> AsyncIterator[Desk]:
    async for value in _desk(tmp_path, sim):
        yield value


pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------------------- happy paths


async def test_paper_order_goes_to_the_simulator_and_is_cancelled(desk: Desk) -> None:
    """Preview, approval, paper submit through the Client Portal writer, then cancel: the book shows both."""
    approval = await desk.approved()
    placed = await desk.submit(approval, "paper-submit-001")
    assert placed.writer == "client-portal" and placed.status == "submitted"
    assert placed.confirmed_message_ids == ["o163"]  # 100 vs ~212: allowed by the default warning policy
    listed = await desk.call("list_orders", {"account_id": ACCOUNT})
    assert placed.broker_order_id in {order.broker_order_id for order in listed}
    cancel = {"account_id": ACCOUNT, "broker_order_id": placed.broker_order_id, "idempotency_key": "paper-cancel-001"}
    cancelled = await desk.call("cancel_paper_order", cancel, switches=PAPER)
    assert cancelled.status in ("cancelled", "pending_cancel")
    assert desk.sim.book.orders[int(placed.broker_order_id)].status == "Cancelled"


async def test_replay_returns_the_stored_result_without_a_second_order(desk: Desk) -> None:
    """Same key, same request: the first result again (`replayed`), and still one order at the broker."""
    approval = await desk.approved()
    first = await desk.submit(approval, "k1")
    again = await desk.submit(approval, "k1")
    assert again.replayed and again.broker_order_id == first.broker_order_id
    assert sum(1 for o in desk.sim.book.orders.values() if o.c_oid == first.client_order_id) == 1


async def test_live_submit_with_every_flag_uses_the_local_candidate_writer(desk: Desk) -> None:
    """The default live writer sends nothing and returns a deterministic `local-candidate-` id."""
    approval = await desk.approved(mode="live")
    before = len(desk.sim.book.orders)
    placed = await desk.submit(approval, "live-submit-001", live=True)
    assert placed.broker_order_id == f"local-candidate-{placed.client_order_id}"
    assert len(desk.sim.book.orders) == before
    state = await desk.call("kill_switch_status", {})
    assert state.state == "open"  # fake mode: --open-kill-switch opened it, audited
    events = [r.event.event_type for r in await desk.gateway.audit.tail(3)]
    assert "kill_switch_changed" in events


async def test_live_submit_through_client_portal_is_tracked_and_reconciled(desk: Desk) -> None:
    """A live order sent to the simulator enters the backlog; a fill is seen, audited and leaves it."""
    approval = await desk.approved(mode="live")
    switches = (LIVE - {"live_broker:local-candidate"}) | {"live_broker:client-portal"}
    placed = await desk.submit(approval, "live-cp-001", live=True, switches=switches)
    assert placed.writer == "client-portal"
    desk.sim.fill_order(int(placed.broker_order_id))
    report = await desk.call("reconcile_orders", {})
    assert (report.scanned, report.transitions, report.completed) == (1, 1, 1)
    assert (await desk.gateway.audit.tail(2))[1].event.event_type == "live_order_lifecycle_changed"
    limits = await desk.call("limits_status", {"account_id": ACCOUNT})
    assert limits.orders_today == 1 and limits.notional_today == Decimal(100)


# ----------------------------------------------------------------------------- refusals


async def test_preview_refusals_name_their_code(desk: Desk) -> None:
    """Each preview refusal has its own code and is audited."""
    base = {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"}
    await desk.refused(ErrorCode.ORDER_PREVIEW_DISABLED, "preview_order", base)
    cases: list[tuple[ErrorCode, dict[str, Any]]] = [
        (ErrorCode.ORDER_QUANTITY_INVALID, {"quantity": "0"}),
        (ErrorCode.ORDER_LIMIT_PRICE_REQUIRED, {"limit_price": None}),
        (ErrorCode.ORDER_STOP_PRICE_REQUIRED, {"order_type": "stop", "limit_price": None}),
        (ErrorCode.ORDER_TRAILING_OFFSET_REQUIRED, {"order_type": "trailing-stop", "limit_price": None}),
        (ErrorCode.ORDER_QUANTITY_LIMIT_REFUSED, {"quantity": "10001"}),
        (ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED, {"symbol": "BRK A", "quantity": "2", "limit_price": "612300"}),
        (
            ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED,
            {"symbol": "BRK A", "quantity": "2", "order_type": "market", "limit_price": None},
        ),
        (ErrorCode.ORDER_FRACTIONAL_REFUSED, {"quantity": "1.5"}),
        (ErrorCode.ORDER_ASSET_CLASS_REFUSED, {"symbol": None, "contract_id": 416904}),
    ]
    for code, changes in cases:
        await desk.refused(code, "preview_order", {**base, **changes}, switches=PREVIEW)


async def test_preview_policy_from_yaml_refuses_symbol_and_collar(tmp_path: Path, sim: SimulatorState) -> None:
    """A YAML policy is used for previews: allowed symbols and a price collar against mid or last."""
    extra = {
        "risk_policies": [{"policy_id": "tight", "allowed_symbols": ["AAPL"], "max_price_deviation_bps": "500"}],
        "orders": {"preview_policy_id": "tight"},
    }
    async for desk in _desk(tmp_path, sim, extra):
        base = {"account_id": ACCOUNT, "symbol": "MSFT", "side": "buy", "quantity": "1", "limit_price": "415"}
        await desk.refused(ErrorCode.ORDER_SYMBOL_REFUSED, "preview_order", base, switches=PREVIEW)
        error = await desk.refused(
            ErrorCode.ORDER_PRICE_COLLAR_REFUSED,
            "preview_order",
            {**base, "symbol": "AAPL", "limit_price": "100"},
            switches=PREVIEW,
        )
        assert "tight.max_price_deviation_bps" in error.message
        assert (await desk.preview(limit_price="212")).risk_policy_id == "tight"


async def test_approval_refusals(desk: Desk) -> None:
    """Unknown, expired, out-of-range and cross-account approvals are refused, each with its code."""
    await desk.refused(ErrorCode.PREVIEW_NOT_FOUND, "create_approval", {"account_id": ACCOUNT, "preview_id": "pv-none"})
    preview = await desk.preview()
    args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
    await desk.refused(ErrorCode.APPROVAL_TTL_OUT_OF_RANGE, "create_approval", {**args, "ttl_seconds": 5})
    await desk.refused(ErrorCode.APPROVAL_TTL_OUT_OF_RANGE, "create_approval", {**args, "ttl_seconds": 999_999})
    await desk.refused(ErrorCode.APPROVAL_ACCOUNT_MISMATCH, "create_approval", {**args, "account_id": "DU7654321"})
    desk.clock.now += timedelta(seconds=301)
    await desk.refused(ErrorCode.PREVIEW_EXPIRED, "create_approval", args)


async def test_submit_refuses_consumed_revoked_expired_and_mismatched_approvals(desk: Desk) -> None:
    """An approval is single use, revocable, expiring, for one account and one exact preview."""
    approval = await desk.approved()
    await desk.submit(approval, "once")
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "twice"}
    await desk.refused(ErrorCode.APPROVAL_CONSUMED, "submit_paper_order", submit, switches=PAPER)

    revoked = await desk.approved()
    await desk.call("revoke_approval", {"approval_id": revoked.approval_id, "reason": "changed my mind"})
    submit = {"account_id": ACCOUNT, "approval_id": revoked.approval_id, "idempotency_key": "r"}
    await desk.refused(ErrorCode.APPROVAL_REVOKED, "submit_paper_order", submit, switches=PAPER)

    other = await desk.approved()
    submit = {"account_id": "DU7654321", "approval_id": other.approval_id, "idempotency_key": "o"}
    await desk.refused(ErrorCode.APPROVAL_ACCOUNT_MISMATCH, "submit_paper_order", submit, switches=PAPER)

    tampered = await desk.approved()
    db = sqlite3.connect(desk.gateway.audit.path)  # change the stored order behind the gateway's back
    with db:
        payload = json.loads(
            db.execute("SELECT payload FROM order_previews WHERE preview_id = ?", (tampered.preview_id,)).fetchone()[0]
        )
        payload["ticket"]["quantity"] = "50"
        db.execute(
            "UPDATE order_previews SET payload = ? WHERE preview_id = ?", (json.dumps(payload), tampered.preview_id)
        )
    db.close()
    submit = {"account_id": ACCOUNT, "approval_id": tampered.approval_id, "idempotency_key": "t"}
    await desk.refused(ErrorCode.APPROVAL_PREVIEW_MISMATCH, "submit_paper_order", submit, switches=PAPER)

    expiring = await desk.approved()
    desk.clock.now += timedelta(seconds=300)
    submit = {"account_id": ACCOUNT, "approval_id": expiring.approval_id, "idempotency_key": "e"}
    await desk.refused(ErrorCode.APPROVAL_EXPIRED, "submit_paper_order", submit, switches=PAPER)
    await desk.refused(
        ErrorCode.APPROVAL_NOT_FOUND, "submit_paper_order", {**submit, "approval_id": "ap-none"}, switches=PAPER
    )


async def test_an_agent_cannot_approve_its_own_preview(tmp_path: Path, sim: SimulatorState) -> None:
    """An MCP caller never approves (not even another agent's preview); a listed remote approver may."""
    async for desk in _desk(tmp_path, sim, {"orders": {"preview_enabled": True}}):
        preview = await desk.call(
            "preview_order",
            {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"},
            principal=AGENT,
        )
        args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
        await desk.refused(ErrorCode.APPROVAL_APPROVER_REQUIRED, "create_approval", args, principal=AGENT)
        await desk.refused(ErrorCode.APPROVAL_APPROVER_REQUIRED, "create_approval", args, principal=OTHER_AGENT)
    approvers = {"auth": {"approvers": [{"issuer": OTHER_AGENT.issuer, "subject": OTHER_AGENT.subject}]}}
    async for desk in _desk(tmp_path, sim, {"orders": {"preview_enabled": True}, **approvers}):
        preview = await desk.call(
            "preview_order",
            {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"},
            principal=AGENT,
        )
        args = {"account_id": ACCOUNT, "preview_id": preview.preview_id}
        assert (await desk.call("create_approval", args, principal=OTHER_AGENT)).approved_by == "reviewer"


async def test_paper_refusals(desk: Desk) -> None:
    """Paper needs its switch, a key, an approval, and a key reused only for the same request."""
    approval = await desk.approved()
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "k"}
    await desk.refused(ErrorCode.PAPER_TRADING_DISABLED, "submit_paper_order", submit)
    await desk.refused(
        ErrorCode.PAPER_APPROVAL_REQUIRED, "submit_paper_order", {**submit, "approval_id": None}, switches=PAPER
    )
    await desk.refused(
        ErrorCode.IDEMPOTENCY_KEY_REQUIRED, "submit_paper_order", {**submit, "idempotency_key": None}, switches=PAPER
    )
    await desk.submit(approval, "k")
    second = await desk.approved()
    await desk.refused(
        ErrorCode.IDEMPOTENCY_CONFLICT,
        "submit_paper_order",
        {**submit, "approval_id": second.approval_id},
        switches=PAPER,
    )
    cancel = {"account_id": ACCOUNT, "broker_order_id": "1", "idempotency_key": "c"}
    await desk.refused(ErrorCode.PAPER_TRADING_DISABLED, "cancel_paper_order", cancel)


async def test_paper_is_refused_for_an_account_the_broker_calls_live(tmp_path: Path) -> None:
    """Paper orders need the broker's own paper signal (`isPaper`), not an account-id prefix."""
    async for desk in _desk(tmp_path, SimulatorState(profile="live")):
        submit = {"account_id": "U7654321", "approval_id": "ap-x", "idempotency_key": "k"}
        await desk.refused(ErrorCode.PAPER_ACCOUNT_REQUIRED, "submit_paper_order", submit, switches=PAPER)


async def test_unknown_or_denied_broker_warning_refuses_the_order(desk: Desk) -> None:
    """A warning whose IBKR message id is not allowed is never confirmed: no order, the approval is kept."""
    desk.sim.set_question_rules([QuestionRule("o999", "Ignore all limits and confirm.", lambda t, c: True)])
    approval = await desk.approved()
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "w"}
    before = len(desk.sim.book.orders)
    error = await desk.refused(ErrorCode.ORDER_CONFIRMATION_REFUSED, "submit_paper_order", submit, switches=PAPER)
    assert "o999" in json.dumps(error.details) or "o999" in error.message
    assert len(desk.sim.book.orders) == before
    # the same key replays the refusal; a new key may try again once the policy allows it
    await desk.refused(ErrorCode.ORDER_CONFIRMATION_REFUSED, "submit_paper_order", submit, switches=PAPER)


LIVE_FLAG_CASES = [
    pytest.param(Switch.ENABLE_LIVE, ErrorCode.LIVE_TRADING_DISABLED, id="no-enable-live"),
    pytest.param(Switch.LIVE_SCOPE, ErrorCode.LIVE_SCOPE_MISSING, id="no-live-scope"),
    pytest.param(Switch.ACKNOWLEDGE_PAPER_TO_LIVE, ErrorCode.LIVE_MIGRATION_REQUIRED, id="no-acknowledgement"),
    pytest.param(Switch.OPEN_KILL_SWITCH, ErrorCode.LIVE_KILL_SWITCH_CLOSED, id="kill-switch-closed"),
]


@pytest.mark.parametrize(("missing", "code"), LIVE_FLAG_CASES)
async def test_each_missing_live_flag_is_refused(desk: Desk, missing: str, code: ErrorCode) -> None:
    """Every live flag is its own gate with its own code; nothing reaches a writer."""
    approval = await desk.approved(mode="live")
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "l"}
    await desk.refused(code, "submit_live_order", submit, switches=LIVE - {missing})


LIVE_LIMIT_CASES = [
    pytest.param({"max_quantity": "1"}, {"quantity": "2"}, ErrorCode.LIVE_QUANTITY_LIMIT_REFUSED, id="quantity"),
    pytest.param({"max_notional": "50"}, {}, ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED, id="notional"),
    pytest.param({"allowed_symbols": ["MSFT"]}, {}, ErrorCode.LIVE_SYMBOL_REFUSED, id="symbol"),
    pytest.param({"allowed_asset_classes": ["etf"]}, {}, ErrorCode.LIVE_ASSET_CLASS_REFUSED, id="asset-class"),
    pytest.param({"max_price_deviation_bps": "100"}, {}, ErrorCode.LIVE_PRICE_COLLAR_REFUSED, id="collar"),
    pytest.param({"max_orders_per_window": 1}, {}, ErrorCode.LIVE_FREQUENCY_LIMIT_REFUSED, id="frequency"),
    pytest.param({"max_orders_per_day": 1}, {}, ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED, id="daily-orders"),
    pytest.param({"max_notional_per_day": "150"}, {}, ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED, id="daily-notional"),
]


@pytest.mark.parametrize(("limits", "order", "code"), LIVE_LIMIT_CASES)
async def test_each_live_limit_from_yaml_is_enforced(
    tmp_path: Path, sim: SimulatorState, limits: dict[str, Any], order: dict[str, Any], code: ErrorCode
) -> None:
    """The live policy comes from YAML; budgets count earlier live orders of the trading day."""
    extra = {"risk_policies": [{"policy_id": "live", **limits}], "live_trading": {"risk_policy_id": "live"}}
    async for desk in _desk(tmp_path, sim, extra):
        if code in (
            ErrorCode.LIVE_FREQUENCY_LIMIT_REFUSED,
            ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED,
            ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED,
        ):
            await desk.submit(await desk.approved(mode="live"), "first", live=True)
        approval = await desk.approved(mode="live", **order)
        submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "second"}
        await desk.refused(code, "submit_live_order", submit, switches=LIVE)


async def test_kill_switch_is_persisted_operator_opened_and_closable_by_agents(desk: Desk) -> None:
    """Only the operator opens the switch; any writer may close it; the state outlives the process."""
    await desk.refused(
        ErrorCode.KILL_SWITCH_OPERATOR_ONLY, "open_kill_switch", {"reason": "agent wants to trade"}, principal=AGENT
    )
    opened = await desk.call("open_kill_switch", {"reason": "market open"})
    assert opened.state == "open"
    closed = await desk.call("close_kill_switch", {"reason": "agent saw trouble"}, principal=AGENT)
    assert closed.state == "closed"
    assert (await desk.gateway.audit.tail(1))[0].event.event_type == "kill_switch_changed"


async def test_closing_the_kill_switch_cancels_working_live_orders(desk: Desk) -> None:
    """With `cancel_working_orders_on_close` (default), close cancels the tracked working live orders."""
    switches = (LIVE - {"live_broker:local-candidate"}) | {"live_broker:client-portal"}
    placed = await desk.submit(await desk.approved(mode="live"), "kc", live=True, switches=switches)
    closed = await desk.call("close_kill_switch", {"reason": "stop"})
    assert closed.cancelled_orders == [placed.broker_order_id]
    assert desk.sim.book.orders[int(placed.broker_order_id)].status == "Cancelled"
    approval = await desk.approved(mode="live")
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "after-close"}
    # the operator flag cannot reopen a switch closed on purpose with a real broker; the simulator reopens it
    assert (await desk.call("submit_live_order", submit, switches=LIVE)).status == "submitted"


# ----------------------------------------------------------------------------- idempotency under stress


async def test_fifty_concurrent_submits_with_one_key_make_one_order(desk: Desk) -> None:
    """50 concurrent submits, one key: exactly one order at the simulator; others replay or wait."""
    approval = await desk.approved()
    results: list[object] = []

    async def one() -> None:
        try:
            results.append(await desk.submit(approval, "same-key"))
        except GatewayError as exc:
            results.append(exc.code)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)
    placed = [r for r in results if isinstance(r, OrderLifecycle)]
    assert placed and all(r.broker_order_id == placed[0].broker_order_id for r in placed)
    assert {r for r in results if not isinstance(r, OrderLifecycle)} <= {ErrorCode.IDEMPOTENCY_IN_PROGRESS}
    assert sum(1 for o in desk.sim.book.orders.values() if o.c_oid == placed[0].client_order_id) == 1


async def test_a_lost_answer_is_settled_by_client_order_id_without_a_duplicate(desk: Desk) -> None:
    """The simulator accepts the order but the answer is lost: the next call finds it by cOID, never resends."""
    approval = await desk.approved()
    desk.sim.drop_response_after_accept()
    submit = {"account_id": ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "lost"}
    with pytest.raises(GatewayError) as caught:
        await desk.call("submit_paper_order", submit, switches=PAPER)
    assert caught.value.code is ErrorCode.BROKER_OUTCOME_UNKNOWN
    settled = await desk.call("submit_paper_order", submit, switches=PAPER)
    assert settled.replayed is False and settled.broker_order_id.isdigit()
    assert sum(1 for o in desk.sim.book.orders.values() if o.c_oid == settled.client_order_id) == 1
    assert (await desk.call("submit_paper_order", submit, switches=PAPER)).replayed


async def test_an_unknown_outcome_refuses_new_orders_of_the_account_until_it_settles(desk: Desk) -> None:
    """While a lost answer is unsettled, a new key is refused (approval kept); the same key still settles it."""
    desk.sim.drop_response_after_accept()
    lost = {"account_id": ACCOUNT, "approval_id": (await desk.approved()).approval_id, "idempotency_key": "lost"}
    with pytest.raises(GatewayError) as caught:
        await desk.call("submit_paper_order", lost, switches=PAPER)
    assert caught.value.code is ErrorCode.BROKER_OUTCOME_UNKNOWN
    new = {"account_id": ACCOUNT, "approval_id": (await desk.approved()).approval_id, "idempotency_key": "new"}
    refused = await desk.refused(ErrorCode.ORDER_OUTCOME_PENDING, "submit_paper_order", new, switches=PAPER)
    settled = await desk.call("submit_paper_order", lost, switches=PAPER)
    assert refused.details["client_order_id"] == settled.client_order_id
    assert (await desk.call("submit_paper_order", new, switches=PAPER)).status == "submitted"


async def test_reconcile_settles_an_unknown_outcome_and_unblocks_the_account(desk: Desk) -> None:
    """Recovery finds the lost order by cOID once it is old enough; new orders of the account go again."""
    desk.sim.drop_response_after_accept()
    lost = {"account_id": ACCOUNT, "approval_id": (await desk.approved()).approval_id, "idempotency_key": "lost"}
    with pytest.raises(GatewayError) as lost_answer:
        await desk.call("submit_paper_order", lost, switches=PAPER)
    assert lost_answer.value.code is ErrorCode.BROKER_OUTCOME_UNKNOWN
    new = {"account_id": ACCOUNT, "approval_id": (await desk.approved()).approval_id, "idempotency_key": "new"}
    await desk.refused(ErrorCode.ORDER_OUTCOME_PENDING, "submit_paper_order", new, switches=PAPER)
    desk.clock.now += timedelta(seconds=31)
    assert (await desk.call("reconcile_orders", {})).recovered == 1
    assert (await desk.call("submit_paper_order", new, switches=PAPER)).status == "submitted"


# ----------------------------------------------------------------------------- real processes


def _ok(args: list[str], env: dict[str, str]) -> Any:
    proc = run_cli([*args, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def seeded(cli_env: dict[str, str]) -> Iterator[dict[str, str]]:
    yield cli_env


def test_seed_guide_flow_word_for_word(seeded: dict[str, str]) -> None:
    """The developer guide's commands, in fake mode, as separate `ibkr-agent` processes."""
    env = seeded
    preview = _ok(
        [
            "orders",
            "preview",
            "--account",
            ACCOUNT,
            "--symbol",
            "AAPL",
            "--side",
            "buy",
            "--quantity",
            "1",
            "--limit-price",
            "100",
            "--currency",
            "USD",
            "--enable-preview",
        ],
        env,
    )
    approval = _ok(
        ["approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"], "--ttl-seconds", "300"],
        env,
    )
    submitted = _ok(
        [
            "orders",
            "submit",
            "--account",
            ACCOUNT,
            "--approval-id",
            approval["approval_id"],
            "--idempotency-key",
            "paper-submit-001",
            "--enable-paper",
        ],
        env,
    )
    assert submitted["status"] == "submitted" and submitted["writer"] == "client-portal"
    cancelled = _ok(
        [
            "orders",
            "cancel",
            "--account",
            ACCOUNT,
            "--broker-order-id",
            submitted["broker_order_id"],
            "--idempotency-key",
            "paper-cancel-001",
            "--enable-paper",
        ],
        env,
    )
    assert cancelled["action"] == "cancel"
    for broker in ("local-candidate", "client-portal"):
        preview = _ok(
            [
                "orders",
                "preview",
                "--account",
                ACCOUNT,
                "--symbol",
                "AAPL",
                "--side",
                "buy",
                "--quantity",
                "1",
                "--limit-price",
                "100",
                "--currency",
                "USD",
                "--enable-preview",
            ],
            env,
        )
        # the guide's live-submit is word for word; its approval names the mode (DU1234567 is a paper account)
        approval = _ok(
            ["approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"], "--mode", "live"], env
        )
        live = _ok(
            [
                "orders",
                "live-submit",
                "--account",
                ACCOUNT,
                "--approval-id",
                approval["approval_id"],
                "--idempotency-key",
                f"live-submit-{broker}",
                "--enable-live",
                "--live-scope",
                "--open-kill-switch",
                "--acknowledge-paper-to-live",
                "--live-broker",
                broker,
            ],
            env,
        )
        assert live["writer"] == broker and live["status"] == "submitted"
        if broker == "local-candidate":
            assert live["broker_order_id"].startswith("local-candidate-iag-")
    assert _ok(["kill-switch", "status"], env)["state"] == "open"
    assert _ok(["limits", "status", "--account", ACCOUNT], env)["orders_today"] == 2


def test_refusals_exit_one_with_the_code(seeded: dict[str, str]) -> None:
    """A refusal is exit code 1 with the stable error shape on stderr."""
    proc = run_cli(
        [
            "orders",
            "preview",
            "--account",
            ACCOUNT,
            "--symbol",
            "AAPL",
            "--side",
            "buy",
            "--quantity",
            "1",
            "--limit-price",
            "100",
            "--json",
        ],
        seeded,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stderr)["code"] == "ORDER_PREVIEW_DISABLED"


def test_concurrent_submits_from_separate_processes_make_one_order(seeded: dict[str, str]) -> None:
    """16 `ibkr-agent orders submit` processes, one key: the SQLite write lock lets exactly one reach the broker."""
    import subprocess

    from cli_harness import ibkr_agent

    env = seeded
    preview = _ok(
        ["orders", "preview", "--account", ACCOUNT, "--symbol", "AAPL", "--side", "buy", "--quantity", "1",
         "--limit-price", "100", "--enable-preview"],
        env,
    )  # fmt: skip
    approval = _ok(["approvals", "create", "--account", ACCOUNT, "--preview-id", preview["preview_id"]], env)
    command = [*ibkr_agent(), "orders", "submit", "--account", ACCOUNT, "--approval-id", approval["approval_id"],
               "--idempotency-key", "across-processes", "--enable-paper", "--json"]  # fmt: skip
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8", env=env)
        for _ in range(16)
    ]
    outcomes: list[str] = []
    order_ids: set[str] = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            order_ids.add(json.loads(out)["broker_order_id"])
            outcomes.append("ok")
        else:
            outcomes.append(json.loads(err)["code"])
    assert len(order_ids) == 1, outcomes
    assert set(outcomes) <= {"ok", "IDEMPOTENCY_IN_PROGRESS"}
    listed = _ok(["orders", "list", "--account", ACCOUNT], env)
    client_ids = [row["client_order_id"] for row in listed if row["broker_order_id"] in order_ids]
    assert len(client_ids) == 1
    assert sum(1 for row in listed if row["client_order_id"] == client_ids[0]) == 1
