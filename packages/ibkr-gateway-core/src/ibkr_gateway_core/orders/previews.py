"""Order previews: resolve the contract, check the ticket and the preview policy, ask the broker's what-if.

A preview places nothing; it is persisted so that an approval can name it and a submit can send it.
The steps every kind of preview shares (single orders here, brackets and modifications in their own
modules) are the functions below: the preview policy, the contract and its currency, the broker's
what-if, and the stored `OrderPreview` with who made it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal

from ..call_context import CallContext
from ..errors import ErrorCode, GatewayError
from ..models import ContractCandidate, MarketSnapshot, Money
from ..requests import ContractQueryInput
from ._services import BROKER_TEXT_LIMIT, DeskServices, raise_refusal
from .gates import check_risk, check_ticket_shape, needs_quote, order_notional, reference_price
from .models import OrderPreview, PreviewKind
from .requests import BracketPreviewInput, OrderPreviewInput
from .risk import DEFAULT_PREVIEW_POLICY, RiskPolicy
from .tickets import OrderTicket, WhatIf

Resolve = Callable[[ContractQueryInput], Awaitable[ContractCandidate]]
"""Resolves a symbol to one contract (the read desk's `resolve_contract`)."""


def preview_policy(desk: DeskServices) -> RiskPolicy:
    """The risk policy every preview is checked against: `orders.preview_policy_id`, else the built-in one."""
    return desk.config.risk_policy(desk.config.orders.preview_policy_id) or DEFAULT_PREVIEW_POLICY


async def resolve_contract(
    desk: DeskServices, resolve: Resolve, *, contract_id: int | None, symbol: str | None, currency: str
) -> ContractCandidate:
    """The contract a new order names, by id or by symbol, trading in the order's currency.

    Raises:
        GatewayError: `INPUT_UNKNOWN_CONTRACT`; `ORDER_VALIDATION_FAILED` when it trades in another currency.
    """
    contract = await _contract(desk, resolve, contract_id=contract_id, symbol=symbol, currency=currency)
    if contract.currency is not None and contract.currency != currency:
        raise GatewayError(
            ErrorCode.ORDER_VALIDATION_FAILED,
            f"Contract {contract.contract_id} trades in {contract.currency}, not {currency}.",
        )
    return contract


async def _contract(
    desk: DeskServices, resolve: Resolve, *, contract_id: int | None, symbol: str | None, currency: str
) -> ContractCandidate:
    if contract_id is not None:
        return await desk.backend().contract(contract_id)
    if symbol is None:  # the input models require one of the two; checked, not asserted
        raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, "Pass exactly one of symbol and contract_id.")
    try:
        return await resolve(ContractQueryInput(query=symbol, currency=currency))
    except GatewayError as exc:
        if exc.code is not ErrorCode.INPUT_UNKNOWN_CONTRACT:
            raise
        # The symbol may trade in another currency only: that is a wrong order field, and the
        # currency check of `resolve_contract` refuses it with ORDER_VALIDATION_FAILED naming both currencies.
        try:
            other = await resolve(ContractQueryInput(query=symbol))
        except GatewayError:
            raise exc from None
        if other.currency is None or other.currency == currency:
            raise
        return other


async def broker_what_if(desk: DeskServices, ticket: OrderTicket, *, what: str = "this order") -> WhatIf:
    """The broker's estimate for `ticket`; a what-if the broker rejects is a refusal naming `what`.

    Raises:
        GatewayError: `ORDER_BROKER_WOULD_REJECT` with the broker's (untrusted) text.
    """
    what_if = await desk.backend().what_if(ticket)
    if what_if.error:
        raise GatewayError(
            ErrorCode.ORDER_BROKER_WOULD_REJECT,
            f"The broker's what-if rejects {what} (untrusted broker text): " + what_if.error[:BROKER_TEXT_LIMIT],
            details={"broker_text": what_if.error[:BROKER_TEXT_LIMIT]},
        )
    return what_if


async def keep_preview(
    desk: DeskServices,
    ctx: CallContext,
    ticket: OrderTicket,
    *,
    policy: RiskPolicy,
    quote: MarketSnapshot | None,
    notional: Decimal | None,
    what_if: WhatIf | None,
    kind: PreviewKind = "order",
    take_profit: OrderTicket | None = None,
    stop_loss: OrderTicket | None = None,
    broker_order_id: str | None = None,
    original: OrderTicket | None = None,
) -> OrderPreview:
    """Store and return the preview of any kind: its tickets, prices, the broker's estimate and who made it.

    The creator is the call's principal, issuer included (self-approval compares kind, issuer and subject);
    the fingerprint covers every ticket that would be sent.
    """
    now = desk.clock()
    estimate = what_if or WhatIf()  # a modification asks the broker for no estimate
    preview = OrderPreview(
        preview_id=f"pv-{uuid.uuid4().hex}",
        account_id=ticket.account_id,
        ticket=ticket,
        fingerprint="",
        kind=kind,
        take_profit=take_profit,
        stop_loss=stop_loss,
        broker_order_id=broker_order_id,
        original=original,
        risk_policy_id=policy.policy_id,
        reference_price=reference_price(quote),
        estimated_cost=Money(amount=notional, currency=ticket.currency) if notional is not None else estimate.amount,
        estimated_commission=estimate.commission,
        estimated_total=estimate.total,
        initial_margin_change=estimate.initial_margin_change,
        maintenance_margin_change=estimate.maintenance_margin_change,
        equity_with_loan_after=estimate.equity_with_loan_after,
        warnings=[text[:BROKER_TEXT_LIMIT] for text in estimate.warnings],
        created_by=ctx.principal.subject,
        created_by_issuer=ctx.principal.issuer,
        created_at=now,
        expires_at=now + timedelta(seconds=desk.config.orders.preview_ttl_seconds),
        audit_event_id=ctx.audit_event_id,
    )
    preview = preview.model_copy(update={"fingerprint": preview.order_fingerprint()})
    await desk.run(lambda: desk.store.save_preview(preview, ctx.principal.kind))
    return preview


class NewOrderPreviews:
    """What previews of new orders (single and bracket) share: the desk, the resolver, the recovery wait."""

    def __init__(
        self,
        desk: DeskServices,
        *,
        resolve: Resolve,
        recovered: Callable[[], Awaitable[None]],
    ) -> None:
        self._desk = desk
        self._resolve = resolve
        self._recovered = recovered

    async def _contract(self, args: OrderPreviewInput | BracketPreviewInput) -> ContractCandidate:
        """The order's contract in its currency, once the desk has recovered from a restart."""
        await self._recovered()
        return await resolve_contract(
            self._desk, self._resolve, contract_id=args.contract_id, symbol=args.symbol, currency=args.currency
        )


class Previews(NewOrderPreviews):
    """The preview step of the order desk."""

    async def preview(self, args: OrderPreviewInput) -> OrderPreview:
        """Resolve, check, what-if and persist one order; nothing is placed."""
        desk = self._desk
        ctx = desk.call_context()
        desk.require_preview_enabled(ctx)
        raise_refusal(
            check_ticket_shape(
                quantity=args.quantity,
                order_type=args.order_type,
                limit_price=args.limit_price,
                stop_price=args.stop_price,
                trailing_amount=args.trailing_amount,
                trailing_percent=args.trailing_percent,
            )
        )
        contract = await self._contract(args)
        ticket = OrderTicket(
            account_id=args.account_id,
            contract_id=contract.contract_id,
            symbol=contract.symbol,
            asset_class=contract.asset_class,
            exchange=args.exchange or "SMART",
            currency=args.currency,
            side=args.side,
            quantity=args.quantity,
            order_type=args.order_type,
            limit_price=args.limit_price,
            stop_price=args.stop_price,
            trailing_amount=args.trailing_amount,
            trailing_percent=args.trailing_percent,
            time_in_force=args.time_in_force,
            outside_regular_hours=args.outside_regular_hours,
        )
        policy = preview_policy(desk)
        quote = await desk.quote(ticket.contract_id) if needs_quote(ticket, policy) else None
        raise_refusal(check_risk(ticket, policy, stage="preview", quote=quote))
        what_if = await broker_what_if(desk, ticket)
        notional = order_notional(ticket, quote, policy)
        return await keep_preview(desk, ctx, ticket, policy=policy, quote=quote, notional=notional, what_if=what_if)
