"""Paper orders: the paper gates, then a keyed submit or cancel through the broker's writer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..call_context import CallContext, Switch
from ._services import DeskServices, is_operator, raise_refusal
from .gates import check_paper_account, check_paper_enabled, check_risk, is_resting, order_notional
from .keyed_writes import KeyedWrites, PreviewCheck, RiskOutcome
from .models import OrderLifecycle, PreviewKind
from .previews import preview_policy
from .requests import OrderCancelInput, OrderSubmitInput
from .tickets import OrderTicket, PlacedLeg

PAPER_WRITER = "client-portal"
"""Paper orders always go to the broker's own paper account."""


class PaperDesk:
    """The paper order operations of the order desk."""

    def __init__(self, desk: DeskServices, writes: KeyedWrites) -> None:
        self._desk = desk
        self._writes = writes

    async def paper_submit(
        self, args: OrderSubmitInput, *, kind: PreviewKind = "order", preview_check: PreviewCheck | None = None
    ) -> OrderLifecycle:
        """Send the approved preview's order (bracket, modification) to a paper account through the broker's writer."""
        ctx = await self._gates(args.account_id)
        desk = self._desk
        policy = preview_policy(desk)

        async def paper_check(ticket: OrderTicket) -> RiskOutcome:
            """The preview policy again, on a fresh quote: the price may have moved since the preview.

            The quote is read even when the policy does not need it: it tells whether a limit rests on its own
            side of the market, which the warning policy needs (as on the live path).
            """
            quote = await desk.quote(ticket.contract_id)
            raise_refusal(check_risk(ticket, policy, stage="preview", quote=quote))
            return RiskOutcome(order_notional(ticket, quote, policy), None, is_resting(ticket, quote))

        return await self._writes.submit(
            ctx,
            args,
            mode="paper",
            writer_name=PAPER_WRITER,
            risk_check=paper_check,
            kind=kind,
            preview_check=preview_check,
        )

    async def paper_cancel(
        self, args: OrderCancelInput, *, legs: Callable[[], Awaitable[list[PlacedLeg]]] | None = None
    ) -> OrderLifecycle:
        """Cancel an order of a paper account (with `legs`: every leg of a bracket)."""
        ctx = await self._gates(args.account_id)
        group = await legs() if legs is not None else None
        return await self._writes.cancel(ctx, args, mode="paper", writer_name=PAPER_WRITER, legs=group)

    async def _gates(self, account_id: str) -> CallContext:
        """The paper switch and a paper account, then recovery; returns the call's context."""
        ctx = self._desk.call_context()
        enabled = ctx.has(Switch.ENABLE_PAPER) if is_operator(ctx) else self._desk.config.orders.paper_enabled
        raise_refusal(check_paper_enabled(enabled))
        account = await self._desk.account(account_id)
        raise_refusal(check_paper_account(account_id, account.account_mode if account is not None else None))
        await self._writes.ensure_recovered()
        return ctx
