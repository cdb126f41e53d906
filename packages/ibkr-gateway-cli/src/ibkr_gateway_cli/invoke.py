"""Run one table command: turn its parameters into operation arguments and switches, call, render.

Imported only when a command runs, so registering commands stays cheap.
"""

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .runner import CliOptions, run_operation
from .table import CommandSpec, Param

if TYPE_CHECKING:
    from ibkr_gateway_core.errors import GatewayError

_MISSING = r"^(\w+) is required$"
_FIELD = r"^(\w+)(\b.*)$"
"""Patterns of the Gateway's input messages, compiled on the first error only (`re` caches them)."""


def run_command(spec: CommandSpec, options: CliOptions, values: Mapping[str, Any]) -> None:
    """Call the command's operation with the values typed, as the CLI operator."""
    by_role: dict[str, dict[str, Any]] = {"field": {}, "extra": {}, "switch": {}}
    for param in spec.params:
        value = values[param.name]
        # An unset on/off flag leaves the model's default, like an unset option.
        by_role[param.role][param.name] = None if value is False else value
    switches = frozenset(
        name if value is True else f"{name}:{value}" for name, value in by_role["switch"].items() if value
    )
    runner = _RUNNERS.get(spec.operation)
    if runner is not None:
        runner(spec, options, by_role["field"], by_role["extra"], switches)
        return
    run_operation(
        options,
        spec.operation,
        by_role["field"],
        lambda result: _render(spec.operation, result.value),
        switches=switches,
        explain=lambda error: in_cli_words(error, spec.params),
    )


def _render(operation: str, value: Any) -> str:
    from .renderers import RENDERERS  # text output only: `--json` never loads the renderers

    return RENDERERS[operation](value)


def in_cli_words(error: "GatewayError", params: tuple[Param, ...]) -> "GatewayError":
    """The Gateway's input error spoken in the command line's words: `--account`, not `account_id`.

    The audit event keeps the Gateway's own text; only what the person at the terminal reads changes.
    """
    from ibkr_gateway_core.errors import ErrorCode

    flags = {param.name: param for param in params}
    prefix = "Invalid arguments: "
    if not error.message.startswith(prefix) or error.family != "input":
        return error
    parts: list[str] = []
    for part in error.message.removeprefix(prefix).rstrip(".").split("; "):
        missing = re.match(_MISSING, part)
        named = re.match(_FIELD, part)
        if missing and missing.group(1) in flags:
            param = flags[missing.group(1)]
            parts.append(f"{_spelling(param)} is required ({param.help.rstrip('.')})")
        elif part.startswith("arguments: "):  # a rule across fields: `pass exactly one of symbol and contract_id`
            words = re.sub(r"\b\w+\b", lambda m: _spelling(flags[m[0]]) if m[0] in flags else m[0], part[11:])
            parts.append(words)
        elif named and named.group(1) in flags:
            parts.append(_spelling(flags[named.group(1)]) + named.group(2))
        else:
            parts.append(part)
    error.message = prefix + "; ".join(parts) + "."
    if error.code is ErrorCode.INPUT_MISSING_ACCOUNT:
        error.user_action = "Give --account with one of the visible accounts; `ibkr-agent accounts list` lists them."
    return error


def _spelling(param: Param) -> str:
    return param.flag or param.name.upper()


def _run_audit_verify(
    spec: CommandSpec, options: CliOptions, fields: dict[str, Any], extras: dict[str, Any], switches: frozenset[str]
) -> None:
    from .audit_cli import verify

    path = fields.get("checkpoint")
    verify(options, path if isinstance(path, Path) else None)


def _run_audit_checkpoint(
    spec: CommandSpec, options: CliOptions, fields: dict[str, Any], extras: dict[str, Any], switches: frozenset[str]
) -> None:
    from .audit_cli import check_writable, save_checkpoint
    from .renderers import RENDERERS

    output = extras.get("output")
    if isinstance(output, Path):
        check_writable(output, options)

    def save(result: Any) -> None:  # with or without --json: the file is the point of --output
        if isinstance(output, Path):
            save_checkpoint(result.value, output, options)

    run_operation(
        options,
        spec.operation,
        fields,
        lambda result: RENDERERS["audit_checkpoint"](result.value),
        switches=switches,
        then=save,
    )


def _run_audit_export(
    spec: CommandSpec, options: CliOptions, fields: dict[str, Any], extras: dict[str, Any], switches: frozenset[str]
) -> None:
    from .audit_cli import export

    export(options, fields, switches, explain=lambda error: in_cli_words(error, spec.params))


_RUNNERS: Final[Mapping[str, Callable[..., None]]] = {
    "audit_export": _run_audit_export,
    "audit_verify": _run_audit_verify,
    "audit_checkpoint": _run_audit_checkpoint,
}
"""Operations whose command does more than call and render."""
