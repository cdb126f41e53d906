"""Every field of a stored preview, from the ticket the caller asked for, the policy, the quote and the
broker's what-if; and each preview refusal with its code."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import OPERATOR, ORDER, PREVIEW, REMOTE, Clock, running_desk

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


async def test_a_preview_keeps_what_was_asked_priced_and_answered(tmp_path: Path, sim: SimulatorState) -> None:
    asked = {**ORDER, "exchange": "NYSE", "time_in_force": "gtc", "outside_regular_hours": True}
    extra = {"orders": {"preview_ttl_seconds": 120}}
    async with running_desk(tmp_path / "state", sim, Clock(NOW), extra) as desk:
        called = await desk.gateway.call("preview_order", asked, principal=OPERATOR, switches=PREVIEW)
        preview = called.value
        ticket = preview.ticket
        assert (ticket.exchange, ticket.time_in_force, ticket.outside_regular_hours) == ("NYSE", "gtc", True)
        assert (ticket.symbol, ticket.contract_id, ticket.asset_class, ticket.side) == ("AAPL", 265598, "stock", "buy")
        assert (ticket.quantity, ticket.limit_price, ticket.stop_price) == (Decimal(1), Decimal(100), None)
        assert preview.fingerprint == ticket.fingerprint()
        assert preview.risk_policy_id == "builtin-preview"
        assert preview.reference_price is not None and preview.reference_price > 0
        assert (preview.estimated_cost.amount, preview.estimated_cost.currency) == (Decimal(100), "USD")
        assert preview.estimated_commission is not None and preview.estimated_commission.amount == Decimal("1.00")
        assert preview.estimated_total is not None and preview.estimated_total.amount == Decimal("101.00")
        margins = (preview.initial_margin_change, preview.maintenance_margin_change, preview.equity_with_loan_after)
        assert all(value is not None for value in margins)
        assert preview.warnings and "Percentage constraint" in preview.warnings[0]
        assert (preview.created_by, preview.created_by_issuer) == ("op", None)
        assert (preview.created_at, preview.expires_at) == (NOW, NOW + timedelta(seconds=120))
        assert preview.audit_event_id == called.audit_event_id
        default = await desk.call("preview_order", ORDER, switches=PREVIEW)
        assert (default.ticket.exchange, default.ticket.time_in_force, default.ticket.outside_regular_hours) == (
            "SMART",
            "day",
            False,
        )


async def test_a_remote_principals_preview_names_its_issuer(tmp_path: Path, sim: SimulatorState) -> None:
    extra = {"orders": {"preview_enabled": True}}
    async with running_desk(tmp_path / "state", sim, Clock(NOW), extra) as desk:
        preview = await desk.call("preview_order", ORDER, principal=REMOTE)
        assert (preview.created_by, preview.created_by_issuer) == ("reviewer", "https://as.example")


async def test_a_preview_by_contract_id_and_the_refusals_of_a_wrong_contract(
    tmp_path: Path, sim: SimulatorState
) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        by_id = await desk.call("preview_order", {**ORDER, "symbol": None, "contract_id": 265598}, switches=PREVIEW)
        assert (by_id.ticket.symbol, by_id.ticket.contract_id) == ("AAPL", 265598)
        code = await desk.code_of("preview_order", {**ORDER, "currency": "EUR"}, switches=PREVIEW)
        assert code is ErrorCode.ORDER_VALIDATION_FAILED
        code = await desk.code_of("preview_order", {**ORDER, "symbol": "NOSUCHSYMBOL"}, switches=PREVIEW)
        assert code is ErrorCode.INPUT_UNKNOWN_CONTRACT


async def test_a_what_if_the_broker_would_reject_is_refused_with_its_text(tmp_path: Path, sim: SimulatorState) -> None:
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        sim.fail_next(200, {"error": "Insufficient buying power"}, path_contains="/whatif")
        with pytest.raises(GatewayError) as caught:
            await desk.call("preview_order", ORDER, switches=PREVIEW)
        assert (caught.value.code, caught.value.details) == (
            ErrorCode.ORDER_BROKER_WOULD_REJECT,
            {"broker_text": "Insufficient buying power"},
        )
        assert await desk.call("list_previews", {}) == []


@pytest.mark.parametrize(
    ("offset", "value"),
    [("trailing_amount", Decimal(2)), ("trailing_percent", Decimal("1.5"))],
    ids=["amount", "percent"],
)
async def test_a_trailing_stop_preview_keeps_its_type_and_its_one_offset(
    tmp_path: Path, sim: SimulatorState, offset: str, value: Decimal
) -> None:
    asked = {**ORDER, "side": "sell", "order_type": "trailing_stop", "limit_price": None, offset: str(value)}
    async with running_desk(tmp_path / "state", sim, Clock(NOW)) as desk:
        preview = await desk.call("preview_order", asked, switches=PREVIEW)
        ticket = preview.ticket
        assert (ticket.order_type, ticket.side, ticket.limit_price) == ("trailing_stop", "sell", None)
        offsets = {"trailing_amount": ticket.trailing_amount, "trailing_percent": ticket.trailing_percent}
        assert offsets == {"trailing_amount": None, "trailing_percent": None, offset: value}
