"""The Gateway door, against a small in-memory backend (the real simulator is tested in cpapi)."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ibkr_gateway_core._result_json import to_jsonable
from ibkr_gateway_core.audit import AuditLog
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.models import (
    AccountSummary,
    BrokerAccount,
    BrokerSessionStatus,
    CashBalance,
    ContractCandidate,
    Execution,
    HistoricalBars,
    MarketSnapshot,
    OrderRecord,
    Position,
)
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.redaction import secret_reason
from ibkr_gateway_core.registry import OPERATIONS
from ibkr_gateway_core.scopes import READ_ONLY, Scope

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


class StubBackend:
    """Just enough broker for the Gateway's own logic."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.position_rows: list[Position] = []

    async def session_status(self) -> BrokerSessionStatus:
        return BrokerSessionStatus(
            status="usable", backend="fake", authenticated=True, connected=True, competing=False, checked_at=NOW
        )

    async def keepalive(self) -> BrokerSessionStatus:
        return await self.session_status()

    async def list_accounts(self) -> list[BrokerAccount]:
        self.calls.append("list_accounts")
        return [BrokerAccount(account_id="DU1234567", account_mode="paper", base_currency="USD")]

    async def account_summary(self, account_id: str) -> AccountSummary:
        return AccountSummary(account_id=account_id, currency="USD", net_liquidation=Decimal("100"))

    async def cash_balances(self, account_id: str) -> list[CashBalance]:
        return [CashBalance(currency="USD", cash=Decimal("50"))]

    async def positions(self, account_id: str, *, fresh: bool = False) -> list[Position]:
        self.calls.append("positions")
        return self.position_rows

    async def search_contracts(self, symbol: str) -> list[ContractCandidate]:
        rows = {
            "AAPL": [(265598, "AAPL", "USD"), (38708077, "AAPL", "MXN")],
            "ABC": [(1001, "ABC", "USD"), (1002, "ABC", "EUR")],
            "MSFT": [(272093, "MSFT", "USD")],
        }.get(symbol.upper(), [])
        return [
            ContractCandidate(contract_id=conid, symbol=sym, asset_class="stock", currency=ccy, is_unique_match=False)
            for conid, sym, ccy in rows
        ]

    async def contract(self, contract_id: int) -> ContractCandidate:
        raise NotImplementedError

    async def market_snapshot(self, contract_id: int) -> MarketSnapshot:
        raise NotImplementedError

    async def historical_bars(
        self, contract_id: int, *, period: str, bar: str, outside_regular_hours: bool
    ) -> HistoricalBars:
        return HistoricalBars(
            contract_id=contract_id, duration=period, bar_size=bar, outside_regular_hours=outside_regular_hours, bars=[]
        )

    async def live_orders(self, account_id: str) -> list[OrderRecord]:
        return [
            OrderRecord(account_id=account_id, broker_order_id="111", client_order_id="my-coid", status="submitted")
        ]

    async def order_status(self, account_id: str, broker_order_id: str) -> OrderRecord:
        raise GatewayError(ErrorCode.INPUT_UNKNOWN_ORDER, "unknown")

    async def executions(self, account_id: str, days: int) -> list[Execution]:
        return []

    async def aclose(self) -> None:
        pass


@pytest.fixture
def backend() -> StubBackend:
    return StubBackend()


@pytest.fixture
async def gateway(tmp_path: Path, backend: StubBackend):  # type: ignore[no-untyped-def]
    config = GatewayConfig.fake_local(state_dir=tmp_path)
    audit = AuditLog.open(tmp_path / "state.sqlite3", b"k" * 32)
    async with Gateway(config, audit, backend_factory=lambda _: backend, clock=lambda: NOW) as gw:
        yield gw


async def test_every_call_appends_exactly_one_audit_event(gateway: Gateway) -> None:
    await gateway.health()
    await gateway.list_accounts()
    with pytest.raises(GatewayError) as caught:
        await gateway.list_positions("DU0000000")
    assert caught.value.code is ErrorCode.INPUT_UNAUTHORIZED_ACCOUNT
    records = await gateway.audit.tail(10)
    assert [r.event.result_status for r in reversed(records)] == ["completed", "completed", "failed"]


@pytest.mark.parametrize("name", sorted(op.name for op in OPERATIONS.values() if op.operator_only))
@pytest.mark.parametrize("kind", ["local_agent", "remote"])
async def test_an_operator_only_operation_refuses_anyone_else_whatever_their_scopes(
    gateway: Gateway, backend: StubBackend, name: str, kind: str
) -> None:
    """The door refuses it before the input is read or a handler runs, and audits the refusal: a new operator-only
    operation needs no check of its own to be safe."""
    caller = Principal(kind=kind, subject="someone-else", scopes=frozenset(Scope))
    with pytest.raises(GatewayError) as caught:
        await gateway.call(name, {"not": "even valid input"}, principal=caller)
    expected = ErrorCode.KILL_SWITCH_OPERATOR_ONLY if name == "open_kill_switch" else ErrorCode.OPERATOR_ONLY
    assert caught.value.code is expected
    assert caught.value.message.startswith("Only the operator at the CLI may ")
    assert backend.calls == []
    record = (await gateway.audit.tail(1))[0]
    assert (record.event.event_id, record.event.operation, record.event.decision) == (
        caught.value.audit_event_id,
        name,
        "deny",  # an auth refusal: the caller is not allowed
    )


async def test_health_makes_no_broker_call(gateway: Gateway, backend: StubBackend) -> None:
    health = await gateway.health()
    assert health.gateway == "ok"
    assert health.read_only is True
    assert backend.calls == []


async def test_a_missing_scope_is_denied_and_audited_before_any_broker_call(
    tmp_path: Path, backend: StubBackend
) -> None:
    config = GatewayConfig.fake_local(state_dir=tmp_path)
    audit = AuditLog.open(tmp_path / "state.sqlite3", b"k" * 32)
    principal = Principal(kind="local_agent", subject="agent", scopes=frozenset({Scope.HEALTH_READ}))
    async with Gateway(config, audit, backend_factory=lambda _: backend, principal=principal) as gw:
        with pytest.raises(GatewayError) as caught:
            await gw.list_positions("DU1234567")
        assert caught.value.code == ErrorCode.AUTH_MISSING_SCOPE
        record = (await gw.audit.tail(1))[0]
    assert caught.value.audit_event_id == record.event.event_id
    assert record.event.event_type == "tool_denied_scope"
    assert record.event.decision == "deny"
    assert backend.calls == []


async def test_unknown_operation_is_refused_and_audited(gateway: Gateway) -> None:
    with pytest.raises(GatewayError) as caught:
        await gateway.call("ibkr_order_submit", {})
    assert caught.value.code == ErrorCode.INPUT_UNKNOWN_OPERATION
    record = (await gateway.audit.tail(1))[0]
    assert record.event.tool_name == "ibkr_order_submit"
    assert record.event.error_code == "INPUT_UNKNOWN_OPERATION"


async def test_invalid_arguments_are_audited_with_the_field_code(gateway: Gateway) -> None:
    with pytest.raises(GatewayError) as caught:
        await gateway.call("market_snapshot", {"contract_id": "AAPL"})
    assert caught.value.code == ErrorCode.INPUT_INVALID_CONTRACT
    with pytest.raises(GatewayError) as extra:
        await gateway.call("list_accounts", {"surprise": 1})
    assert extra.value.code == ErrorCode.INPUT_INVALID_ARGUMENT
    assert "surprise" in extra.value.message
    codes = [r.event.error_code for r in await gateway.audit.tail(2)]
    assert codes == ["INPUT_INVALID_ARGUMENT", "INPUT_INVALID_CONTRACT"]


async def test_audit_rows_hold_a_keyed_hash_of_the_account_never_the_id(gateway: Gateway, tmp_path: Path) -> None:
    await gateway.list_positions("DU1234567")
    record = (await gateway.audit.tail(1))[0]
    assert record.event.account_id_hash == gateway.audit.account_hash("DU1234567")
    assert "DU1234567" not in (tmp_path / "state.sqlite3").read_bytes().decode("latin-1")


async def test_request_id_is_recorded(gateway: Gateway) -> None:
    result = await gateway.call("health", request_id="req-42")
    record = (await gateway.audit.tail(1))[0]
    assert record.event.request_id == "req-42"
    assert record.event.event_id == result.audit_event_id


async def test_resolve_picks_the_single_exact_match_after_filters(gateway: Gateway) -> None:
    msft = await gateway.resolve_contract("MSFT")
    assert msft.contract_id == 272093 and msft.is_unique_match
    aapl = await gateway.resolve_contract("AAPL", currency="USD")
    assert aapl.contract_id == 265598


async def test_resolve_refuses_an_ambiguous_symbol(gateway: Gateway) -> None:
    with pytest.raises(GatewayError) as caught:
        await gateway.resolve_contract("ABC")
    assert caught.value.code == ErrorCode.INPUT_AMBIGUOUS_CONTRACT
    assert "1001" in caught.value.message and "1002" in caught.value.message


async def test_order_status_finds_an_order_by_client_order_id(gateway: Gateway) -> None:
    order = await gateway.order_status("DU1234567", "my-coid")
    assert order.broker_order_id == "111"
    with pytest.raises(GatewayError) as caught:
        await gateway.order_status("DU1234567", "999")
    assert caught.value.code == ErrorCode.INPUT_UNKNOWN_ORDER


async def test_bars_accept_tws_and_cpapi_spellings(gateway: Gateway) -> None:
    bars = await gateway.historical_bars(265598, "2 W", "5 mins")
    assert (bars.duration, bars.bar_size) == ("2w", "5min")
    bars = await gateway.historical_bars(265598, "1d", "1h")
    assert (bars.duration, bars.bar_size) == ("1d", "1h")


def test_every_read_operation_needs_a_read_only_scope() -> None:
    """Reads stay inside the read-only tier, so the default agent scope set can run them all."""
    for op in OPERATIONS.values():
        if op.read_only:
            assert op.scope in READ_ONLY, op.name


def test_every_operation_has_a_handler(tmp_path: Path) -> None:
    audit = AuditLog.open(tmp_path / "s.sqlite3", b"k" * 32)
    gateway = Gateway(GatewayConfig.fake_local(state_dir=tmp_path), audit)
    # the order handlers load on the first order operation (start-up stays light); then every one is there
    assert set(gateway._handlers) < set(OPERATIONS)  # pyright: ignore[reportPrivateUsage]
    assert all(gateway._handler(name) for name in OPERATIONS)  # pyright: ignore[reportPrivateUsage]
    assert set(gateway._handlers) == set(OPERATIONS)  # pyright: ignore[reportPrivateUsage]
    audit.close()


def _position(description: str, symbol: str = "AAPL") -> Position:
    return Position(
        account_id="DU1234567",
        contract_id=265598,
        symbol=symbol,
        description=description,
        asset_class="stock",
        quantity=Decimal("150"),
        currency="USD",
        market_price=Decimal("212.41"),
    )


async def test_the_output_hash_is_the_keyed_hash_of_the_results_canonical_json(
    gateway: Gateway, backend: StubBackend
) -> None:
    """The audit row's output hash is `hash_payload` of what every surface shows, non-ASCII text included."""
    backend.position_rows = [_position("Société Générale – ünïcode"), _position("plain", symbol="MSFT")]
    result = await gateway.call("list_positions", {"account_id": "DU1234567"})
    record = (await gateway.audit.tail(1))[0]
    assert record.event.output_hash == gateway.audit.hash_payload(result.to_jsonable())
    assert record.event.output_hash == gateway.audit.hash_payload(result.value)


@pytest.mark.parametrize(
    "description",
    [
        pytest.param("see /home/alice/keys", id="local-path"),
        pytest.param("Société Bearer abcdefghijklmnop", id="header-value-beside-non-ascii"),
        pytest.param("é eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", id="jwt-beside-non-ascii"),
        pytest.param("\x7fcookie=abc", id="marker-after-a-delete-character"),
    ],
)
async def test_a_broker_answer_holding_a_secret_is_withheld_and_audited(
    gateway: Gateway, backend: StubBackend, description: str
) -> None:
    backend.position_rows = [_position(description)]
    with pytest.raises(GatewayError) as caught:
        await gateway.list_positions("DU1234567")
    assert caught.value.code is ErrorCode.OUTPUT_UNSAFE
    record = (await gateway.audit.tail(1))[0]
    assert (record.event.error_code, record.event.output_hash) == ("OUTPUT_UNSAFE", None)
    assert caught.value.audit_event_id == record.event.event_id


_TEXT_PARTS = st.one_of(
    st.sampled_from(
        ["/home/ann", "/Users/bob", " /root/x", "C:\\Users\\x", "Bearer abcdefgh12", "eyJabcd.efgh.ij", "Basic x"]
        + ["cookie=1", "authorization:", "\x7f", "\u00e9", "\u2003", "\u212a", "\n", '"', ": ", ", ", "plain"]
    ),
    st.text(max_size=12),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(descriptions=st.lists(st.lists(_TEXT_PARTS, max_size=5).map("".join), min_size=1, max_size=3))
@example(descriptions=["\x7feyJabcd.efgh.ij"])  # escaped, the JWT has no word boundary before it: passes
@example(descriptions=["Bearer\u2003abcdefghijkl"])  # escaped, the em space is no \s: passes
@example(descriptions=["é/home/x", "plain"])
async def test_the_output_guard_decides_as_a_scan_of_json_dumps(
    gateway: Gateway, backend: StubBackend, descriptions: list[str]
) -> None:
    """Scanning the canonical text made for the output hash never changes the verdict of scanning `json.dumps`."""
    backend.position_rows = [_position(text) for text in descriptions]
    expected_unsafe = secret_reason(json.dumps([p.model_dump(mode="json") for p in backend.position_rows])) is not None
    try:
        await gateway.list_positions("DU1234567")
        unsafe = False
    except GatewayError as exc:
        assert exc.code is ErrorCode.OUTPUT_UNSAFE
        unsafe = True
    assert unsafe == expected_unsafe


def test_a_list_of_models_becomes_json_data_as_each_model_does() -> None:
    positions = [_position("Société"), _position("x", symbol="MSFT")]
    mixed: list[object] = [_position("y"), BrokerAccount(account_id="DU1", account_mode="paper"), {"a": Decimal("1.5")}]
    assert to_jsonable(positions) == [p.model_dump(mode="json") for p in positions]
    assert to_jsonable(mixed) == [mixed[0].model_dump(mode="json"), mixed[1].model_dump(mode="json"), {"a": "1.5"}]  # type: ignore[union-attr]
    assert (to_jsonable([]), to_jsonable(None)) == ([], None)
