"""ibkr-agent-gateway package."""
