"""The registry-backed commands: one typer command per `Operation`, built from the registry.

A command's parameters are its operation's input fields, spelled as the seed guide spells them
(`_FIELD_FLAGS`, with per-operation `_OPERATION_FLAGS`), then the operator switches of that
operation (`_SWITCHES`, passed to the Gateway as switches, never as arguments), then the global
options. The command parses them, calls the one operation as the CLI operator and renders the
result (`RENDERERS`); every check lives in the Gateway.
"""

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import typer
from ibkr_gateway_core.registry import OPERATIONS, Operation

from .renderers import RENDERERS
from .runner import CliOptions, run_operation


@dataclass(frozen=True, slots=True)
class Flag:
    """One command-line parameter: an option, or a positional argument when `flag` is None."""

    flag: str | None
    help: str
    kind: object = str | None
    """The Python type typer converts the text to."""
    default: object = None
    """None leaves the input model's default; the default is shown in `--help` only when it is not None."""

    def parameter(self, name: str) -> inspect.Parameter:
        """The typer parameter named `name`, declared the default-value way."""
        show = self.default is not None
        info: Any = (
            typer.Argument(self.default, help=self.help, show_default=show)
            if self.flag is None
            else typer.Option(self.default, self.flag, help=self.help, show_default=show)
        )
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=self.kind)

    def annotation(self) -> Any:
        """The `typer.Option` for an `Annotated[...]` parameter of a hand-written command."""
        return typer.Option(self.flag, help=self.help, show_default=self.default is not None)


CONFIG: Final = Flag("--config", "YAML config file; without it the embedded CPAPI simulator is used.", Path | None)
JSON: Final = Flag("--json", "Print JSON on stdout (errors as JSON on stderr).", bool, False)
REQUEST_ID: Final = Flag("--request-id", "Correlation id recorded in the audit event.")
_GLOBAL_FLAGS: Final = {"config": CONFIG, "json_output": JSON, "request_id": REQUEST_ID}

_FIELD_FLAGS: Final[Mapping[str, Flag]] = {
    "account_id": Flag("--account", "IBKR account id, e.g. DU1234567."),
    "query": Flag(None, "Symbol, e.g. AAPL."),
    "asset_class": Flag("--asset-class", "stock, etf, option, future, ..."),
    "currency": Flag("--currency", "ISO currency, e.g. USD."),
    "exchange": Flag("--exchange", "Exchange, e.g. NASDAQ."),
    "contract_id": Flag("--contract-id", "IBKR contract id (conid), e.g. 265598."),
    "duration": Flag("--duration", "How far back, e.g. '1 D', '2 W'."),
    "bar_size": Flag("--bar-size", "e.g. '5 mins', '1 hour', '1 day'."),
    "outside_regular_hours": Flag("--outside-rth", "Include bars outside regular trading hours.", bool, False),
    "broker_order_id": Flag("--broker-order-id", "Broker order id to cancel."),
    "days": Flag("--days", "Days back, 1 to 7 (default 1).", int | None),
    "checkpoint": Flag("--checkpoint", "A checkpoint file from `audit checkpoint`.", Path | None),
    "symbol": Flag("--symbol", "Symbol, e.g. AAPL."),
    "side": Flag("--side", "buy or sell."),
    "quantity": Flag("--quantity", "Quantity, e.g. 1."),
    "order_type": Flag("--order-type", "limit, stop, stop-limit, trailing-stop or market.", str, "limit"),
    "limit_price": Flag("--limit-price", "Limit price."),
    "stop_price": Flag("--stop-price", "Stop price."),
    "trailing_amount": Flag("--trailing-amount", "Trailing offset as an amount."),
    "trailing_percent": Flag("--trailing-percent", "Trailing offset in percent."),
    "time_in_force": Flag("--tif", "Time in force: day or gtc.", str, "day"),
    "approval_id": Flag("--approval-id", "Approval id from `approvals create`."),
    "idempotency_key": Flag("--idempotency-key", "Unique per intended order; a retry never sends twice."),
    "preview_id": Flag("--preview-id", "Preview to approve."),
    "ttl_seconds": Flag("--ttl-seconds", "Lifetime in seconds (default 300).", int | None),
    "reason": Flag("--reason", "Why; kept with the switch and audited."),
    "fresh": Flag("--fresh", "Invalidate IBKR's positions cache first (one extra broker call).", bool, False),
    "take_profit_price": Flag("--take-profit-price", "Limit price of the take-profit exit."),
    "stop_loss_price": Flag("--stop-loss-price", "Stop price of the stop-loss exit."),
    "fingerprint": Flag("--fingerprint", "The preview fingerprint you reviewed; a changed order is refused."),
    "month": Flag("--month", "Expiry month, e.g. AUG24."),
    "expiry": Flag("--expiry", "One expiry date within the month, YYYYMMDD."),
    "strike_count": Flag("--strikes", "Strikes nearest the money, 1 to 20 (default 6).", int | None),
    "right": Flag("--right", "call, put or both (default both)."),
    "scan_code": Flag("--scan", "Scan type code, e.g. TOP_PERC_GAIN."),
    "instrument": Flag("--instrument", "Instrument code (default STK)."),
    "location": Flag("--location", "Location code (default STK.US.MAJOR)."),
    "base": Flag("--base", "Currency to convert from, e.g. EUR."),
    "quote": Flag("--quote", "Currency to convert to, e.g. USD."),
    "status": Flag("--status", "open, filled, cancelled, inactive or all (default all)."),
    "since": Flag("--since", "Only orders updated at or after this time (ISO 8601)."),
    "until": Flag("--until", "Only orders updated at or before this time (ISO 8601)."),
    "levels": Flag("--levels", "Levels per side, 1 to 20 (default 5).", int | None),
    "article_id": Flag("--article-id", "Article id from a headline."),
}
"""Input field → its flag, wherever the field appears."""

_OPERATION_FLAGS: Final[Mapping[tuple[str, str], Flag | None]] = {
    ("order_status", "broker_order_id"): Flag("--broker-order-id", "Broker order id or client order id (cOID)."),
    ("audit_tail", "limit"): Flag("--limit", "How many events, 1 to 1000 (default 100).", int | None),
    ("audit_export", "limit"): Flag("--limit", "How many events, 1 to 100000 (default 500).", int | None),
    ("list_approvals", "limit"): Flag("--limit", "How many (default 50).", int | None),
    ("create_approval", "mode"): Flag(
        "--mode", "paper or live: the only submit the approval allows (default: the account's mode at the broker)."
    ),
    ("list_previews", "limit"): Flag("--limit", "How many (default 50).", int | None),
    ("list_previews", "pending_only"): Flag("--pending", "Only previews waiting for a decision.", bool, False),
    ("deny_preview", "preview_id"): Flag("--preview-id", "Preview to deny."),
    ("deny_preview", "reason"): Flag("--reason", "Why; shown to the agent and audited.", str, "denied"),
    ("preview_order", "currency"): Flag("--currency", "Order currency.", str, "USD"),
    ("preview_order", "exchange"): Flag("--exchange", "Routing exchange (default SMART)."),
    ("preview_order", "outside_regular_hours"): None,
    ("preview_bracket_order", "limit_price"): Flag("--limit-price", "Limit price of the entry (parent) order."),
    ("preview_bracket_order", "currency"): Flag("--currency", "Order currency.", str, "USD"),
    ("preview_bracket_order", "exchange"): Flag("--exchange", "Routing exchange (default SMART)."),
    ("preview_order_modify", "broker_order_id"): Flag("--broker-order-id", "Broker order id of the order to change."),
    ("preview_order_modify", "quantity"): Flag("--quantity", "New total quantity."),
    ("preview_order_modify", "limit_price"): Flag("--limit-price", "New limit price."),
    ("preview_order_modify", "stop_price"): Flag("--stop-price", "New stop price."),
    ("preview_order_modify", "time_in_force"): Flag("--tif", "New time in force: day or gtc."),
    ("cancel_paper_bracket_order", "broker_order_id"): Flag(
        "--broker-order-id", "Broker order id of the bracket's parent."
    ),
    ("cancel_live_bracket_order", "broker_order_id"): Flag(
        "--broker-order-id", "Broker order id of the bracket's parent."
    ),
    ("option_expirations", "contract_id"): Flag("--contract-id", "Underlying conid, when the symbol means several."),
    ("options_chain", "contract_id"): Flag("--contract-id", "Underlying conid, when the symbol means several."),
    ("option_strikes", "contract_id"): Flag("--contract-id", "Underlying conid, e.g. 265598."),
    ("scanner_run", "limit"): Flag("--limit", "Rows, 1 to 50 (default 25).", int | None),
    ("orders_history", "limit"): Flag("--limit", "At most this many, 1 to 500 (default 100).", int | None),
    ("transactions", "days"): Flag("--days", "Days back, 1 to 365 (default 90).", int | None),
    ("transactions", "currency"): Flag("--currency", "Currency of the amounts (default USD)."),
}
"""(operation, input field) → its flag for that operation only; None keeps the field off the command line."""

_EXTRA_FLAGS: Final[Mapping[str, Mapping[str, Flag]]] = {
    "audit_checkpoint": {"output": Flag("--output", "Also write the checkpoint to this file.", Path | None)},
}
"""Command-line-only parameters of an operation, not operation inputs."""

_SWITCH_FLAGS: Final[Mapping[str, Flag]] = {
    "enable_preview": Flag("--enable-preview", "Enable order preview for this call.", bool, False),
    "enable_paper": Flag("--enable-paper", "Enable paper trading for this call.", bool, False),
    "enable_live": Flag("--enable-live", "Enable live trading for this call.", bool, False),
    "live_scope": Flag("--live-scope", "Confirm the live scope for this call.", bool, False),
    "open_kill_switch": Flag(
        "--open-kill-switch",
        "Confirm the kill switch is open (with the simulator, open it); a real broker needs `kill-switch open`.",
        bool,
        False,
    ),
    "acknowledge_paper_to_live": Flag(
        "--acknowledge-paper-to-live", "Acknowledge the paper-to-live checklist for this call.", bool, False
    ),
    "live_broker": Flag(
        "--live-broker", "local-candidate (no broker call), client-portal or refusing.", str, "local-candidate"
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


@dataclass(frozen=True, slots=True)
class Invocation:
    """One command as typed: its operation, options, arguments, switches and command-line-only values."""

    operation: Operation
    options: CliOptions
    arguments: Mapping[str, object]
    switches: frozenset[str] = frozenset()
    extras: Mapping[str, object] = field(default_factory=dict[str, object])

    def run(self, render: Callable[[Any], str] | None = None) -> None:
        """Call the operation and print its result, rendered by `render` or the operation's renderer."""
        text = render or RENDERERS[self.operation.name]
        run_operation(
            self.options, self.operation.name, self.arguments, lambda result: text(result.value), switches=self.switches
        )


def _run_audit_verify(call: Invocation) -> None:
    from .audit_cli import verify

    path = call.arguments.get("checkpoint")
    verify(call.options, path if isinstance(path, Path) else None)


def _run_audit_checkpoint(call: Invocation) -> None:
    from .audit_cli import save_checkpoint

    output = call.extras.get("output")

    def render(value: Any) -> str:
        if isinstance(output, Path):
            save_checkpoint(value, output)
        return RENDERERS["audit_checkpoint"](value)

    call.run(render)


_RUNNERS: Final[Mapping[str, Callable[[Invocation], None]]] = {
    "audit_verify": _run_audit_verify,
    "audit_checkpoint": _run_audit_checkpoint,
}
"""Operations whose command does more than call and render."""


def options_from(ctx: typer.Context, config: Path | None, json_output: bool, request_id: str | None) -> CliOptions:
    """The global options given before the command words, overridden by those given after them."""
    parent: CliOptions = ctx.find_root().obj or CliOptions()
    return parent.merged(config=config, json_output=json_output, request_id=request_id)


def field_flags(operation: Operation) -> dict[str, Flag]:
    """The flag of each input field the command line offers, in the model's field order.

    Raises:
        LookupError: when a field has no flag, so a new input field cannot go unnoticed.
    """
    flags: dict[str, Flag] = {}
    for name in operation.input_model.model_fields:
        key = (operation.name, name)
        flag = _OPERATION_FLAGS[key] if key in _OPERATION_FLAGS else _FIELD_FLAGS.get(name)
        if key not in _OPERATION_FLAGS and flag is None:
            raise LookupError(f"input field {name!r} of {operation.name} has no command-line flag")
        if flag is not None:
            flags[name] = flag
    return flags


def _switches(names: tuple[str, ...], values: Mapping[str, Any]) -> frozenset[str]:
    given = (name if values[name] is True else f"{name}:{values[name]}" for name in names if values[name])
    return frozenset(given)


def command_for(operation: Operation) -> Callable[..., None]:
    """The typer callback of one operation; typer reads its parameters from `__signature__`."""
    fields = field_flags(operation)
    extras = _EXTRA_FLAGS.get(operation.name, {})
    switches = _SWITCHES.get(operation.name, ())
    run = _RUNNERS.get(operation.name, Invocation.run)

    def command(ctx: typer.Context, **values: Any) -> None:
        run(
            Invocation(
                operation,
                options_from(ctx, values["config"], values["json_output"], values["request_id"]),
                # An unset on/off flag leaves the model's default, like an unset option.
                {name: None if values[name] is False else values[name] for name in fields},
                _switches(switches, values),
                {name: values[name] for name in extras},
            )
        )

    declared = {**fields, **extras, **{name: _SWITCH_FLAGS[name] for name in switches}, **_GLOBAL_FLAGS}
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    signature = inspect.Signature([context, *(flag.parameter(name) for name, flag in declared.items())])
    vars(command)["__signature__"] = signature  # what inspect.signature, and so typer, reads
    return command


def help_for(operation: Operation) -> str:
    """The command's help: the operation's description, plus what only the command line does."""
    note = _HELP_NOTES.get(operation.name)
    return f"{operation.description} {note}" if note else operation.description


def add_operation_commands(root: typer.Typer, groups: Mapping[str, typer.Typer]) -> None:
    """Add one command per registry operation: `health` on `root`, `accounts list` on `groups["accounts"]`."""
    for operation in OPERATIONS.values():
        *group, word = operation.cli
        target = groups[group[0]] if group else root
        if len(group) > 1:
            raise ValueError(f"{operation.cli_command!r}: commands are at most two words")
        target.command(word, help=help_for(operation))(command_for(operation))
