"""The library: a typed method for every registry operation, reads on `Gateway`, writes on a principal's view."""

import importlib
import importlib.util
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ibkr_gateway_core import Gateway, GatewayConfig
from ibkr_gateway_core._operation_methods import ReadMethods, WriteMethods
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.gateway import GatewayView
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.registry import OPERATIONS, Operation
from ibkr_gateway_core.scopes import READ_ONLY

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_library", ROOT / "scripts" / "gen_library.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_methods_are_up_to_date() -> None:
    """A new or changed operation needs `uv run python scripts/gen_library.py`."""
    generator = _generator()
    assert generator.TARGET.read_text(encoding="utf-8") == generator.render()


def _annotation_globals() -> dict[str, Any]:
    """The generated module's names plus the models its annotations name (imported for type checking only)."""
    found = {name: getattr(importlib.import_module(module), name) for module, name in _generator().annotation_names()}
    return {**vars(importlib.import_module("ibkr_gateway_core._operation_methods")), **found}


ANNOTATION_GLOBALS = _annotation_globals()


@pytest.mark.parametrize("op", list(OPERATIONS.values()), ids=lambda op: op.name)
def test_every_operation_has_a_method_with_its_input_and_output_types(op: Operation) -> None:
    owner = ReadMethods if op.read_only else WriteMethods
    method = getattr(owner, op.name)
    signature = inspect.signature(method, eval_str=True, globals=ANNOTATION_GLOBALS)
    parameters = [name for name in signature.parameters if name != "self"]
    assert sorted(parameters) == sorted(op.input_model.model_fields)
    for name, field in op.input_model.model_fields.items():
        assert (signature.parameters[name].default is inspect.Parameter.empty) == field.is_required(), name
    expected = list[op.output_model] if op.many else op.output_model
    assert signature.return_annotation == expected
    assert hasattr(GatewayView, op.name)
    assert hasattr(Gateway, op.name) == op.read_only  # a write always names who acts


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with Gateway.from_config(GatewayConfig.fake_local(state_dir=tmp_path)) as opened:
        yield opened


async def test_reads_are_typed_and_audited_like_any_call(gateway: Gateway) -> None:
    pnl = await gateway.pnl_daily("DU1234567")
    chain = await gateway.options_chain("AAPL", strike_count=1, right="put")
    rate = await gateway.currency_rate("EUR", "USD")
    assert pnl.available and chain.options[0].right == "put" and rate.rate > 0
    tail = await gateway.audit_tail(limit=4)
    assert [r.event.tool_name for r in tail.events][:3] == [
        "ibkr_currency_rate",
        "ibkr_options_chain",
        "ibkr_pnl_daily",
    ]


async def test_writes_act_as_the_named_principal_with_its_switches(gateway: Gateway) -> None:
    with pytest.raises(GatewayError) as off:
        await gateway.as_operator().preview_order("DU1234567", side="buy", quantity="1", symbol="AAPL", limit_price="1")
    assert off.value.code == ErrorCode.ORDER_PREVIEW_DISABLED
    preview = await gateway.as_operator(enable_preview=True).preview_order(
        "DU1234567", side="buy", quantity="1", symbol="AAPL", limit_price="200"
    )
    assert preview.ticket.symbol == "AAPL"
    agent = gateway.as_principal(Principal(kind="local_agent", subject="lib-agent", scopes=READ_ONLY))
    with pytest.raises(GatewayError) as denied:
        await agent.preview_order("DU1234567", side="buy", quantity="1", symbol="AAPL", limit_price="200")
    assert denied.value.code == ErrorCode.AUTH_MISSING_SCOPE
    with pytest.raises(GatewayError) as renew:
        await agent.renew_session()
    assert renew.value.code == ErrorCode.OPERATOR_ONLY
    assert (await gateway.as_operator().renew_session()).status == "usable"
    tail = await gateway.audit_tail(limit=10)
    subjects = {r.event.tool_name: r.event.principal_subject for r in reversed(tail.events)}  # newest wins
    assert subjects["ibkr_session_renew"] == "local-operator"


async def test_bad_arguments_are_refused_with_the_operations_code(gateway: Gateway) -> None:
    with pytest.raises(GatewayError) as month:
        await gateway.option_strikes(265598, "13XX")
    assert month.value.code == ErrorCode.INPUT_INVALID_ARGUMENT
    with pytest.raises(GatewayError) as unsupported:
        await gateway.news_list("AAPL")
    assert unsupported.value.code == ErrorCode.BACKEND_UNSUPPORTED
