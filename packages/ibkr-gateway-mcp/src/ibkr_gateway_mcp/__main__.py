"""`python -m ibkr_gateway_mcp [--config FILE] [--describe]`: the MCP server without the CLI.

With `--describe` it prints what it would serve as JSON and exits; otherwise it serves stdio. Errors
go to stderr as `[CODE] message` and exit with the code's family exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import GatewayError

from .stdio import describe, run_stdio


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, then describe or serve; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m ibkr_gateway_mcp", description="ibkr-agent-gateway MCP server")
    parser.add_argument("--config", type=Path, help="gateway YAML config (default: the embedded simulator)")
    parser.add_argument("--describe", action="store_true", help="print what would be served as JSON, then exit")
    args = parser.parse_args(argv)
    try:
        config = GatewayConfig.load(args.config) if args.config else GatewayConfig.fake_local()
        if args.describe:
            sys.stdout.write(json.dumps(describe(config, "stdio"), indent=2) + "\n")
        else:
            run_stdio(config)
    except GatewayError as error:
        sys.stderr.write(f"{error}\nAction: {error.user_action}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
