"""Paper orders: the paper gates, then a keyed submit or cancel through the broker's writer."""

from __future__ import annotations

from ._desk import DeskServices, is_operator, raise_refusal
from .call_context import CallContext, Switch
from .gates import check_paper_account, check_paper_enabled
from .keyed_writes import KeyedWrites
from .order_models import OrderLifecycle
from .order_requests import OrderCancelInput, OrderSubmitInput

PAPER_WRITER = "client-portal"
"""Paper orders always go to the broker's own paper account."""


class PaperDesk:
    """The paper order operations of the order desk."""

    def __init__(self, desk: DeskServices, writes: KeyedWrites) -> None:
        self._desk = desk
        self._writes = writes

    async def paper_submit(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send the approved preview's order to a paper account through the broker's writer."""
        ctx = await self._gates(args.account_id)
        return await self._writes.submit(ctx, args, mode="paper", writer_name=PAPER_WRITER, live_check=None)

    async def paper_cancel(self, args: OrderCancelInput) -> OrderLifecycle:
        """Cancel an order of a paper account."""
        ctx = await self._gates(args.account_id)
        return await self._writes.cancel(ctx, args, mode="paper", writer_name=PAPER_WRITER)

    async def _gates(self, account_id: str) -> CallContext:
        """The paper switch and a paper account, then recovery; returns the call's context."""
        ctx = self._desk.call_context()
        enabled = ctx.has(Switch.ENABLE_PAPER) if is_operator(ctx) else self._desk.config.orders.paper_enabled
        raise_refusal(check_paper_enabled(enabled))
        account = await self._desk.account(account_id)
        raise_refusal(check_paper_account(account_id, account.account_mode if account is not None else None))
        await self._writes.ensure_recovered()
        return ctx
