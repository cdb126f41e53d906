"""The registry-backed commands, registered from the generated command table.

`_command_table.COMMANDS` holds, per registry operation, its words, help and parameters (built by
`spec.py` from the registry, checked by a test). Registering a command therefore imports nothing
from the core; the command's callback imports `invoke`, which calls the one operation as the CLI
operator and renders the result. Every check lives in the Gateway.
"""

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import typer
from typer.core import TyperCommand, TyperGroup

from ._command_table import COMMANDS
from .runner import CliOptions
from .table import CommandSpec, Param

_KINDS: Final[Mapping[str, object]] = {
    "str": str | None,
    "decimal": str | None,
    "int": int | None,
    "bool": bool,
    "path": Path | None,
}
"""Table kind → the Python type typer converts the text to (numbers as text: the model parses them exactly)."""

CONFIG: Final = Param(
    "config", "--config", "YAML config file; without it the embedded CPAPI simulator is used.", "path"
)
JSON: Final = Param("json_output", "--json", "Print JSON on stdout (errors as JSON on stderr).", "bool")
REQUEST_ID: Final = Param("request_id", "--request-id", "Correlation id recorded in the audit event.")
GLOBALS: Final = (CONFIG, JSON, REQUEST_ID)


def parameter_info(param: Param) -> Any:
    """The `typer.Option` (or `typer.Argument`) of one table parameter, default included."""
    show = param.default is not None
    if param.flag is None:
        return typer.Argument(param.default, help=param.help, show_default=show, metavar=param.name.upper())
    flag = param.kind == "bool"
    # typer shows `<bool>` after an on/off flag although it takes no value: an empty metavar hides it.
    return typer.Option(
        False if flag else param.default, param.flag, help=param.help, show_default=show, metavar="" if flag else None
    )


def annotated(param: Param) -> Any:
    """The `typer.Option` for an `Annotated[...]` parameter of a hand-written command (no default inside)."""
    flag = param.kind == "bool"
    return typer.Option(param.flag, help=param.help, show_default=False, metavar="" if flag else None)


class Command(TyperCommand):
    """A command whose `--help` marks the parameters the operation requires, without the parser enforcing them.

    The Gateway refuses a missing value with the same code the MCP tool gets (`INPUT_MISSING_ACCOUNT`,
    ...), and the audit log records it; the parser only shows which ones are required.
    """

    required_params: frozenset[str] = frozenset()

    def format_help(self, ctx: Any, formatter: Any) -> None:  # noqa: D102
        marked = [param for param in self.params if param.name in self.required_params and not param.required]
        for param in marked:
            param.required = True
        try:
            super().format_help(ctx, formatter)
        finally:
            for param in marked:
                param.required = False

    def get_help_option(self, ctx: Any) -> Any:  # noqa: D102
        return _no_metavar(super().get_help_option(ctx))


class Group(TyperGroup):
    """A command group whose `--help` option shows no `<bool>`."""

    def get_help_option(self, ctx: Any) -> Any:  # noqa: D102
        return _no_metavar(super().get_help_option(ctx))


def _no_metavar(option: Any) -> Any:
    if option is not None:
        option.metavar = ""
    return option


def options_from(ctx: typer.Context, config: Path | None, json_output: bool, request_id: str | None) -> CliOptions:
    """The global options given before the command words, overridden by those given after them."""
    parent: CliOptions = ctx.find_root().obj or CliOptions()
    return parent.merged(config=config, json_output=json_output, request_id=request_id)


def command_for(spec: CommandSpec) -> Callable[..., None]:
    """The typer callback of one operation; typer reads its parameters from `__signature__`."""

    def command(ctx: typer.Context, **values: Any) -> None:
        from .invoke import run_command  # the core, renderers and audit helpers load only now

        options = options_from(ctx, values.pop("config"), values.pop("json_output"), values.pop("request_id"))
        run_command(spec, options, values)

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    declared = [
        inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=parameter_info(p), annotation=_KINDS[p.kind])
        for p in (*spec.params, *GLOBALS)
    ]
    vars(command)["__signature__"] = inspect.Signature([context, *declared])  # what typer reads
    return command


def add_operation_commands(root: typer.Typer, groups: Mapping[str, typer.Typer]) -> None:
    """Add one command per operation of the table: `health` on `root`, `accounts list` on `groups["accounts"]`."""
    for spec in COMMANDS:
        *group, word = spec.words
        target = groups[group[0]] if group else root
        required = frozenset(p.name for p in spec.params if p.required)
        kind = type("Command", (Command,), {"required_params": required})
        target.command(word, help=spec.help, cls=kind)(command_for(spec))


def command_paths() -> list[tuple[str, ...]]:
    """Every command of the table as its words, for suggestions."""
    return [spec.words for spec in COMMANDS]
