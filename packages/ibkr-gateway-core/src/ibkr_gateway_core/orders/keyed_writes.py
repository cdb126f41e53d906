"""Keyed order writes: idempotent submits and cancels, and the recovery of writes left unsettled.

A submit (of one order, a bracket or a modification) reserves a durable write-ahead record (consuming
the approval and reading the kill switch in one `BEGIN IMMEDIATE` transaction) before any writer call,
so a retry with the same key never sends twice. A record whose outcome is unknown is settled by looking
the order up by its client order id (cOID); it is sent again, with the same cOID, only after a grace
period, never blindly (a modification states absolute values and is simply sent again). Until it
settles, a new submit for the same account is refused (`ORDER_OUTCOME_PENDING`).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final, cast

import anyio

from ..call_context import CallContext
from ..errors import ErrorCode, GatewayError
from ..models import Money, OrderRecord
from ._services import BROKER_TEXT_LIMIT, TERMINAL_STATUSES, DeskServices, broker_status, raise_refusal, request_hash
from .approvals import Approvals
from .gates import check_kill_switch, check_no_unknown_outcome
from .models import OrderLifecycle, OrderPreview, PreviewKind
from .requests import OrderCancelInput, OrderSubmitInput
from .store import BudgetCheck, IdempotencyRecord, LiveOrder, NewRecord
from .tickets import OrderTicket, PlacedLeg, PlacedOrder
from .writers import WarningPolicy, client_order_id

NOT_SENT_RETRYABLE: Final = frozenset(
    {
        ErrorCode.BROKER_RATE_LIMITED,
        ErrorCode.BROKER_SESSION_REQUIRED,
        ErrorCode.BROKER_SESSION_EXPIRED,
        ErrorCode.BROKER_BACKEND_UNAVAILABLE,
        ErrorCode.BROKER_ACCOUNT_NOT_SELECTED,
        ErrorCode.ORDER_CONFIRMATION_CONFLICT,
    }
)
"""Writer errors that mean the order surely never reached the broker and a retry may succeed: the key is
released instead of storing the error (a definite refusal, such as a broker rejection, stays stored)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RiskOutcome:
    """What the submit-time risk check found, on a fresh quote."""

    notional: Decimal | None
    """The order's worst-case value (`gates.order_notional`)."""
    budget: BudgetCheck | None = None
    """Live budgets, checked inside the transaction that reserves the order."""
    resting: bool = False
    """A limit on its own side of the market (`gates.is_resting`): `allow_resting` warnings may be confirmed."""


RiskCheck = Callable[[OrderTicket], Awaitable[RiskOutcome]]
"""The mode's risk gates, run after the approval gates and before the reservation."""

PreviewCheck = Callable[[OrderPreview], Awaitable[None]]
"""A check of the approved preview against the broker before the reservation (a modify: the order still works)."""


def worst_outcome(tickets: list[OrderTicket], outcomes: list[RiskOutcome]) -> RiskOutcome:
    """A bracket's risk: its worst leg's, resting only when every limit leg rests.

    Only one exit can ever fill, so the worst leg is the group's exposure.
    """
    worst = max(outcomes, key=lambda o: o.notional if o.notional is not None else Decimal(-1))
    resting = all(o.resting for t, o in zip(tickets, outcomes, strict=True) if t.order_type == "limit")
    return replace(worst, resting=resting)


def worst_notional(notionals: list[Decimal | None]) -> Decimal | None:
    """The largest notional of a bracket's legs."""
    known = [n for n in notionals if n is not None]
    return max(known) if known else None


def scope_key(ctx: CallContext, flow: str, key: str) -> str:
    """The idempotency key as stored: one caller's key never collides with another's."""
    return f"{flow}:{ctx.principal.kind}:{ctx.principal.subject}:{key}"


class KeyedWrites:
    """Idempotent writes through an order writer, over the records of the order store."""

    def __init__(self, desk: DeskServices, approvals: Approvals) -> None:
        self._desk = desk
        self._approvals = approvals
        self._recovered = False
        self._recover_lock = anyio.Lock()

    async def ensure_recovered(self) -> None:
        """Recover unsettled keyed writes once per desk, before its first order operation."""
        if self._recovered:
            return
        async with self._recover_lock:
            if not self._recovered:
                self._recovered = True
                try:
                    await self.recover()
                except GatewayError:  # recovery retries on the next call of the same key
                    logger.warning("order recovery could not finish", exc_info=True)

    async def submit(
        self,
        ctx: CallContext,
        args: OrderSubmitInput,
        *,
        mode: str,
        writer_name: str,
        risk_check: RiskCheck,
        kind: PreviewKind = "order",
        preview_check: PreviewCheck | None = None,
    ) -> OrderLifecycle:
        """Send the approved preview's order, bracket or modification once per key; a seen key replays or settles."""
        desk = self._desk
        flow = f"{mode}_modify" if kind == "modify" else f"{mode}_submit"
        request: dict[str, object] = {"account_id": args.account_id, "approval_id": args.approval_id}
        key, digest, existing = await self._lookup(ctx, flow, args.idempotency_key, request)
        if existing is not None:
            return await self._settle(existing, digest)
        earlier = await desk.run(lambda: desk.store.unknown_submit(args.account_id, other_than=key))
        raise_refusal(check_no_unknown_outcome(earlier))
        preview = await self._approvals.approved_preview(args.approval_id, args.account_id, key, mode=mode, kind=kind)
        if preview is None:
            return await self._settle_latest(key, digest)
        if preview_check is not None:
            await preview_check(preview)
        ticket = preview.ticket
        tickets = preview.tickets()
        risk = worst_outcome(tickets, [await risk_check(leg) for leg in tickets])
        notional = risk.notional
        context: dict[str, object] = {
            "kind": kind,
            "ticket": ticket.model_dump(mode="json"),
            "preview_id": preview.preview_id,
            "audit_event_id": ctx.audit_event_id,
            "notional": str(notional) if notional is not None else None,
            "resting": risk.resting,
        }
        if kind == "bracket":
            if preview.take_profit is None or preview.stop_loss is None:
                raise GatewayError(ErrorCode.INTERNAL_ERROR, "A bracket preview lacks one of its exit orders.")
            context["take_profit"] = preview.take_profit.model_dump(mode="json")
            context["stop_loss"] = preview.stop_loss.model_dump(mode="json")
        if kind == "modify":
            context["broker_order_id"] = preview.broker_order_id
        new = NewRecord(
            scope_key=key,
            flow=flow,
            account_id=args.account_id,
            request_hash=digest,
            client_order_id=None if kind == "modify" else client_order_id(key),
            writer=writer_name,
            approval_id=args.approval_id,
            context=context,
            notional=notional,
        )
        outcome, record = await desk.run(
            lambda: desk.store.reserve(new, desk.clock(), kill_switch_required=mode == "live", budget=risk.budget)
        )
        if outcome == "kill_switch_closed":
            raise_refusal(check_kill_switch(False))
        if outcome == "approval_unavailable":
            await self._approvals.approved_preview(args.approval_id, args.account_id, key, mode=mode, kind=kind)
            return await self._settle_latest(key, digest)
        if record is None:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, "The reservation returned no record.")
        if outcome == "existing":
            return await self._settle(record, digest)
        return await self._place(record)

    async def cancel(
        self,
        ctx: CallContext,
        args: OrderCancelInput,
        *,
        mode: str,
        writer_name: str,
        legs: list[PlacedLeg] | None = None,
    ) -> OrderLifecycle:
        """Cancel an order (with `legs`: every leg of a bracket) once per key; a key seen before replays or settles."""
        flow = f"{mode}_cancel"
        request: dict[str, object] = {"account_id": args.account_id, "broker_order_id": args.broker_order_id}
        if legs is not None:
            request["group"] = True
        key, digest, existing = await self._lookup(ctx, flow, args.idempotency_key, request)
        if existing is not None:
            return await self._settle(existing, digest)
        new = NewRecord(
            scope_key=key,
            flow=flow,
            account_id=args.account_id,
            request_hash=digest,
            client_order_id=None,
            writer=writer_name,
            approval_id=None,
            context={
                "broker_order_id": args.broker_order_id,
                "audit_event_id": ctx.audit_event_id,
                **({"legs": [leg.model_dump(mode="json") for leg in legs]} if legs is not None else {}),
            },
        )
        # a cancel needs no write-ahead record: sending it twice is harmless, so only its result is kept
        return await self._cancel_record(new)

    async def recover(self) -> tuple[int, int]:
        """Settle pending and unknown records left by a crash or a lost answer; never a blind resend.

        Returns (records recovered, records still unresolved).
        """
        desk = self._desk
        recovered = unresolved = 0
        now = desk.clock()
        for record in await desk.run(desk.store.unsettled):
            if (now - record.updated_at).total_seconds() < desk.config.orders.recovery_min_age_seconds:
                continue  # another call may still own it
            if record.flow.endswith("_cancel") or record.client_order_id is None:
                unresolved += 1
                continue
            try:
                found = await desk.writer(record.writer).find_by_client_order_id(
                    record.account_id, record.client_order_id
                )
            except GatewayError:
                unresolved += 1
                continue
            if found is not None:
                await self._complete_submit(record, _placed_from(found))
                await desk.audit_system(
                    "order_recovered",
                    {"client_order_id": record.client_order_id, "broker_order_id": found.broker_order_id},
                    record.account_id,
                )
                recovered += 1
            else:
                if record.status == "pending":
                    error = {"code": "BROKER_OUTCOME_UNKNOWN", "message": "Left pending by a stopped process."}
                    await desk.run(functools.partial(desk.store.mark_unknown, record.scope_key, error, desk.clock()))
                unresolved += 1
        return recovered, unresolved

    async def _lookup(
        self, ctx: CallContext, flow: str, idempotency_key: str, request: dict[str, object]
    ) -> tuple[str, str, IdempotencyRecord | None]:
        """The stored key, the request's digest, and the record of a key seen before."""
        key = scope_key(ctx, flow, idempotency_key)
        existing = await self._desk.run(lambda: self._desk.store.record(key))
        return key, request_hash(flow, request), existing

    # ------------------------------------------------------------------ submits

    async def _place(self, record: IdempotencyRecord) -> OrderLifecycle:
        """Call the writer for a reserved record and settle the record from its answer."""
        desk = self._desk
        ticket = OrderTicket.model_validate(record.context["ticket"])
        warnings = WarningPolicy(desk.config.orders.warning_policy, resting=bool(record.context.get("resting")))
        writer = desk.writer(record.writer)
        rounds = desk.config.orders.max_confirmation_rounds
        kind = record.context.get("kind", "order")
        coid = record.client_order_id
        if kind != "modify" and coid is None:  # checked before the writer: never stored as an unknown outcome
            raise GatewayError(ErrorCode.INTERNAL_ERROR, "A submit record has no client order id.")
        try:
            if kind == "modify":
                target = str(record.context["broker_order_id"])
                placed = await writer.modify(target, ticket, confirm=warnings, max_rounds=rounds)
            elif kind == "bracket":
                placed = await writer.place_bracket(
                    ticket,
                    OrderTicket.model_validate(record.context["take_profit"]),
                    OrderTicket.model_validate(record.context["stop_loss"]),
                    client_order_id=coid or "",
                    confirm=warnings,
                    max_rounds=rounds,
                )
            else:
                placed = await writer.place(ticket, client_order_id=coid or "", confirm=warnings, max_rounds=rounds)
        except GatewayError as exc:
            await self._writer_failed(record, exc)
            raise
        except Exception as exc:
            unknown = GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN, f"The writer failed unexpectedly ({type(exc).__name__})."
            )
            await self._writer_failed(record, unknown)
            raise unknown from exc
        return await self._complete_submit(record, placed)

    async def _writer_failed(self, record: IdempotencyRecord, exc: GatewayError) -> None:
        desk = self._desk
        error = {"code": str(exc.code), "message": exc.message, "details": _json_safe(exc.details)}
        if exc.code == ErrorCode.BROKER_OUTCOME_UNKNOWN:
            await desk.run(lambda: desk.store.mark_unknown(record.scope_key, error, desk.clock()))
        elif exc.code in NOT_SENT_RETRYABLE:
            await desk.run(lambda: desk.store.forget(record.scope_key))  # a retry with the same key just works
        else:
            await desk.run(lambda: desk.store.fail(record.scope_key, error, desk.clock(), release_approval=True))

    async def _complete_submit(self, record: IdempotencyRecord, placed: PlacedOrder) -> OrderLifecycle:
        desk = self._desk
        mode = "live" if record.flow.startswith("live_") else "paper"
        kind = record.context.get("kind", "order")
        ticket = OrderTicket.model_validate(record.context["ticket"])
        raw_notional = record.context.get("notional")
        legs = placed.legs
        if kind == "bracket" and not legs:  # settled by its parent's cOID: the exits' ids are not known here
            parent = PlacedLeg(
                role="parent",
                broker_order_id=placed.broker_order_id,
                broker_status=placed.broker_status,
                status=placed.status,
            )
            legs = [
                parent,
                PlacedLeg(role="take_profit", status="unknown"),
                PlacedLeg(role="stop_loss", status="unknown"),
            ]
        lifecycle = OrderLifecycle(
            mode=mode,
            action="modify" if kind == "modify" else "submit",
            account_id=record.account_id,
            broker_order_id=placed.broker_order_id,
            client_order_id=placed.client_order_id or record.client_order_id,
            status=placed.status,
            broker_status=placed.broker_status,
            writer=record.writer,
            approval_id=record.approval_id,
            preview_id=record.context.get("preview_id"),
            notional=Money(amount=Decimal(raw_notional), currency=ticket.currency) if raw_notional else None,
            confirmed_message_ids=placed.confirmed_message_ids,
            legs=legs,
            updated_at=desk.clock(),
            audit_event_id=str(record.context.get("audit_event_id", "")),
        )
        track: list[LiveOrder] = []
        if mode == "live" and record.writer == "client-portal" and kind != "modify":  # a modified order is tracked
            pairs = [(leg.broker_order_id, leg.status) for leg in legs] or [(placed.broker_order_id, lifecycle.status)]
            track = [
                LiveOrder(record.account_id, order_id, record.writer, record.client_order_id, status)
                for order_id, status in pairs
                if order_id is not None and status not in TERMINAL_STATUSES
            ]
        result = lifecycle.model_dump(mode="json")
        await desk.run(lambda: desk.store.complete(record.scope_key, result, desk.clock(), track=track))
        return lifecycle

    # ----------------------------------------------------------------- settling

    async def _settle_latest(self, key: str, digest: str) -> OrderLifecycle:
        desk = self._desk
        record = await desk.run(lambda: desk.store.record(key))
        if record is None:
            raise GatewayError(ErrorCode.APPROVAL_CONSUMED, "The approval was used by another call meanwhile.")
        return await self._settle(record, digest)

    async def _settle(self, record: IdempotencyRecord, digest: str) -> OrderLifecycle:
        """A key seen before: replay, conflict, in progress, or settle an unknown outcome by cOID."""
        desk = self._desk
        if record.request_hash != digest:
            raise GatewayError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                "This idempotency key was used for a different request.",
            )
        if record.status == "completed":
            if record.result is None:
                raise GatewayError(ErrorCode.INTERNAL_ERROR, "A completed record has no stored result.")
            return OrderLifecycle.model_validate(record.result).model_copy(update={"replayed": True})
        if record.status == "failed":
            error = record.error or {}
            code = ErrorCode(str(error.get("code", ErrorCode.INTERNAL_ERROR)))
            details: object = error.get("details")
            raise GatewayError(
                code,
                f"(stored result of this idempotency key) {error.get('message', '')}",
                details=cast(dict[str, object], details) if isinstance(details, dict) else None,
            )
        age = (desk.clock() - record.updated_at).total_seconds()
        if record.status == "pending" and age < desk.config.orders.recovery_min_age_seconds:
            raise GatewayError(
                ErrorCode.IDEMPOTENCY_IN_PROGRESS, "The first call with this idempotency key is still running."
            )
        return await self._resolve_unknown(record)

    async def _resolve_unknown(self, record: IdempotencyRecord) -> OrderLifecycle:
        """Look the order up by cOID before anything else; send again (same cOID) only after the grace period."""
        desk = self._desk
        if record.flow.endswith("_cancel"):
            return await self._cancel_record(record)
        if record.flow.endswith("_modify"):  # a modification states absolute values: sending it again is harmless
            return await self._send_again(record)
        if record.client_order_id is None:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, "A submit record has no client order id.")
        found = await desk.writer(record.writer).find_by_client_order_id(record.account_id, record.client_order_id)
        if found is not None:
            return await self._complete_submit(record, _placed_from(found))
        age = (desk.clock() - record.updated_at).total_seconds()
        resend_after = desk.config.orders.unknown_resend_after_seconds
        if record.writer != "local-candidate" and age < resend_after:
            raise GatewayError(
                ErrorCode.BROKER_OUTCOME_UNKNOWN,
                f"The broker does not show order {record.client_order_id} yet; it is sent again, with the same "
                f"client order id, only {resend_after:g} s after the last attempt.",
                retryable=True,
            )
        return await self._send_again(record)

    async def _send_again(self, record: IdempotencyRecord) -> OrderLifecycle:
        """Restart the record's grace period, then send it again: a retry meanwhile looks up and waits."""
        desk = self._desk
        await desk.run(lambda: desk.store.touch(record.scope_key, desk.clock()))
        return await self._place(record)

    # ------------------------------------------------------------------ cancels

    async def _cancel_legs(self, record: IdempotencyRecord | NewRecord) -> list[PlacedLeg]:
        """Cancel every leg of a bracket, parent first (the broker cancels the exits with it).

        A leg the broker no longer knows is reported `unknown`, the others with their cancel status.
        """
        desk = self._desk
        writer = desk.writer(record.writer)
        done: list[PlacedLeg] = []
        for raw in record.context["legs"]:
            leg = PlacedLeg.model_validate(raw)
            if leg.broker_order_id is None:  # an exit the broker never acknowledged, or one settled by its parent
                done.append(leg.model_copy(update={"status": "unknown", "broker_status": None}))  # as stored
                continue
            try:
                ack = await writer.cancel(record.account_id, leg.broker_order_id)
            except GatewayError as exc:
                if exc.code != ErrorCode.INPUT_UNKNOWN_ORDER:
                    raise
                done.append(leg.model_copy(update={"status": "unknown", "broker_status": None}))
                continue
            status = broker_status(ack.broker_status, accepted=ack.accepted)
            done.append(leg.model_copy(update={"status": status, "broker_status": ack.broker_status}))
        if not any(leg.status != "unknown" for leg in done):
            raise GatewayError(
                ErrorCode.BROKER_RESPONSE_INVALID, "The broker accepted the cancel of no leg of the bracket."
            )
        return done

    async def _cancel_record(self, record: IdempotencyRecord | NewRecord) -> OrderLifecycle:
        desk = self._desk
        broker_order_id = str(record.context["broker_order_id"])
        legs: list[PlacedLeg] = []
        if "legs" in record.context:
            legs = await self._cancel_legs(record)
            status = legs[0].status
            answered = legs[0].broker_status
        else:
            ack = await desk.writer(record.writer).cancel(record.account_id, broker_order_id)
            status = broker_status(ack.broker_status, accepted=ack.accepted)
            answered = ack.broker_status
            if not ack.accepted and status not in TERMINAL_STATUSES:
                raise GatewayError(
                    ErrorCode.BROKER_RESPONSE_INVALID,
                    f"The broker did not accept the cancel of {broker_order_id} (untrusted broker text): "
                    f"{(ack.message or '')[:BROKER_TEXT_LIMIT]}",
                )
        lifecycle = OrderLifecycle(
            mode="live" if record.flow == "live_cancel" else "paper",
            action="cancel",
            account_id=record.account_id,
            broker_order_id=broker_order_id,
            status=status,
            broker_status=answered,
            writer=record.writer,
            legs=legs,
            updated_at=desk.clock(),
            audit_event_id=str(record.context.get("audit_event_id", "")),
        )
        result = lifecycle.model_dump(mode="json")
        if isinstance(record, NewRecord):
            new = record
            earlier = await desk.run(lambda: desk.store.record_completed(new, result, desk.clock()))
            if earlier is not None:  # a concurrent cancel with the same key finished first
                return await self._settle(earlier, new.request_hash)
        else:
            done_key = record.scope_key
            await desk.run(lambda: desk.store.complete(done_key, result, desk.clock(), track=None))
        pairs = [(leg.broker_order_id, leg.status) for leg in legs] or [(broker_order_id, status)]
        finished = [
            (LiveOrder(record.account_id, order_id, record.writer, None, leg_status), True)
            for order_id, leg_status in pairs
            if order_id is not None and leg_status in TERMINAL_STATUSES
        ]
        if record.flow == "live_cancel" and finished:
            await desk.run(lambda: desk.store.update_live_orders(finished, desk.clock()))
        return lifecycle


def _placed_from(order: OrderRecord) -> PlacedOrder:
    """The order found by a record's cOID; the lifecycle takes the cOID from the record."""
    return PlacedOrder(broker_order_id=order.broker_order_id, broker_status=order.broker_status, status=order.status)


def _json_safe(details: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(details, default=str))
