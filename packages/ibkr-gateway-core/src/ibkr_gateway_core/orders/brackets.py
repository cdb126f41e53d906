"""Bracket previews: a limit entry and its two exits, checked, priced and kept as one ticket.

A bracket is one preview with one fingerprint over its three legs, so one approval allows the whole
and nothing less: the parent (a limit order on the caller's side), a take-profit (a limit order on
the other side) and a stop-loss (a stop order on the other side). Every leg passes the preview
policy; the notional kept for the budgets is the worst leg's, as only one exit can ever fill. The
submit and the cancel of the group go through the keyed writes like any order.
"""

from __future__ import annotations

from ..errors import ErrorCode, GatewayError
from ._services import raise_refusal
from .gates import check_risk, check_ticket_shape, needs_quote, order_notional
from .keyed_writes import worst_notional
from .models import OrderPreview
from .previews import NewOrderPreviews, broker_what_if, keep_preview, preview_policy
from .requests import BracketPreviewInput
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


class Brackets(NewOrderPreviews):
    """The bracket preview of the order desk, and the legs of a bracket it placed."""

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
        contract = await self._contract(args)
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
        policy = preview_policy(desk)
        quote = await desk.quote(parent.contract_id) if any(needs_quote(t, policy) for t in legs) else None
        for leg in legs:
            raise_refusal(check_risk(leg, policy, stage="preview", quote=quote))
        what_if = await broker_what_if(desk, parent, what="the entry order")
        notional = worst_notional([order_notional(leg, quote, policy) for leg in legs])
        return await keep_preview(
            desk,
            ctx,
            parent,
            policy=policy,
            quote=quote,
            notional=notional,
            what_if=what_if,
            kind="bracket",
            take_profit=take_profit,
            stop_loss=stop_loss,
        )

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
