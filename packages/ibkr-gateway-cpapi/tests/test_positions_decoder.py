"""A positions page read straight from its bytes gives exactly what decoding it, then validating, gives."""

import json
import math

import anyio
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi import _wire as wire  # pyright: ignore[reportPrivateUsage]
from ibkr_gateway_cpapi.client import CpapiClient, _decode  # pyright: ignore[reportPrivateUsage]
from pydantic import ValidationError

_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["1,300", "+2.37", "41.2M", "N/A", "C171.02", " ", "STK", "ETF", "USD"])
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_KEYS = [
    "acctId", "conid", "contractDesc", "position", "mktPrice", "mktValue", "currency", "avgCost", "avgPrice",
    "realizedPnl", "unrealizedPnl", "assetClass", "ticker", "name", "type", "acct_id", "undConid", "sector",
]  # fmt: skip
_ROW = st.dictionaries(st.sampled_from(_KEYS), st.one_of(_SCALAR, _SCALAR, _VALUE), max_size=len(_KEYS))
_WELL_FORMED = st.fixed_dictionaries(
    {
        "conid": st.integers(1, 10**9) | st.text(max_size=6),
        "position": st.integers() | st.floats() | st.text(max_size=6),
    },
    optional={key: _SCALAR for key in _KEYS if key not in ("conid", "position")},
)


def _same(a: object, b: object) -> bool:
    """Equal data, NaN equal to NaN, -0.0 told from 0.0, and types alike (1 is not 1.0, nor True)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # pyright: ignore[reportUnknownVariableType]
    return type(a) is type(b) and a == b


def _dumped(rows: list[wire.WirePosition]) -> list[dict[str, object]]:
    return [row.model_dump() for row in rows]


@settings(max_examples=200, deadline=None)
@given(body=st.lists(_ROW | _WELL_FORMED, max_size=4) | _VALUE, ascii_only=st.booleans())
def test_read_from_bytes_equals_decoded_then_validated(body: object, ascii_only: bool) -> None:
    content = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    try:
        direct = wire.positions_from_json(content)
    except ValueError:
        return  # refused: the client reads such a body the ordinary way (tested below)
    decoded, ok = _decode(content)
    assert ok
    assert _same(_dumped(direct), _dumped(wire.parse_positions(decoded)))
    assert _same(_dumped(wire.parse_positions(direct)), _dumped(direct))  # a reused answer validates as itself


def test_a_page_as_the_broker_sends_it_reads_the_same_both_ways() -> None:
    rows = [
        {"acctId": "DU1", "conid": 265598, "contractDesc": "AAPL", "position": 10.0, "mktPrice": 171.02,
         "mktValue": 1710.2, "currency": "USD", "avgCost": 150.5, "avgPrice": 150.5, "realizedPnl": 0.0,
         "unrealizedPnl": 205.2, "assetClass": "STK", "ticker": "AAPL", "name": "APPLE INC", "type": "COMMON",
         "sector": "Technology", "incrementRules": [{"lowerEdge": 0.0, "increment": 0.01}]},
        {"conid": "756733", "position": "1,300", "mktPrice": None, "avgCost": "+2.37", "currency": None},
    ]  # fmt: skip
    content = json.dumps(rows).encode()
    direct = wire.positions_from_json(content)
    assert _same(_dumped(direct), _dumped(wire.parse_positions(json.loads(content))))
    assert direct[1].position == "1,300" and direct[0].position == 10.0 and direct[1].conid == "756733"


@pytest.mark.parametrize(
    "content",
    [b'{"error": "Init session first"}', b"[1, 2]", b'[{"conid": 1}]', b"[NaN", b"", b"\xef\xbb\xbf[]"],
)
def test_a_body_that_is_not_a_positions_list_is_refused_by_the_direct_read(content: bytes) -> None:
    with pytest.raises(ValidationError):
        wire.positions_from_json(content)


async def _get_with_decoder(status: int, content: bytes) -> object:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda request: httpx2.Response(status, content=content)))
    client = CpapiClient("https://localhost:5000", http_client=http)
    async with http, client:
        with anyio.fail_after(5):
            return await client.get("/portfolio/DU1/positions/0", decoder=wire.positions_from_json)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content", "code"),
    [
        (200, b'{"error": "Init session first"}', ErrorCode.BROKER_SESSION_REQUIRED),
        (200, b'{"error": "no session"}', ErrorCode.BROKER_SESSION_REQUIRED),
        (200, b"[{not json", ErrorCode.BROKER_RESPONSE_INVALID),
        (401, b'[{"conid": 1, "position": 1}]', ErrorCode.BROKER_SESSION_REQUIRED),
        (503, b'[{"conid": 1, "position": 1}]', ErrorCode.BROKER_BACKEND_UNAVAILABLE),
    ],
)
async def test_with_a_decoder_the_client_still_tells_every_answer_apart(
    status: int, content: bytes, code: ErrorCode
) -> None:
    with pytest.raises(GatewayError) as caught:
        await _get_with_decoder(status, content)
    assert caught.value.code == code


@pytest.mark.anyio
async def test_with_a_decoder_a_body_of_another_shape_comes_back_as_json() -> None:
    assert await _get_with_decoder(200, b'[{"conid": 1}]') == [{"conid": 1}]
    rows = await _get_with_decoder(200, b'[{"conid": 1, "position": 2.5, "extra": [1]}]')
    assert rows == [wire.WirePosition.model_validate({"conid": 1, "position": 2.5})]
