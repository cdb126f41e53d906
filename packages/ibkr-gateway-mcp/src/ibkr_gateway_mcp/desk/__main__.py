"""`python -m ibkr_gateway_mcp.desk [--config FILE] [--bind HOST:PORT] [--describe]`: the desk without the CLI.

Prints the desk's URL as the first stdout line and, for a loopback bind, the one-time sign-in link as the
second. Errors go to stderr as `[CODE] message` and exit with the code's family exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import GatewayError

from .server import describe_desk, run_desk


def print_ready(base_url: str, link: str | None) -> None:
    """The URL, then the one-time link (if any), flushed at once."""
    sys.stdout.write(base_url + "\n")
    if link is not None:
        sys.stdout.write(f"One-time sign-in link (valid once, for one hour): {link}\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, then describe or serve; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m ibkr_gateway_mcp.desk", description="ibkr-agent approval desk")
    parser.add_argument("--config", type=Path, help="gateway YAML config (default: the embedded simulator)")
    parser.add_argument("--bind", help="host:port to listen on (default: desk.bind_address)")
    parser.add_argument("--describe", action="store_true", help="print what would be served as JSON, then exit")
    args = parser.parse_args(argv)
    try:
        config = GatewayConfig.load(args.config) if args.config else GatewayConfig.fake_local()
        if args.describe:
            sys.stdout.write(json.dumps(describe_desk(config, args.bind), indent=2) + "\n")
        else:
            run_desk(config, bind=args.bind, on_ready=print_ready)
    except GatewayError as error:
        sys.stderr.write(f"{error}\nAction: {error.user_action}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
