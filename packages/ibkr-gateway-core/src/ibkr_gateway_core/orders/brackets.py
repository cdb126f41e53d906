"""Bracket previews: a limit entry and its two exits, checked, priced and kept as one ticket.

A bracket is one preview with one fingerprint over its three legs, so one approval allows the whole
and nothing less: the parent (a limit order on the caller's side), a take-profit (a limit order on
the other side) and a stop-loss (a stop order on the other side). Every leg passes the preview
policy; the notional kept for the budgets is the worst leg's, as only one exit can ever fill. The
submit and the cancel of the group go through the keyed writes like any order.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from ..errors import ErrorCode, GatewayError
from ..models import ContractCandidate, Money
from ..requests import ContractQueryInput
from ._services import BROKER_TEXT_LIMIT, DeskServices, raise_refusal
from .gates import check_risk, check_ticket_shape, needs_quote, order_notional, reference_price
from .keyed_writes import worst_notional
from .models import OrderPreview
from .requests import BracketPreviewInput
from .risk import DEFAULT_PREVIEW_POLICY
from .tickets import OrderTicket, PlacedLeg


def check_bracket_prices(args: BracketPreviewInput) -> None:
    """A buy bracket needs stop-loss < entry < take-profit; a sell bracket the other way round.

    Raises:
        GatewayError: `ORDER_BRACKET_PRICES_INVALID`.
    """
    low, high = (args.stop_loss_price, args.take_profit_price)
    if args.side == "sell":
        low, high = high, low
    if not low < args.limit_price < high:
        order = "stop-loss < entry < take-profit" if args.side == "buy" else "take-profit < entry < stop-loss"
        raise GatewayError(
            ErrorCode.ORDER_BRACKET_PRICES_INVALID,
            f"A {args.side} bracket needs {order}; got entry {args.limit_price}, take-profit "
            f"{args.take_profit_price}, stop-loss {args.stop_loss_price}.",
            details={
                "limit_price": str(args.limit_price),
                "take_profit_price": str(args.take_profit_price),
                "stop_loss_price": str(args.stop_loss_price),
            },
        )


class Brackets:
    """The bracket preview of the order desk, and the legs of a bracket it placed."""

    def __init__(
        self,
        desk: DeskServices,
        *,
        resolve: Callable[[ContractQueryInput], Awaitable[ContractCandidate]],
        recovered: Callable[[], Awaitable[None]],
    ) -> None:
        self._desk = desk
        self._resolve = resolve
        self._recovered = recovered

    async def preview(self, args: BracketPreviewInput) -> OrderPreview:
        """Resolve, check every leg, what-if the entry and persist the bracket; nothing is placed."""
        desk = self._desk
        ctx = desk.call_context()
        desk.require_preview_enabled(ctx)
        for order_type, limit_price, stop_price in (
            ("limit", args.limit_price, None),
            ("limit", args.take_profit_price, None),
            ("stop", None, args.stop_loss_price),
        ):
            raise_refusal(
                check_ticket_shape(
                    quantity=args.quantity,
                    order_type=order_type,
                    limit_price=limit_price,
                    stop_price=stop_price,
                    trailing_amount=None,
                    trailing_percent=None,
                )
            )
        check_bracket_prices(args)
        await self._recovered()
        contract = await self._contract(args)
        if contract.currency is not None and contract.currency != args.currency:
            raise GatewayError(
                ErrorCode.ORDER_VALIDATION_FAILED,
                f"Contract {contract.contract_id} trades in {contract.currency}, not {args.currency}.",
            )
        parent = OrderTicket(
            account_id=args.account_id,
            contract_id=contract.contract_id,
            symbol=contract.symbol,
            asset_class=contract.asset_class,
            exchange=args.exchange or "SMART",
            currency=args.currency,
            side=args.side,
            quantity=args.quantity,
            order_type="limit",
            limit_price=args.limit_price,
            time_in_force=args.time_in_force,
        )
        exit_side = "sell" if args.side == "buy" else "buy"
        take_profit = parent.model_copy(update={"side": exit_side, "limit_price": args.take_profit_price})
        stop_loss = parent.model_copy(
            update={"side": exit_side, "order_type": "stop", "limit_price": None, "stop_price": args.stop_loss_price}
        )
        legs = [parent, take_profit, stop_loss]
        policy = desk.config.risk_policy(desk.config.orders.preview_policy_id) or DEFAULT_PREVIEW_POLICY
        quote = await desk.quote(parent.contract_id) if any(needs_quote(t, policy) for t in legs) else None
        for leg in legs:
            raise_refusal(check_risk(leg, policy, stage="preview", quote=quote))
        what_if = await desk.backend().what_if(parent)
        if what_if.error:
            raise GatewayError(
                ErrorCode.ORDER_BROKER_WOULD_REJECT,
                "The broker's what-if rejects the entry order (untrusted broker text): "
                + what_if.error[:BROKER_TEXT_LIMIT],
                details={"broker_text": what_if.error[:BROKER_TEXT_LIMIT]},
            )
        now = desk.clock()
        notional = worst_notional([order_notional(leg, quote, policy) for leg in legs])
        preview = OrderPreview(
            preview_id=f"pv-{uuid.uuid4().hex}",
            account_id=args.account_id,
            ticket=parent,
            fingerprint="",
            kind="bracket",
            take_profit=take_profit,
            stop_loss=stop_loss,
            risk_policy_id=policy.policy_id,
            reference_price=reference_price(quote),
            estimated_cost=Money(amount=notional, currency=parent.currency) if notional is not None else None,
            estimated_commission=what_if.commission,
            estimated_total=what_if.total,
            initial_margin_change=what_if.initial_margin_change,
            maintenance_margin_change=what_if.maintenance_margin_change,
            equity_with_loan_after=what_if.equity_with_loan_after,
            warnings=[text[:BROKER_TEXT_LIMIT] for text in what_if.warnings],
            created_by=ctx.principal.subject,
            created_at=now,
            expires_at=now + timedelta(seconds=desk.config.orders.preview_ttl_seconds),
            audit_event_id=ctx.audit_event_id,
        )
        preview = preview.model_copy(update={"fingerprint": preview.order_fingerprint()})
        await desk.run(lambda: desk.store.save_preview(preview, ctx.principal.kind))
        return preview

    async def legs(self, account_id: str, parent_order_id: str) -> list[PlacedLeg]:
        """The legs of a bracket this gateway placed for this account, found by its parent's broker order id.

        Raises:
            GatewayError: `INPUT_UNKNOWN_ORDER` when no bracket of this account has that parent.
        """
        desk = self._desk
        result = await desk.run(lambda: desk.store.bracket_result(account_id, parent_order_id))
        if result is None:
            raise GatewayError(
                ErrorCode.INPUT_UNKNOWN_ORDER,
                f"No bracket with parent order {parent_order_id!r} was placed through this gateway for this account.",
            )
        return [PlacedLeg.model_validate(leg) for leg in result["legs"]]

    async def _contract(self, args: BracketPreviewInput) -> ContractCandidate:
        if args.contract_id is not None:
            return await self._desk.backend().contract(args.contract_id)
        if args.symbol is None:  # the input model requires one of the two; checked, not asserted
            raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, "Pass a symbol or a contract id.")
        return await self._resolve(ContractQueryInput(query=args.symbol, currency=args.currency))
