"""A result's canonical JSON written straight from flat models is byte for byte that of its JSON data."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Annotated, Any, Literal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ibkr_gateway_core._result_json import canonical_text, to_jsonable
from ibkr_gateway_core.audit.events import canonical_json_of_jsonable
from ibkr_gateway_core.models import BrokerAccount, MarketSnapshot, Position
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, computed_field, field_serializer


class _Plain(BaseModel):
    """Every kind of field `canonical_text` writes itself, declared out of alphabetical order."""

    model_config = ConfigDict(frozen=True)

    zulu: str
    alpha: int | None = None
    mike: bool = False
    bravo: Decimal | None = None
    kilo: Literal["one", "two"] = "one"
    echo: Annotated[str, StringConstraints(max_length=64)] = "e"


def _reference(value: object) -> str | None:
    """The general path: the JSON data, then `json.dumps` with sorted keys; None where it raises."""
    try:
        return canonical_json_of_jsonable(to_jsonable(value))
    except ValueError:  # a lone surrogate or an integer too long to print
        return None


def _assert_same(value: object) -> None:
    fast = canonical_text(value)
    expected = _reference(value)
    if expected is None:
        assert fast is None
    else:
        assert fast is None or fast == expected
        assert fast is not None  # every value here is one the fast path takes


_ANY_TEXT: st.SearchStrategy[str] = st.text(st.characters(codec=None, exclude_categories=["Cs"]), max_size=12) | (
    st.sampled_from(["", " ", "\x00", "\x1f", "\x7f", "\u2028", '"', "\\", "/", "é", "\U0001f600", "<>&'"])
)
_DECIMALS: st.SearchStrategy[Decimal] = st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [Decimal("-0"), Decimal("1E+30"), Decimal("-1.50E-9"), Decimal("123456789012345678901234567890.123")]
)
_CURRENCIES = st.from_regex(r"\A[A-Z]{3}\Z")


@st.composite
def _positions(draw: st.DrawFn) -> Position:
    return Position(
        account_id=draw(_ANY_TEXT),
        contract_id=draw(st.integers()),
        symbol=draw(_ANY_TEXT),
        description=draw(st.none() | _ANY_TEXT),
        asset_class=draw(st.sampled_from(["stock", "etf", "option", "other"])),
        quantity=draw(_DECIMALS),
        currency=draw(_CURRENCIES),
        market_price=draw(st.none() | _DECIMALS),
        market_value=draw(st.none() | _DECIMALS),
        average_cost=draw(st.none() | _DECIMALS),
        unrealized_pnl=draw(st.none() | _DECIMALS),
        realized_pnl=draw(st.none() | _DECIMALS),
    )


@settings(max_examples=300, deadline=None)
@given(positions=st.lists(_positions(), min_size=1, max_size=5))
def test_positions_are_written_as_their_json_data_is(positions: list[Position]) -> None:
    """Texts with control, non-ASCII and escaped characters, any integer, exact decimals: the same bytes."""
    _assert_same(positions)
    _assert_same(positions[0])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.builds(
            _Plain,
            zulu=_ANY_TEXT,
            alpha=st.none() | st.integers(),
            mike=st.booleans(),
            bravo=st.none() | _DECIMALS,
            kilo=st.sampled_from(["one", "two"]),
            echo=_ANY_TEXT,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_each_plain_field_kind_is_written_as_its_json_data_is(rows: list[_Plain]) -> None:
    _assert_same(rows)


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param({"zulu": "\ud800"}, id="lone-surrogate"),
        pytest.param({"zulu": "x", "alpha": 10 ** sys.get_int_max_str_digits()}, id="integer-too-long-for-str"),
        pytest.param({"zulu": "x", "alpha": 1.5}, id="float-in-an-integer-field"),
        pytest.param({"zulu": "x", "bravo": 2.5}, id="float-in-a-decimal-field"),
        pytest.param({"zulu": 7}, id="integer-in-a-text-field"),
    ],
)
def test_a_value_the_general_path_writes_differently_or_refuses_is_left_to_it(odd: dict[str, Any]) -> None:
    """Instances made without validation: never a text that differs from the general path's."""
    fields: dict[str, Any] = {"alpha": None, "mike": False, "bravo": None, "kilo": "one", "echo": "e"} | odd
    value = _Plain.model_construct(**fields)
    fast = canonical_text([value])
    assert fast is None or fast == _reference([value])
    assert canonical_text([value]) is None


@example(digits=sys.get_int_max_str_digits())
@given(digits=st.integers(1, sys.get_int_max_str_digits()))
def test_integers_up_to_the_digit_limit_are_written(digits: int) -> None:
    value = _Plain(zulu="x", alpha=-(10**digits - 1))
    assert canonical_text(value) == _reference(value)


class _WithFloat(BaseModel):
    price: float
    name: str


class _WithAlias(BaseModel):
    name: str = Field(serialization_alias="Name")
    other: str


class _WithComputed(BaseModel):
    name: str
    other: str

    @computed_field
    @property
    def both(self) -> str:
        return self.name + self.other


class _WithSerializer(BaseModel):
    name: str
    other: str

    @field_serializer("name")
    def _upper(self, value: str) -> str:
        return value.upper()


class _WithExtra(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    other: str


class _Nested(BaseModel):
    inner: _Plain
    name: str


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_WithFloat(price=1e16, name="x"), id="float"),
        pytest.param(_WithAlias(name="x", other="y"), id="alias"),
        pytest.param(_WithComputed(name="x", other="y"), id="computed-field"),
        pytest.param(_WithSerializer(name="x", other="y"), id="field-serializer"),
        pytest.param(_WithExtra(name="x", other="y", more=1.5), id="extra-fields"),  # pyright: ignore[reportCallIssue]
        pytest.param(_Nested(inner=_Plain(zulu="z"), name="x"), id="nested-model"),
        pytest.param(
            MarketSnapshot(contract_id=1, data_status="live", received_at="2026-01-02T03:04:05Z"), id="snapshot"
        ),
        pytest.param([_Plain(zulu="a"), BrokerAccount(account_id="DU1", account_mode="paper")], id="mixed-list"),
        pytest.param([], id="empty-list"),
        pytest.param({"a": Decimal("1.5")}, id="plain-data"),
        pytest.param(None, id="none"),
    ],
)
def test_other_results_are_left_to_the_general_path(value: object) -> None:
    """Floats, aliases, computed fields, custom serializers, extra fields, nesting: not written here."""
    assert canonical_text(value) is None
    assert _reference(value) is not None


def test_broker_accounts_are_written_as_their_json_data_is() -> None:
    accounts = [
        BrokerAccount(account_id="DU1234567", account_label="Paper é", account_mode="paper", base_currency="USD"),
        BrokerAccount(account_id="U7654321", account_mode="live"),
    ]
    assert canonical_text(accounts) == _reference(accounts)
