"""The `ibkr-agent` command line: one thin command per gateway operation, built from the command table.

`commands.add_operation_commands` adds a command for every operation of the generated command table
(one entry per registry operation); only the servers (`simulator serve`, `mcp serve`) are written here.
All checks (scopes, accounts, input validation, audit) happen in the Gateway. Registering commands
imports nothing from the core: audit, crypto, order desks and backends load when a command runs.
"""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from .commands import CONFIG, JSON, REQUEST_ID, Command, Group, add_operation_commands, annotated, options_from
from .runner import CliOptions

ConfigOption = Annotated[Path | None, annotated(CONFIG)]
JsonOption = Annotated[bool, annotated(JSON)]
RequestIdOption = Annotated[str | None, annotated(REQUEST_ID)]

MCP_TRANSPORTS = ("stdio", "http")
"""What `mcp serve --transport` serves."""


class RootGroup(Group):
    """The `ibkr-agent` group: a command line the parser refuses gets the stable error shape, audited."""

    def main(  # noqa: D102
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(args) if args is not None else sys.argv[1:]
        try:
            code = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Exit as exc:
            code = exc.exit_code
        except typer.Abort:
            code = 130
        except typer.TyperException as exc:
            from .runner import fail, usage_error

            format_message = getattr(exc, "format_message", None)
            message = str(format_message()) if callable(format_message) else str(exc)
            if not message:  # a command group called without a command: its help was shown
                code = 0
            else:
                fail(usage_error(argv, message), CliOptions(json="--json" in argv))
        if not standalone_mode:
            return code
        raise SystemExit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="ibkr-agent",
    help="A safe door between AI agents and Interactive Brokers: read, preview, approve, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=RootGroup,
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
    "state": "The state database: back it up, or move a single host's state into a new one.",
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

groups = {name: typer.Typer(help=text, no_args_is_help=True, cls=Group) for name, text in _GROUP_HELP.items()}
for _name, _group in groups.items():
    app.add_typer(_group, name=_name)
add_operation_commands(app, groups)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"ibkr-agent {version('ibkr-gateway-cli')}\n")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version, metavar=""
        ),
    ] = False,
) -> None:
    ctx.obj = CliOptions(config=config, json=json_output, request_id=request_id)


@groups["simulator"].command("serve", cls=Command)
def simulator_serve(
    host: Annotated[str, typer.Option("--host", help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port; 0 picks a free one.")] = 5000,
    unkind: Annotated[
        bool,
        typer.Option(
            "--unkind",
            help="Behave like the real gateway: IBKR's pacing limits, penalty box, stale positions.",
            metavar="",
        ),
    ] = False,
    clock_speed: Annotated[
        float, typer.Option("--clock-speed", help="Run the simulated clock this many times faster (1 to 10000).")
    ] = 1.0,
    oauth_dir: Annotated[
        Path | None,
        typer.Option(
            "--oauth-dir",
            help="Act as IBKR's Web API with OAuth 1.0a: write a throwaway consumer's keys and a gateway.yaml "
            "for the cpapi_oauth backend into this new directory.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Serve the CPAPI simulator over HTTPS on loopback (self-signed certificate); prints its base URL."""
    from .serve_cli import serve_simulator

    serve_simulator(
        host=host,
        port=port,
        unkind=unkind,
        clock_speed=clock_speed,
        oauth_dir=oauth_dir,
        options=CliOptions(json=json_output),
    )


@groups["mcp"].command("serve", cls=Command)
def mcp_serve(
    ctx: typer.Context,
    transport: Annotated[
        str, typer.Option("--transport", help="stdio (local), or http (remote, OAuth-protected).")
    ] = "stdio",
    describe: Annotated[
        bool, typer.Option("--describe", help="Print what would be served, then exit.", metavar="")
    ] = False,
    enable_remote_mcp: Annotated[
        bool,
        typer.Option("--enable-remote-mcp", help="Required, with the config's switches, to serve HTTP.", metavar=""),
    ] = False,
    bind: Annotated[
        str | None, typer.Option("--bind", help="host:port for HTTP (default from config).", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Run the MCP server; stdout carries only protocol bytes, logs go to stderr."""
    options = options_from(ctx, config, json_output, request_id)
    if transport not in MCP_TRANSPORTS:
        from ibkr_gateway_core.errors import ErrorCode, GatewayError

        from .runner import fail

        served = " and ".join(MCP_TRANSPORTS)
        message = f"Transport {transport!r} is not served; `mcp serve` serves {served} (remote, OAuth-protected)."
        fail(GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, message), options)
    from .serve_cli import serve_mcp

    serve_mcp(options, transport=transport, describe=describe, enable_remote_mcp=enable_remote_mcp, bind=bind)


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
    """Console-script entry point: usage errors get the stable error shape too (see `RootGroup`)."""
    app()
