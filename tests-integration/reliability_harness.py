"""A simulator-backed gateway for the reliability tests: a movable clock, principals, and restarts."""

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.orders import ApprovalRecord, OrderLifecycle, OrderPreview
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from ibkr_gateway_cpapi.backend import CpapiBackend, open_simulator_backend
from ibkr_gateway_cpapi.simulator import SimulatorState

ACCOUNT = "DU1234567"
OPERATOR = Principal(kind="local_operator", subject="op", scopes=WITH_LIVE)
AGENT = Principal(kind="local_agent", subject="stdio", scopes=WITH_LIVE)
REMOTE = Principal(kind="remote", subject="reviewer", issuer="https://as.example", scopes=WITH_LIVE)
PREVIEW = frozenset({Switch.ENABLE_PREVIEW})
PAPER = frozenset({Switch.ENABLE_PAPER})
AUDIT_KEY = b"k" * 32
AGENTS_MAY_TRADE_PAPER: dict[str, Any] = {
    "orders": {"preview_enabled": True, "paper_enabled": True},
    "auth": {"approvers": [{"issuer": "https://as.example", "subject": "reviewer"}]},  # REMOTE is a person
}
ORDER: dict[str, Any] = {"account_id": ACCOUNT, "symbol": "AAPL", "side": "buy", "quantity": "1", "limit_price": "100"}


@dataclass
class Clock:
    """A movable clock for the gateway (the simulator keeps real time)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Desk:
    """One running gateway over a shared simulator, clock and state directory."""

    gateway: Gateway
    sim: SimulatorState
    clock: Clock

    async def call(
        self,
        name: str,
        args: dict[str, Any],
        *,
        principal: Principal = OPERATOR,
        switches: frozenset[str] = frozenset(),
    ) -> Any:
        return (await self.gateway.call(name, args, principal=principal, switches=switches)).value

    async def code_of(
        self,
        name: str,
        args: dict[str, Any],
        *,
        principal: Principal = OPERATOR,
        switches: frozenset[str] = frozenset(),
    ) -> ErrorCode:
        """The error code the call fails with (the test fails when it succeeds)."""
        with pytest.raises(GatewayError) as caught:
            await self.call(name, args, principal=principal, switches=switches)
        return caught.value.code

    async def preview(self, principal: Principal = OPERATOR, **changes: object) -> OrderPreview:
        switches = PREVIEW if principal.kind == "local_operator" else frozenset[str]()
        return await self.call("preview_order", {**ORDER, **changes}, principal=principal, switches=switches)

    async def approve(self, preview: OrderPreview, principal: Principal = OPERATOR, **extra: object) -> ApprovalRecord:
        args: dict[str, Any] = {"account_id": preview.account_id, "preview_id": preview.preview_id, **extra}
        return await self.call("create_approval", args, principal=principal)

    async def approved(self, by: Principal = OPERATOR, *, mode: str = "paper", **changes: object) -> ApprovalRecord:
        return await self.approve(await self.preview(OPERATOR, **changes), by, mode=mode)

    def submit_args(self, approval: ApprovalRecord, key: str) -> dict[str, Any]:
        return {"account_id": approval.account_id, "approval_id": approval.approval_id, "idempotency_key": key}

    async def submit(self, approval: ApprovalRecord, key: str, principal: Principal = OPERATOR) -> OrderLifecycle:
        switches = PAPER if principal.kind == "local_operator" else frozenset[str]()
        return await self.call(
            "submit_paper_order", self.submit_args(approval, key), principal=principal, switches=switches
        )

    def orders_with(self, client_order_id: str | None) -> int:
        """How many orders the broker holds under one client order id (cOID)."""
        assert client_order_id is not None
        return len(self.sim.orders_with_client_order_id(client_order_id))


def config_for(state_dir: Path, extra: dict[str, Any] | None = None) -> GatewayConfig:
    return GatewayConfig.from_mapping({"state": {"directory": str(state_dir)}, **(extra or {})})


@asynccontextmanager
async def running_desk(
    state_dir: Path, sim: SimulatorState, clock: Clock, extra: dict[str, Any] | None = None
) -> AsyncGenerator[Desk]:
    """A gateway over `state_dir`; leaving the block is a clean stop, entering again a restart."""
    config = config_for(state_dir, extra)
    audit = AuditLog.open(config.audit_path(), AUDIT_KEY)

    def backend_factory(_: GatewayConfig) -> CpapiBackend:
        return open_simulator_backend(sim, preflight_delays_s=(0.0, 0.0, 0.0))

    async with Gateway(config, audit, backend_factory=backend_factory, clock=clock) as gateway:
        yield Desk(gateway, sim, clock)
