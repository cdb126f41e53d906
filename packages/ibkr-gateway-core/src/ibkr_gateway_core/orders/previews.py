"""Order previews: resolve the contract, check the ticket and the preview policy, ask the broker's what-if.

A preview places nothing; it is persisted so that an approval can name it and a submit can send it.
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
from .models import OrderPreview
from .requests import OrderPreviewInput
from .risk import DEFAULT_PREVIEW_POLICY
from .tickets import OrderTicket


class Previews:
    """The preview step of the order desk."""

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
        await self._recovered()
        contract = await self._contract(args)
        if contract.currency is not None and contract.currency != args.currency:
            raise GatewayError(
                ErrorCode.ORDER_VALIDATION_FAILED,
                f"Contract {contract.contract_id} trades in {contract.currency}, not {args.currency}.",
            )
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
        policy = desk.config.risk_policy(desk.config.orders.preview_policy_id) or DEFAULT_PREVIEW_POLICY
        quote = await desk.quote(ticket.contract_id) if needs_quote(ticket, policy) else None
        raise_refusal(check_risk(ticket, policy, stage="preview", quote=quote))
        what_if = await desk.backend().what_if(ticket)
        if what_if.error:
            raise GatewayError(
                ErrorCode.ORDER_BROKER_WOULD_REJECT,
                "The broker's what-if rejects this order (untrusted broker text): " + what_if.error[:BROKER_TEXT_LIMIT],
                details={"broker_text": what_if.error[:BROKER_TEXT_LIMIT]},
            )
        now = desk.clock()
        notional = order_notional(ticket, quote, policy)
        preview = OrderPreview(
            preview_id=f"pv-{uuid.uuid4().hex}",
            account_id=args.account_id,
            ticket=ticket,
            fingerprint=ticket.fingerprint(),
            risk_policy_id=policy.policy_id,
            reference_price=reference_price(quote),
            estimated_cost=Money(amount=notional, currency=ticket.currency) if notional is not None else what_if.amount,
            estimated_commission=what_if.commission,
            estimated_total=what_if.total,
            initial_margin_change=what_if.initial_margin_change,
            maintenance_margin_change=what_if.maintenance_margin_change,
            equity_with_loan_after=what_if.equity_with_loan_after,
            warnings=[text[:BROKER_TEXT_LIMIT] for text in what_if.warnings],
            created_by=ctx.principal.subject,
            created_by_issuer=ctx.principal.issuer,
            created_at=now,
            expires_at=now + timedelta(seconds=desk.config.orders.preview_ttl_seconds),
            audit_event_id=ctx.audit_event_id,
        )
        await desk.run(lambda: desk.store.save_preview(preview, ctx.principal.kind))
        return preview

    async def _contract(self, args: OrderPreviewInput) -> ContractCandidate:
        if args.contract_id is not None:
            return await self._desk.backend().contract(args.contract_id)
        if args.symbol is None:
            raise GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, "Pass exactly one of symbol and contract_id.")
        try:
            return await self._resolve(ContractQueryInput(query=args.symbol, currency=args.currency))
        except GatewayError as exc:
            if exc.code is not ErrorCode.INPUT_UNKNOWN_CONTRACT:
                raise
            # The symbol may trade in another currency only: that is a wrong order field, and the
            # currency check of `preview` refuses it with ORDER_VALIDATION_FAILED naming both currencies.
            try:
                other = await self._resolve(ContractQueryInput(query=args.symbol))
            except GatewayError:
                raise exc from None
            if other.currency is None or other.currency == args.currency:
                raise
            return other
