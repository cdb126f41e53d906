"""The `ibkr-agent` command line of ibkr-agent-gateway."""

__all__: list[str] = []
