"""The approval desk: a web page where a person approves, denies and halts.

`ibkr-agent desk serve` runs it, as does `python -m ibkr_gateway_mcp.desk`. See `app` for who may do
what, `sessions` for cookies and CSRF, `oidc` for sign-in and `notify` for notifications.
"""

from .server import describe_desk, run_desk, serve_desk

__all__ = ["describe_desk", "run_desk", "serve_desk"]
