"""The console entry point: a plain command line runs without building the typer parser.

`ibkr-agent health --json` used to pay for typer and click building a parser for every parameter
of the command before the command ran, about as long as importing typer and pydantic together.
`parse` reads the command line directly against the generated command table (`_command_table.py`:
words, option names, kinds, defaults) and accepts only what it is sure the typer app reads the same
way: the command's words, its options each given once (`--flag value` or `--flag=value`), on/off flags
without a value, at most the one positional argument, decimal integers, and the global options
(`--config`, `--json`, `--request-id`) before the words or after them.

Anything else goes to the typer app, unchanged: `--help`, `--version`, shell completion, the
servers (`simulator serve`, `mcp serve`, `desk serve`), a group without a command, and every command
line the fast parser does not accept (unknown or repeated option, missing value, `--`, a value that
starts with `-`, a number typer would have to interpret). Usage errors therefore keep typer's exact
messages, exit codes and audit events; a test checks that both paths call the command with the same
values and print the same bytes.
"""

import atexit
import gc
import os
import re
import sys
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, NamedTuple

from ._command_table import COMMANDS
from .runner import CliOptions
from .table import CommandSpec, Param

_GLOBAL_FLAGS: Final[Mapping[str, str]] = {"--config": "path", "--json": "bool", "--request-id": "str"}
"""The options of the `ibkr-agent` callback and of every table command (`commands.GLOBALS`)."""

_INT: Final = re.compile(r"[0-9]{1,18}")
"""The integers both parsers read alike; anything else (`+7`, ` 7`, `7_0`, `-1`, huge) goes to typer."""

_BY_WORDS: Final[Mapping[tuple[str, ...], CommandSpec]] = {spec.words: spec for spec in COMMANDS}


class Parsed(NamedTuple):
    """A command line the fast path accepted: the command, its global options and its parameter values.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    spec: CommandSpec
    options: CliOptions
    values: dict[str, Any]
    """Every parameter of the command, as typer passes them: unset options as their default, flags as booleans."""


def _convert(kind: str, text: str) -> object | None:
    """The value typer would pass for `text`, or None when the fast path leaves the text to typer."""
    if not text or text.startswith("-"):
        return None
    try:
        text.encode("utf-8")  # undecodable bytes (surrogate escapes): typer decides
    except UnicodeEncodeError:
        return None
    if kind == "int":
        return int(text) if _INT.fullmatch(text) else None
    if kind == "path":
        return Path(text)
    return text  # str and decimal (numbers travel as text; the input model parses them exactly)


def _completion_requested(environ: Mapping[str, str]) -> bool:
    return any(key.startswith("_") and key.endswith("_COMPLETE") and value for key, value in environ.items())


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Parsed | None:
    """The command line as the typer app would read it, or None to let the typer app read it."""
    if _completion_requested(os.environ if environ is None else environ):
        return None
    tokens = list(argv)
    given: dict[str, object] = {}
    position = 0
    # The global options before the command words.
    while position < len(tokens) and tokens[position].startswith("-"):
        taken = _option(tokens, position, _GLOBAL_FLAGS, given)
        if taken is None:
            return None
        position += taken
    words = tuple(tokens[position : position + 2])
    spec = _BY_WORDS.get(words[:1]) or _BY_WORDS.get(words)
    if spec is None:
        return None
    position += len(spec.words)
    at_root = set(given)
    root = CliOptions(
        config=_as_path(given.pop("--config", None)),
        json=given.pop("--json", False) is True,
        request_id=_as_text(given.pop("--request-id", None)),
    )
    kinds = {**{p.flag: p.kind for p in spec.params if p.flag is not None}, **_GLOBAL_FLAGS}
    positional = [p for p in spec.params if p.flag is None]
    arguments: list[str] = []
    while position < len(tokens):
        token = tokens[position]
        if not token.startswith("-"):
            arguments.append(token)
            position += 1
            continue
        if token.split("=", 1)[0] in at_root:
            return None  # given before and after the words: typer merges them, the fast path leaves it
        taken = _option(tokens, position, kinds, given)
        if taken is None:
            return None
        position += taken
    if len(arguments) > len(positional):
        return None
    values: dict[str, Any] = {}
    for param in spec.params:
        values[param.name] = _value(param, given, positional, arguments)
        if values[param.name] is _REFUSED:
            return None
    options = root.merged(
        config=_as_path(given.get("--config")),
        json_output=given.get("--json", False) is True,
        request_id=_as_text(given.get("--request-id")),
    )
    return Parsed(spec, options, values)


_REFUSED: Final = object()


def _value(param: Param, given: Mapping[str, object], positional: list[Param], arguments: list[str]) -> object:
    if param.flag is None:
        index = positional.index(param)
        if index >= len(arguments):
            return param.default
        converted = _convert(param.kind, arguments[index])
        return _REFUSED if converted is None else converted
    if param.kind == "bool":
        return given.get(param.flag, False) is True
    return given.get(param.flag, param.default)


def _option(tokens: list[str], position: int, kinds: Mapping[str, str], given: dict[str, object]) -> int | None:
    """Read the option at `position` into `given`; how many tokens it took, or None to leave it to typer."""
    flag, equals, inline = tokens[position].partition("=")
    kind = kinds.get(flag)
    if kind is None or flag in given:
        return None  # unknown (`--help`, `--version`, a typo, `--`, `-h`) or repeated
    if kind == "bool":
        if equals:
            return None  # `--json=true`: typer's message
        given[flag] = True
        return 1
    if equals:
        text, taken = inline, 1
    elif position + 1 < len(tokens):
        text, taken = tokens[position + 1], 2
    else:
        return None  # no value: typer's message
    converted = _convert(kind, text)
    if converted is None:
        return None
    given[flag] = converted
    return taken


def _as_path(value: object) -> Path | None:
    return value if isinstance(value, Path) else None


def _as_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def run(parsed: Parsed) -> None:
    """Run the command the fast path accepted, exactly as the typer app's command callback would."""
    from .invoke import run_command

    try:
        run_command(parsed.spec, parsed.options, parsed.values)
    except KeyboardInterrupt:
        raise SystemExit(130) from None  # as the typer app: 130, nothing printed
    except EOFError:
        sys.stderr.write("\n")
        raise SystemExit(130) from None
    except BrokenPipeError:
        # As the typer app: exit 1, and no second complaint when the interpreter flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


YOUNG_COLLECTION_THRESHOLD: Final = 200_000
"""Allocations between two young-generation collections while a table command runs (Python's default is 700).

A command's start-up allocates what lives until the process exits (modules, classes, schemas) and little
garbage: at the default, `accounts list --json` ran about 100 collections that found next to nothing."""


@contextmanager
def rare_collections() -> Generator[None]:
    """Collect reference cycles rarely while the block runs, and leave the objects made so far out of exit's.

    At exit the interpreter runs four full collections over every object of the process, only to free
    memory the operating system takes back anyway; `gc.freeze()` at exit leaves those objects out. What a
    command opens (files, the databases, the event loop) it closes before it returns, so nothing waits for
    the collector to be finalised.
    """
    atexit.unregister(gc.freeze)  # registered once, however many commands one process runs (tests)
    atexit.register(gc.freeze)  # atexit handlers run before the interpreter's exit collections
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        # Back to Python's thresholds without a collection: what the block made joins the oldest generation
        # unscanned (at the old thresholds the next allocation would collect all of it at once).
        gc.freeze()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


PYDANTIC_PLUGINS_VARIABLE: Final = "PYDANTIC_DISABLE_PLUGINS"
"""pydantic loads no plugin when this is `__all__`; `ibkr-agent` sets it so when it is unset (see `main`)."""


def main() -> None:
    """Console-script entry point (`ibkr-agent`): the fast path, or the typer app for everything else.

    No pydantic plugin runs in an `ibkr-agent` process unless its operator asks for one: a plugin (any
    installed distribution declaring a `pydantic` entry point) is handed every value each model validates,
    which here means account ids, orders, approvals and the claims of OAuth tokens, and could send them
    anywhere. Looking the plugins up also reads the metadata of every installed distribution, about a
    twentieth of a command's start-up. Setting the variable yourself, even to an empty value, keeps yours.
    """
    os.environ.setdefault(PYDANTIC_PLUGINS_VARIABLE, "__all__")
    parsed = parse(sys.argv[1:])
    if parsed is None:
        from .app import main as typer_main

        typer_main()  # the servers run here too: they keep Python's collection thresholds
        return
    with rare_collections():
        run(parsed)
    raise SystemExit(0)
