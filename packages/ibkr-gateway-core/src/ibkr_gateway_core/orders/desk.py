"""The order desk: one façade over previews, approvals, paper and live writes, kill switch and limits.

The Gateway hands every order operation to one desk, opened on the first order call (never by
read-only commands). Each part gathers state, asks the pure gates in `gates.py` in their documented
order, and raises the first refusal as a `GatewayError`; the Gateway audits it. The parts:

- `previews`: resolve, check and what-if an order; nothing is placed.
- `brackets` and `modifications`: the previews of a bracket and of a change to a working order; their
  approvals and keyed submits are those of any order, bound to the kind of preview.
- `approvals`: approve a preview once, list and revoke approvals.
- `keyed_writes`: idempotent submits and cancels with a durable write-ahead record, and recovery.
- `paper_desk` and `live_desk`: the gates of each mode; the live limits and reconciliation.
- `kill_switch`: the persisted live kill switch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Final

from ..audit.log import AuditLog
from ..backend import Backend
from ..config import GatewayConfig
from ..models import BrokerAccount, ContractCandidate
from ..requests import AccountInput, ContractQueryInput, NoInput
from ._services import TERMINAL_STATUSES as TERMINAL_STATUSES
from ._services import DeskServices
from .approvals import Approvals
from .brackets import Brackets
from .keyed_writes import KeyedWrites
from .kill_switch import KillSwitch
from .live_desk import LiveDesk
from .models import (
    ApprovalRecord,
    KillSwitchState,
    LimitsStatus,
    OrderLifecycle,
    OrderPreview,
    PreviewDenial,
    PreviewEntry,
    ReconcileReport,
)
from .modifications import Modifications
from .paper_desk import PaperDesk
from .previews import Previews
from .requests import (
    ApprovalCreateInput,
    ApprovalListInput,
    ApprovalRevokeInput,
    BracketPreviewInput,
    KillSwitchChangeInput,
    ModifyPreviewInput,
    OrderCancelInput,
    OrderPreviewInput,
    OrderSubmitInput,
    PreviewDenyInput,
    PreviewListInput,
)
from .store import OrderStore


class OrderDesk:
    """Every order operation of one Gateway, over the order store in the state database."""

    def __init__(
        self,
        config: GatewayConfig,
        store: OrderStore,
        audit: AuditLog,
        *,
        backend: Callable[[], Backend],
        accounts: Callable[[], Awaitable[list[BrokerAccount]]],
        resolve: Callable[[ContractQueryInput], Awaitable[ContractCandidate]],
        clock: Callable[[], datetime],
        session_id: str,
    ) -> None:
        self.config = config
        self.store = store
        services = DeskServices(
            config, store, audit, backend=backend, accounts=accounts, clock=clock, session_id=session_id
        )
        self._approvals = Approvals(services)
        self._writes = KeyedWrites(services, self._approvals)
        self._previews = Previews(services, resolve=resolve, recovered=self._writes.ensure_recovered)
        self._paper = PaperDesk(services, self._writes)
        self._kill_switch = KillSwitch(services)
        self._live = LiveDesk(services, self._writes, self._kill_switch)
        self._brackets = Brackets(services, resolve=resolve, recovered=self._writes.ensure_recovered)
        self._modifications = Modifications(services)

    def close(self) -> None:
        """Close the store's connection."""
        self.store.close()

    async def preview(self, args: OrderPreviewInput) -> OrderPreview:
        """Resolve, check, what-if and persist one order; nothing is placed."""
        return await self._previews.preview(args)

    async def create_approval(self, args: ApprovalCreateInput) -> ApprovalRecord:
        """Approve one unexpired preview for its account, once."""
        return await self._approvals.create_approval(args)

    async def list_approvals(self, args: ApprovalListInput) -> list[ApprovalRecord]:
        """Approvals, newest first; unused ones past their expiry show as `expired`."""
        return await self._approvals.list_approvals(args)

    async def list_previews(self, args: PreviewListInput) -> list[PreviewEntry]:
        """Previews, newest first, with their status."""
        return await self._approvals.list_previews(args)

    async def deny_preview(self, args: PreviewDenyInput) -> PreviewDenial:
        """Deny a preview; it can never be approved afterwards."""
        return await self._approvals.deny_preview(args)

    async def revoke_approval(self, args: ApprovalRevokeInput) -> ApprovalRecord:
        """Revoke an unused approval."""
        return await self._approvals.revoke_approval(args)

    async def paper_submit(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send the approved preview's order to a paper account through the broker's writer."""
        return await self._paper.paper_submit(args)

    async def paper_cancel(self, args: OrderCancelInput) -> OrderLifecycle:
        """Cancel an order of a paper account."""
        return await self._paper.paper_cancel(args)

    async def live_submit(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send the approved preview's order through the live gate stack and the chosen live writer."""
        return await self._live.live_submit(args)

    async def live_cancel(self, args: OrderCancelInput) -> OrderLifecycle:
        """Cancel a live order; the kill switch never blocks a cancel."""
        return await self._live.live_cancel(args)

    async def preview_bracket(self, args: BracketPreviewInput) -> OrderPreview:
        """Resolve, check every leg, what-if the entry and persist a bracket as one preview."""
        return await self._brackets.preview(args)

    async def paper_bracket_submit(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send an approved bracket to a paper account: its three legs in one placement."""
        return await self._paper.paper_submit(args, kind="bracket")

    async def live_bracket_submit(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send an approved bracket through the live gate stack; every leg passes the live risk checks."""
        return await self._live.live_submit(args, kind="bracket")

    async def paper_bracket_cancel(self, args: OrderCancelInput) -> OrderLifecycle:
        """Cancel every leg of a paper bracket this gateway placed, found by its parent's broker order id."""
        return await self._paper.paper_cancel(
            args, legs=lambda: self._brackets.legs(args.account_id, args.broker_order_id)
        )

    async def live_bracket_cancel(self, args: OrderCancelInput) -> OrderLifecycle:
        """Cancel every leg of a live bracket this gateway placed; the kill switch never blocks a cancel."""
        return await self._live.live_cancel(
            args, legs=lambda: self._brackets.legs(args.account_id, args.broker_order_id)
        )

    async def preview_modify(self, args: ModifyPreviewInput) -> OrderPreview:
        """Read a working order, apply the changes, check and persist the modification; nothing is sent."""
        return await self._modifications.preview(args)

    async def paper_modify(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send an approved modification of a paper account's working order."""
        return await self._paper.paper_submit(args, kind="modify", preview_check=self._modifications.still_working)

    async def live_modify(self, args: OrderSubmitInput) -> OrderLifecycle:
        """Send an approved modification through the live gate stack; the changed order passes the live checks."""
        return await self._live.live_submit(args, kind="modify", preview_check=self._modifications.still_working)

    async def kill_switch_status(self, args: NoInput) -> KillSwitchState:
        """The persisted kill switch."""
        return await self._kill_switch.status(args)

    async def kill_switch_open(self, args: KillSwitchChangeInput) -> KillSwitchState:
        """Open the kill switch: the operator only."""
        return await self._kill_switch.open(args)

    async def kill_switch_close(self, args: KillSwitchChangeInput) -> KillSwitchState:
        """Close the kill switch and, when configured, cancel the working live orders the gateway tracks."""
        return await self._kill_switch.close(args)

    async def limits_status(self, args: AccountInput) -> LimitsStatus:
        """Used and remaining budgets of the live policy for one account."""
        return await self._live.limits_status(args)

    async def reconcile(self, args: NoInput) -> ReconcileReport:
        """Settle unknown writes by cOID, then poll every tracked live order; each change is audited."""
        return await self._live.reconcile(args)


ORDER_HANDLERS: Final[Mapping[str, str]] = {
    "preview_order": "preview",
    "create_approval": "create_approval",
    "list_approvals": "list_approvals",
    "revoke_approval": "revoke_approval",
    "list_previews": "list_previews",
    "deny_preview": "deny_preview",
    "submit_paper_order": "paper_submit",
    "cancel_paper_order": "paper_cancel",
    "submit_live_order": "live_submit",
    "cancel_live_order": "live_cancel",
    "kill_switch_status": "kill_switch_status",
    "open_kill_switch": "kill_switch_open",
    "close_kill_switch": "kill_switch_close",
    "limits_status": "limits_status",
    "reconcile_orders": "reconcile",
    "preview_bracket_order": "preview_bracket",
    "submit_paper_bracket_order": "paper_bracket_submit",
    "submit_live_bracket_order": "live_bracket_submit",
    "cancel_paper_bracket_order": "paper_bracket_cancel",
    "cancel_live_bracket_order": "live_bracket_cancel",
    "preview_order_modify": "preview_modify",
    "modify_paper_order": "paper_modify",
    "modify_live_order": "live_modify",
}
"""Registry operation name → `OrderDesk` method."""


def order_handlers(desk: Callable[[], OrderDesk]) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """The Gateway's handlers for the order operations, each opening the desk on first use."""

    def bind(method: str) -> Callable[[Any], Awaitable[Any]]:
        async def handler(args: Any) -> Any:
            return await getattr(desk(), method)(args)

        return handler

    return {name: bind(method) for name, method in ORDER_HANDLERS.items()}
