"""Tell a person a preview waits: a generic JSON webhook and an ntfy-compatible topic.

The desk watches the state database; each preview that becomes pending while it runs is announced once
to every configured target, with a link to the desk and never the account id in clear (only its last
four characters). Each attempt is audited (`desk_notification_sent` or `desk_notification_failed`);
a failed one is not retried, since the page itself shows every pending preview.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from ibkr_gateway_core.config import DeskConfig
from ibkr_gateway_core.orders import OrderPreview

logger = logging.getLogger(__name__)


def masked_account(account_id: str) -> str:
    """An account id with all but its last four characters hidden."""
    return "••••" + account_id[-4:] if len(account_id) > 4 else "••••"


def notification(preview: OrderPreview, agent_kind: str, link: str) -> dict[str, Any]:
    """The JSON body of one webhook notification."""
    ticket = preview.ticket
    return {
        "event": "preview_pending",
        "preview_id": preview.preview_id,
        "fingerprint": preview.fingerprint,
        "account": masked_account(preview.account_id),
        "symbol": ticket.symbol,
        "side": ticket.side,
        "quantity": str(ticket.quantity),
        "order_type": ticket.order_type,
        "limit_price": str(ticket.limit_price) if ticket.limit_price is not None else None,
        "currency": ticket.currency,
        "agent": preview.created_by,
        "agent_kind": agent_kind,
        "created_at": preview.created_at.isoformat(),
        "expires_at": preview.expires_at.isoformat(),
        "url": link,
    }


def summary(preview: OrderPreview) -> str:
    """One line a person reads on a phone: side, quantity, symbol, type and price."""
    t = preview.ticket
    price = f" @ {t.limit_price}" if t.limit_price is not None else ""
    return f"{t.side.upper()} {t.quantity} {t.symbol} {t.order_type}{price} ({t.currency})"


class Notifier:
    """Sends the notifications of one desk; `record` audits each attempt."""

    def __init__(
        self,
        desk: DeskConfig,
        record: Callable[[str, dict[str, Any]], Awaitable[None]],
        *,
        http: httpx2.AsyncClient | None = None,
    ) -> None:
        self._webhook = desk.notify_webhook_url
        self._ntfy = desk.notify_ntfy_url
        self._record = record
        self._http = http or httpx2.AsyncClient(timeout=desk.notify_timeout_seconds, follow_redirects=False)

    @property
    def enabled(self) -> bool:
        """True when any target is configured."""
        return self._webhook is not None or self._ntfy is not None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def announce(self, preview: OrderPreview, agent_kind: str, link: str) -> None:
        """Send one preview to every target; never raises."""
        if self._webhook is not None:
            await self._send("webhook", self._webhook, preview, json=notification(preview, agent_kind, link))
        if self._ntfy is not None:
            headers = {
                "Title": "Order waiting for approval",
                "Click": link,
                "Tags": "money_with_wings",
                "Priority": "high",
            }
            text = f"{summary(preview)} from {preview.created_by}. Review: {link}"
            await self._send("ntfy", self._ntfy, preview, content=text.encode(), headers=headers)

    async def _send(
        self,
        target: str,
        url: str,
        preview: OrderPreview,
        *,
        json: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            answer = await self._http.post(url, json=json, content=content, headers=headers)
            status = answer.status_code
        except httpx2.HTTPError as exc:
            logger.warning("desk notification to the %s target failed: %s", target, type(exc).__name__)
            status = None
        ok = status is not None and 200 <= status < 300
        event = "desk_notification_sent" if ok else "desk_notification_failed"
        await self._record(event, {"target": target, "preview_id": preview.preview_id, "http_status": status})
