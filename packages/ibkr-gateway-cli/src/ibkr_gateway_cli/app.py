"""The `ibkr-agent` command line: one thin command per gateway operation, built from the registry.

`commands.add_operation_commands` adds a command for every operation of the registry; only the
servers (`simulator serve`, `mcp serve`) are written here. All checks (scopes, accounts, input
validation, audit) happen in the Gateway. Heavy modules are imported inside commands so
`ibkr-agent health` starts fast.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from .commands import CONFIG, JSON, REQUEST_ID, add_operation_commands, options_from
from .runner import CliOptions

ConfigOption = Annotated[Path | None, CONFIG.annotation()]
JsonOption = Annotated[bool, JSON.annotation()]
RequestIdOption = Annotated[str | None, REQUEST_ID.annotation()]

app = typer.Typer(
    name="ibkr-agent",
    help="A safe door between AI agents and Interactive Brokers: read, preview, approve, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_GROUP_HELP = {
    "backend": "Broker backend.",
    "session": "Broker session.",
    "accounts": "Accounts.",
    "account": "One account.",
    "portfolio": "Portfolio.",
    "positions": "Positions.",
    "contracts": "Contracts.",
    "market": "Market data.",
    "orders": "Orders.",
    "executions": "Executions (fills).",
    "simulator": "The embedded CPAPI simulator.",
    "audit": "The tamper-evident audit log.",
    "mcp": "The MCP server.",
    "previews": "Order previews and a person's decision on them.",
    "approvals": "Approvals of order previews.",
    "kill-switch": "The live kill switch.",
    "limits": "Live risk limits.",
    "desk": "The approval desk web page.",
    "pnl": "Profit and loss.",
    "options": "Option chains and greeks.",
    "scanner": "Market scanners.",
    "fx": "Currency exchange rates.",
    "transactions": "Portfolio Analyst transactions.",
    "transfers": "Cash transfers.",
    "fundamentals": "Company fundamentals.",
    "news": "News.",
}
"""Every command group with its help, in the order `--help` lists them."""

groups = {name: typer.Typer(help=text, no_args_is_help=True) for name, text in _GROUP_HELP.items()}
for _name, _group in groups.items():
    app.add_typer(_group, name=_name)
add_operation_commands(app, groups)


@app.callback()
def _global(
    ctx: typer.Context,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    ctx.obj = CliOptions(config=config, json=json_output, request_id=request_id)


@groups["simulator"].command("serve")
def simulator_serve(
    host: Annotated[str, typer.Option("--host", help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port; 0 picks a free one.")] = 5000,
    unkind: Annotated[
        bool,
        typer.Option(
            "--unkind", help="Behave like the real gateway: IBKR's pacing limits, penalty box, stale positions."
        ),
    ] = False,
    clock_speed: Annotated[
        float, typer.Option("--clock-speed", help="Run the simulated clock this many times faster (1 to 10000).")
    ] = 1.0,
    json_output: JsonOption = False,
) -> None:
    """Serve the CPAPI simulator over HTTPS on loopback (self-signed certificate); prints its base URL."""
    from .serve_cli import serve_simulator

    serve_simulator(host=host, port=port, unkind=unkind, clock_speed=clock_speed, options=CliOptions(json=json_output))


@groups["mcp"].command("serve")
def mcp_serve(
    ctx: typer.Context,
    transport: Annotated[str, typer.Option("--transport", help="stdio, or http (remote, OAuth-protected).")] = "stdio",
    describe: Annotated[bool, typer.Option("--describe", help="Print what would be served, then exit.")] = False,
    enable_remote_mcp: Annotated[
        bool, typer.Option("--enable-remote-mcp", help="Required, with the config's switches, to serve HTTP.")
    ] = False,
    bind: Annotated[
        str | None, typer.Option("--bind", help="host:port for HTTP (default from config).", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Run the MCP server; stdout carries only protocol bytes, logs go to stderr."""
    from .serve_cli import serve_mcp

    serve_mcp(
        options_from(ctx, config, json_output, request_id),
        transport=transport,
        describe=describe,
        enable_remote_mcp=enable_remote_mcp,
        bind=bind,
    )


@groups["desk"].command("serve")
def desk_serve(
    ctx: typer.Context,
    bind: Annotated[
        str | None, typer.Option("--bind", help="host:port (default desk.bind_address).", show_default=False)
    ] = None,
    describe: Annotated[bool, typer.Option("--describe", help="Print what would be served, then exit.")] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Serve the approval desk; prints its URL, then a one-time sign-in link for a loopback bind."""
    from .serve_cli import serve_desk

    serve_desk(options_from(ctx, config, json_output, request_id), bind=bind, describe=describe)


def main() -> None:
    """Console-script entry point: usage errors get the stable error shape too."""
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except typer.TyperException as exc:
        from .runner import fail, usage_error

        format_message = getattr(exc, "format_message", None)
        message = str(format_message()) if callable(format_message) else str(exc)
        if not message:  # a command group called without a command: its help was shown
            raise SystemExit(0) from None
        fail(usage_error(sys.argv[1:], message), CliOptions(json="--json" in sys.argv[1:]))
