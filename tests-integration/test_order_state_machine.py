"""The order workflow's promises, held over random sequences of what operators, agents and the market do.

A hypothesis state machine drives one gateway over the in-process CPAPI simulator through previews,
approvals (by the operator, by a configured person, by agents, by the previewer itself), revocations,
paper and live submits and cancels with a small pool of idempotency keys, the kill switch, clock jumps,
quote moves and restarts. After every step it checks what a broker and an auditor would see:

- no order reaches the broker without a successful approval of that exact preview, by a person, for the
  mode it was sent in; only the operator at the CLI (one person deciding twice, the guide's flow) may
  approve a preview it made itself;
- at most one broker order per idempotency key;
- each order's worst-case exposure (quantity times the highest price its fill can be worth: a buy's limit,
  or the ask for a market buy; the higher of a sell's limit and the bid) stays within the policy's
  `max_notional`, and live orders within their daily count;
- a refusal never changes the broker's book;
- every operation writes exactly one audit event, and the chain verifies.

The normal run is bounded; `IBKR_PROPERTY_PROFILE=long` runs the long profile (see docs/reliability.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, multiple, rule
from ibkr_gateway_core.errors import ERROR_CATALOGUE, GatewayError
from ibkr_gateway_core.orders import ApprovalRecord, OrderLifecycle, OrderPreview
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, AGENT, OPERATOR, PAPER, PREVIEW, REMOTE, Clock, Desk, running_desk

AAPL = 265598
OTHER_AGENT = Principal(kind="remote", subject="bot", issuer="https://as.example", scopes=WITH_LIVE)
"""A remote subject the configuration does not name as an approver: an agent."""
PRINCIPALS = {"operator": OPERATOR, "agent": AGENT, "person": REMOTE, "other-agent": OTHER_AGENT}
APPROVERS = {"operator", "person"}
MAX_NOTIONAL = Decimal(20_000)
MAX_LIVE_ORDERS_PER_DAY = 3
CONFIG: dict[str, Any] = {
    "orders": {"preview_enabled": True, "paper_enabled": True, "preview_policy_id": "limits"},
    "auth": {"approvers": [{"issuer": "https://as.example", "subject": "reviewer"}]},
    "safety": {"live_trading_enabled": True},
    "risk_policies": [
        {"policy_id": "limits", "max_notional": str(MAX_NOTIONAL), "allowed_order_types": ["limit", "market"]},
        {
            "policy_id": "live",
            "max_notional": str(MAX_NOTIONAL),
            "max_orders_per_day": MAX_LIVE_ORDERS_PER_DAY,
            "allowed_order_types": ["limit", "market"],
        },
    ],
    "live_trading": {
        "enabled": True,
        "allowed_accounts": [ACCOUNT],
        "risk_policy_id": "live",
        "paper_to_live_checklist_acknowledged": True,
        "writer": "client-portal",
        "cancel_working_orders_on_close": False,
        "trading_day_timezone": "UTC",
    },
}
KEYS = st.sampled_from([f"key-{n}" for n in range(6)])

LONG = os.environ.get("IBKR_PROPERTY_PROFILE") == "long"
SETTINGS = settings(
    max_examples=int(os.environ.get("IBKR_PROPERTY_EXAMPLES", 10_000 if LONG else 60)),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=not LONG,
)


@dataclass(frozen=True)
class Previewed:
    """A preview this run made, and who made it."""

    record: OrderPreview
    by: str


@dataclass(frozen=True)
class Approved:
    """An approval the gateway granted, and who granted it."""

    record: ApprovalRecord
    by: str
    preview: Previewed


@dataclass(frozen=True)
class Submitted:
    """A submit the gateway accepted."""

    lifecycle: OrderLifecycle
    approval: Approved
    worst_case: Decimal
    day: str


def _worst_fill_price(side: str, limit: Decimal | None, bid: Decimal, ask: Decimal) -> Decimal:
    """The highest price an order's fill can be worth now.

    A buy limit never fills above its limit (a marketable one fills at the ask, below it); a market buy fills
    at the ask. A sell limit never fills below its limit, and one far below the market fills at the bid, so
    its value is the higher of the two; a market sell fills at the bid.
    """
    if side == "buy":
        return ask if limit is None else limit
    return bid if limit is None else max(limit, bid)


class OrderWorkflowMachine(RuleBasedStateMachine):
    """One gateway, one simulator, one state directory per example."""

    previews = Bundle("previews")
    approvals = Bundle("approvals")
    orders = Bundle("orders")

    portal_cm: ClassVar[Any] = None

    def __init__(self) -> None:
        super().__init__()
        self.state_dir = Path(tempfile.mkdtemp(prefix="ibkr-sm-"))
        self.sim = SimulatorState()
        self.clock = Clock()
        self._portal_cm = start_blocking_portal()
        self.portal: BlockingPortal = self._portal_cm.__enter__()
        self._desk_cm: AbstractAsyncContextManager[Desk] | None = None
        self.desk = self._start()
        self.granted: dict[str, Approved] = {}
        self.submitted: dict[str, Submitted] = {}
        """By cOID: every order the gateway says it placed."""
        self.orders_by_key: dict[tuple[str, str, bool], set[str]] = {}
        """By (principal, idempotency key, live): the broker order ids its submits returned."""
        self.calls = 0

    # ------------------------------------------------------------------ plumbing

    def _start(self) -> Desk:
        self._desk_cm = running_desk(self.state_dir, self.sim, self.clock, CONFIG)
        return self.portal.call(self._desk_cm.__aenter__)

    def _stop(self) -> None:
        assert self._desk_cm is not None
        self.portal.call(self._desk_cm.__aexit__, None, None, None)
        self._desk_cm = None

    def _audit_head(self) -> int:
        records = self.portal.call(self.desk.gateway.audit.tail, 1)
        return records[-1].sequence if records else 0

    def _book(self) -> tuple[tuple[int, str, Decimal], ...]:
        return tuple((o.order_id, o.status, o.filled) for o in self.sim.placements)

    def _call(self, name: str, args: dict[str, Any], who: str) -> Any:
        """One gateway call; checks one audit event and, for a refusal, an untouched book. None on refusal."""
        principal = PRINCIPALS[who]
        switches: frozenset[str] = frozenset()
        if principal.kind == "local_operator":
            switches = PREVIEW | PAPER
        before_audit, before_book = self._audit_head(), self._book()
        self.calls += 1
        try:
            result = self.portal.call(
                lambda: self.desk.gateway.call(name, args, principal=principal, switches=switches)
            )
        except GatewayError as error:
            event(f"{name}: {error.code}")
            assert self._audit_head() == before_audit + 1, f"{name} refused with {error.code} but not audited once"
            if ERROR_CATALOGUE[error.code].family in ("refusal", "input", "auth"):
                assert self._book() == before_book, f"{name} refused with {error.code} but changed the broker's book"
            return None
        assert self._audit_head() == before_audit + 1, f"{name} succeeded but was not audited exactly once"
        event(f"{name}: ok")
        return result.value

    def _quote(self) -> tuple[Decimal, Decimal]:
        contract = self.sim.book.contracts[AAPL]
        assert contract.bid is not None and contract.ask is not None
        return contract.bid, contract.ask

    # ------------------------------------------------------------------ rules

    @initialize(target=approvals, agent=st.sampled_from(["agent", "other-agent"]))
    def an_agent_preview_approved_by_a_person_for_each_mode(self, agent: str) -> Any:
        """Starts each run where the interesting part begins: the switch open, approvals waiting to be used."""
        self._call("open_kill_switch", {"reason": "trading day starts"}, "operator")
        made = []
        for mode, approver in (("paper", "operator"), ("live", "person")):
            previewed = self.preview(agent, "buy", 10, "limit", 0)
            made.append(self.approve(previewed, approver, mode))
        return multiple(*made)

    @rule(
        target=previews,
        who=st.sampled_from(sorted(PRINCIPALS)),
        side=st.sampled_from(["buy", "sell"]),
        quantity=st.integers(min_value=1, max_value=150),
        order_type=st.sampled_from(["limit", "limit", "market"]),
        offset_pct=st.integers(min_value=-60, max_value=60),
    )
    def preview(self, who: str, side: str, quantity: int, order_type: str, offset_pct: int) -> Any:
        bid, ask = self._quote()
        args: dict[str, Any] = {
            "account_id": ACCOUNT,
            "contract_id": AAPL,
            "side": side,
            "quantity": str(quantity),
            "order_type": order_type,
        }
        if order_type == "limit":
            mid = (bid + ask) / 2
            args["limit_price"] = str((mid * (100 + offset_pct) / 100).quantize(Decimal("0.01")))
        record = self._call("preview_order", args, who)
        if record is None:
            return None
        return Previewed(record, who)

    @rule(
        target=approvals,
        previewed=previews,
        who=st.sampled_from(sorted(PRINCIPALS)),
        mode=st.sampled_from(["paper", "live"]),
    )
    def approve(self, previewed: Previewed | None, who: str, mode: str) -> Any:
        if previewed is None:
            return None
        args = {"account_id": ACCOUNT, "preview_id": previewed.record.preview_id, "mode": mode}
        record = self._call("create_approval", args, who)
        if record is None:
            return None
        assert who in APPROVERS, f"{who} is an agent, yet its approval was granted"
        assert who == "operator" or who != previewed.by, f"{who} approved its own preview"
        approved = Approved(record, who, previewed)
        self.granted[record.approval_id] = approved
        return approved

    @rule(approved=approvals, who=st.sampled_from(sorted(PRINCIPALS)))
    def revoke(self, approved: Approved | None, who: str) -> None:
        if approved is not None:
            self._call("revoke_approval", {"approval_id": approved.record.approval_id}, who)

    @rule(target=orders, approved=approvals, who=st.sampled_from(sorted(PRINCIPALS)), key=KEYS, live=st.booleans())
    def submit(self, approved: Approved | None, who: str, key: str, live: bool) -> Any:
        if approved is None:
            return None
        args = {"account_id": ACCOUNT, "approval_id": approved.record.approval_id, "idempotency_key": key}
        ticket = approved.preview.record.ticket
        bid, ask = self._quote()
        worst = _worst_fill_price(ticket.side, ticket.limit_price, bid, ask) * ticket.quantity
        lifecycle = self._call("submit_live_order" if live else "submit_paper_order", args, who)
        if lifecycle is None:
            return None
        same_key = self.orders_by_key.setdefault((who, key, live), set())
        same_key.add(lifecycle.broker_order_id)
        assert len(same_key) == 1, f"{who}'s key {key} placed {len(same_key)} orders"
        if lifecycle.replayed:
            return lifecycle
        assert lifecycle.client_order_id is not None
        assert lifecycle.client_order_id not in self.submitted, "two submits share one cOID"
        assert approved.record.mode == ("live" if live else "paper"), "an approval was used for the other mode"
        self.submitted[lifecycle.client_order_id] = Submitted(
            lifecycle, approved, worst, self.clock.now.date().isoformat()
        )
        return lifecycle

    @rule(order=orders, who=st.sampled_from(sorted(PRINCIPALS)), key=KEYS)
    def cancel(self, order: OrderLifecycle | None, who: str, key: str) -> None:
        if order is None:
            return
        name = "cancel_live_order" if order.mode == "live" else "cancel_paper_order"
        args = {"account_id": ACCOUNT, "broker_order_id": order.broker_order_id, "idempotency_key": f"c-{key}"}
        self._call(name, args, who)

    @rule(who=st.sampled_from(sorted(PRINCIPALS)), close=st.booleans())
    def kill_switch(self, who: str, close: bool) -> None:
        self._call("close_kill_switch" if close else "open_kill_switch", {"reason": "state machine"}, who)

    @rule(seconds=st.sampled_from([1, 30, 299, 301, 900, 3_600, 86_400]))
    def clock_jumps(self, seconds: int) -> None:
        self.clock.now += timedelta(seconds=seconds)

    @rule(move_pct=st.integers(min_value=-30, max_value=30))
    def quote_moves(self, move_pct: int) -> None:
        bid, ask = self._quote()
        factor = Decimal(100 + move_pct) / 100
        new_bid = (bid * factor).quantize(Decimal("0.01"))
        self.sim.set_quote(AAPL, bid=new_bid, ask=new_bid + (ask - bid), last=new_bid)

    @rule()
    def restart(self) -> None:
        self._stop()
        self.desk = self._start()

    @rule(dropped=consumes(previews))
    def forget_a_preview(self, dropped: Previewed | None) -> None:
        """Keeps the bundles small so later rules reuse recent records."""

    # ------------------------------------------------------------------ invariants

    @invariant()
    def every_broker_order_was_approved_by_a_person_for_that_exact_preview(self) -> None:
        for order in self.sim.placements:
            assert order.c_oid is not None, "an order without a cOID reached the broker"
            placed = self.submitted.get(order.c_oid)
            assert placed is not None, f"order {order.order_id} reached the broker without a successful submit"
            approved = placed.approval
            assert approved.by in APPROVERS
            assert approved.by == "operator" or approved.by != approved.preview.by
            ticket = approved.preview.record.ticket
            assert (order.conid, order.side, order.quantity) == (
                ticket.contract_id,
                ticket.side.upper(),
                ticket.quantity,
            )
            assert order.price == ticket.limit_price, "the broker order's price is not the approved one"

    @invariant()
    def at_most_one_broker_order_per_idempotency_key(self) -> None:
        counts = Counter(order.c_oid for order in self.sim.placements)
        assert all(n == 1 for n in counts.values()), counts

    @invariant()
    def worst_case_exposure_stays_within_the_limits(self) -> None:
        for placed in self.submitted.values():
            assert placed.worst_case <= MAX_NOTIONAL, (
                f"an order worth up to {placed.worst_case} was placed under max_notional {MAX_NOTIONAL}"
            )
        live_days = Counter(p.day for p in self.submitted.values() if p.lifecycle.mode == "live")
        assert all(n <= MAX_LIVE_ORDERS_PER_DAY for n in live_days.values()), live_days

    def teardown(self) -> None:
        try:
            if self._desk_cm is not None:
                report = self.portal.call(self.desk.gateway.audit.verify)
                assert report.chain_valid, report
                self._stop()
        finally:
            self._portal_cm.__exit__(None, None, None)
            shutil.rmtree(self.state_dir, ignore_errors=True)


OrderWorkflowMachine.TestCase.settings = SETTINGS
test_the_order_workflow_keeps_its_promises = pytest.mark.slow(OrderWorkflowMachine.TestCase)
