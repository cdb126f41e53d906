"""Test helpers for the remote MCP server: a tiny OpenID issuer with its own keys, and loopback serving.

`FakeIssuer` serves a discovery document and a JWKS (counting key-set requests), mints RS256 or ES256
access tokens, rotates keys, and can fake a JWKS outage (an error status, or no answer at all).
`serve_loopback` runs any ASGI app under uvicorn on 127.0.0.1 with a socket that listens before the
server starts, so a test can connect at once without waiting.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp


def loopback_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 with a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@asynccontextmanager
async def serve_loopback(app: ASGIApp, sock: socket.socket | None = None) -> AsyncGenerator[str, None]:
    """Serve `app` on `sock` (or a fresh loopback socket) until the block ends; yields the base URL."""
    sock = sock or loopback_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,  # as `serve_http`: forwarded headers are the app's to judge
            timeout_graceful_shutdown=2,
        )
    )
    with sock:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.should_exit = True


class FakeIssuer:
    """An OpenID issuer for tests: discovery, JWKS (with a fetch counter) and token minting."""

    def __init__(self, *, kid: str = "key-1", algorithm: str = "RS256", key: RSAKey | ECKey | None = None) -> None:
        self.url = ""
        """The issuer URL, set by `serve`."""
        self.jwks_fetches = 0
        """How many times the key set was requested, answered or not."""
        self.jwks_outage: Literal["error", "hang"] | None = None
        """While set, the JWKS endpoint answers 503 (`error`) or holds the request unanswered (`hang`)."""
        self._outage_over = anyio.Event()
        self.signing_key: RSAKey | ECKey = key or _generate(kid, algorithm)
        """The private key tokens are signed with; `key` (already generated, named by its `kid`) saves time."""
        self.algorithm = algorithm
        self.published: list[RSAKey | ECKey] = [self.signing_key]
        """Keys the JWKS endpoint currently serves (public parts only)."""
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
            ]
        )

    @asynccontextmanager
    async def serve(self) -> AsyncGenerator[FakeIssuer, None]:
        """Serve discovery and JWKS on loopback while the block runs."""
        try:
            async with serve_loopback(self.app) as base_url:
                self.url = base_url
                yield self
        finally:
            self.end_outage()

    def end_outage(self) -> None:
        """Serve the key set again, releasing requests held by a `hang` outage."""
        self.jwks_outage = None
        self._outage_over.set()
        self._outage_over = anyio.Event()

    def rotate(self, kid: str) -> RSAKey | ECKey:
        """Publish a new signing key (keeping the old one) and sign with it from now on."""
        self.signing_key = _generate(kid, self.algorithm)
        self.published.append(self.signing_key)
        return self.signing_key

    def mint(
        self,
        *,
        audience: str | list[str],
        subject: str | None = "agent-1",
        scope: str = "ibkr:accounts:read ibkr:health:read",
        lifetime_s: int = 300,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        key: RSAKey | ECKey | None = None,
        now: float | None = None,
    ) -> str:
        """A signed access token issued at `now` (default: the wall clock).

        `claims` and `header` override or add entries; a None value removes one.
        """
        now = int(time.time() if now is None else now)
        body: dict[str, Any] = {
            "iss": self.url,
            "aud": audience,
            "sub": subject,
            "scope": scope,
            "iat": now,
            "exp": now + lifetime_s,
            "jti": f"jti-{time.perf_counter_ns()}",
            "client_id": "test-client",
        }
        body.update(claims or {})
        signer = key or self.signing_key
        head: dict[str, Any] = {"alg": self.algorithm, "kid": signer.kid, "typ": "at+jwt"}
        head.update(header or {})
        return jwt.encode(
            {k: v for k, v in head.items() if v is not None},
            {k: v for k, v in body.items() if v is not None},
            signer,
            algorithms=[str(head["alg"])],
        )

    async def _discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "token_endpoint": f"{self.url}/token",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [self.algorithm],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        self.jwks_fetches += 1
        if self.jwks_outage == "hang":
            await self._outage_over.wait()
        elif self.jwks_outage == "error":
            return JSONResponse({"error": "unavailable"}, status_code=503)
        return JSONResponse(KeySet(list(self.published)).as_dict(private=False))


def _generate(kid: str, algorithm: str) -> RSAKey | ECKey:
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"}, private=True)
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"}, private=True)
