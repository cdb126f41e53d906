"""The approval desk as an ASGI app: sign-in, pages, and the actions a person takes.

Every action (approve, deny, revoke, open or close the kill switch) and every read behind a page is a
`Gateway.call` with the signed-in person's `Principal`, so the core's rules decide and the audit log
records who did it. The desk itself refuses only what never reaches the door: a missing, forged or
replayed session cookie (`DESK_SESSION_INVALID`), a form without this session's CSRF token or from
another origin (`DESK_CSRF_INVALID`), and a sign-in that fails or names a subject that is not in
`auth.approvers` (`DESK_LOGIN_REFUSED`); each of those is audited through `Gateway.record_refusal`.

Who signs in as what:

- OpenID Connect: a `remote` principal with the token's `sub` and `iss`, client id `approval-desk`, and
  the desk scopes (reads, approvals, closing the kill switch). An agent with the same subject is the
  same principal, so the core refuses it approving its own preview.
- the one-time link `desk serve` prints: the `local_operator`, with the operator's scopes.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from ibkr_gateway_core.audit import AuditEvent
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.orders import OrderStore, PreviewEntry
from ibkr_gateway_core.orders.gates import check_risk, order_notional
from ibkr_gateway_core.orders.risk import DEFAULT_PREVIEW_POLICY
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import READ_ONLY, Scope
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from . import pages
from .assets import CSS, JS
from .notify import Notifier
from .oidc import OidcClient
from .sessions import COOKIE_NAME, LOGIN_COOKIE_NAME, DeskSession, DeskSessions

logger = logging.getLogger(__name__)

CLIENT_ID: Final = "approval-desk"
"""`client_id` of every principal the desk acts for, so audit rows show the desk as the surface."""

DESK_SCOPES: Final = READ_ONLY | {Scope.APPROVALS_CREATE, Scope.KILLSWITCH_CLOSE}
"""What a signed-in approver may ask the gateway for; the core still decides each call."""

ANONYMOUS: Final = Principal(kind="remote", subject="anonymous", client_id=CLIENT_ID, scopes=frozenset())
"""The caller named in the audit row of a request without a valid session."""

TTL_CHOICES: Final = (60, 300, 900, 3600)
MAX_FORM_FIELDS: Final = 16

Handler = Callable[[Request], Awaitable[Response]]


def approver_principal(subject: str, issuer: str) -> Principal:
    """The principal of an approver signed in through OpenID Connect."""
    return Principal(kind="remote", subject=subject, issuer=issuer, client_id=CLIENT_ID, scopes=DESK_SCOPES)


def operator_principal(config: GatewayConfig) -> Principal:
    """The principal of the operator signed in with the one-time local link."""
    return Principal(
        kind="local_operator", subject="local-operator", client_id=CLIENT_ID, scopes=config.operator_scopes()
    )


def session_key(config: GatewayConfig) -> bytes:
    """The cookie signing key: from `desk.session_secret_env`, else random for this process.

    Raises:
        GatewayError: `CONFIG_INVALID` when the named variable is unset or shorter than 32 bytes.
    """
    name = config.desk.session_secret_env
    if name is None:
        return secrets.token_bytes(32)
    value = os.environ.get(name, "")
    if len(value.encode()) < 32:
        raise GatewayError(
            ErrorCode.CONFIG_INVALID,
            f"The environment variable {name} (desk.session_secret_env) must hold a secret of at least 32 bytes.",
            user_action="Set it to a random secret of at least 32 bytes.",
        )
    return value.encode()


@dataclass
class Desk:
    """The state of one running desk."""

    config: GatewayConfig
    gateway: Gateway
    base_url: str
    sessions: DeskSessions
    oidc: OidcClient | None
    notifier: Notifier
    store: OrderStore | None = None
    announced: set[str] = field(default_factory=set[str])
    local_link: str | None = None
    """The one-time sign-in URL printed at start (None when local sign-in is off)."""

    @property
    def secure(self) -> bool:
        """True when people reach the desk over https (cookies are then `Secure`)."""
        return self.base_url.startswith("https://")

    # ------------------------------------------------------------------ audit

    async def record(self, event_type: str, principal: Principal | None, metadata: dict[str, Any]) -> None:
        """Audit a desk event that is no gateway operation (sign-in, sign-out, notification)."""
        who = principal
        await self.gateway.audit.append(
            AuditEvent(
                event_type=event_type,
                timestamp=datetime.now(UTC),
                principal_kind=who.kind if who is not None else "system",
                principal_subject=who.subject if who is not None else "approval-desk",
                principal_issuer=who.issuer if who is not None else None,
                principal_client_id=CLIENT_ID,
                operation="desk",
                tool_name=event_type,
                decision="allow",
                result_status="completed",
                session_id=self.gateway.session_id,
                metadata=metadata,
            )
        )

    async def refuse(
        self, name: str, code: ErrorCode, message: str, principal: Principal | None, **details: str
    ) -> GatewayError:
        """Audit a refusal the desk makes itself; returns the error with its audit event id."""
        error = GatewayError(code, message)
        return await self.gateway.record_refusal(
            name, error, arguments=details or None, principal=principal or ANONYMOUS
        )

    async def call(self, session: DeskSession, name: str, arguments: Mapping[str, object] | None = None) -> Any:
        """One gateway operation as the signed-in person; returns the value."""
        return (await self.gateway.call(name, arguments or {}, principal=session.principal)).value

    async def stamp(self) -> str:
        """The state database's change stamp (counts and times only, no data)."""
        store = self.store
        if store is None:
            return "none"
        return await anyio.to_thread.run_sync(store.change_stamp)


def create_desk_app(config: GatewayConfig, *, base_url: str, gateway: Gateway | None = None) -> tuple[Starlette, Desk]:
    """The desk app and its state; the gateway (opened from the config unless given) lives with the app."""
    gw = gateway or Gateway.from_config(config)
    sessions = DeskSessions(session_key(config), ttl_seconds=config.desk.session_ttl_seconds)
    oidc = OidcClient(config.desk, base_url + "/callback") if config.desk.oidc_issuer else None
    desk = Desk(config=config, gateway=gw, base_url=base_url, sessions=sessions, oidc=oidc, notifier=None)  # type: ignore[arg-type]
    desk.notifier = Notifier(config.desk, lambda event, data: desk.record(event, None, data))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None]:
        desk.store = await anyio.to_thread.run_sync(lambda: OrderStore.open(config.state_location()))
        try:
            async with anyio.create_task_group() as tasks:
                if desk.notifier.enabled:
                    await _mark_announced(desk)
                    tasks.start_soon(_watch, desk)
                yield
                tasks.cancel_scope.cancel()
        finally:
            await desk.notifier.aclose()
            if desk.oidc is not None:
                await desk.oidc.aclose()
            desk.store.close()
            if gateway is None:
                await gw.aclose()

    routes = [
        Route("/", _page(desk, _dashboard)),
        Route("/history", _page(desk, _history)),
        Route("/orders", _page(desk, _orders)),
        Route("/limits", _page(desk, _limits)),
        Route("/audit/{preview_id}", _page(desk, _audit)),
        Route("/changes", _changes(desk)),
        Route("/login", _login(desk)),
        Route("/login/local", _login_local(desk)),
        Route("/callback", _callback(desk)),
        Route("/logout", _action(desk, "desk_logout", _logout), methods=["POST"]),
        Route("/previews/{preview_id}/approve", _action(desk, "create_approval", _approve), methods=["POST"]),
        Route("/previews/{preview_id}/deny", _action(desk, "deny_preview", _deny), methods=["POST"]),
        Route("/approvals/{approval_id}/revoke", _action(desk, "revoke_approval", _revoke), methods=["POST"]),
        Route("/kill-switch/close", _action(desk, "close_kill_switch", _close), methods=["POST"]),
        Route("/kill-switch/open", _action(desk, "open_kill_switch", _open), methods=["POST"]),
        Route("/static/desk.css", _static(CSS, "text/css")),
        Route("/static/desk.js", _static(JS, "text/javascript")),
        Route("/healthz", _static('{"status":"ok"}', "application/json")),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return SecurityHeaders(app), desk  # type: ignore[return-value]


def _static(text: str, media_type: str) -> Handler:
    async def handler(_: Request) -> Response:
        return Response(text, media_type=media_type)

    return handler


class SecurityHeaders:
    """Adds the desk's security headers to every response: no framing, no outside resources, no caching."""

    HEADERS: Final = (
        (
            b"content-security-policy",
            b"default-src 'self'; frame-ancestors 'none'; form-action 'self' http: https:; base-uri 'none'",
        ),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


# --------------------------------------------------------------------------- sessions


async def _session(desk: Desk, request: Request, name: str) -> DeskSession | Response:
    """The signed-in session, or the response that refuses the request (audited unless simply signed out)."""
    opened = desk.sessions.open(request.cookies.get(COOKIE_NAME))
    if isinstance(opened, DeskSession):
        return opened
    if opened == "missing":
        if request.method == "GET" and name != "desk_changes":
            return HTMLResponse(pages.login_page(oidc=desk.oidc is not None), status_code=401)
        error = await desk.refuse(name, ErrorCode.DESK_SESSION_INVALID, "No desk session.", None, reason="missing")
        return _refused("Signed out", error, 401)
    reason = {
        "forged": "a forged session cookie",
        "unknown": "a signed-out or unknown session",
        "expired": "an expired session",
    }
    error = await desk.refuse(name, ErrorCode.DESK_SESSION_INVALID, f"Refused: {reason[opened]}.", None, reason=opened)
    response = _refused("Session refused", error, 401)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


def _refused(title: str, error: GatewayError, status_code: int) -> HTMLResponse:
    return HTMLResponse(pages.refusal_page(title, _error_html(error), status_code=status_code), status_code=status_code)


def _error_html(error: GatewayError) -> str:
    event = f" · audit event <code>{pages.e(error.audit_event_id[:12])}</code>" if error.audit_event_id else ""
    return (
        f"<b>Refused</b> <code class='code'>{pages.e(error.code.value)}</code>: {pages.e(error.message)}"
        f"<br><small>{pages.e(error.user_action)}{event}</small>"
    )


def _set_session_cookie(desk: Desk, response: Response, session: DeskSession) -> None:
    response.set_cookie(
        COOKIE_NAME,
        desk.sessions.cookie_for(session),
        max_age=int(desk.config.desk.session_ttl_seconds),
        path="/",
        secure=desk.secure,
        httponly=True,
        samesite="strict",
    )


def _landing(desk: Desk, session: DeskSession) -> HTMLResponse:
    """After sign-in: a page that moves on to the desk by a same-site navigation, so the strict cookie is sent."""
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><meta http-equiv='refresh' content='0;url=/'>"
        "<title>Signed in</title></head><body><p>Signed in. <a id='continue' href='/'>Continue to the desk</a>.</p>"
        "</body></html>"
    )
    response = HTMLResponse(body)
    _set_session_cookie(desk, response, session)
    response.delete_cookie(LOGIN_COOKIE_NAME, path="/")
    return response


# --------------------------------------------------------------------------- pages


def _page(desk: Desk, render: Callable[[Desk, Request, DeskSession], Awaitable[str]]) -> Handler:
    async def handler(request: Request) -> Response:
        session = await _session(desk, request, "desk_page")
        if isinstance(session, Response):
            return session
        try:
            return HTMLResponse(await render(desk, request, session))
        except GatewayError as error:
            return _refused("Refused", error, 403 if error.family == "auth" else 409)

    return handler


async def _dashboard(desk: Desk, request: Request, session: DeskSession) -> str:
    stamp = await desk.stamp()
    switch = await desk.call(session, "kill_switch_status")
    entries: list[PreviewEntry] = await desk.call(session, "list_previews", {"pending_only": True, "limit": 20})
    modes: dict[str, str] = {}
    if entries:
        modes = {a.account_id: a.account_mode for a in await desk.call(session, "list_accounts")}
    cards = [await _card(desk, session, entry, modes.get(entry.preview.account_id)) for entry in entries]
    approvals = desk.config.approvals
    choices = sorted(
        {
            *(t for t in TTL_CHOICES if approvals.min_ttl_seconds <= t <= approvals.max_ttl_seconds),
            approvals.default_ttl_seconds,
        }
    )
    return pages.dashboard(
        session,
        cards,
        kill_switch=switch,
        ttl_choices=choices,
        default_ttl=approvals.default_ttl_seconds,
        stamp=stamp,
        refresh_seconds=desk.config.desk.refresh_seconds,
    )


async def _card(desk: Desk, session: DeskSession, entry: PreviewEntry, account_mode: str | None) -> pages.PendingCard:
    ticket = entry.preview.ticket
    quote, problem = None, None
    try:
        quote = await desk.call(session, "market_snapshot", {"contract_id": ticket.contract_id})
    except GatewayError as error:
        problem = f"{error.code.value}: {error.message}"
    policy = desk.config.risk_policy(entry.preview.risk_policy_id) or DEFAULT_PREVIEW_POLICY
    exposure: Decimal | None = order_notional(ticket, quote, policy)
    decision = check_risk(ticket, policy, stage="preview", quote=quote)
    verdict = (
        (True, f"The preview policy {policy.policy_id} passes on this quote.")
        if decision.allowed
        else (False, f"{decision.code.value if decision.code else 'REFUSED'}: {decision.message}")
    )
    return pages.PendingCard(
        entry=entry,
        quote=quote,
        quote_error=problem,
        exposure=exposure,
        checks=pages.risk_checks(entry, policy, quote, exposure),
        verdict=verdict,
        mode="paper" if account_mode == "paper" else "live",
    )


async def _history(desk: Desk, request: Request, session: DeskSession) -> str:
    switch = await desk.call(session, "kill_switch_status")
    entries = await desk.call(session, "list_previews", {"limit": 50})
    approvals = await desk.call(session, "list_approvals", {"limit": 50})
    return pages.history(session, entries, approvals, switch.state)


async def _orders(desk: Desk, request: Request, session: DeskSession) -> str:
    switch = await desk.call(session, "kill_switch_status")
    rows: list[tuple[Any, list[Any], list[Any], str | None]] = []
    for account in await desk.call(session, "list_accounts"):
        try:
            orders = await desk.call(session, "list_orders", {"account_id": account.account_id})
            fills = await desk.call(session, "list_executions", {"account_id": account.account_id, "days": 1})
            rows.append((account, orders, fills, None))
        except GatewayError as error:
            rows.append((account, [], [], f"{error.code.value}: {error.message}"))
    return pages.orders_page(session, rows, switch.state)


async def _limits(desk: Desk, request: Request, session: DeskSession) -> str:
    switch = await desk.call(session, "kill_switch_status")
    rows: list[tuple[Any, Any, str | None]] = []
    for account in await desk.call(session, "list_accounts"):
        try:
            rows.append((account, await desk.call(session, "limits_status", {"account_id": account.account_id}), None))
        except GatewayError as error:
            rows.append((account, None, f"{error.code.value}: {error.message}"))
    return pages.limits_page(session, rows, switch.state)


async def _audit(desk: Desk, request: Request, session: DeskSession) -> str:
    preview_id = str(request.path_params["preview_id"])
    switch = await desk.call(session, "kill_switch_status")
    entries: list[PreviewEntry] = await desk.call(session, "list_previews", {"limit": 500})
    entry = next((x for x in entries if x.preview.preview_id == preview_id), None)
    if entry is None:
        raise GatewayError(ErrorCode.PREVIEW_NOT_FOUND, f"No preview {preview_id!r} among the newest 500.")
    approvals = await desk.call(session, "list_approvals", {"limit": 500})
    approval_ids = {a.approval_id for a in approvals if a.preview_id == preview_id}
    tail = await desk.call(session, "audit_tail", {"limit": 1000})
    events: list[AuditEvent] = []
    for record in tail.events:
        event: AuditEvent = record.event
        arguments = event.metadata.get("arguments")
        named = {str(event.metadata.get("preview_id"))}
        if isinstance(arguments, dict):
            named |= {str(arguments.get("preview_id")), str(arguments.get("approval_id"))}
        if event.event_id == entry.preview.audit_event_id or preview_id in named or named & set(approval_ids):
            events.append(event)
    events.sort(key=lambda ev: ev.timestamp)
    return pages.audit_page(session, preview_id, events, switch.state, entry)


def _changes(desk: Desk) -> Handler:
    async def handler(request: Request) -> Response:
        session = await _session(desk, request, "desk_changes")
        if isinstance(session, Response):
            return JSONResponse({"error": "DESK_SESSION_INVALID"}, status_code=401)
        return JSONResponse({"stamp": await desk.stamp()})

    return handler


# --------------------------------------------------------------------------- sign-in


def _login(desk: Desk) -> Handler:
    async def handler(request: Request) -> Response:
        if desk.oidc is None:
            return HTMLResponse(pages.login_page(oidc=False))
        flight, binding = desk.sessions.begin_flight()
        try:
            url = await desk.oidc.authorization_url(flight)
        except GatewayError as error:
            audited = await desk.gateway.record_refusal("desk_login", error, principal=ANONYMOUS)
            return _refused("Sign-in failed", audited, 502)
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            LOGIN_COOKIE_NAME, binding, max_age=600, path="/", secure=desk.secure, httponly=True, samesite="lax"
        )
        return response

    return handler


def _callback(desk: Desk) -> Handler:
    async def handler(request: Request) -> Response:
        if desk.oidc is None:
            return HTMLResponse(pages.login_page(oidc=False), status_code=404)
        params = request.query_params
        flight = desk.sessions.land_flight(params.get("state"), request.cookies.get(LOGIN_COOKIE_NAME))
        if flight is None:
            error = await desk.refuse(
                "desk_login",
                ErrorCode.DESK_LOGIN_REFUSED,
                "Login refused: the sign-in was not started in this browser or was already used.",
                None,
                reason="state",
            )
            return _refused("Sign-in refused", error, 400)
        if params.get("error") or not params.get("code"):
            error = await desk.refuse(
                "desk_login",
                ErrorCode.DESK_LOGIN_REFUSED,
                "Login refused by the OpenID provider.",
                None,
                reason="provider",
            )
            return _refused("Sign-in refused", error, 400)
        try:
            identity = await desk.oidc.complete(params["code"], flight)
        except GatewayError as error:
            audited = await desk.gateway.record_refusal("desk_login", error, principal=ANONYMOUS)
            return _refused("Sign-in refused", audited, 400)
        principal = approver_principal(identity.subject, identity.issuer)
        if not desk.config.is_approver(principal):
            seen = Principal(
                kind="remote", subject=identity.subject, issuer=identity.issuer, client_id=CLIENT_ID, scopes=frozenset()
            )
            error = await desk.refuse(
                "desk_login",
                ErrorCode.DESK_LOGIN_REFUSED,
                f"Login refused: {identity.subject!r} of this issuer is not an approver (auth.approvers).",
                seen,
                reason="not_an_approver",
            )
            return _refused("Not an approver", error, 403)
        session = desk.sessions.start(principal, "oidc")
        await desk.record("desk_login_succeeded", principal, {"method": "oidc"})
        return _landing(desk, session)

    return handler


def _login_local(desk: Desk) -> Handler:
    async def handler(request: Request) -> Response:
        if not desk.sessions.use_local_link(request.query_params.get("token")):
            error = await desk.refuse(
                "desk_login",
                ErrorCode.DESK_LOGIN_REFUSED,
                "Login refused: this one-time link is unknown, expired or already used.",
                None,
                reason="local_link",
            )
            return _refused("Sign-in refused", error, 403)
        principal = operator_principal(desk.config)
        session = desk.sessions.start(principal, "local_link")
        await desk.record("desk_login_succeeded", principal, {"method": "local_link"})
        return _landing(desk, session)

    return handler


# --------------------------------------------------------------------------- actions

Action = Callable[[Desk, Request, DeskSession, FormData], Awaitable[str]]


def _action(desk: Desk, name: str, run: Action) -> Handler:
    """A POST: session, same origin, CSRF token, then `run`; its outcome is flashed on the next page."""

    async def handler(request: Request) -> Response:
        session = await _session(desk, request, name)
        if isinstance(session, Response):
            return session
        async with request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=4096) as form:
            origin = request.headers.get("origin")
            if origin is not None and origin.rstrip("/") != _origin(desk.base_url):
                reason, text = "origin", "the form was sent from another site"
            elif not desk.sessions.csrf_ok(session, form.get("csrf_token")):
                reason, text = "token", "the form's CSRF token is missing or wrong"
            else:
                reason, text = "", ""
            if reason:
                error = await desk.refuse(
                    name, ErrorCode.DESK_CSRF_INVALID, f"Refused: {text}.", session.principal, reason=reason
                )
                return _refused("Form refused", error, 403)
            try:
                message = await run(desk, request, session, form)
            except GatewayError as error:
                session.flash.append(("error", _error_html(error)))
                return RedirectResponse(_back(request), status_code=303)
        if name == "desk_logout":
            response = RedirectResponse("/", status_code=303)
            response.delete_cookie(COOKIE_NAME, path="/")
            return response
        session.flash.append(("ok", message))
        return RedirectResponse(_back(request), status_code=303)

    return handler


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _back(request: Request) -> str:
    return "/history" if request.url.path.startswith("/approvals/") else "/"


def _field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


async def _approve(desk: Desk, request: Request, session: DeskSession, form: FormData) -> str:
    preview_id = str(request.path_params["preview_id"])
    entry = await _entry(desk, session, preview_id)
    ttl = _field(form, "ttl_seconds")
    arguments: dict[str, object] = {
        "account_id": entry.preview.account_id,
        "preview_id": preview_id,
        "fingerprint": _field(form, "fingerprint") or "0" * 64,
    }
    if ttl:
        arguments["ttl_seconds"] = ttl
    mode = _field(form, "mode")
    if mode:
        arguments["mode"] = mode
    approval = await desk.call(session, "create_approval", arguments)
    t = entry.preview.ticket
    return (
        f"Approved {pages.e(t.side.upper())} {pages.e(t.quantity)} {pages.e(t.symbol)} "
        f"for a {pages.e(approval.mode)} submit until {pages.when(approval.expires_at)} "
        f"(approval <code>{pages.e(approval.approval_id)}</code>). The agent may now submit it once."
    )


async def _entry(desk: Desk, session: DeskSession, preview_id: str) -> PreviewEntry:
    entries: list[PreviewEntry] = await desk.call(session, "list_previews", {"limit": 500})
    entry = next((x for x in entries if x.preview.preview_id == preview_id), None)
    if entry is None:
        raise GatewayError(ErrorCode.PREVIEW_NOT_FOUND, f"No preview {preview_id!r}.")
    return entry


async def _deny(desk: Desk, request: Request, session: DeskSession, form: FormData) -> str:
    preview_id = str(request.path_params["preview_id"])
    denial = await desk.call(
        session, "deny_preview", {"preview_id": preview_id, "reason": _field(form, "reason", "denied") or "denied"}
    )
    revoked = f" and revoked {len(denial.revoked_approvals)} approval(s)" if denial.revoked_approvals else ""
    return f"Denied preview <code>{pages.e(preview_id)}</code>{revoked}."


async def _revoke(desk: Desk, request: Request, session: DeskSession, form: FormData) -> str:
    approval_id = str(request.path_params["approval_id"])
    await desk.call(session, "revoke_approval", {"approval_id": approval_id, "reason": "revoked on the approval desk"})
    return f"Revoked approval <code>{pages.e(approval_id)}</code>."


async def _close(desk: Desk, request: Request, session: DeskSession, form: FormData) -> str:
    state = await desk.call(
        session, "close_kill_switch", {"reason": _field(form, "reason") or "closed on the approval desk"}
    )
    cancelled = f" Cancelled {len(state.cancelled_orders)} working live order(s)." if state.cancelled_orders else ""
    return "The kill switch is closed: no new live order leaves the gateway." + cancelled


async def _open(desk: Desk, request: Request, session: DeskSession, form: FormData) -> str:
    await desk.call(session, "open_kill_switch", {"reason": _field(form, "reason") or "opened on the approval desk"})
    return "The kill switch is open again."


async def _logout(desk: Desk, request: Request, session: DeskSession, form: FormData) -> str:
    desk.sessions.end(session)
    await desk.record("desk_logout", session.principal, {})
    return "Signed out."


# --------------------------------------------------------------------------- notifications


async def _pending(desk: Desk) -> list[tuple[Any, str]]:
    store = desk.store
    assert store is not None
    rows = await anyio.to_thread.run_sync(lambda: store.previews(None, 100))
    now = datetime.now(UTC)
    return [
        (preview, kind)
        for preview, kind, approval, denial in rows
        if approval is None and denial is None and now < preview.expires_at and kind != "local_operator"
    ]


async def _mark_announced(desk: Desk) -> None:
    """Previews already waiting when the desk starts are on the page; only new ones are announced."""
    desk.announced.update(preview.preview_id for preview, _ in await _pending(desk))


async def _watch(desk: Desk) -> None:
    """Announce each new pending preview once; checks the change stamp every `refresh_seconds`."""
    last = ""
    while True:
        try:
            stamp = await desk.stamp()
            if stamp != last:
                last = stamp
                for preview, kind in await _pending(desk):
                    if preview.preview_id in desk.announced:
                        continue
                    desk.announced.add(preview.preview_id)
                    await desk.notifier.announce(preview, kind, f"{desk.base_url}/#preview-{preview.preview_id}")
        except GatewayError:
            logger.warning("the desk could not check for new previews")
        await anyio.sleep(desk.config.desk.refresh_seconds)
