"""Serving the remote MCP server: the three switches, the bind rules, uvicorn; and `describe` for HTTP.

Serving needs `remote_mcp.enabled`, `safety.remote_mcp_enabled` (the config refuses one without the
other) and the caller's explicit consent (`--enable-remote-mcp`). A bind beyond loopback needs TLS
(`remote_mcp.tls_cert_file`/`tls_key_file`) or `remote_mcp.behind_proxy`. `X-Forwarded-*` headers are
never read by uvicorn; the app believes `X-Forwarded-For` only from `remote_mcp.trusted_proxies`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Final

from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.observability import configure_logging, start_server_telemetry

from .catalog import SERVER_NAME, visible_tools

HTTP_TRANSPORT: Final = "http"

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def check_remote_allowed(config: GatewayConfig, *, enable_remote_mcp: bool, bind: str | None) -> tuple[str, int]:
    """The (host, port) to serve on, once every switch and the bind rules allow it.

    Raises:
        GatewayError: `CONFIG_REMOTE_MCP_FORBIDDEN` when a switch is off or the bind is exposed without TLS
            or a proxy.
    """
    remote = config.remote_mcp
    if not (remote.enabled and config.safety.remote_mcp_enabled and enable_remote_mcp):
        raise GatewayError(
            ErrorCode.CONFIG_REMOTE_MCP_FORBIDDEN,
            "Remote MCP over HTTP is not enabled: it needs remote_mcp.enabled, safety.remote_mcp_enabled "
            "and --enable-remote-mcp.",
        )
    return remote.check_bind(bind or remote.bind_address)


def describe_http(config: GatewayConfig, *, enable_remote_mcp: bool, bind: str | None) -> dict[str, Any]:
    """What `serve_http` would serve, without opening anything.

    Raises:
        GatewayError: `CONFIG_REMOTE_MCP_FORBIDDEN` as `check_remote_allowed` does.
    """
    host, port = check_remote_allowed(config, enable_remote_mcp=enable_remote_mcp, bind=bind)
    from .http_app import ResourceUrls, remote_principal_scopes

    remote = config.remote_mcp
    assert remote.resource is not None  # the config refuses an enabled section without one
    urls = ResourceUrls.from_resource(remote.resource)
    scopes = remote_principal_scopes(config)
    tools = visible_tools(scopes)
    return {
        "transport": HTTP_TRANSPORT,
        "server": SERVER_NAME,
        "bind": f"{host}:{port}",
        "tls": remote.tls_cert_file is not None,
        "behind_proxy": remote.behind_proxy,
        "resource": remote.resource,
        "mcp_path": urls.mcp_path,
        "issuer": remote.issuer,
        "jwks": remote.jwks_url or "discovered from the issuer",
        "resource_metadata": urls.metadata_url,
        "backend": config.broker.backend,
        "scopes": sorted(scope.value for scope in scopes),
        "tool_count": len(tools),
        "tools": tools,
        "status": f"remote MCP http server would serve {urls.mcp_path} on {host}:{port} with at most "
        f"{len(tools)} scope-filtered tools",
    }


async def serve_http(
    config: GatewayConfig,
    *,
    enable_remote_mcp: bool,
    bind: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the remote MCP server until cancelled; `on_ready` gets the listening base URL.

    A real gateway's session is tickled and its health tracked while the server runs.

    Raises:
        GatewayError: `CONFIG_*` when a switch is off, the bind is refused, or the gateway cannot open.
    """
    import anyio
    import uvicorn
    from ibkr_gateway_core.orders.reconciler import reconcile_in_background
    from ibkr_gateway_cpapi.supervisor import supervise_session
    from uvicorn.config import LOGGING_CONFIG

    from .http_app import open_remote_app

    host, port = check_remote_allowed(config, enable_remote_mcp=enable_remote_mcp, bind=bind)
    remote = config.remote_mcp
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GatewayError(ErrorCode.CONFIG_INVALID, f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    with sock:  # uvicorn leaves a socket it was handed open, on cancellation too
        async with (
            open_remote_app(config) as app,
            supervise_session(app.gateway.backend, config.broker),
            reconcile_in_background(app.gateway),
        ):
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    log_level="warning",
                    log_config=None if config.observability.log_format == "json" else LOGGING_CONFIG,  # json: ours
                    proxy_headers=False,  # X-Forwarded-For is judged by the app, against trusted_proxies
                    server_header=False,
                    ssl_certfile=str(remote.tls_cert_file) if remote.tls_cert_file else None,
                    ssl_keyfile=str(remote.tls_key_file) if remote.tls_key_file else None,
                    timeout_keep_alive=5,
                    h11_max_incomplete_event_size=64 * 1024,  # caps the request head (headers) size
                    limit_concurrency=max(64, remote.max_sessions * 4),
                )
            )
            scheme = "https" if remote.tls_cert_file else "http"
            bound_host, bound_port = sock.getsockname()[:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host

            async def announce() -> None:
                while not server.started:  # uvicorn offers no readiness event
                    await anyio.sleep(0.01)
                if on_ready is not None:
                    on_ready(f"{scheme}://{shown}:{bound_port}")

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(announce)
                await server.serve(sockets=[sock])
                tasks.cancel_scope.cancel()


def run_http(
    config: GatewayConfig, *, enable_remote_mcp: bool, bind: str | None, on_ready: Callable[[str], None] | None
) -> None:
    """`serve_http` in a fresh event loop, logging to stderr."""
    import anyio

    configure_logging(config.observability.log_format, config.observability.log_level)
    start_server_telemetry(config.observability)

    async def main() -> None:
        await serve_http(config, enable_remote_mcp=enable_remote_mcp, bind=bind, on_ready=on_ready)

    anyio.run(main)
