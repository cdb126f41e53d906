"""The `ibkr-agent` command line: one thin command per gateway operation.

Every command parses its flags, calls one `Gateway` operation and renders the result; all checks
(scopes, accounts, input validation, audit) happen in the Gateway. Heavy modules are imported inside
commands so `ibkr-agent health` starts fast.
"""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .render import block, table
from .runner import CliOptions, run_operation

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="YAML config file; without it the embedded CPAPI simulator is used.", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (errors as JSON on stderr).")]
RequestIdOption = Annotated[
    str | None, typer.Option("--request-id", help="Correlation id recorded in the audit event.", show_default=False)
]
AccountOption = Annotated[
    str | None, typer.Option("--account", help="IBKR account id, e.g. DU1234567.", show_default=False)
]
ContractIdOption = Annotated[
    str | None, typer.Option("--contract-id", help="IBKR contract id (conid), e.g. 265598.", show_default=False)
]

app = typer.Typer(
    name="ibkr-agent",
    help="A safe door between AI agents and Interactive Brokers: read, preview, approve, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
backend_app = typer.Typer(help="Broker backend.", no_args_is_help=True)
session_app = typer.Typer(help="Broker session.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts.", no_args_is_help=True)
account_app = typer.Typer(help="One account.", no_args_is_help=True)
portfolio_app = typer.Typer(help="Portfolio.", no_args_is_help=True)
positions_app = typer.Typer(help="Positions.", no_args_is_help=True)
contracts_app = typer.Typer(help="Contracts.", no_args_is_help=True)
market_app = typer.Typer(help="Market data.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders.", no_args_is_help=True)
executions_app = typer.Typer(help="Executions (fills).", no_args_is_help=True)
simulator_app = typer.Typer(help="The embedded CPAPI simulator.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
mcp_app = typer.Typer(help="The MCP server.", no_args_is_help=True)
for _name, _sub in (
    ("backend", backend_app),
    ("session", session_app),
    ("accounts", accounts_app),
    ("account", account_app),
    ("portfolio", portfolio_app),
    ("positions", positions_app),
    ("contracts", contracts_app),
    ("market", market_app),
    ("orders", orders_app),
    ("executions", executions_app),
    ("simulator", simulator_app),
    ("audit", audit_app),
    ("mcp", mcp_app),
):
    app.add_typer(_sub, name=_name)


@app.callback()
def _global(
    ctx: typer.Context,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    ctx.obj = CliOptions(config=config, json=json_output, request_id=request_id)


def _options(ctx: typer.Context, config: Path | None, json_output: bool, request_id: str | None) -> CliOptions:
    parent: CliOptions = ctx.find_root().obj or CliOptions()
    return parent.merged(config=config, json_output=json_output, request_id=request_id)


def _r(result: Any) -> Any:
    return result.value


# ----------------------------------------------------------------------------- health and session


@app.command("health")
def health(
    ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False, request_id: RequestIdOption = None
) -> None:
    """Liveness of the gateway itself; makes no broker call."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "health",
        {},
        lambda r: (
            f"gateway: {_r(r).gateway} (version {_r(r).version}, backend {_r(r).backend}, "
            f"{'read-only' if _r(r).read_only else 'write scopes enabled'})"
        ),
    )


@backend_app.command("status")
def backend_status(
    ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False, request_id: RequestIdOption = None
) -> None:
    """Whether the broker session is usable, without any session material."""
    run_operation(_options(ctx, config, json_output, request_id), "backend_status", {}, lambda r: block(_r(r)))


@session_app.command("requirements")
def session_requirements(
    ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False, request_id: RequestIdOption = None
) -> None:
    """What must be true for broker calls to work, and the manual step to take now."""

    def render(result: Any) -> str:
        value = _r(result)
        lines = [f"manual_action: {value.manual_action}"]
        lines += [f"[{'x' if check.satisfied else ' '}] {check.name}: {check.detail}" for check in value.checks]
        return "\n".join(lines)

    run_operation(_options(ctx, config, json_output, request_id), "session_requirements", {}, render)


# ----------------------------------------------------------------------------- accounts and portfolio


@accounts_app.command("list")
def accounts_list(
    ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False, request_id: RequestIdOption = None
) -> None:
    """Accounts visible in the broker session, marked paper or live."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "list_accounts",
        {},
        lambda r: table(_r(r), ["account_id", "account_mode", "base_currency", "account_label"]),
    )


@account_app.command("summary")
def account_summary(
    ctx: typer.Context,
    account: AccountOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Net liquidation, cash, buying power and margin of one account."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "account_summary",
        {"account_id": account},
        lambda r: block(_r(r)),
    )


_POSITION_COLUMNS = [
    "contract_id",
    "symbol",
    "asset_class",
    "quantity",
    "market_price",
    "market_value",
    "currency",
    "unrealized_pnl",
]


@portfolio_app.command("snapshot")
def portfolio_snapshot(
    ctx: typer.Context,
    account: AccountOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Summary, cash per currency and every position of one account."""

    def render(result: Any) -> str:
        value = _r(result)
        return "\n\n".join(
            [
                f"account: {value.account_id} ({value.base_currency}) as of {value.as_of.isoformat()}",
                block(value.summary, skip=("account_id", "as_of")),
                table(value.cash, ["currency", "cash", "settled_cash", "exchange_rate"]),
                table(value.positions, _POSITION_COLUMNS, empty="(no positions)"),
            ]
        )

    run_operation(_options(ctx, config, json_output, request_id), "portfolio_snapshot", {"account_id": account}, render)


@positions_app.command("list")
def positions_list(
    ctx: typer.Context,
    account: AccountOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Positions of one account, as the broker reports them now."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "list_positions",
        {"account_id": account},
        lambda r: table(_r(r), _POSITION_COLUMNS, empty="(no positions)"),
    )


# ----------------------------------------------------------------------------- contracts and market data

QueryArgument = Annotated[str | None, typer.Argument(help="Symbol, e.g. AAPL.", show_default=False)]
AssetClassOption = Annotated[
    str | None, typer.Option("--asset-class", help="stock, etf, option, future, ...", show_default=False)
]
CurrencyOption = Annotated[str | None, typer.Option("--currency", help="ISO currency, e.g. USD.", show_default=False)]
ExchangeOption = Annotated[str | None, typer.Option("--exchange", help="Exchange, e.g. NASDAQ.", show_default=False)]
_CONTRACT_COLUMNS = ["contract_id", "symbol", "asset_class", "exchange", "currency", "company_name", "is_unique_match"]


@contracts_app.command("search")
def contracts_search(
    ctx: typer.Context,
    query: QueryArgument = None,
    asset_class: AssetClassOption = None,
    currency: CurrencyOption = None,
    exchange: ExchangeOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Contracts matching a symbol, optionally filtered."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "search_contracts",
        {"query": query, "asset_class": asset_class, "currency": currency, "exchange": exchange},
        lambda r: table(_r(r), _CONTRACT_COLUMNS, empty="(no contracts)"),
    )


@contracts_app.command("resolve")
def contracts_resolve(
    ctx: typer.Context,
    query: QueryArgument = None,
    asset_class: AssetClassOption = None,
    currency: CurrencyOption = None,
    exchange: ExchangeOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """The one contract a symbol means; ambiguous symbols are refused."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "resolve_contract",
        {"query": query, "asset_class": asset_class, "currency": currency, "exchange": exchange},
        lambda r: block(_r(r)),
    )


@market_app.command("snapshot")
def market_snapshot(
    ctx: typer.Context,
    contract_id: ContractIdOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Bid, ask and last of one contract, with data status and staleness."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "market_snapshot",
        {"contract_id": contract_id},
        lambda r: block(_r(r)),
    )


@market_app.command("bars")
def market_bars(
    ctx: typer.Context,
    contract_id: ContractIdOption = None,
    duration: Annotated[
        str | None, typer.Option("--duration", help="How far back, e.g. '1 D', '2 W'.", show_default=False)
    ] = None,
    bar_size: Annotated[
        str | None, typer.Option("--bar-size", help="e.g. '5 mins', '1 hour', '1 day'.", show_default=False)
    ] = None,
    outside_rth: Annotated[
        bool, typer.Option("--outside-rth", help="Include bars outside regular trading hours.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """OHLCV bars of one contract."""

    def render(result: Any) -> str:
        value = _r(result)
        head = f"{value.symbol or value.contract_id}: {len(value.bars)} bars of {value.bar_size} over {value.duration}"
        return (
            head + "\n" + table(value.bars, ["timestamp", "open", "high", "low", "close", "volume"], empty="(no bars)")
        )

    run_operation(
        _options(ctx, config, json_output, request_id),
        "historical_bars",
        {
            "contract_id": contract_id,
            "duration": duration,
            "bar_size": bar_size,
            "outside_regular_hours": outside_rth or None,
        },
        render,
    )


# ----------------------------------------------------------------------------- orders and executions

_ORDER_COLUMNS = [
    "broker_order_id",
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "filled_quantity",
    "limit_price",
    "status",
]


@orders_app.command("list")
def orders_list(
    ctx: typer.Context,
    account: AccountOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Working orders and those finished in this broker session."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "list_orders",
        {"account_id": account},
        lambda r: table(_r(r), _ORDER_COLUMNS, empty="(no orders)"),
    )


@orders_app.command("status")
def orders_status(
    ctx: typer.Context,
    account: AccountOption = None,
    broker_order_id: Annotated[
        str | None,
        typer.Option("--broker-order-id", help="Broker order id or client order id (cOID).", show_default=False),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """One order, by broker order id or client order id."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "order_status",
        {"account_id": account, "broker_order_id": broker_order_id},
        lambda r: block(_r(r)),
    )


@executions_app.command("list")
def executions_list(
    ctx: typer.Context,
    account: AccountOption = None,
    days: Annotated[
        int | None, typer.Option("--days", help="Days back, 1 to 7 (default 1).", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Fills of one account."""
    run_operation(
        _options(ctx, config, json_output, request_id),
        "list_executions",
        {"account_id": account, "days": days},
        lambda r: table(
            _r(r),
            ["execution_id", "symbol", "side", "quantity", "price", "commission", "executed_at"],
            empty="(no executions)",
        ),
    )


# ----------------------------------------------------------------------------- simulator and MCP


@simulator_app.command("serve")
def simulator_serve(
    host: Annotated[str, typer.Option("--host", help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port; 0 picks a free one.")] = 5000,
    json_output: JsonOption = False,
) -> None:
    """Serve the CPAPI simulator over HTTPS on loopback (self-signed certificate); prints its base URL."""
    from .serve_cli import serve_simulator

    serve_simulator(host=host, port=port, options=CliOptions(json=json_output))


@mcp_app.command("serve")
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
        _options(ctx, config, json_output, request_id),
        transport=transport,
        describe=describe,
        enable_remote_mcp=enable_remote_mcp,
        bind=bind,
    )


# ----------------------------------------------------------------------------- audit


@audit_app.command("tail")
def audit_tail(
    ctx: typer.Context,
    limit: Annotated[
        int | None, typer.Option("--limit", help="How many events, 1 to 1000 (default 100).", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """The newest audit events, newest first (reads only those rows)."""

    def render(result: Any) -> str:
        lines = [
            f"{r.sequence:>8}  {r.event.timestamp.isoformat()}  {r.event.tool_name or '-':<28} "
            f"{r.event.result_status:<12} {r.event.error_code or ''}".rstrip()
            for r in _r(result).events
        ]
        return "\n".join(lines) or "(no events)"

    run_operation(_options(ctx, config, json_output, request_id), "audit_tail", {"limit": limit}, render)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    limit: Annotated[
        int | None, typer.Option("--limit", help="How many events, 1 to 100000 (default 500).", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """The newest events as redacted JSONL; with --json, an object holding the JSONL and its SHA-256."""
    run_operation(
        _options(ctx, config, json_output, request_id), "audit_export", {"limit": limit}, lambda r: _r(r).jsonl
    )


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="A checkpoint file from `audit checkpoint`.", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """Recompute the whole chain; exit 2 with AUDIT_CHAIN_INVALID at the first break."""
    from .audit_cli import read_checkpoint, verify_with_progress

    options = _options(ctx, config, json_output, request_id)
    verify_with_progress(options, read_checkpoint(checkpoint, options) if checkpoint else None)


@audit_app.command("checkpoint")
def audit_checkpoint(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the checkpoint to this file.", show_default=False)
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    request_id: RequestIdOption = None,
) -> None:
    """A signed head of the chain; keep it outside the database to detect truncation and rollback."""
    from .audit_cli import save_checkpoint

    def render(result: Any) -> str:
        value = _r(result)
        if output is not None:
            save_checkpoint(value, output)
        return f"checkpoint at sequence {value.sequence}: {value.chain_hash} (key {value.key_id})"

    run_operation(_options(ctx, config, json_output, request_id), "audit_checkpoint", {}, render)


from . import orders_cli as orders_cli  # noqa: E402  (registers the order commands on the apps above)


def main() -> None:
    """Console-script entry point: usage errors get the stable error shape too."""
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except typer.TyperException as exc:
        from ibkr_gateway_core.errors import ErrorCode, GatewayError

        from .runner import fail

        format_message = getattr(exc, "format_message", None)
        message = str(format_message()) if callable(format_message) else str(exc)
        if not message:  # a command group called without a command: its help was shown
            raise SystemExit(0) from None
        fail(GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, message), CliOptions(json="--json" in sys.argv[1:]))
