"""Run one gateway operation for the CLI: load the config, call the Gateway, render, exit.

The only place where the CLI turns a `GatewayError` into stderr output and an exit code.
"""

import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio

if TYPE_CHECKING:
    from ibkr_gateway_core.config import GatewayConfig
    from ibkr_gateway_core.errors import GatewayError
    from ibkr_gateway_core.gateway import CallResult, Gateway
    from ibkr_gateway_core.principal import Principal

T = TypeVar("T")


@dataclass(slots=True)
class CliOptions:
    """Global options, settable before or after the command words."""

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


def with_gateway(options: CliOptions, work: "Callable[[Gateway], Awaitable[T]]") -> T:
    """Open the gateway the options name, run `work` on it, close it; errors exit the process."""
    from ibkr_gateway_core.errors import GatewayError
    from ibkr_gateway_core.gateway import Gateway

    async def main() -> T:
        config = load_config(options)
        async with Gateway.from_config(config, principal=operator(config)) as gateway:
            return await work(gateway)

    try:
        return anyio.run(main)
    except GatewayError as error:
        fail(error, options)


def run_operation(
    options: CliOptions,
    name: str,
    arguments: Mapping[str, object],
    render: "Callable[[CallResult[Any]], str]",
    *,
    switches: frozenset[str] = frozenset(),
    setup: "Callable[[Gateway], None] | None" = None,
) -> None:
    """Call one operation as the CLI operator and print its result: JSON with `--json`, else `render`'s text.

    `switches` are the per-call enablements the flags gave (`--enable-preview`, ...), never arguments.
    """
    given = {key: value for key, value in arguments.items() if value is not None}

    async def work(gateway: "Gateway") -> "CallResult[Any]":
        if setup is not None:
            setup(gateway)
        return await gateway.call(name, given, request_id=options.request_id, switches=switches)

    result = with_gateway(options, work)
    if options.json:
        sys.stdout.write(json.dumps(result.to_jsonable(), indent=2) + "\n")
    else:
        sys.stdout.write(render(result).rstrip("\n") + "\n")
