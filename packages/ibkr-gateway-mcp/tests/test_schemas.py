from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from ibkr_gateway_core.models import Position
from ibkr_gateway_core.registry import OPERATIONS, OPERATIONS_BY_TOOL, Operation
from ibkr_gateway_core.requests import OperationInput
from ibkr_gateway_core.scopes import Scope
from ibkr_gateway_mcp.schemas import input_schema, output_schema
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from .conftest import schema_accepts


class _OrderLike(OperationInput):
    quantity: Decimal = Field(gt=0, description="Shares to trade.")
    limit_price: Decimal | None = Field(default=None, description="Limit price in the contract's currency.")


class _Leg(BaseModel):
    side: str = Field(description="buy or sell")


class _Nested(OperationInput):
    leg: _Leg = Field(description="One leg.")


class _Tree(OperationInput):
    children: list[_Tree] = Field(default_factory=lambda: list[_Tree](), description="Sub-trees.")


def _valid(schema: dict[str, Any], value: Any) -> bool:
    return schema_accepts(schema, value)


@pytest.mark.parametrize("quantity", [10, 10.5, "10", "10.5", "0.0001"])
def test_decimal_arguments_accept_a_number_or_a_decimal_string(quantity: object) -> None:
    """Money and quantities: a JSON number or a decimal string both satisfy the published schema (issue 5)."""
    assert _valid(input_schema(_OrderLike), {"quantity": quantity, "limit_price": quantity})


@pytest.mark.parametrize("quantity", ["ten", "1,5", "", True])
def test_decimal_arguments_refuse_what_is_no_decimal(quantity: object) -> None:
    """The string arm has a pattern, so a client sees what a decimal string is."""
    assert not _valid(input_schema(_OrderLike), {"quantity": quantity})


def test_input_schema_keeps_descriptions_and_constraints() -> None:
    """Constraints and descriptions of the model reach the tool's arguments."""
    schema = input_schema(_OrderLike)
    assert schema["required"] == ["quantity"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["quantity"]["description"] == "Shares to trade."
    assert schema["properties"]["quantity"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0.0}
    assert "title" not in schema


def test_input_schema_inlines_references() -> None:
    """Nested models are inlined: several hosts mishandle $ref in tool arguments."""
    schema = input_schema(_Nested)
    assert "$ref" not in json.dumps(schema)
    assert "$defs" not in schema
    assert schema["properties"]["leg"]["properties"]["side"]["description"] == "buy or sell"


def test_recursive_input_keeps_its_definitions() -> None:
    """A recursive model cannot be inlined; its references stay resolvable."""
    schema = input_schema(_Tree)
    assert "$defs" in schema
    assert _valid(schema, {"children": [{"children": []}]})


def test_list_outputs_are_wrapped_in_result() -> None:
    """MCP structured content is an object, so a list operation returns {"result": [...]}."""
    schema = output_schema(OPERATIONS["list_positions"])
    assert schema["type"] == "object"
    assert schema["anyOf"][0]["required"] == ["result"]
    position = Position(
        account_id="DU1", contract_id=1, symbol="X", asset_class="stock", quantity=Decimal("1.5"), currency="USD"
    )
    assert _valid(schema, {"result": [position.model_dump(mode="json")]})
    assert not _valid(schema, [position.model_dump(mode="json")])


def test_output_decimals_are_described_as_strings() -> None:
    """Results carry Decimals as strings (serialization mode), so a float is not what the schema promises."""
    items = output_schema(OPERATIONS["list_positions"])["anyOf"][0]["properties"]["result"]["items"]
    assert items["properties"]["quantity"]["type"] == "string"


def test_output_schema_has_an_error_arm_and_the_arms_exclude_each_other() -> None:
    """A tool error's content matches the schema (TypeScript clients check it), and only the error arm."""
    schema = output_schema(OPERATIONS["account_summary"])
    error = {
        "code": "AUTH_MISSING_SCOPE",
        "message": "m",
        "retryable": False,
        "user_action": "u",
        "audit_event_id": None,
    }
    assert _valid(schema, error)
    assert not _valid(schema["anyOf"][0], error)
    assert not _valid(schema, {**error, "code": "not a code"})
    assert not _valid(schema, {"anything": 1})


@pytest.mark.parametrize("op", list(OPERATIONS_BY_TOOL.values()), ids=list(OPERATIONS_BY_TOOL))
def test_every_registry_schema_is_valid_json_schema(op: Operation) -> None:
    """Hosts compile these schemas; a broken one would make the tool unusable."""
    Draft202012Validator.check_schema(input_schema(op.input_model))
    Draft202012Validator.check_schema(output_schema(op))


def test_a_future_decimal_operation_gets_the_same_treatment() -> None:
    """Tools come from whatever the registry holds: a Decimal input in a new entry needs no MCP code."""
    op = Operation(
        name="preview_like",
        tool="ibkr_preview_like",
        cli=("preview",),
        scope=Scope.ORDERS_PREVIEW,
        title="Preview",
        description="A test entry.",
        input_model=_OrderLike,
        output_model=Position,
        read_only=False,
    )
    assert _valid(input_schema(op.input_model), {"quantity": "3"})
    assert output_schema(op)["type"] == "object"
