"""What every part of the order desk shares: its collaborators, the current call, and small helpers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

import anyio

from ..audit.log import AuditEvent, AuditLog
from ..backend import Backend
from ..call_context import CURRENT_CALL, CallContext, Switch
from ..config import GatewayConfig
from ..errors import ErrorCode, GatewayError
from ..models import BrokerAccount, MarketSnapshot, OrderStatus
from .gates import Decision, check_preview_enabled
from .store import OrderStore
from .tickets import OrderWriter
from .writers import LocalCandidateWriter, RefusingWriter

TERMINAL_STATUSES: Final = frozenset({"filled", "cancelled", "inactive"})
"""Order statuses after which nothing more happens; such orders leave the live backlog."""

BROKER_TEXT_LIMIT: Final = 500
"""Untrusted broker text is cut to this many characters before it reaches a message."""


def broker_status(text: str | None, *, accepted: bool) -> OrderStatus:
    """The order status a broker's cancel answer stands for."""
    word = (text or "").replace(" ", "").replace("_", "").lower()
    if word in ("cancelled", "canceled", "apicancelled", "localcandidate"):
        return "cancelled"  # a local candidate was never sent: withdrawing it cancels it
    if word == "pendingcancel":
        return "pending_cancel"
    if word == "filled":
        return "filled"
    if word in ("inactive", "rejected"):
        return "inactive"
    return "pending_cancel" if accepted else "unknown"


def raise_refusal(decision: Decision) -> None:
    """Raise a gate's refusal as a `GatewayError`; an allowing decision passes."""
    if not decision.allowed:
        code = decision.code if decision.code is not None else ErrorCode.INTERNAL_ERROR  # a refusal always refuses
        raise GatewayError(code, decision.message, details=dict(decision.details))


def request_hash(flow: str, request: dict[str, object]) -> str:
    """A stable digest of a keyed request, so a key reused for another request is refused."""
    text = json.dumps({"flow": flow, **request}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_operator(ctx: CallContext) -> bool:
    """Whether the caller is the operator at the CLI, whose per-call switches replace the config's."""
    return ctx.principal.kind == "local_operator"


class DeskServices:
    """The collaborators of one order desk, shared by its parts."""

    def __init__(
        self,
        config: GatewayConfig,
        store: OrderStore,
        audit: AuditLog,
        *,
        backend: Callable[[], Backend],
        accounts: Callable[[], Awaitable[list[BrokerAccount]]],
        clock: Callable[[], datetime],
        session_id: str,
    ) -> None:
        self.config = config
        self.store = store
        self.backend = backend
        self.clock = clock
        self._audit = audit
        self._accounts = accounts
        self._session_id = session_id
        self.owner = session_id
        """This gateway instance among replicas: the owner of its reconciliation claims."""

    def call_context(self) -> CallContext:
        """The context of the Gateway call being served."""
        ctx = CURRENT_CALL.get()
        if ctx is None:
            raise GatewayError(ErrorCode.INTERNAL_ERROR, "Order operations run only inside Gateway.call.")
        return ctx

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run a blocking store call in a worker thread."""
        return await anyio.to_thread.run_sync(fn)

    async def account(self, account_id: str) -> BrokerAccount | None:
        """The visible account with this id, if any."""
        return next((a for a in await self._accounts() if a.account_id == account_id), None)

    async def quote(self, contract_id: int) -> MarketSnapshot | None:
        """A market snapshot, or None when the broker has no usable one."""
        try:
            return await self.backend().market_snapshot(contract_id)
        except GatewayError as exc:
            if exc.family in ("upstream", "input"):
                return None
            raise

    def require_preview_enabled(self, ctx: CallContext) -> None:
        """Refuse a preview unless enabled: by the operator's per-call switch, or for agents by the config.

        One rule for single orders, brackets and modifications.
        """
        enabled = ctx.has(Switch.ENABLE_PREVIEW) if is_operator(ctx) else self.config.orders.preview_enabled
        raise_refusal(check_preview_enabled(enabled))

    def writer(self, name: str) -> OrderWriter:
        """The order writer a record or call names."""
        if name == "local-candidate":
            return LocalCandidateWriter()
        if name == "refusing":
            return RefusingWriter()
        return self.backend().order_writer()

    async def audit_system(self, event_type: str, metadata: dict[str, Any], account_id: str | None) -> None:
        """Audit a side effect of the desk (recovery, lifecycle change, kill switch change) as its own event."""
        ctx = CURRENT_CALL.get()
        principal = ctx.principal if ctx is not None else None
        await self._audit.append(
            AuditEvent(
                event_type=event_type,
                timestamp=self.clock(),
                principal_kind=principal.kind if principal is not None else "system",
                principal_subject=principal.subject if principal is not None else "order-desk",
                operation="order_desk",
                tool_name=event_type,
                decision="allow",
                result_status="completed",
                account_id_hash=self._audit.account_hash(account_id) if account_id else None,
                request_id=ctx.request_id if ctx is not None else None,
                session_id=self._session_id,
                metadata=metadata,
            )
        )
