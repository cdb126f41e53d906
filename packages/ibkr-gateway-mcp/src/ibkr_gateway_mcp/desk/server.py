"""Serving the desk: bind checks, the one-time local link, uvicorn on a socket we own."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

from ibkr_gateway_core.config import GatewayConfig, split_bind_address
from ibkr_gateway_core.errors import ErrorCode, GatewayError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_desk_bind(config: GatewayConfig, bind: str | None) -> tuple[str, int]:
    """The (host, port) to listen on; beyond loopback only behind https (`desk.public_url`).

    Raises:
        GatewayError: `CONFIG_INVALID` for an exposed bind without an https public URL.
    """
    host, port = split_bind_address(bind or config.desk.bind_address)
    public = config.desk.public_url
    if not _loopback(host) and (public is None or not public.startswith("https://")):
        raise GatewayError(
            ErrorCode.CONFIG_INVALID,
            f"Binding the approval desk to {host} needs desk.public_url with https (a TLS-terminating proxy).",
            user_action="Bind to 127.0.0.1, or put the desk behind an https proxy and set desk.public_url.",
        )
    return host, port


def describe_desk(config: GatewayConfig, bind: str | None) -> dict[str, Any]:
    """What `desk serve` would serve, without listening or fetching anything."""
    host, port = check_desk_bind(config, bind)
    desk = config.desk
    return {
        "bind": f"{host}:{port}",
        "url": desk.base_url(f"{host}:{port}"),
        "oidc_issuer": desk.oidc_issuer,
        "approvers": len(config.auth.approvers),
        "local_login": desk.local_login and _loopback(host),
        "notifications": [
            name for name, url in (("webhook", desk.notify_webhook_url), ("ntfy", desk.notify_ntfy_url)) if url
        ],
    }


async def serve_desk(
    config: GatewayConfig,
    *,
    bind: str | None = None,
    on_ready: Callable[[str, str | None], None] | None = None,
) -> None:
    """Serve the desk until cancelled; `on_ready` gets the base URL and the one-time sign-in link (or None).

    Raises:
        GatewayError: `CONFIG_*` when the bind is refused or the gateway cannot open.
    """
    import anyio
    import uvicorn

    from .app import create_desk_app

    host, port = check_desk_bind(config, bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatewayError(ErrorCode.CONFIG_INVALID, f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    with sock:
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        base_url = config.desk.base_url(f"{shown}:{bound_port}")
        app, desk = create_desk_app(config, base_url=base_url)
        link = None
        if config.desk.local_login and _loopback(host):
            link = f"{base_url}/login/local?token={desk.sessions.new_local_link()}"
        desk.local_link = link
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                proxy_headers=False,
                server_header=False,
                timeout_keep_alive=5,
                h11_max_incomplete_event_size=64 * 1024,
                limit_concurrency=128,
            )
        )

        async def announce() -> None:
            while not server.started:
                await anyio.sleep(0.01)
            if on_ready is not None:
                on_ready(base_url, link)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(announce)
            await server.serve(sockets=[sock])
            tasks.cancel_scope.cancel()


def run_desk(config: GatewayConfig, *, bind: str | None, on_ready: Callable[[str, str | None], None] | None) -> None:
    """`serve_desk` in a fresh event loop, logging to stderr."""
    import anyio

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format=LOG_FORMAT)
    from ibkr_gateway_core.observability import start_server_telemetry

    start_server_telemetry(config.observability)

    async def main() -> None:
        await serve_desk(config, bind=bind, on_ready=on_ready)

    anyio.run(main)
