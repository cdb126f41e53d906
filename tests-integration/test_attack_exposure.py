"""Attacks on the risk limits: orders counted at the price they can fill at, and budgets that hold under
concurrency. Each test counts what reached the broker and asserts the one code it means."""

from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from ibkr_gateway_core.call_context import Switch
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.orders import ApprovalRecord
from ibkr_gateway_cpapi.simulator import SimulatorState
from reliability_harness import ACCOUNT, ORDER, PAPER, PREVIEW, Clock, Desk, running_desk

pytestmark = pytest.mark.anyio

LIVE_CP = frozenset(
    {
        Switch.ENABLE_LIVE,
        Switch.LIVE_SCOPE,
        Switch.OPEN_KILL_SWITCH,
        Switch.ACKNOWLEDGE_PAPER_TO_LIVE,
        Switch.LIVE_BROKER_PREFIX + "client-portal",
    }
)
"""Every live flag, through the Client Portal writer: live orders reach the simulator's book."""


def live_policy(**limits: object) -> dict[str, Any]:
    return {"risk_policies": [{"policy_id": "live", **limits}], "live_trading": {"risk_policy_id": "live"}}


@pytest.fixture
def sim() -> SimulatorState:
    return SimulatorState()


async def race(desk: Desk, approvals: list[ApprovalRecord]) -> tuple[int, set[ErrorCode]]:
    """Submit each approval live at once; returns (orders placed, refusal codes)."""
    placed = 0
    codes: set[ErrorCode] = set()

    async def one(n: int, approval: ApprovalRecord) -> None:
        nonlocal placed
        try:
            await desk.call("submit_live_order", desk.submit_args(approval, f"race-{n}"), switches=LIVE_CP)
            placed += 1
        except GatewayError as exc:
            codes.add(exc.code)

    async with anyio.create_task_group() as group:
        for n, approval in enumerate(approvals):
            group.start_soon(one, n, approval)
    return placed, codes


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        pytest.param({"max_orders_per_window": 1}, ErrorCode.LIVE_FREQUENCY_LIMIT_REFUSED, id="per-window"),
        pytest.param({"max_orders_per_day": 1}, ErrorCode.LIVE_DAILY_ORDER_LIMIT_REFUSED, id="per-day"),
        pytest.param({"max_notional_per_day": "250"}, ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED, id="notional"),
    ],
)
async def test_six_concurrent_live_submits_respect_a_budget_of_one(
    tmp_path: Path, sim: SimulatorState, limits: dict[str, object], code: ErrorCode
) -> None:
    """The budgets are checked in the transaction that reserves the order: six racers, one order."""
    async with running_desk(tmp_path / "state", sim, Clock(), live_policy(**limits)) as desk:
        approvals = [await desk.approved(mode="live", limit_price="200") for _ in range(6)]
        before = len(sim.placements)
        placed, codes = await race(desk, approvals)
        assert placed == 1
        assert codes == {code}
        assert len(sim.placements) - before == 1
        limits_now = await desk.call("limits_status", {"account_id": ACCOUNT})
        assert limits_now.orders_today == 1


AAPL = 265598
PREVIEW_POLICY: dict[str, Any] = {
    "risk_policies": [{"policy_id": "tight", "max_notional": "1000"}],
    "orders": {"preview_policy_id": "tight"},
}
"""A preview (and paper) policy of 1,000 USD per order, without a collar."""


def steady(sim: SimulatorState) -> None:
    sim.set_quote(AAPL, bid=Decimal("200.00"), ask=Decimal("200.10"), last=Decimal("200.05"))


async def preview_code(desk: Desk, **order: object) -> ErrorCode:
    return await desk.code_of("preview_order", {**ORDER, **order}, switches=PREVIEW)


async def test_a_sell_limit_far_below_the_market_counts_at_the_bid(tmp_path: Path, sim: SimulatorState) -> None:
    """10 x 1.00 looks like 10 USD, but fills at the ~200 bid: 2,000 USD, over the 1,000 limit."""
    steady(sim)
    async with running_desk(tmp_path / "state", sim, Clock(), PREVIEW_POLICY) as desk:
        assert await preview_code(desk, side="sell", quantity="10", limit_price="1") is (
            ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED
        )
        assert await preview_code(desk, order_type="market", quantity="10", limit_price=None) is (
            ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED
        )
        assert await preview_code(desk, order_type="stop", quantity="10", limit_price=None, stop_price="1") is (
            ErrorCode.ORDER_NOTIONAL_LIMIT_REFUSED
        )
        resting = await desk.preview(side="sell", quantity="4", limit_price="240")  # 960 USD, above the bid
        assert resting.estimated_cost is not None and resting.estimated_cost.amount == Decimal("960")
        marketable = await desk.preview(side="sell", quantity="4", limit_price="150")  # fills at ~200 + 0.5%
        assert marketable.estimated_cost is not None
        assert marketable.estimated_cost.amount == Decimal("200.00") * Decimal("1.005") * 4
    assert sim.placements == []


async def test_a_live_buy_stop_below_the_market_counts_at_the_ask(tmp_path: Path, sim: SimulatorState) -> None:
    """A buy stop at 1 triggers at once and fills at the ask: counted at ~201 x 10, over max_notional."""
    steady(sim)
    async with running_desk(tmp_path / "state", sim, Clock(), live_policy(max_notional="1000")) as desk:
        approval = await desk.approved(mode="live", order_type="stop", quantity="10", limit_price=None, stop_price="1")
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "stop"), switches=LIVE_CP)
        assert code is ErrorCode.LIVE_NOTIONAL_LIMIT_REFUSED
    assert sim.placements == []


async def test_daily_notional_counts_what_the_order_can_fill_at(tmp_path: Path, sim: SimulatorState) -> None:
    """Two sells at 1.00 look like 20 USD; each fills near 200 x 10, so the second breaks 3,000 per day."""
    steady(sim)
    config = live_policy(max_notional_per_day="3000")
    config["risk_policies"].append({"policy_id": "no-collar"})  # let the preview through: the live gate is tested
    config["orders"] = {"preview_policy_id": "no-collar", "warning_policy": {"o163": "allow"}}  # explicitly
    async with running_desk(tmp_path / "state", sim, Clock(), config) as desk:
        first = await desk.approved(mode="live", side="sell", quantity="10", limit_price="1")
        placed = await desk.call("submit_live_order", desk.submit_args(first, "one"), switches=LIVE_CP)
        assert placed.notional is not None and placed.notional.amount == Decimal("200.00") * Decimal("1.005") * 10
        second = await desk.approved(mode="live", side="sell", quantity="10", limit_price="1")
        code = await desk.code_of("submit_live_order", desk.submit_args(second, "two"), switches=LIVE_CP)
        assert code is ErrorCode.LIVE_DAILY_NOTIONAL_LIMIT_REFUSED
        assert len(sim.placements) == 1


async def test_the_built_in_collar_refuses_a_limit_far_through_the_market(tmp_path: Path, sim: SimulatorState) -> None:
    """Built-in policies collar a limit at 10% through the market; a resting order far away is fine."""
    steady(sim)
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        assert await preview_code(desk, limit_price="2000") is ErrorCode.ORDER_PRICE_COLLAR_REFUSED
        assert await preview_code(desk, side="sell", limit_price="20") is ErrorCode.ORDER_PRICE_COLLAR_REFUSED
        assert (await desk.preview(limit_price="100")).ticket.limit_price == Decimal("100")  # the guide's order
        approval = await desk.approved(mode="live", limit_price="219")  # 9.5% through: within the collar
        sim.set_quote(AAPL, bid=Decimal("100.00"), ask=Decimal("100.10"), last=Decimal("100.05"))  # market halves
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "moved"), switches=LIVE_CP)
        assert code is ErrorCode.LIVE_PRICE_COLLAR_REFUSED  # the collar is checked again at submit
    assert sim.placements == []


async def test_price_far_from_market_is_confirmed_only_for_a_resting_order(tmp_path: Path, sim: SimulatorState) -> None:
    """IBKR's o163: confirmed for a bid below the market, refused for a limit through it."""
    steady(sim)
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        resting = await desk.submit(await desk.approved(limit_price="100"), "resting")
        assert resting.confirmed_message_ids == ["o163"]
        marketable = await desk.approved(limit_price="210")  # 5% through: inside the collar, asks o163
        code = await desk.code_of("submit_paper_order", desk.submit_args(marketable, "through"), switches=PAPER)
        assert code is ErrorCode.ORDER_CONFIRMATION_REFUSED
        assert len(sim.placements) == 1


async def test_a_missing_quote_fails_closed(tmp_path: Path, sim: SimulatorState) -> None:
    """No usable quote where one is needed: a refusal with its own code, at preview and at submit."""
    steady(sim)
    async with running_desk(tmp_path / "state", sim, Clock()) as desk:
        approval = await desk.approved(mode="live", limit_price="199")
        paper = await desk.approved(limit_price="199")
        sim.set_quote(AAPL, bid=Decimal(0), ask=Decimal(0), last=Decimal(0))
        assert await preview_code(desk, order_type="market", limit_price=None) is ErrorCode.ORDER_QUOTE_MISSING
        code = await desk.code_of("submit_live_order", desk.submit_args(approval, "noquote"), switches=LIVE_CP)
        assert code is ErrorCode.LIVE_MARKET_SNAPSHOT_MISSING
        code = await desk.code_of("submit_paper_order", desk.submit_args(paper, "noquote"), switches=PAPER)
        assert code is ErrorCode.ORDER_QUOTE_MISSING
    assert sim.placements == []


async def test_reconciliation_counts_fills_at_their_real_price(tmp_path: Path, sim: SimulatorState) -> None:
    """A sell resting at 205 is counted at 2,050; filled at 260 it is 2,600 of today's notional."""
    steady(sim)
    async with running_desk(tmp_path / "state", sim, Clock(), live_policy()) as desk:
        approval = await desk.approved(mode="live", side="sell", quantity="10", limit_price="205")
        placed = await desk.call("submit_live_order", desk.submit_args(approval, "rest"), switches=LIVE_CP)
        assert (await desk.call("limits_status", {"account_id": ACCOUNT})).notional_today == Decimal("2050")
        sim.fill_order(int(placed.broker_order_id), Decimal("260"))
        await desk.call("reconcile_orders", {})
        assert (await desk.call("limits_status", {"account_id": ACCOUNT})).notional_today == Decimal("2600")
