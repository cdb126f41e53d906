"""What the order operations return: previews, approvals, order lifecycles, kill switch, limits."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field
from pydantic.config import JsonDict

from ..models import DomainModel, Money, OrderStatus
from .tickets import OrderTicket, PlacedLeg

_UNTRUSTED: JsonDict = {"x-untrusted-text": True}
"""Output-schema marker of broker (or caller) free text: untrusted data."""

ApprovalStatus = Literal["approved", "consumed", "revoked", "expired"]
KillSwitchPosition = Literal["open", "closed"]
TradingMode = Literal["paper", "live"]
PreviewKind = Literal["order", "bracket", "modify"]
"""What a preview would do: place one order, place a bracket, or modify a working order."""


class OrderPreview(DomainModel):
    """A previewed order: what would be sent, what it would cost, until when it can be approved."""

    preview_id: str
    account_id: str
    ticket: OrderTicket
    """Every economic field; exactly this is sent if the preview is approved and submitted (for a bracket:
    its parent; for a modify: the order as it will be after the change)."""
    fingerprint: str
    """SHA-256 of what would be sent (the ticket; for a bracket or a modify, every leg and the target too);
    approvals bind to it."""
    kind: PreviewKind = "order"
    """`order`, `bracket` or `modify`; an approval works only with the submit of its kind."""
    take_profit: OrderTicket | None = None
    """Bracket only: the take-profit exit (a limit order on the other side)."""
    stop_loss: OrderTicket | None = None
    """Bracket only: the stop-loss exit (a stop order on the other side)."""
    broker_order_id: str | None = None
    """Modify only: the working order to change."""
    original: OrderTicket | None = None
    """Modify only: the order as the broker showed it when the modification was previewed."""
    risk_policy_id: str
    reference_price: Decimal | None = None
    """Bid/ask midpoint, else last, when a quote was needed."""
    estimated_cost: Money | None = None
    """Price basis × quantity (market orders priced from the quote)."""
    estimated_commission: Money | None = None
    estimated_total: Money | None = None
    initial_margin_change: Decimal | None = None
    maintenance_margin_change: Decimal | None = None
    equity_with_loan_after: Decimal | None = None
    warnings: list[str] = Field(default_factory=list[str], json_schema_extra=_UNTRUSTED)
    """Broker what-if warnings: untrusted text."""
    created_by: str
    created_by_issuer: str | None = None
    """The token issuer of a remote creator; with the creator's kind and subject, who previewed."""
    created_at: datetime
    expires_at: datetime
    audit_event_id: str

    def order_fingerprint(self) -> str:
        """The fingerprint of what would be sent, recomputed from the stored fields (approvals compare it)."""
        if self.kind == "order":
            return self.ticket.fingerprint()
        data = {
            "kind": self.kind,
            "ticket": self.ticket.model_dump(mode="json"),
            "take_profit": self.take_profit.model_dump(mode="json") if self.take_profit else None,
            "stop_loss": self.stop_loss.model_dump(mode="json") if self.stop_loss else None,
            "broker_order_id": self.broker_order_id,
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def tickets(self) -> list[OrderTicket]:
        """Every ticket that would be sent: the parent and the exits of a bracket, else the one ticket."""
        return [t for t in (self.ticket, self.take_profit, self.stop_loss) if t is not None]


PreviewStatus = Literal["pending", "approved", "consumed", "revoked", "denied", "expired"]


class PreviewDenial(DomainModel):
    """A person's refusal of one preview: it can never be approved afterwards."""

    preview_id: str
    denied_by: str
    denied_by_kind: str
    denied_at: datetime
    reason: str = Field(json_schema_extra=_UNTRUSTED)
    revoked_approvals: list[str] = Field(default_factory=list[str])
    """Unused approvals of the preview revoked by the denial."""
    audit_event_id: str


class PreviewEntry(DomainModel):
    """One preview with where it stands: waiting for a person, approved, used, denied or expired."""

    preview: OrderPreview
    status: PreviewStatus
    """`pending`: unexpired, neither approved nor denied; the others follow its newest approval or denial."""
    created_by_kind: str
    """`local_agent`, `remote` or `local_operator`."""
    approval_id: str | None = None
    """The newest approval of the preview, if any."""
    denial: PreviewDenial | None = None


class ApprovalRecord(DomainModel):
    """An approval of one preview for one account: single use, expiring, revocable."""

    approval_id: str
    preview_id: str
    account_id: str
    fingerprint: str
    status: ApprovalStatus
    mode: TradingMode | None = None
    """`paper` or `live`: the only kind of submit this approval allows (None, from older versions: neither)."""
    approved_by: str
    approved_by_kind: str
    approved_by_issuer: str | None = None
    approved_at: datetime
    expires_at: datetime
    consumed_at: datetime | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = Field(default=None, json_schema_extra=_UNTRUSTED)
    audit_event_id: str


class OrderLifecycle(DomainModel):
    """The outcome of one paper or live submit or cancel."""

    mode: TradingMode
    action: Literal["submit", "cancel", "modify"]
    account_id: str
    broker_order_id: str
    client_order_id: str | None = None
    """The IBKR `cOID`, derived from the idempotency key."""
    status: OrderStatus
    broker_status: str | None = None
    writer: str
    approval_id: str | None = None
    preview_id: str | None = None
    notional: Money | None = None
    confirmed_message_ids: list[str] = Field(default_factory=list[str])
    """IBKR warnings the warning policy confirmed on the way."""
    legs: list[PlacedLeg] = Field(default_factory=list[PlacedLeg])
    """A bracket's legs, parent first (`broker_order_id` is the parent's); empty for a single order."""
    replayed: bool = False
    """True when this is the stored result of an earlier call with the same idempotency key."""
    updated_at: datetime
    audit_event_id: str
    """The event of the call that did the work (the first call, for a replay)."""


class KillSwitchState(DomainModel):
    """The persisted live kill switch."""

    state: KillSwitchPosition
    changed_by: str | None = None
    changed_at: datetime | None = None
    reason: str | None = Field(default=None, json_schema_extra=_UNTRUSTED)
    cancelled_orders: list[str] = Field(default_factory=list[str])
    """Working live orders cancelled by this close."""
    audit_event_id: str | None = None


class LimitsStatus(DomainModel):
    """Used and remaining budgets of the live risk policy for one account."""

    account_id: str
    policy_id: str
    currency: str
    trading_day: date
    timezone: str
    kill_switch: KillSwitchPosition
    window_seconds: int
    orders_in_window: int
    max_orders_per_window: int | None = None
    remaining_orders_in_window: int | None = None
    orders_today: int
    max_orders_per_day: int | None = None
    remaining_orders_today: int | None = None
    notional_today: Decimal
    max_notional_per_day: Decimal | None = None
    remaining_notional_today: Decimal | None = None
    max_quantity: Decimal | None = None
    max_notional: Decimal | None = None
    allowed_symbols: list[str] | None = None
    allowed_asset_classes: list[str]


class ReconcileReport(DomainModel):
    """One pass over unfinished work: idempotency records to recover and live orders to track."""

    recovered: int = 0
    """Idempotency records settled from the broker's answer to a cOID lookup."""
    unresolved_records: int = 0
    scanned: int = 0
    """Live orders in the backlog looked up."""
    transitions: int = 0
    completed: int = 0
    """Live orders that reached a terminal state and left the backlog."""
    unresolved: int = 0
