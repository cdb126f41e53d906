"""Order modifications: preview a change to a working order, and check the order still works before it is sent.

A modification is its own preview, approval and keyed submit: the preview reads the order from the
broker (in this account, in this broker session), applies the changes (price, quantity, time in
force) and binds the approval to the modified ticket and the order's id. Orders the broker does not
show this gateway, or shows in another account, are unknown; finished orders cannot be modified.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from ..errors import ErrorCode, GatewayError
from ..models import OrderRecord
from ._services import TERMINAL_STATUSES, DeskServices, raise_refusal
from .gates import check_risk, check_ticket_shape, needs_quote, order_notional
from .models import OrderPreview
from .previews import keep_preview, preview_policy
from .requests import ModifyPreviewInput
from .tickets import OrderTicket, OrderType, TimeInForce

MODIFIABLE_TYPES: Final[Mapping[str, OrderType]] = {
    "limit": "limit",
    "market": "market",
    "stop": "stop",
    "stop_limit": "stop_limit",
}
"""Broker order types (as the backend names them) whose price, quantity and time in force can be changed here."""

_TIFS: Final[Mapping[str, TimeInForce]] = {"day": "day", "gtc": "gtc"}


def _not_modifiable(order: OrderRecord, why: str) -> GatewayError:
    return GatewayError(
        ErrorCode.ORDER_NOT_MODIFIABLE,
        f"Order {order.broker_order_id} cannot be modified: {why}.",
        details={"broker_order_id": order.broker_order_id, "status": order.status},
    )


def _invalid(message: str, field: str) -> GatewayError:
    return GatewayError(ErrorCode.ORDER_VALIDATION_FAILED, message, details={"field": field})


class Modifications:
    """The modify preview of the order desk, and the check before a modification is sent."""

    def __init__(self, desk: DeskServices) -> None:
        self._desk = desk

    async def preview(self, args: ModifyPreviewInput) -> OrderPreview:
        """Read the working order, apply the changes, check them and persist the modification; nothing is sent."""
        desk = self._desk
        ctx = desk.call_context()
        desk.require_preview_enabled(ctx)
        order = await self.working_order(args.account_id, args.broker_order_id)
        original = await self._ticket(order)
        changed = self._apply(original, args, order)
        raise_refusal(
            check_ticket_shape(
                quantity=changed.quantity,
                order_type=changed.order_type,
                limit_price=changed.limit_price,
                stop_price=changed.stop_price,
                trailing_amount=None,
                trailing_percent=None,
            )
        )
        await self._check_bracket(order.broker_order_id, changed)
        policy = preview_policy(desk)
        quote = await desk.quote(changed.contract_id) if needs_quote(changed, policy) else None
        raise_refusal(check_risk(changed, policy, stage="preview", quote=quote))
        return await keep_preview(
            desk,
            ctx,
            changed,
            policy=policy,
            quote=quote,
            notional=order_notional(changed, quote, policy),
            what_if=None,
            kind="modify",
            broker_order_id=order.broker_order_id,
            original=original,
        )

    async def still_working(self, preview: OrderPreview) -> None:
        """Before a modification is sent: its order is still working, in the preview's account.

        Raises:
            GatewayError: `INPUT_UNKNOWN_ORDER` or `ORDER_NOT_MODIFIABLE`.
        """
        if preview.broker_order_id is None:  # an explicit check: asserts vanish under python -O
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_ORDER, "This preview names no order to modify.")
        await self.working_order(preview.account_id, preview.broker_order_id)

    async def working_order(self, account_id: str, broker_order_id: str) -> OrderRecord:
        """The order as the broker shows it in this account, if it is still working.

        Raises:
            GatewayError: `INPUT_UNKNOWN_ORDER` for an order the broker does not show in this account;
                `ORDER_NOT_MODIFIABLE` for a finished one.
        """
        order = await self._desk.backend().order_status(account_id, broker_order_id)
        if order.account_id != account_id:
            raise GatewayError(
                ErrorCode.INPUT_UNKNOWN_ORDER, f"The broker knows no order {broker_order_id!r} in this account."
            )
        if order.status in TERMINAL_STATUSES or order.status in ("pending_cancel", "unknown"):
            raise _not_modifiable(order, f"it is {order.status}")
        return order

    async def _check_bracket(self, broker_order_id: str, changed: OrderTicket) -> None:
        """A leg of a bracket this gateway placed keeps the bracket's price order with its working siblings.

        While the entry works: stop-loss < entry < take-profit for a buy (the other way round for a sell);
        once it has filled, the stop may pass the entry (to lock a gain) but stays on its side of the take-profit.

        Raises:
            GatewayError: `ORDER_BRACKET_PRICES_INVALID`.
        """
        desk = self._desk
        group = await desk.run(lambda: desk.store.bracket_with_leg(changed.account_id, broker_order_id))
        if group is None:
            return
        prices: dict[str, Decimal] = {}
        for leg in group["legs"]:
            leg_id, role = leg.get("broker_order_id"), str(leg.get("role"))
            if leg_id == broker_order_id:
                price = changed.stop_price if role == "stop_loss" else changed.limit_price
            elif leg_id is not None:
                try:
                    sibling = await desk.backend().order_status(changed.account_id, str(leg_id))
                except GatewayError:
                    continue
                if sibling.status in TERMINAL_STATUSES:
                    continue
                price = sibling.stop_price if role == "stop_loss" else sibling.limit_price
            else:
                continue
            if price is not None:
                prices[role] = price
        mine = next(str(leg.get("role")) for leg in group["legs"] if leg.get("broker_order_id") == broker_order_id)
        buy = (changed.side == "buy") == (mine == "parent")
        order = ["stop_loss", "parent", "take_profit"] if buy else ["take_profit", "parent", "stop_loss"]
        known = [(role, prices[role]) for role in order if role in prices]
        if any(low[1] >= high[1] for low, high in zip(known, known[1:], strict=False)):
            shown = ", ".join(f"{role} {price}" for role, price in known)
            raise GatewayError(
                ErrorCode.ORDER_BRACKET_PRICES_INVALID,
                f"The change breaks the bracket's price order ({' < '.join(order)} for its working legs): {shown}.",
                details={role: str(price) for role, price in known},
            )

    async def _ticket(self, order: OrderRecord) -> OrderTicket:
        """The order as a ticket, from the broker's view of it and its contract."""
        order_type = MODIFIABLE_TYPES.get(order.order_type or "")
        if order_type is None:
            raise _not_modifiable(order, f"its order type {order.order_type!r} is not one this gateway modifies")
        tif = _TIFS.get((order.time_in_force or "").strip().lower())
        if tif is None:
            raise _not_modifiable(order, f"its time in force {order.time_in_force!r} is neither day nor gtc")
        if order.contract_id is None or order.side is None or order.quantity is None:
            raise GatewayError(
                ErrorCode.BROKER_RESPONSE_INVALID, "The broker's view of the order lacks its contract, side or size."
            )
        contract = await self._desk.backend().contract(order.contract_id)
        return OrderTicket(
            account_id=order.account_id,
            contract_id=order.contract_id,
            symbol=contract.symbol,
            asset_class=contract.asset_class,
            currency=contract.currency or "USD",
            side=order.side,
            quantity=order.quantity,
            order_type=order_type,
            limit_price=order.limit_price if order_type in ("limit", "stop_limit") else None,
            stop_price=order.stop_price if order_type in ("stop", "stop_limit") else None,
            time_in_force=tif,
        )

    def _apply(self, original: OrderTicket, args: ModifyPreviewInput, order: OrderRecord) -> OrderTicket:
        """The original ticket with the requested changes; a change the order type cannot take is refused."""
        if args.limit_price is not None and original.order_type not in ("limit", "stop_limit"):
            raise _invalid(f"A {original.order_type} order has no limit price to change.", "limit_price")
        if args.stop_price is not None and original.order_type not in ("stop", "stop_limit"):
            raise _invalid(f"A {original.order_type} order has no stop price to change.", "stop_price")
        filled = order.filled_quantity or Decimal(0)
        if args.quantity is not None and args.quantity.is_finite() and 0 < args.quantity <= filled:
            raise GatewayError(
                ErrorCode.ORDER_QUANTITY_INVALID,
                f"Quantity {args.quantity} is not above the {filled} already filled.",
                details={"quantity": str(args.quantity), "filled": str(filled)},
            )
        changes: dict[str, object] = {}
        if args.quantity is not None:
            changes["quantity"] = args.quantity
        if args.limit_price is not None:
            changes["limit_price"] = args.limit_price
        if args.stop_price is not None:
            changes["stop_price"] = args.stop_price
        if args.time_in_force is not None:
            changes["time_in_force"] = args.time_in_force
        changed = original.model_copy(update=changes)
        if changed == original:
            raise _invalid("The modification changes nothing: every value equals the working order's.", "quantity")
        return changed
