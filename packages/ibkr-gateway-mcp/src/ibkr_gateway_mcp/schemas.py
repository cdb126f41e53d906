"""JSON schemas of MCP tools, generated from the operation registry's pydantic models.

Input schemas use pydantic's validation mode, so a `Decimal` field (money, quantities) accepts a JSON
number or a decimal string, and both arms are documented; references are inlined because several MCP
hosts mishandle `$ref` in tool arguments. Output schemas use serialization mode (Decimals are strings,
as the gateway returns them), lists are wrapped as `{"result": [...]}` because MCP structured content
is an object, broker-supplied text is marked (see `untrusted`), and the error shape is a second arm.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Final, cast

from ibkr_gateway_core.registry import Operation
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from .untrusted import UNTRUSTED_NOTE, UNTRUSTED_SCHEMA_KEY, untrusted_fields

RESULT_KEY: Final = "result"
"""Key that wraps a list result in structured content."""

_DROPPED_ROOT_KEYS: Final = frozenset({"title", "description"})
"""Root keys left out of a tool schema: the tool has its own title and description."""


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


class ErrorContent(BaseModel):
    """Structured content of a tool error: the stable error shape every surface shows."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="ToolError")

    code: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")]
    """Stable machine code from the error catalogue, e.g. `AUTH_MISSING_SCOPE`."""
    message: str
    """What went wrong, for people."""
    retryable: bool
    """True when the same call may succeed later unchanged."""
    user_action: str
    """What to do next."""
    audit_event_id: str | None
    """The audit event that recorded the failed call."""


def result_schema(model: type[BaseModel], *, many: bool = False) -> dict[str, Any]:
    """The schema of a successful result: `model`, or `{"result": [model]}` when `many`."""
    schema = model.model_json_schema(mode="serialization", schema_generator=_ToolJsonSchema)
    schema = {key: value for key, value in schema.items() if key not in _DROPPED_ROOT_KEYS}
    if not many:
        return schema
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {RESULT_KEY: {"type": "array", "items": schema}},
        "required": [RESULT_KEY],
        "additionalProperties": False,
    }
    if defs is not None:  # nested references still point at the root's definitions
        wrapped["$defs"] = defs
    return wrapped


def output_schema(op: Operation) -> dict[str, Any]:
    """The `outputSchema` of the operation's tool; see `tool_output_schema`."""
    return tool_output_schema(op.output_model, many=op.many)


def tool_output_schema(model: type[BaseModel], *, many: bool = False) -> dict[str, Any]:
    """An `outputSchema` with two arms: the result, or the `ErrorContent` of a tool error.

    MCP clients built on the TypeScript SDK validate `structuredContent` against the output schema
    even when `isError` is true, so the error shape must be part of it.
    """
    success = result_schema(model, many=many)
    defs = cast(dict[str, Any], success.pop("$defs", {}))
    error = ErrorContent.model_json_schema(mode="serialization")
    schema: dict[str, Any] = {"type": "object", "anyOf": [success, error]}
    if defs:
        schema["$defs"] = defs
    return schema


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
