"""Build the command table from the registry, and write it as `_command_table.py`.

    uv run python -m ibkr_gateway_cli.spec           # regenerate _command_table.py
    uv run python -m ibkr_gateway_cli.spec --check   # exit 1 when it is stale

A command's parameters are its operation's input fields, spelled as the seed guide spells them
(`_FIELD_FLAGS`, with per-operation `_OPERATION_FLAGS`), then its command-line-only values
(`_EXTRA_FLAGS`), then the operator switches of that operation (`_SWITCHES`, passed to the Gateway
as switches, never as arguments). Defaults and required marks come from the input models.
`scripts/gen_docs.py` regenerates the table too, and a test fails when it differs from the registry,
so a new operation cannot drift from its command.
"""

import argparse
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Final, cast

from ibkr_gateway_core.registry import OPERATIONS, Operation
from pydantic_core import PydanticUndefined

from .table import CommandSpec, Default, Param

TABLE_PATH: Final = Path(__file__).with_name("_command_table.py")

_FIELD_FLAGS: Final[Mapping[str, Param]] = {
    "account_id": Param("account_id", "--account", "IBKR account id, e.g. DU1234567."),
    "query": Param("query", None, "Symbol, e.g. AAPL."),
    "asset_class": Param("asset_class", "--asset-class", "stock, etf, option, future, ..."),
    "currency": Param("currency", "--currency", "ISO currency, e.g. USD."),
    "exchange": Param("exchange", "--exchange", "Exchange, e.g. NASDAQ."),
    "contract_id": Param("contract_id", "--contract-id", "IBKR contract id (conid), e.g. 265598."),
    "duration": Param("duration", "--duration", "How far back, e.g. '1 D', '2 W'."),
    "bar_size": Param("bar_size", "--bar-size", "Bar size, e.g. '5 mins', '1 hour', '1 day'."),
    "outside_regular_hours": Param(
        "outside_regular_hours", "--outside-rth", "Include bars outside regular trading hours.", "bool"
    ),
    "broker_order_id": Param("broker_order_id", "--broker-order-id", "Broker order id to cancel."),
    "days": Param("days", "--days", "Days back, 1 to 7.", "int"),
    "checkpoint": Param("checkpoint", "--checkpoint", "A checkpoint file from `audit checkpoint`.", "path"),
    "source": Param(
        "source",
        "--from",
        "The SQLite state file to import: a backup, or state.sqlite3 of the old state directory.",
        "path",
    ),
    "to": Param("to", "--to", "The new file to write the backup to; it must not exist yet.", "path"),
    "symbol": Param("symbol", "--symbol", "Symbol, e.g. AAPL (or give --contract-id)."),
    "side": Param("side", "--side", "buy or sell."),
    "quantity": Param("quantity", "--quantity", "Quantity, e.g. 1.", "decimal"),
    "order_type": Param(
        "order_type", "--order-type", "limit, stop, stop-limit, trailing-stop or market.", default="limit"
    ),
    "limit_price": Param("limit_price", "--limit-price", "Limit price.", "decimal"),
    "stop_price": Param("stop_price", "--stop-price", "Stop price.", "decimal"),
    "trailing_amount": Param("trailing_amount", "--trailing-amount", "Trailing offset as an amount.", "decimal"),
    "trailing_percent": Param("trailing_percent", "--trailing-percent", "Trailing offset in percent.", "decimal"),
    "time_in_force": Param("time_in_force", "--tif", "Time in force: day or gtc.", default="day"),
    "approval_id": Param("approval_id", "--approval-id", "Approval id from `approvals create`."),
    "idempotency_key": Param(
        "idempotency_key", "--idempotency-key", "Unique per intended order; a retry never sends twice."
    ),
    "preview_id": Param("preview_id", "--preview-id", "Preview to approve."),
    "ttl_seconds": Param("ttl_seconds", "--ttl-seconds", "Lifetime in seconds.", "int"),
    "reason": Param("reason", "--reason", "Why; kept with the switch and audited."),
    "fresh": Param("fresh", "--fresh", "Invalidate IBKR's positions cache first (one extra broker call).", "bool"),
    "take_profit_price": Param(
        "take_profit_price", "--take-profit-price", "Limit price of the take-profit exit.", "decimal"
    ),
    "stop_loss_price": Param("stop_loss_price", "--stop-loss-price", "Stop price of the stop-loss exit.", "decimal"),
    "fingerprint": Param(
        "fingerprint", "--fingerprint", "The preview fingerprint you reviewed; a changed order is refused."
    ),
    "month": Param("month", "--month", "Expiry month, e.g. AUG24."),
    "expiry": Param("expiry", "--expiry", "One expiry date within the month, YYYYMMDD."),
    "strike_count": Param("strike_count", "--strikes", "Strikes nearest the money, 1 to 20.", "int"),
    "right": Param("right", "--right", "call, put or both."),
    "scan_code": Param("scan_code", "--scan", "Scan type code, e.g. TOP_PERC_GAIN."),
    "instrument": Param("instrument", "--instrument", "Instrument code."),
    "location": Param("location", "--location", "Location code."),
    "base": Param("base", "--base", "Currency to convert from, e.g. EUR."),
    "quote": Param("quote", "--quote", "Currency to convert to, e.g. USD."),
    "status": Param("status", "--status", "open, filled, cancelled, inactive or all."),
    "since": Param("since", "--since", "Only orders updated at or after this time (ISO 8601)."),
    "until": Param("until", "--until", "Only orders updated at or before this time (ISO 8601)."),
    "levels": Param("levels", "--levels", "Levels per side, 1 to 20.", "int"),
    "article_id": Param("article_id", "--article-id", "Article id from a headline."),
}
"""Input field → its flag, wherever the field appears."""

_OPERATION_FLAGS: Final[Mapping[tuple[str, str], Param | None]] = {
    ("order_status", "broker_order_id"): Param(
        "broker_order_id", "--broker-order-id", "Broker order id or client order id (cOID)."
    ),
    ("audit_tail", "limit"): Param("limit", "--limit", "How many events, 1 to 1000.", "int"),
    ("audit_export", "limit"): Param("limit", "--limit", "How many events, 1 to 100000.", "int"),
    ("list_approvals", "limit"): Param("limit", "--limit", "How many approvals.", "int"),
    ("create_approval", "mode"): Param(
        "mode",
        "--mode",
        "paper or live: the only submit the approval allows (default: the account's mode at the broker).",
    ),
    ("preview_order", "currency"): Param("currency", "--currency", "Order currency.", default="USD"),
    ("preview_order", "exchange"): Param("exchange", "--exchange", "Routing exchange.", default="SMART"),
    ("preview_order", "outside_regular_hours"): None,
    ("option_expirations", "contract_id"): Param(
        "contract_id", "--contract-id", "Underlying conid, when the symbol means several."
    ),
    ("options_chain", "contract_id"): Param(
        "contract_id", "--contract-id", "Underlying conid, when the symbol means several."
    ),
    ("option_strikes", "contract_id"): Param("contract_id", "--contract-id", "Underlying conid, e.g. 265598."),
    ("scanner_run", "limit"): Param("limit", "--limit", "Rows, 1 to 50.", "int"),
    ("orders_history", "limit"): Param("limit", "--limit", "At most this many, 1 to 500.", "int"),
    ("transactions", "days"): Param("days", "--days", "Days back, 1 to 365.", "int"),
    ("transactions", "currency"): Param("currency", "--currency", "Currency of the amounts."),
    ("list_previews", "limit"): Param("limit", "--limit", "How many previews.", "int"),
    ("list_previews", "pending_only"): Param(
        "pending_only", "--pending", "Only previews waiting for a decision.", "bool"
    ),
    ("deny_preview", "preview_id"): Param("preview_id", "--preview-id", "Preview to deny."),
    ("deny_preview", "reason"): Param("reason", "--reason", "Why; shown to the agent and audited.", default="denied"),
    ("revoke_approval", "reason"): Param(
        "reason", "--reason", "Why; kept with the approval (`revoke_reason`) and audited.", default="revoked"
    ),
    ("preview_bracket_order", "limit_price"): Param(
        "limit_price", "--limit-price", "Limit price of the entry (parent) order.", "decimal"
    ),
    ("preview_bracket_order", "currency"): Param("currency", "--currency", "Order currency.", default="USD"),
    ("preview_bracket_order", "exchange"): Param("exchange", "--exchange", "Routing exchange.", default="SMART"),
    ("preview_order_modify", "broker_order_id"): Param(
        "broker_order_id", "--broker-order-id", "Broker order id of the order to change."
    ),
    ("preview_order_modify", "quantity"): Param("quantity", "--quantity", "New total quantity.", "decimal"),
    ("preview_order_modify", "limit_price"): Param("limit_price", "--limit-price", "New limit price.", "decimal"),
    ("preview_order_modify", "stop_price"): Param("stop_price", "--stop-price", "New stop price.", "decimal"),
    ("preview_order_modify", "time_in_force"): Param("time_in_force", "--tif", "New time in force: day or gtc."),
    ("cancel_paper_bracket_order", "broker_order_id"): Param(
        "broker_order_id", "--broker-order-id", "Broker order id of the bracket's parent."
    ),
    ("cancel_live_bracket_order", "broker_order_id"): Param(
        "broker_order_id", "--broker-order-id", "Broker order id of the bracket's parent."
    ),
}
"""(operation, input field) → its flag for that operation only; None keeps the field off the command line."""

_EXTRA_FLAGS: Final[Mapping[str, tuple[Param, ...]]] = {
    "audit_checkpoint": (Param("output", "--output", "Also write the checkpoint to this file.", "path", role="extra"),),
}
"""Command-line-only parameters of an operation, not operation inputs."""

_SWITCH_FLAGS: Final[Mapping[str, Param]] = {
    "enable_preview": Param("enable_preview", "--enable-preview", "Enable order preview for this call.", "bool"),
    "enable_paper": Param("enable_paper", "--enable-paper", "Enable paper trading for this call.", "bool"),
    "enable_live": Param("enable_live", "--enable-live", "Enable live trading for this call.", "bool"),
    "live_scope": Param("live_scope", "--live-scope", "Confirm the live scope for this call.", "bool"),
    "open_kill_switch": Param(
        "open_kill_switch",
        "--open-kill-switch",
        "Confirm the kill switch is open (with the simulator, open it); a real broker needs `kill-switch open`.",
        "bool",
    ),
    "acknowledge_paper_to_live": Param(
        "acknowledge_paper_to_live",
        "--acknowledge-paper-to-live",
        "Acknowledge the paper-to-live checklist for this call.",
        "bool",
    ),
    "live_broker": Param(
        "live_broker",
        "--live-broker",
        "local-candidate (no broker call), client-portal or refusing.",
        default="local-candidate",
    ),
}
"""Operator switch → its flag. A set flag gives the switch `name`; a text flag gives `name:value`."""

_LIVE: Final = ("enable_live", "live_scope", "open_kill_switch", "acknowledge_paper_to_live", "live_broker")
_SWITCHES: Final[Mapping[str, tuple[str, ...]]] = {
    "preview_order": ("enable_preview",),
    "submit_paper_order": ("enable_paper",),
    "cancel_paper_order": ("enable_paper",),
    "submit_live_order": _LIVE,
    "cancel_live_order": _LIVE,
    "preview_bracket_order": ("enable_preview",),
    "submit_paper_bracket_order": ("enable_paper",),
    "cancel_paper_bracket_order": ("enable_paper",),
    "submit_live_bracket_order": _LIVE,
    "cancel_live_bracket_order": _LIVE,
    "preview_order_modify": ("enable_preview",),
    "modify_paper_order": ("enable_paper",),
    "modify_live_order": _LIVE,
}
"""Operation → the operator switches its command offers."""

_HELP_NOTES: Final[Mapping[str, str]] = {
    "audit_export": "Prints the JSONL alone; with --json, an object holding the JSONL and its SHA-256.",
    "audit_verify": "Exits 2 with AUDIT_CHAIN_INVALID when the chain is broken.",
}
"""What the command line adds to an operation's description."""


def _model_default(value: object) -> Default:
    """A model default as the command line shows and sends it; None when there is none worth showing."""
    if value is PydanticUndefined or value is None or value is False:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    return None


def field_flags(operation: Operation) -> dict[str, Param]:
    """The parameter of each input field the command line offers, in the model's field order.

    Defaults the flag table does not set come from the model; a field the model requires is marked required.

    Raises:
        LookupError: when a field has no flag, so a new input field cannot go unnoticed.
    """
    flags: dict[str, Param] = {}
    for name, info in operation.input_model.model_fields.items():
        key = (operation.name, name)
        flag = _OPERATION_FLAGS[key] if key in _OPERATION_FLAGS else _FIELD_FLAGS.get(name)
        if key not in _OPERATION_FLAGS and flag is None:
            raise LookupError(f"input field {name!r} of {operation.name} has no command-line flag")
        if flag is None:
            continue
        default = flag.default if flag.default is not None else _model_default(info.default)
        if flag.kind == "bool":
            default = None
        flags[name] = flag._replace(default=default, required=info.is_required())
    return flags


def help_for(operation: Operation) -> str:
    """The command's help: the operation's description, plus what only the command line does."""
    note = _HELP_NOTES.get(operation.name)
    return f"{operation.description} {note}" if note else operation.description


def command_table() -> tuple[CommandSpec, ...]:
    """One command per registry operation, in registry order.

    Raises:
        ValueError: when an operation's command has more than two words.
    """
    specs: list[CommandSpec] = []
    for operation in OPERATIONS.values():
        if len(operation.cli) > 2:
            raise ValueError(f"{operation.cli_command!r}: commands are at most two words")
        switches = tuple(_SWITCH_FLAGS[name]._replace(role="switch") for name in _SWITCHES.get(operation.name, ()))
        params = (*field_flags(operation).values(), *_EXTRA_FLAGS.get(operation.name, ()), *switches)
        specs.append(CommandSpec(operation.name, operation.cli, help_for(operation), params))
    return tuple(specs)


def _literal(value: object) -> str:
    """A Python literal as the formatter writes it: double quotes unless that needs more escapes."""
    if isinstance(value, str):
        if '"' in value and "'" not in value:
            return repr(value)
        return '"' + repr(value)[1:-1].replace('"', '\\"').replace("\\'", "'") + '"'
    if isinstance(value, tuple):
        items = cast(tuple[object, ...], value)
        return "(" + ", ".join(_literal(item) for item in items) + ("," if len(items) == 1 else "") + ")"
    return repr(value)


def _call(name: str, args: list[str], indent: str) -> list[str]:
    inner = indent + "    "
    return [f"{indent}{name}(", *(f"{inner}{arg}," for arg in args), f"{indent}),"]


def render_table() -> str:
    """The source of `_command_table.py`, laid out as the formatter lays it out."""
    lines = [
        '"""Generated by `python -m ibkr_gateway_cli.spec` from the operation registry; do not edit by hand."""',
        "",
        "from .table import CommandSpec, Param",
        "",
        "COMMANDS: tuple[CommandSpec, ...] = (",
    ]
    for spec in command_table():
        params: list[str] = []
        for param in spec.params:
            fields = (param.name, param.flag, param.help, param.kind, param.default, param.required, param.role)
            params.extend(_call("Param", [_literal(item) for item in fields], " " * 12))
        head = [_literal(spec.operation), _literal(spec.words), _literal(spec.help)]
        body = ["(", *params, "        )"] if params else ["()"]
        lines.extend(_call("CommandSpec", [*head, "\n".join(body)], "    "))
    lines.append(")")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the table, or with `--check` report whether the committed one is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when _command_table.py is stale")
    args = parser.parse_args(argv)
    text = render_table()
    current = TABLE_PATH.read_text(encoding="utf-8") if TABLE_PATH.exists() else ""
    if args.check:
        if current != text:
            sys.stderr.write("_command_table.py is stale: run `uv run python -m ibkr_gateway_cli.spec`\n")
            return 1
        return 0
    if current != text:
        TABLE_PATH.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {TABLE_PATH.name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
