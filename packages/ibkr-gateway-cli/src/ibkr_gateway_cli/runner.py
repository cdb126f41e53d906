"""Run one gateway operation for the CLI: load the config, call the Gateway, render, exit.

The only place where the CLI turns a `GatewayError` into stderr output and an exit code.
"""

import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

if TYPE_CHECKING:
    from ibkr_gateway_core.config import GatewayConfig
    from ibkr_gateway_core.errors import GatewayError
    from ibkr_gateway_core.gateway import CallResult, Gateway
    from ibkr_gateway_core.principal import Principal

T = TypeVar("T")


class CliOptions(NamedTuple):
    """Global options, settable before or after the command words.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    config: Path | None = None
    json: bool = False
    request_id: str | None = None

    def merged(self, *, config: Path | None, json_output: bool, request_id: str | None) -> "CliOptions":
        """These options overridden by the ones given after the command."""
        return CliOptions(
            config=config or self.config,
            json=json_output or self.json,
            request_id=request_id or self.request_id,
        )


def load_config(options: CliOptions) -> "GatewayConfig":
    """The config file named by `--config`, or the embedded simulator without one."""
    from ibkr_gateway_core.config import GatewayConfig

    if options.config is None:
        return GatewayConfig.fake_local()
    return GatewayConfig.load(options.config)


def operator(config: "GatewayConfig") -> "Principal":
    """The person at the CLI: `orders.operator_scopes`, else every scope with the simulator, else `auth`'s."""
    from ibkr_gateway_core.principal import Principal

    return Principal(kind="local_operator", subject="local-operator", scopes=config.operator_scopes())


def fail(error: "GatewayError", options: CliOptions) -> NoReturn:
    """Print the error in the stable shape on stderr and exit with its family's code."""
    if options.json:
        sys.stderr.write(json.dumps(error.to_dict(), indent=2) + "\n")
    else:
        sys.stderr.write(f"{error.code}: {error.message}\nAction: {error.user_action}\n")
        if error.audit_event_id:
            sys.stderr.write(f"Audit event: {error.audit_event_id}\n")
    raise SystemExit(error.exit_code)


def with_gateway(
    options: CliOptions,
    work: "Callable[[Gateway], Awaitable[T]]",
    explain: "Callable[[GatewayError], GatewayError] | None" = None,
) -> T:
    """Open the gateway the options name, run `work` on it, close it; errors exit the process.

    `explain` rewords an error for the command line before it is shown (the audit keeps the original).
    """
    import anyio
    from ibkr_gateway_core.errors import GatewayError
    from ibkr_gateway_core.gateway import Gateway

    async def main() -> T:
        config = load_config(options)
        async with Gateway.from_config(config, principal=operator(config)) as gateway:
            return await work(gateway)

    try:
        return anyio.run(main)
    except GatewayError as error:
        fail(explain(error) if explain is not None else error, options)


def run_operation(
    options: CliOptions,
    name: str,
    arguments: Mapping[str, object],
    render: "Callable[[CallResult[Any]], str]",
    *,
    switches: frozenset[str] = frozenset(),
    setup: "Callable[[Gateway], None] | None" = None,
    explain: "Callable[[GatewayError], GatewayError] | None" = None,
    then: "Callable[[CallResult[Any]], None] | None" = None,
) -> None:
    """Call one operation as the CLI operator and print its result: JSON with `--json`, else `render`'s text.

    `switches` are the per-call enablements the flags gave (`--enable-preview`, ...), never arguments.
    `then` runs on the result before it is printed, with or without `--json` (e.g. to write a file).
    """
    given = {key: value for key, value in arguments.items() if value is not None}

    async def work(gateway: "Gateway") -> "CallResult[Any]":
        if setup is not None:
            setup(gateway)
        return await gateway.call(name, given, request_id=options.request_id, switches=switches)

    result = with_gateway(options, work, explain)
    if then is not None:
        then(result)
    if options.json:
        sys.stdout.write(json.dumps(result.to_jsonable(), indent=2) + "\n")
    else:
        sys.stdout.write(render(result).rstrip("\n") + "\n")


_VALUE_OPTIONS = frozenset({"--config", "--request-id"})
"""Global options that take a value, skipped when finding the command words of a bad command line."""


def usage_error(argv: list[str], message: str) -> "GatewayError":
    """A command line the parser refused, as an input error audited under the operation it names.

    The words are looked up in the registry and the Gateway records the refusal like any other bad input
    (with the option names given, never their values). Without a usable config it is returned unaudited.
    """
    import anyio
    from ibkr_gateway_core.errors import ErrorCode, GatewayError
    from ibkr_gateway_core.gateway import Gateway
    from ibkr_gateway_core.registry import OPERATIONS

    words: list[str] = []
    config: Path | None = None
    tokens = iter(argv)
    for token in tokens:
        if token in _VALUE_OPTIONS:
            value = next(tokens, None)
            config = Path(value) if token == "--config" and value else config
        elif token.startswith("--config="):
            config = Path(token.removeprefix("--config="))
        elif not token.startswith("-"):
            words.append(token)
    error = GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, message + _suggestion(message, words))
    named = [op for op in OPERATIONS.values() if tuple(words[: len(op.cli)]) == op.cli]
    name = max(named, key=lambda op: len(op.cli)).name if named else " ".join(words[:2]) or "ibkr-agent"
    options = CliOptions(config=config)

    async def record() -> None:
        settings = load_config(options)
        async with Gateway.from_config(settings, principal=operator(settings)) as gateway:
            # Option names only: values may be account ids or secrets, which never enter the log raw.
            flags = sorted({token.split("=", 1)[0] for token in argv if token.startswith("-")})
            await gateway.record_refusal(name, error, arguments={"options": flags})

    try:
        anyio.run(record)
    except GatewayError:
        pass  # no usable config or state: the refusal is still shown, without an audit event
    return error


def _suggestion(message: str, words: list[str]) -> str:
    """` Did you mean 'accounts list'?` for a command line whose words name no command (`account list`)."""
    if not message.startswith("No such command") or "Did you mean" in message:
        return ""
    import difflib

    from .commands import command_paths

    typed = " ".join(words[:2])
    known = [" ".join(path) for path in command_paths()]
    close = difflib.get_close_matches(typed, known, n=2, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
