"""Core of ibkr-agent-gateway: models, configuration, errors, scopes, gates, audit and the Gateway."""
