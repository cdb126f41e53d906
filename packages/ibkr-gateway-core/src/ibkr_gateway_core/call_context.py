"""The call being served: who calls, with which operator switches, under which audit event id.

`Gateway.call` sets it around the handler, so a handler (the order desk) can read the principal,
the CLI's per-call switches and the id of the audit event that will record the call, without those
travelling through every input model.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final, NamedTuple

from .principal import Principal


class Switch:
    """Names of the operator's per-call switches (CLI flags), never MCP arguments."""

    ENABLE_PREVIEW: Final = "enable_preview"
    ENABLE_PAPER: Final = "enable_paper"
    ENABLE_LIVE: Final = "enable_live"
    LIVE_SCOPE: Final = "live_scope"
    OPEN_KILL_SWITCH: Final = "open_kill_switch"
    ACKNOWLEDGE_PAPER_TO_LIVE: Final = "acknowledge_paper_to_live"
    LIVE_BROKER_PREFIX: Final = "live_broker:"
    """`live_broker:client-portal` picks the live writer."""
    STREAM_OUTPUT: Final = "stream_output"
    """The caller writes a large result out itself after the call (the CLI's `audit export`), so the
    handler returns it as a stream instead of one value in memory; MCP callers always get the value."""


class CallContext(NamedTuple):
    """One call, as its handler sees it.

    A named tuple, not a dataclass: a dataclass compiles its generated methods at import (start-up).
    """

    principal: Principal
    switches: frozenset[str]
    audit_event_id: str
    request_id: str | None = None

    def has(self, switch: str) -> bool:
        """True when the caller passed this switch."""
        return switch in self.switches

    def live_broker(self) -> str | None:
        """The `--live-broker` choice, if given."""
        for switch in self.switches:
            if switch.startswith(Switch.LIVE_BROKER_PREFIX):
                return switch.removeprefix(Switch.LIVE_BROKER_PREFIX)
        return None


CURRENT_CALL: Final[ContextVar[CallContext | None]] = ContextVar("ibkr_gateway_current_call", default=None)
"""Set by `Gateway.call` while a handler runs."""
