"""The remote MCP server: streamable HTTP behind OAuth 2.1 bearer tokens, as an ASGI app.

Every request passes, in order: the `Host` and `Origin` allowlists (421, 403); the body-size cap (413);
on the MCP path, the bearer token (401 with an RFC 6750 challenge, 403 `insufficient_scope` naming the
scope, 503 while the issuer's keys cannot be fetched); the per-subject rate limit (429); the session
binding (a session opened by one subject is unknown to every other, and a session id this app did not
see opened is unknown to all). Refused credentials count against the client address (429 beyond the
limit); a 503 does not, since the outage is not the client's doing. Then the SDK's streamable-HTTP
transport runs the request with the caller's `Principal`, so `tools/list` shows only the tools the
caller's granted scopes allow and every tool call is audited with the remote principal.

Granted scopes = the token's scopes ∩ `remote_mcp.allowed_scopes` ∩ `auth.enabled_scopes`. Each
refused request writes one `remote_auth_denied` audit row (its reason, never the token); the first
request of each token writes one `remote_auth_succeeded` row (a row per request would double the
audit volume without saying more: every tool call carries the same principal).

`/healthz` (liveness), `/readyz` (transport running and issuer keys available) and the RFC 9728
metadata (`/.well-known/oauth-protected-resource` and its path-suffixed form) need no token.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from ibkr_gateway_core.audit import AuditEvent
from ibkr_gateway_core.config import GatewayConfig, RemoteMcpConfig
from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.observability import CONTENT_TYPE, continuing_trace, render_prometheus
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import Scope
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from .auth import (
    KEYS_RETRY_AFTER_S,
    MAX_TOKEN_CHARS,
    Denial,
    DenyReason,
    JwksTokenVerifier,
    VerifiedToken,
    VerifierSettings,
)
from .inbound import Transport, answer, screen_message
from .server import GatewayMCPServer

logger = logging.getLogger(__name__)

METADATA_PATH: Final = "/.well-known/oauth-protected-resource"
"""RFC 9728 well-known path; the path-suffixed form appends the MCP path."""

HEALTH_PATH: Final = "/healthz"
METRICS_PATH: Final = "/metrics"
"""Prometheus metrics, served only with `observability.metrics_enabled` (404 otherwise); no token."""
READY_PATH: Final = "/readyz"

REALM: Final = "ibkr-agent-gateway"

MAX_AUTHORIZATION_CHARS: Final = MAX_TOKEN_CHARS + len("Bearer ")
"""A longer Authorization header gets 431 without being parsed (it is still audited as a malformed token)."""

SUCCESS_CACHE_SIZE: Final = 10_000
"""Tokens remembered as already audited (`remote_auth_succeeded` once per token per process)."""

_ANONYMOUS: Final = Principal(kind="remote", subject="anonymous", scopes=frozenset())
"""The principal of a request that somehow reaches a tool without authentication: no scope at all."""

_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("ibkr_remote_caller", default=None)
"""The authenticated caller of the HTTP request being served; the SDK carries it into tool handlers."""

_DESCRIPTIONS: Final[Mapping[DenyReason, str]] = {
    DenyReason.EXPIRED: "The access token has expired.",
    DenyReason.INSUFFICIENT_SCOPE: "The access token does not grant a scope this server needs.",
}
"""Challenge descriptions a client can act on; every other reason gets a generic text."""


class RemoteGatewayMCPServer(GatewayMCPServer):
    """The gateway's MCP server whose caller is the authenticated principal of the current HTTP request."""

    transport: Transport = "http"

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway, _ANONYMOUS)

    def current_principal(self) -> Principal:
        """The remote caller of this request; without one, a principal holding no scope."""
        return _CALLER.get() or _ANONYMOUS


@dataclass(frozen=True, slots=True)
class ResourceUrls:
    """The absolute URLs the server advertises, derived from `remote_mcp.resource`."""

    resource: str
    mcp_path: str
    metadata_url: str
    metadata_paths: tuple[str, ...]

    @classmethod
    def from_resource(cls, resource: str) -> ResourceUrls:
        """URLs for a canonical resource such as `https://gateway.example.com/mcp`."""
        parts = urlsplit(resource)
        path = parts.path.rstrip("/") or "/mcp"
        origin = f"{parts.scheme}://{parts.netloc}"
        return cls(
            resource=resource,
            mcp_path=path,
            metadata_url=f"{origin}{METADATA_PATH}{path}",
            metadata_paths=(METADATA_PATH, f"{METADATA_PATH}{path}"),
        )


class FixedWindowLimiter:
    """Counts hits per key in fixed windows; forgets keys whose window has passed."""

    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, key: str) -> float | None:
        """Count one hit; None when allowed, else the seconds until the window ends."""
        now = self._clock()
        if len(self._counts) > 10_000:  # bound memory under many keys
            self._counts = {k: v for k, v in self._counts.items() if now - v[0] < self.window_s}
        start, count = self._counts.get(key, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        count += 1
        self._counts[key] = (start, count)
        return None if count <= self.limit else max(self.window_s - (now - start), 0.001)

    def blocked(self, key: str) -> bool:
        """True when `key` is over its limit in the current window (without counting a hit)."""
        start, count = self._counts.get(key, (0.0, 0))
        return count > self.limit and self._clock() - start < self.window_s


class RemoteMcpApp:
    """The ASGI app of the remote MCP server, around the SDK's streamable-HTTP app."""

    def __init__(
        self,
        gateway: Gateway,
        remote: RemoteMcpConfig,
        verifier: JwksTokenVerifier,
        *,
        token_id_key: bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if remote.resource is None or remote.issuer is None:
            raise ValueError("remote_mcp.resource and remote_mcp.issuer are required")
        self.gateway = gateway
        self.remote = remote
        self.verifier = verifier
        self.urls = ResourceUrls.from_resource(remote.resource)
        self.server = RemoteGatewayMCPServer(gateway)
        self._token_id_key = token_id_key
        self._issuer = remote.issuer
        self.granted_ceiling: frozenset[Scope] = remote.scopes() & gateway.config.auth.scopes()
        """Scopes a remote caller may hold at most: allowed remotely and enabled locally."""
        self._inner: ASGIApp = self.server.streamable_http_app(
            streamable_http_path=self.urls.mcp_path,
            max_request_body_size=remote.max_request_bytes,
            max_sessions=remote.max_sessions,
            session_idle_timeout=remote.session_idle_timeout_seconds,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),  # ours run first
        )
        self._hosts = _allowed_hosts(remote)
        self._origins = _allowed_origins(remote)
        self._proxies = [ipaddress.ip_network(item, strict=False) for item in remote.trusted_proxies]
        self._subject_limiter = FixedWindowLimiter(
            remote.rate_limit_max_requests, remote.rate_limit_window_seconds, clock=clock
        )
        self._failure_limiter = FixedWindowLimiter(
            remote.rate_limit_max_requests, remote.rate_limit_window_seconds, clock=clock
        )
        self._audited: OrderedDict[bytes, None] = OrderedDict()
        self._session_owners: OrderedDict[str, str] = OrderedDict()
        self._session_seen: dict[str, float] = {}
        """When each open session last served a request (monotonic seconds)."""
        self._inflight: dict[str, int] = {}
        self._running = False
        self._last_reap = -float("inf")
        self._clock = clock
        self._throttle_audited: dict[str, float] = {}

    @property
    def scopes_supported(self) -> list[str]:
        """The scopes a remote caller can be granted here, sorted."""
        return sorted(scope.value for scope in self.granted_ceiling)

    def metadata(self) -> dict[str, Any]:
        """The RFC 9728 protected-resource metadata document."""
        return {
            "resource": self.urls.resource,
            "authorization_servers": [self._issuer],
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_name": REALM,
        }

    # ------------------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: lifespan, or an HTTP request through the checks above."""
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets are not part of MCP
            return
        headers = _headers(scope)
        refusal = self._check_host_and_origin(headers)
        if refusal is not None:
            await refusal(send)
            return
        path: str = scope["path"]
        if path == HEALTH_PATH:
            await _json(200, {"status": "ok"})(send)
        elif path == READY_PATH:
            ready = self._running and await self.verifier.ready()
            await _json(200 if ready else 503, {"status": "ready" if ready else "not_ready"})(send)
        elif path == METRICS_PATH and self.gateway.config.observability.metrics_enabled:
            await _metrics(send)
        elif path in self.urls.metadata_paths:
            await _json(200, self.metadata(), extra={"access-control-allow-origin": "*"})(send)
        elif path == self.urls.mcp_path:
            await self._serve_mcp(scope, receive, send, headers)
        else:
            await _json(404, {"error": "not_found"})(send)

    async def _lifespan(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        async def tracking_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._running = True
            elif message["type"].startswith("lifespan.shutdown"):
                self._running = False
            await send(message)

        await self._inner(scope, receive, tracking_send)

    def _check_host_and_origin(self, headers: Mapping[str, list[str]]) -> _Responder | None:
        hosts = headers.get("host", [])
        if len(hosts) != 1 or hosts[0].lower() not in self._hosts:
            return _json(421, {"error": "misdirected_request", "message": "Host not allowed."})
        origins = headers.get("origin", [])
        if origins and (len(origins) != 1 or origins[0].lower().rstrip("/") not in self._origins):
            return _json(403, {"error": "forbidden_origin", "message": "Origin not allowed."})
        return None

    async def _serve_mcp(
        self, scope: AsgiScope, receive: Receive, send: Send, headers: Mapping[str, list[str]]
    ) -> None:
        length = headers.get("content-length", [])
        if length and (
            len(length) != 1 or not _is_decimal(length[0]) or int(length[0]) > self.remote.max_request_bytes
        ):
            await _json(413, {"error": "payload_too_large", "max_bytes": self.remote.max_request_bytes})(send)
            return
        address = self._client_address(scope, headers)
        if self._failure_limiter.blocked(address):
            await _json(
                429, {"error": "rate_limited"}, extra={"retry-after": str(self.remote.rate_limit_window_seconds)}
            )(send)
            return
        outcome = await self._authenticate(headers, address)
        if not isinstance(outcome, Principal):
            await outcome(send)
            return
        owner = f"{outcome.issuer}\n{outcome.subject}"
        retry_after = self._subject_limiter.hit(owner)
        if retry_after is not None:
            await self._audit_throttled(outcome, retry_after)
            await _json(429, {"error": "rate_limited"}, extra={"retry-after": str(max(1, round(retry_after)))})(send)
            return
        await self._close_over_share_idle()
        session_ids = headers.get("mcp-session-id", [])
        if session_ids:
            if len(session_ids) != 1 or self._session_owners.get(session_ids[0]) != owner:
                await _json(
                    404, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Session not found"}}
                )(send)
                return
            self._session_owners.move_to_end(session_ids[0])  # evict idle sessions' owners first
            self._session_seen[session_ids[0]] = self._clock()
            if scope["method"] == "DELETE":
                send = self._forgetting_session(send, session_ids[0])
        else:
            if scope["method"] == "POST" and self._open_sessions(owner) >= self.remote.max_sessions_per_subject:
                await self._refuse_fair_share(outcome, "sessions", send)
                return
            send = self._recording_session(send, owner)
        if self._inflight.get(owner, 0) >= self.remote.max_inflight_per_subject:
            await self._refuse_fair_share(outcome, "in_flight", send)
            return
        self._inflight[owner] = self._inflight.get(owner, 0) + 1
        token = _CALLER.set(outcome)
        traceparents = headers.get("traceparent", [])
        try:
            if scope["method"] == "POST":
                screened = await self._screened_body(receive, send)
                if screened is None:
                    return  # answered here: too large, or refused and audited
                receive = screened
            with continuing_trace(traceparents[0] if len(traceparents) == 1 else None):
                await self._inner(scope, receive, send)
        finally:
            _CALLER.reset(token)
            left = self._inflight.get(owner, 1) - 1
            if left > 0:
                self._inflight[owner] = left
            else:
                self._inflight.pop(owner, None)

    # ------------------------------------------------------------------------------ fair share

    def _open_sessions(self, owner: str) -> int:
        return sum(1 for holder in self._session_owners.values() if holder == owner)

    async def _close_over_share_idle(self) -> None:
        """Close each subject's sessions beyond its fair share that sat idle past the short timeout.

        A subject's most recently used `sessions_fair_share` sessions keep the long idle timeout;
        the SDK closes those itself. The rest are closed here, through the SDK's own DELETE.
        """
        now = self._clock()
        if now - self._last_reap < 1.0:
            return
        self._last_reap = now
        by_owner: dict[str, list[str]] = {}
        for session_id, holder in self._session_owners.items():
            by_owner.setdefault(holder, []).append(session_id)
        expired: list[str] = []
        for sessions in by_owner.values():
            if len(sessions) <= self.remote.sessions_fair_share:
                continue
            recent = sorted(sessions, key=lambda item: self._session_seen.get(item, 0.0), reverse=True)
            for session_id in recent[self.remote.sessions_fair_share :]:
                idle = now - self._session_seen.get(session_id, 0.0)
                if idle >= self.remote.over_share_idle_timeout_seconds:
                    expired.append(session_id)
        for session_id in expired:
            self._session_owners.pop(session_id, None)
            self._session_seen.pop(session_id, None)
            await self._terminate(session_id)

    async def _terminate(self, session_id: str) -> None:
        """End a session in the SDK as its client would: a DELETE carrying its id, answered to nobody."""
        host = next(iter(sorted(self._hosts)), "localhost").encode("latin-1")
        scope: AsgiScope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "DELETE",
            "scheme": "http",
            "path": self.urls.mcp_path,
            "raw_path": self.urls.mcp_path.encode("latin-1"),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", host), (b"mcp-session-id", session_id.encode("latin-1"))],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
        }

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def discard(message: Message) -> None:
            return None

        try:
            await self._inner(scope, receive, discard)
        except Exception:  # the session may already be gone; the SDK's idle timeout remains the backstop
            logger.warning("could not close an idle session beyond its subject's share")

    async def _refuse_fair_share(self, principal: Principal, limit: str, send: Send) -> None:
        await self._audit_throttled(principal, 1.0, limit=limit)
        body = {
            "error": "too_many_sessions" if limit == "sessions" else "too_many_requests_in_flight",
            "message": "This subject holds its share of open sessions; close one (DELETE) or reuse it."
            if limit == "sessions"
            else "This subject has its share of requests in flight; wait for one to finish.",
        }
        await _json(429, body, extra={"retry-after": "1"})(send)

    # ------------------------------------------------------------------------------ screening

    async def _screened_body(self, receive: Receive, send: Send) -> Receive | None:
        """Read the body (bounded), screen it (`inbound.screen_message`) and replay it; None when answered."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.remote.max_request_bytes:
                await _json(413, {"error": "payload_too_large", "max_bytes": self.remote.max_request_bytes})(send)
                return None
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        refusal = screen_message(body, max_bytes=self.remote.max_request_bytes) if body.strip() else None
        if refusal is not None:
            reply = await answer(self.server, refusal, "http")
            if reply is None:
                await send({"type": "http.response.start", "status": 202, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            else:
                status = 200 if refusal.is_tool_call else 400
                await _json(status, reply)(send)
            return None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def _recording_session(self, send: Send, owner: str) -> Send:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == b"mcp-session-id":
                        session_id = value.decode("latin-1")
                        self._session_owners[session_id] = owner
                        self._session_seen[session_id] = self._clock()
                        while len(self._session_owners) > 4 * self.remote.max_sessions + 64:
                            forgotten, _ = self._session_owners.popitem(last=False)
                            self._session_seen.pop(forgotten, None)
            await send(message)

        return recording_send

    def _forgetting_session(self, send: Send, session_id: str) -> Send:
        async def forgetting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                self._session_owners.pop(session_id, None)
                self._session_seen.pop(session_id, None)
            await send(message)

        return forgetting_send

    def _client_address(self, scope: AsgiScope, headers: Mapping[str, list[str]]) -> str:
        """The peer, or through trusted proxies only, the nearest untrusted `X-Forwarded-For` hop."""
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if not self._proxies or not self._trusted(peer):
            return peer
        hops = [hop.strip() for line in headers.get("x-forwarded-for", []) for hop in line.split(",")]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)

    # ------------------------------------------------------------------------------------ auth

    async def _authenticate(self, headers: Mapping[str, list[str]], address: str) -> Principal | _Responder:
        values = headers.get("authorization", [])
        if len(values) > 1:
            return _json(400, {"error": "invalid_request", "message": "One Authorization header, please."})
        if not values:
            return await self._deny(Denial(DenyReason.TOKEN_MISSING), address, None)
        if len(values[0]) > MAX_AUTHORIZATION_CHARS:
            await self._deny(Denial(DenyReason.TOKEN_MALFORMED), address, None)
            return _json(431, {"error": "header_too_large", "message": "The Authorization header is too large."})
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return await self._deny(Denial(DenyReason.TOKEN_MALFORMED), address, None)
        verified = await self.verifier.verify(token)
        if isinstance(verified, Denial):
            return await self._deny(verified, address, None)
        granted = self._granted(verified)
        if not granted:
            return await self._deny(Denial(DenyReason.INSUFFICIENT_SCOPE), address, verified)
        principal = Principal(
            kind="remote",
            subject=verified.subject,
            issuer=verified.issuer,
            token_id_hash=self.token_id_hash(verified.token_id) if verified.token_id else None,
            client_id=verified.client_id,
            scopes=granted,
        )
        fingerprint = hashlib.sha256(token.encode("utf-8")).digest()  # memory only, never stored
        if fingerprint not in self._audited:
            self._audited[fingerprint] = None
            if len(self._audited) > SUCCESS_CACHE_SIZE:
                self._audited.popitem(last=False)
            await self._audit_auth(principal, "remote_auth_succeeded", None, verified.audience)
        return principal

    def _granted(self, verified: VerifiedToken) -> frozenset[Scope]:
        known = {Scope(value) for value in verified.scopes if value in Scope._value2member_map_}
        return frozenset(known) & self.granted_ceiling

    def token_id_hash(self, token_id: str) -> str:
        """Keyed hash (hex) of a token id (`jti`) under the configured token-id key."""
        return hmac.digest(self._token_id_key, token_id.encode("utf-8"), "sha256").hex()

    async def _deny(self, denial: Denial, address: str, verified: VerifiedToken | None) -> _Responder:
        if denial.reason is not DenyReason.KEYS_UNAVAILABLE:  # an issuer outage is not the client's failure
            self._failure_limiter.hit(address)
        principal = (
            Principal(
                kind="remote",
                subject=verified.subject,
                issuer=verified.issuer,
                token_id_hash=self.token_id_hash(verified.token_id) if verified.token_id else None,
                client_id=verified.client_id,
                scopes=frozenset(),
            )
            if verified is not None
            else None
        )
        await self._audit_auth(principal, "remote_auth_denied", denial.reason, None)
        return self._challenge(denial.reason)

    def _challenge(self, reason: DenyReason) -> _Responder:
        params = [f'realm="{REALM}"', f'resource_metadata="{self.urls.metadata_url}"']
        if reason is DenyReason.KEYS_UNAVAILABLE:
            body = {"error": "temporarily_unavailable", "message": "The token issuer's keys are unavailable."}
            return _json(503, body, extra={"retry-after": str(KEYS_RETRY_AFTER_S)})
        if reason is DenyReason.TOKEN_MISSING:  # RFC 6750 §3.1: no error code without credentials
            status, body = 401, {"error": "unauthorized", "message": "A bearer token is required."}
        elif reason is DenyReason.INSUFFICIENT_SCOPE:
            needed = " ".join(self.scopes_supported)
            description = _DESCRIPTIONS[reason]
            params += ['error="insufficient_scope"', f'error_description="{description}"', f'scope="{needed}"']
            status, body = 403, {"error": "insufficient_scope", "message": description, "scope": needed}
        else:
            description = _DESCRIPTIONS.get(reason, "The access token is not valid for this server.")
            params += ['error="invalid_token"', f'error_description="{description}"']
            status, body = 401, {"error": "invalid_token", "message": description}
        return _json(status, body, extra={"www-authenticate": "Bearer " + ", ".join(params)})

    async def _audit_auth(
        self, principal: Principal | None, event_type: str, reason: DenyReason | None, audience: str | None
    ) -> None:
        metadata: dict[str, Any] = {"transport": "http"}
        if reason is not None:
            metadata["reason"] = reason.value
        if audience is not None:
            metadata["audience"] = audience
        denied = event_type == "remote_auth_denied"
        event = AuditEvent(
            event_type=event_type,
            timestamp=datetime.now(UTC),
            principal_kind="remote" if principal is not None else "anonymous",
            principal_subject=principal.subject if principal is not None else "anonymous",
            principal_issuer=principal.issuer if principal is not None else None,
            principal_token_id_hash=principal.token_id_hash if principal is not None else None,
            principal_client_id=principal.client_id if principal is not None else None,
            scopes=sorted(scope.value for scope in principal.scopes) if principal is not None else [],
            decision="deny" if denied else "allow",
            result_status="denied_auth" if denied else "authenticated",
            error_code=_error_code(reason).value if reason is not None else None,
            session_id=self.gateway.session_id,
            metadata=metadata,
        )
        try:
            await self.gateway.audit.append(event)
        except Exception:  # an audit failure must not turn a refusal into a crash
            logger.exception("could not audit %s", event_type)

    async def _audit_throttled(self, principal: Principal, retry_after: float, *, limit: str = "rate") -> None:
        owner = f"{principal.issuer}\n{principal.subject}\n{limit}"
        now = self._clock()
        if now - self._throttle_audited.get(owner, -float("inf")) < self.remote.rate_limit_window_seconds:
            return  # one throttle row per subject and limit per window, so a flood cannot flood the log
        self._throttle_audited[owner] = now
        if len(self._throttle_audited) > 10_000:
            self._throttle_audited.clear()
        event = AuditEvent(
            event_type="remote_rate_limited",
            timestamp=datetime.now(UTC),
            principal_kind="remote",
            principal_subject=principal.subject,
            principal_issuer=principal.issuer,
            principal_token_id_hash=principal.token_id_hash,
            principal_client_id=principal.client_id,
            scopes=sorted(scope.value for scope in principal.scopes),
            decision="refuse",
            result_status="refused",
            session_id=self.gateway.session_id,
            metadata={"transport": "http", "limit": limit, "retry_after_seconds": round(retry_after, 3)},
        )
        await self.gateway.audit.append(event)


_Responder = Callable[[Send], Any]


def _json(status: int, body: object, *, extra: Mapping[str, str] | None = None) -> _Responder:
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode("ascii"))]
    headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (extra or {}).items()]

    async def respond(send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return respond


def _is_decimal(value: str) -> bool:
    """True for ASCII digits only (`str.isdigit` also accepts `²`, which `int` refuses)."""
    return value.isascii() and value.isdigit()


def _headers(scope: AsgiScope) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return found


def _error_code(reason: DenyReason) -> ErrorCode:
    match reason:
        case DenyReason.TOKEN_MISSING:
            return ErrorCode.AUTH_TOKEN_MISSING
        case DenyReason.EXPIRED:
            return ErrorCode.AUTH_TOKEN_EXPIRED
        case DenyReason.WRONG_ISSUER:
            return ErrorCode.AUTH_INVALID_ISSUER
        case DenyReason.WRONG_AUDIENCE:
            return ErrorCode.AUTH_INVALID_AUDIENCE
        case DenyReason.INSUFFICIENT_SCOPE:
            return ErrorCode.AUTH_MISSING_SCOPE
        case _:
            return ErrorCode.AUTH_TOKEN_INVALID


def _netlocs(url: str) -> set[str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    shown = f"[{host}]" if ":" in host else host
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    found = {f"{shown}:{port}"}
    if port == default:
        found.add(shown)
    return found


def _allowed_hosts(remote: RemoteMcpConfig) -> frozenset[str]:
    hosts: set[str] = set()
    if remote.resource is not None:
        hosts |= _netlocs(remote.resource)
    hosts |= {host.lower() for host in remote.allowed_hosts}
    return frozenset(hosts)


def _allowed_origins(remote: RemoteMcpConfig) -> frozenset[str]:
    origins: set[str] = set()
    if remote.resource is not None:
        parts = urlsplit(remote.resource)
        origins |= {f"{parts.scheme}://{netloc}" for netloc in _netlocs(remote.resource)}
    origins |= {origin.lower().rstrip("/") for origin in remote.allowed_origins}
    return frozenset(origins)


def verifier_settings(remote: RemoteMcpConfig) -> VerifierSettings:
    """The verifier settings a `remote_mcp` section describes."""
    if remote.resource is None or remote.issuer is None:
        raise ValueError("remote_mcp.resource and remote_mcp.issuer are required")
    return VerifierSettings(
        issuer=remote.issuer,
        audiences=[remote.resource, *remote.audiences],
        jwks_url=remote.jwks_url,
        algorithms=tuple(remote.algorithms),
        leeway_s=remote.clock_skew_seconds,
        cache_ttl_s=remote.jwks_cache_seconds,
        refetch_interval_s=remote.jwks_refetch_interval_seconds,
        timeout_s=remote.jwks_timeout_seconds,
        max_bytes=remote.jwks_max_bytes,
    )


def remote_principal_scopes(config: GatewayConfig) -> frozenset[Scope]:
    """The most a remote caller may hold under `config`: allowed remotely and enabled locally."""
    return config.remote_mcp.scopes() & config.auth.scopes()


@asynccontextmanager
async def open_remote_app(
    config: GatewayConfig, *, verifier: JwksTokenVerifier | None = None
) -> AsyncGenerator[RemoteMcpApp, None]:
    """Open the gateway and build the remote app for `config`; closes both on exit.

    Raises:
        GatewayError: `CONFIG_*` when the gateway cannot open or the token-id key is missing.
    """
    remote = config.remote_mcp
    key = remote.token_id_key()
    async with Gateway.from_config(config) as gateway:
        owned = verifier is None
        verifier = verifier or JwksTokenVerifier(verifier_settings(remote))
        try:
            yield RemoteMcpApp(gateway, remote, verifier, token_id_key=key)
        finally:
            if owned:
                await verifier.aclose()


async def _metrics(send: Send) -> None:
    body = render_prometheus().encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
