"""Hypothesis strategies for fuzzing the MCP surfaces: tool calls from input schemas, hostile values, raw lines.

Arguments are built as JSON *text*, so values no JSON library writes (`1e999`, `NaN`, a lone
surrogate escape, a 5,000-digit integer, nesting hundreds deep) can be spliced in anywhere. The
tools come from the live `tools/list` of the server under test, never from a list written here.

`IBKR_FUZZ_PROFILE=long` raises the example counts (see `examples`); the normal run stays small.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Final, cast

from hypothesis import strategies as st
from ibkr_gateway_core.errors import ErrorCode

LONG: Final = os.environ.get("IBKR_FUZZ_PROFILE", "") == "long"
"""True under the long profile (`IBKR_FUZZ_PROFILE=long`, or `scripts/fuzz_surfaces.py`)."""

CODE_PATTERN: Final = re.compile(r"^[A-Z][A-Z0-9_]+$")
KNOWN_CODES: Final = frozenset(code.value for code in ErrorCode)


def examples(normal: int, long: int = 10_000) -> int:
    """The example count for this profile."""
    return long if LONG else normal


class Raw:
    """JSON text spliced in verbatim where a value goes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


def to_text(value: object) -> str:
    """`value` as JSON text, `Raw` parts verbatim."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Mapping):
        items = ",".join(f"{json.dumps(str(k))}:{to_text(v)}" for k, v in value.items())  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_text(item) for item in value) + "]"  # pyright: ignore[reportUnknownVariableType]
    return json.dumps(value)


HOSTILE_VALUES: Final = st.one_of(
    st.sampled_from(
        [
            Raw("1e999"),
            Raw("-1e999"),
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-Infinity"),
            Raw('"\\ud800"'),
            Raw('"abc\\udfff"'),
            Raw("9" * 5000),
            Raw("-" + "1" * 65),
            Raw("[" * 300 + "]" * 300),
            Raw('{"a":' * 120 + "1" + "}" * 120),
            Raw("1" + "0" * 400 + ".5"),
            Raw("1e-999"),
            Raw('"' + "x" * 20_000 + '"'),
        ]
    ),
    st.integers(min_value=1, max_value=4000).map(lambda depth: Raw("[" * depth + "]" * depth)),
    st.integers(min_value=60, max_value=6000).map(lambda digits: Raw("7" * digits)),
)
"""Values that break naive parsers, encoders or the stack."""

JSON_SCALARS: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "1_000", "1e3", "DU1234567", "AAPL", " ", "null", "../../etc/passwd"]),
)
ANY_JSON: Final = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def schema_arguments(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Arguments valid under the tool's input schema (mostly: formats and patterns are tried, not guaranteed).

    A small generator of our own: hypothesis-jsonschema 0.23 does not run on this hypothesis release.
    It covers what the tools' schemas use: `$ref`/`$defs`, `anyOf`/`oneOf`, `enum`/`const`, objects
    with `properties`/`required`, arrays, strings with lengths and patterns, numbers with bounds.
    """
    defs = cast(Mapping[str, Mapping[str, Any]], schema.get("$defs", {}))
    return _from_schema(schema, defs, 0)


def _from_schema(node: Mapping[str, Any], defs: Mapping[str, Mapping[str, Any]], depth: int) -> st.SearchStrategy[Any]:
    if depth > 8:
        return st.none()
    ref = node.get("$ref")
    if isinstance(ref, str):
        return st.deferred(lambda: _from_schema(defs.get(ref.rsplit("/", 1)[-1], {}), defs, depth + 1))
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(list(node["enum"]))
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        return st.one_of([_from_schema(branch, defs, depth + 1) for branch in branches])
    kind = node.get("type")
    if isinstance(kind, list):
        return st.one_of([_from_schema({**node, "type": one}, defs, depth) for one in kind])
    match kind:
        case "object":
            properties = cast(Mapping[str, Mapping[str, Any]], node.get("properties", {}))
            required = [name for name in node.get("required", []) if name in properties]
            optional = [name for name in properties if name not in required]
            return st.fixed_dictionaries(
                {name: _from_schema(properties[name], defs, depth + 1) for name in required},
                optional={name: _from_schema(properties[name], defs, depth + 1) for name in optional},
            )
        case "array":
            items = node.get("items", {})
            return st.lists(
                _from_schema(items, defs, depth + 1),
                min_size=node.get("minItems", 0),
                max_size=min(node.get("maxItems", 5), 5),
            )
        case "string":
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                return st.from_regex(pattern, fullmatch=True)
            low = node.get("minLength", 0)
            return st.text(min_size=low, max_size=max(low, min(node.get("maxLength", 30), 30)))
        case "integer":
            return st.integers(min_value=node.get("minimum"), max_value=node.get("maximum"))
        case "number":
            return st.floats(
                min_value=node.get("minimum"), max_value=node.get("maximum"), allow_nan=False, allow_infinity=False
            ) | st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str)
        case "boolean":
            return st.booleans()
        case "null":
            return st.none()
        case _:
            return ANY_JSON


def _splice(arguments: object, hostile: Raw, where: int) -> object:
    """`arguments` with one value (or one new key) replaced by `hostile`."""
    if isinstance(arguments, dict) and arguments:
        keys = sorted(arguments)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
        key = keys[where % len(keys)]  # pyright: ignore[reportUnknownVariableType]
        return {**arguments, key: hostile}  # pyright: ignore[reportUnknownVariableType]
    return {"x": hostile}


@st.composite
def tool_arguments(draw: st.DrawFn, schemas: Mapping[str, Mapping[str, Any]]) -> tuple[str, str, str]:
    """(tool name, arguments as JSON text, kind): valid, valid with one hostile value, or any JSON."""
    name = draw(st.sampled_from(sorted(schemas)))
    kind = draw(st.sampled_from(["schema", "hostile", "hostile", "any"]))
    if kind == "any":
        arguments: object = draw(st.dictionaries(st.text(max_size=12), ANY_JSON, max_size=6))
    else:
        arguments = draw(schema_arguments(schemas[name]))
        if kind == "hostile":
            arguments = _splice(arguments, draw(HOSTILE_VALUES), draw(st.integers(0, 50)))
    return name, to_text(arguments), kind


def call_line(request_id: int, tool: str, arguments_text: str) -> bytes:
    """One tools/call request line."""
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call"})[:-1]
    return f'{head},"params":{{"name":{json.dumps(tool)},"arguments":{arguments_text}}}}}'.encode()


MALFORMED_LINES: Final = st.one_of(
    st.binary(min_size=1, max_size=200).filter(lambda raw: b"\n" not in raw and raw.strip() != b""),
    st.sampled_from(
        [
            b"not json",
            b"{",
            b"[]",
            b"[1,2]",
            b"null",
            b"42",
            b'"text"',
            b'{"jsonrpc":"2.0"}',
            b'{"jsonrpc":"1.0","id":1,"method":"ping"}',
            b'{"jsonrpc":"2.0","id":{},"method":"ping"}',
            b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
            b'{"jsonrpc":"2.0","id":1,"method":null}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ibkr_health","arguments":"x"}}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}',
            b'{"jsonrpc":"2.0","id":1,"method":"no/such"}',
            b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progressToken":NaN}}}',
            b"\xff\xfe\xfd",
            b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
        ]
    ),
    st.text(max_size=80)
    .map(lambda text: text.replace("\n", " ").encode("utf-8", "surrogatepass"))
    .filter(lambda raw: raw.strip() != b""),
)
"""Lines that are not a well-formed JSON-RPC request: each must still get no hang and an audit row."""


def check_tool_reply(reply: Mapping[str, Any]) -> str:
    """Assert the reply to a tools/call is a result or a coded error; the code, or "" for success."""
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error["code"], int) and error["code"] in (-32700, -32600, -32601, -32602), reply
        data = error.get("data")
        if isinstance(data, dict):
            assert data["code"] in KNOWN_CODES, reply  # pyright: ignore[reportUnknownMemberType]
            return str(data["code"])  # pyright: ignore[reportUnknownArgumentType]
        return f"JSONRPC{error['code']}"
    result = reply["result"]
    if not result.get("isError"):
        return ""
    structured = result.get("structuredContent")
    assert isinstance(structured, dict), reply
    code = structured["code"]  # pyright: ignore[reportUnknownVariableType]
    assert code in KNOWN_CODES, reply
    assert result["content"][0]["text"].startswith(f"[{code}] "), reply
    assert "Error executing tool" not in json.dumps(result), reply
    return str(code)  # pyright: ignore[reportUnknownArgumentType]


def is_notification(line: bytes) -> bool:
    """A well-formed JSON-RPC notification: no answer is due, and the SDK drops an unknown one unaudited.

    Notifications are not calls (nothing runs, nothing is answered), so the one-audit-event property
    allows none for them.
    """
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and isinstance(message.get("method"), str)
        and "id" not in message
    )
