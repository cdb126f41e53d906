"""JSON schemas of MCP tools, generated from the operation registry's pydantic models.

Input schemas use pydantic's validation mode, so a `Decimal` field (money, quantities) accepts a JSON
number or a decimal string, and both arms are documented; references are inlined because several MCP
hosts mishandle `$ref` in tool arguments. Output schemas use serialization mode (Decimals are strings,
as the gateway returns them), lists are wrapped as `{"result": [...]}` because MCP structured content
is an object, and broker-supplied text is marked (see `untrusted`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, cast

from ibkr_gateway_core.registry import Operation
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from .untrusted import UNTRUSTED_NOTE, UNTRUSTED_SCHEMA_KEY, untrusted_fields

RESULT_KEY: Final = "result"
"""Key that wraps a list result in structured content."""

_DROPPED_ROOT_KEYS: Final = frozenset({"title"})
"""Root keys left out of a tool schema: the tool has its own title."""


class _ToolJsonSchema(GenerateJsonSchema):
    """pydantic's generator, with decimal strings described by a pattern and broker text marked."""

    def get_decimal_pattern(self, schema: core_schema.DecimalSchema) -> str | None:
        """A pattern for the string arm of a decimal, so clients see what a valid string is."""
        return self.build_decimal_pattern(schema)

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        """The model's schema with its broker-text properties marked as untrusted."""
        json_schema = super().model_schema(schema)
        cls = cast(type[BaseModel], schema["cls"])
        properties = cast(dict[str, dict[str, Any]], json_schema.get("properties", {}))
        for name in untrusted_fields(cls):
            prop = properties.get(name)
            if prop is not None:
                prop[UNTRUSTED_SCHEMA_KEY] = True
                prop["description"] = (
                    f"{prop['description']} {UNTRUSTED_NOTE}" if "description" in prop else UNTRUSTED_NOTE
                )
        return json_schema


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The `inputSchema` of a tool whose arguments are `model`, with every `$ref` inlined."""
    schema = model.model_json_schema(mode="validation", schema_generator=_ToolJsonSchema)
    defs = cast(dict[str, Any], schema.pop("$defs", {}))
    inlined = cast(dict[str, Any], _inline(schema, defs, frozenset()))
    result = {key: value for key, value in inlined.items() if key not in _DROPPED_ROOT_KEYS}
    if '"$ref"' in json.dumps(result):  # a recursive model kept references: they need their definitions
        result["$defs"] = defs
    return result


def output_schema(op: Operation) -> dict[str, Any]:
    """The `outputSchema` of the operation's tool: the output model, or `{"result": [model]}` for lists."""
    schema = op.output_model.model_json_schema(mode="serialization", schema_generator=_ToolJsonSchema)
    schema = {key: value for key, value in schema.items() if key not in _DROPPED_ROOT_KEYS}
    if not op.many:
        return schema
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {RESULT_KEY: {"type": "array", "items": schema}},
        "required": [RESULT_KEY],
    }
    if defs is not None:  # nested references still point at the root's definitions
        wrapped["$defs"] = defs
    return wrapped


def _inline(node: object, defs: Mapping[str, Any], seen: frozenset[str]) -> object:
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in cast(list[object], node)]
    if not isinstance(node, dict):
        return node
    obj = cast(dict[str, object], node)
    ref = obj.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:  # recursion cannot be inlined; keep the reference and its definition
            return {**obj}
        target = cast(dict[str, object], _inline(defs[name], defs, seen | {name}))
        siblings = {key: _inline(value, defs, seen) for key, value in obj.items() if key != "$ref"}
        return {**target, **siblings}
    return {key: _inline(value, defs, seen) for key, value in obj.items()}
