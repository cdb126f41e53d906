"""Long-running commands: the HTTPS simulator and the MCP server. Their heavy imports stay in here."""

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .runner import CliOptions, fail, load_config

if TYPE_CHECKING:
    from ibkr_gateway_core.config import GatewayConfig


def serve_simulator(
    *, host: str, port: int, unkind: bool, clock_speed: float, options: CliOptions, oauth_dir: Path | None = None
) -> None:
    """Serve the simulator until interrupted; the base URL is the first line on stdout.

    With `oauth_dir`, it acts as IBKR's Web API for a throwaway OAuth 1.0a consumer whose files, and a
    `gateway.yaml` naming them, it writes there.
    """
    import anyio
    from ibkr_gateway_core.errors import ErrorCode, GatewayError
    from ibkr_gateway_cpapi.serve import serve_simulator as serve
    from ibkr_gateway_cpapi.simulator import ScaledClock, SimulatorState

    if not 1 <= clock_speed <= 10_000:
        fail(GatewayError(ErrorCode.INPUT_INVALID_ARGUMENT, "--clock-speed must be between 1 and 10000."), options)
        return
    state = SimulatorState(scaled_clock=ScaledClock(clock_speed))
    if unkind:
        state.make_unkind()
    consumer_files = None
    if oauth_dir is not None:
        from ibkr_gateway_cpapi.simulator import OAuthAuthority, write_test_credentials

        try:
            consumer, consumer_files = write_test_credentials(oauth_dir)
        except FileExistsError:
            fail(
                GatewayError(
                    ErrorCode.INPUT_INVALID_ARGUMENT,
                    "The --oauth-dir directory already holds OAuth key files; they are never overwritten.",
                    user_action="Give --oauth-dir a new or empty directory.",
                ),
                options,
            )
            return
        except OSError as exc:
            fail(
                GatewayError(
                    ErrorCode.INPUT_INVALID_ARGUMENT,
                    f"The --oauth-dir directory cannot be written ({exc.strerror or 'error'}).",
                ),
                options,
            )
            return
        state.use_oauth(OAuthAuthority(consumer))

    def ready(base_url: str) -> None:
        if consumer_files is not None:
            consumer_files.write_gateway_config(base_url)
        line = json.dumps({"base_url": base_url}) if options.json else base_url
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def main() -> None:
        await serve(host=host, port=port, state=state, on_ready=ready)

    try:
        anyio.run(main)
    except GatewayError as error:
        fail(error, options)
    except KeyboardInterrupt:
        raise SystemExit(0) from None


def serve_mcp(
    options: CliOptions, *, transport: str, describe: bool, enable_remote_mcp: bool, bind: str | None
) -> None:
    """Describe or run the MCP server for the configured gateway."""
    from ibkr_gateway_core.errors import GatewayError

    try:
        config = load_config(options)
        if transport == "http":
            _serve_http(options, config, describe=describe, enable_remote_mcp=enable_remote_mcp, bind=bind)
            return
        from ibkr_gateway_mcp.stdio import describe as describe_server
        from ibkr_gateway_mcp.stdio import run_stdio

        if describe:
            description = describe_server(config, transport)
            if options.json:
                sys.stdout.write(json.dumps(description, indent=2) + "\n")
            else:
                sys.stdout.write(f"{description['status']}\n" + "\n".join(description["tools"]) + "\n")
            return
        describe_server(config, transport)  # refuses an unknown transport before anything opens
        run_stdio(config)
    except GatewayError as error:
        fail(error, options)


def _serve_http(
    options: CliOptions, config: "GatewayConfig", *, describe: bool, enable_remote_mcp: bool, bind: str | None
) -> None:
    """Describe or run the remote (OAuth-protected streamable HTTP) MCP server; the URL is the first stdout line."""
    from ibkr_gateway_mcp.remote import describe_http, run_http

    if describe:
        description = describe_http(config, enable_remote_mcp=enable_remote_mcp, bind=bind)
        if options.json:
            sys.stdout.write(json.dumps(description, indent=2) + "\n")
        else:
            sys.stdout.write(f"{description['status']}\n" + "\n".join(description["tools"]) + "\n")
        return

    def ready(base_url: str) -> None:
        line = json.dumps({"base_url": base_url}) if options.json else base_url
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        run_http(config, enable_remote_mcp=enable_remote_mcp, bind=bind, on_ready=ready)
    except KeyboardInterrupt:
        raise SystemExit(0) from None


def serve_desk(options: CliOptions, *, bind: str | None, describe: bool) -> None:
    """Describe or run the approval desk; the URL is the first stdout line, the one-time link the second."""
    from ibkr_gateway_core.errors import GatewayError

    try:
        config = load_config(options)
        from ibkr_gateway_mcp.desk import describe_desk, run_desk

        if describe:
            description = describe_desk(config, bind)
            text = (
                json.dumps(description, indent=2)
                if options.json
                else "\n".join(f"{key}: {value}" for key, value in description.items())
            )
            sys.stdout.write(text + "\n")
            return

        def ready(base_url: str, link: str | None) -> None:
            if options.json:
                sys.stdout.write(json.dumps({"base_url": base_url, "login_link": link}) + "\n")
            else:
                sys.stdout.write(base_url + "\n")
                if link is not None:
                    sys.stdout.write(f"One-time sign-in link (valid once, for one hour): {link}\n")
            sys.stdout.flush()

        try:
            run_desk(config, bind=bind, on_ready=ready)
        except KeyboardInterrupt:
            raise SystemExit(0) from None
    except GatewayError as error:
        fail(error, options)
