"""Hypothesis strategies for fuzzing the MCP surfaces: tool calls from input schemas, hostile values, raw lines.

Arguments are built as JSON *text*, so values no JSON library writes (`1e999`, `NaN`, a lone
surrogate escape, a 5,000-digit integer, nesting hundreds deep) can be spliced in anywhere. The
tools come from the live `tools/list` of the server under test, never from a list written here.

`IBKR_FUZZ_PROFILE=long` raises the case counts (see `examples`); the normal run stays small.
Each case is built from one integer seed (`tool_case`, `malformed_line`; see `run_cases` for why).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from random import Random
from re import _parser  # pyright: ignore[reportAttributeAccessIssue]
from typing import Any, Final, cast

from ibkr_gateway_core.errors import ErrorCode
from ibkr_gateway_mcp.inbound import dropped_notification_reason, screen_message

LONG: Final = os.environ.get("IBKR_FUZZ_PROFILE", "") == "long"
"""True under the long profile (`IBKR_FUZZ_PROFILE=long`, or `scripts/fuzz_surfaces.py`)."""

CODE_PATTERN: Final = re.compile(r"^[A-Z][A-Z0-9_]+$")
KNOWN_CODES: Final = frozenset(code.value for code in ErrorCode)


SEED_BASE: Final = int(os.environ.get("IBKR_FUZZ_SEED", "0"))
"""The first case's seed (`IBKR_FUZZ_SEED`); the normal run starts at 0, so CI runs the same cases each time."""


def examples(normal: int, long: int = 10_000) -> int:
    """The case count for this profile."""
    return long if LONG else normal


def run_cases(normal: int, case: Callable[[int], None], *, long: int = 10_000) -> int:
    """Run `case(seed)` for this profile's count of consecutive seeds; the number run.

    Each case is built from a `random.Random` seeded by one integer, in a plain loop. The cases used
    to be hypothesis strategies (a tree of them built from each tool's schema); under the long
    profile hypothesis stopped after a few thousand cases with `FlakyStrategyDefinition`, even once
    the whole case was one drawn integer, so nothing of hypothesis' search is used here. A failure
    names its seed; `IBKR_FUZZ_SEED=<seed>` makes it the first case of the next run.
    """
    count = examples(normal, long)
    for seed in range(SEED_BASE, SEED_BASE + count):
        try:
            case(seed)
        except AssertionError as exc:
            raise AssertionError(f"case seed {seed} (rerun it first with IBKR_FUZZ_SEED={seed}): {exc}") from exc
    return count


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


HOSTILE_TEXTS: Final = (
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\ud800"',
    '"abc\\udfff"',
    "9" * 5000,
    "-" + "1" * 65,
    "[" * 300 + "]" * 300,
    '{"a":' * 120 + "1" + "}" * 120,
    "1" + "0" * 400 + ".5",
    "1e-999",
    '"' + "x" * 20_000 + '"',
)


def hostile_value(rng: Random) -> Raw:
    """A value that breaks naive parsers, encoders or the stack."""
    pick = rng.randrange(4)
    if pick == 0:
        depth = rng.randint(1, 4000)
        return Raw("[" * depth + "]" * depth)
    if pick == 1:
        return Raw("7" * rng.randint(60, 6000))
    return Raw(rng.choice(HOSTILE_TEXTS))


SPECIAL_STRINGS: Final = ("", "0", "-1", "1_000", "1e3", "DU1234567", "AAPL", " ", "null", "../../etc/passwd")
ODD_CHARACTERS: Final = "\x00\t\n\r\x7f\u00a0\u00e9\u202e\u200b\u2028\ufeff\uffff\u2603" + "\U0001f600\U0010ffff"


def text(rng: Random, min_size: int = 0, max_size: int = 30) -> str:
    """A string of `min_size` to `max_size` characters: ASCII, any plane, or odd characters (never a lone surrogate)."""
    size = rng.randint(min_size, max(min_size, min(max_size, rng.choice((2, 8, max_size)))))
    mode = rng.randrange(4)
    if mode == 0:
        return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(size))
    if mode == 1:
        return "".join(rng.choice(ODD_CHARACTERS) for _ in range(size))
    chars: list[str] = []
    for _ in range(size):
        code = rng.choice((rng.randint(0, 0x7F), rng.randint(0x80, 0xFFFF), rng.randint(0x10000, 0x10FFFF)))
        chars.append(chr(code) if not 0xD800 <= code <= 0xDFFF else "?")
    return "".join(chars)


def integer(rng: Random, low: int | None = None, high: int | None = None) -> int:
    """An integer within the bounds given, often at or next to one of them."""
    lo = -(10**20) if low is None else low
    hi = 10**20 if high is None else high
    edges = [value for value in (lo, lo + 1, hi - 1, hi, 0, 1, -1, 2**31, 2**63) if lo <= value <= hi]
    if edges and rng.random() < 0.3:
        return rng.choice(edges)
    if rng.random() < 0.5 and lo <= 1000 and hi >= -1000:
        return rng.randint(max(lo, -1000), min(hi, 1000))
    return rng.randint(lo, hi)


def number(rng: Random, low: float | None = None, high: float | None = None) -> float | str:
    """A finite float within the bounds, or a decimal string (the schemas accept both for money)."""
    lo = -1e20 if low is None else float(low)
    hi = 1e20 if high is None else float(high)
    if rng.random() < 0.25:
        places = rng.randint(0, 6)
        return f"{rng.uniform(max(lo, -1e6), min(hi, 1e6)):.{places}f}" if lo <= 1e6 and hi >= -1e6 else repr(lo)
    edges = [value for value in (lo, hi, 0.0, -0.0, 5e-324, 0.1, 1.5, 1e-300, 1e300) if lo <= value <= hi]
    if edges and rng.random() < 0.3:
        return rng.choice(edges)
    return rng.uniform(lo, hi)


def any_json(rng: Random, depth: int = 0) -> object:
    """Any JSON value, up to four levels deep."""
    pick = rng.randrange(9 if depth < 4 else 7)
    match pick:
        case 0:
            return None
        case 1:
            return rng.random() < 0.5
        case 2:
            return integer(rng)
        case 3:
            return number(rng)
        case 4:
            return text(rng, 0, 40)
        case 5 | 6:
            return rng.choice(SPECIAL_STRINGS)
        case 7:
            return [any_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        case _:
            return {text(rng, 0, 10): any_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def pattern_text(rng: Random, pattern: str) -> str:
    """A string matching `pattern` (the subset the schemas use: classes, groups, alternation, repeats)."""
    return "".join(_from_regex(rng, _parser.parse(pattern)))


def _from_regex(rng: Random, parsed: Any) -> Iterator[str]:
    for op, value in parsed:
        name = str(op)
        if name == "LITERAL":
            yield chr(value)
        elif name == "IN":
            yield _class_char(rng, value)
        elif name == "ANY":
            yield chr(rng.randint(0x20, 0x7E))
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, item = value
            for _ in range(rng.randint(low, min(high, low + 8))):
                yield from _from_regex(rng, item)
        elif name == "SUBPATTERN":
            yield from _from_regex(rng, value[-1])
        elif name == "BRANCH":
            yield from _from_regex(rng, rng.choice(value[1]))
        elif name != "AT":
            raise ValueError(f"regex part {name} is not generated")


def _class_char(rng: Random, items: Any) -> str:
    choices: list[tuple[int, int]] = []
    for op, value in items:
        name = str(op)
        if name == "LITERAL":
            choices.append((value, value))
        elif name == "RANGE":
            choices.append(value)
        elif name == "CATEGORY" and str(value) == "CATEGORY_DIGIT":
            choices.append((0x30, 0x39))
        elif name == "CATEGORY" and str(value) == "CATEGORY_WORD":
            choices += [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A), (0x5F, 0x5F)]
        else:
            raise ValueError(f"regex class part {name} is not generated")
    low, high = rng.choice(choices)
    return chr(rng.randint(low, high))


def schema_value(rng: Random, node: Mapping[str, Any], defs: Mapping[str, Mapping[str, Any]], depth: int = 0) -> object:
    """A value valid under `node` (mostly: formats are tried, not guaranteed).

    Our own generator: hypothesis-jsonschema 0.23 does not run on this hypothesis release. It covers
    what the tools' schemas use: `$ref`/`$defs`, `anyOf`/`oneOf`, `enum`/`const`, objects with
    `properties`/`required`, arrays, strings with lengths and patterns, numbers with bounds.
    """
    if depth > 8:
        return None
    ref = node.get("$ref")
    if isinstance(ref, str):
        return schema_value(rng, defs.get(ref.rsplit("/", 1)[-1], {}), defs, depth + 1)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return rng.choice(list(node["enum"]))
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        return schema_value(rng, rng.choice(branches), defs, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        return schema_value(rng, {**node, "type": rng.choice(kind)}, defs, depth)
    match kind:
        case "object":
            properties = cast(Mapping[str, Mapping[str, Any]], node.get("properties", {}))
            required = set(node.get("required", []))
            return {
                name: schema_value(rng, properties[name], defs, depth + 1)
                for name in properties
                if name in required or rng.random() < 0.5
            }
        case "array":
            items = node.get("items", {})
            low = node.get("minItems", 0)
            high = max(low, min(node.get("maxItems", 5), 5))
            return [schema_value(rng, items, defs, depth + 1) for _ in range(rng.randint(low, high))]
        case "string":
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                return pattern_text(rng, pattern)
            if node.get("format") == "date-time" and rng.random() < 0.7:
                day = f"20{rng.randint(0, 99):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                return f"{day}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
            low = node.get("minLength", 0)
            high = max(low, min(node.get("maxLength", 30), 30))
            fitting = [word for word in SPECIAL_STRINGS if low <= len(word) <= high]
            if fitting and rng.random() < 0.4:
                return rng.choice(fitting)  # a known account, symbol or number: the call gets past the first gate
            return text(rng, low, high)
        case "integer":
            return integer(rng, node.get("minimum"), node.get("maximum"))
        case "number":
            return number(rng, node.get("minimum"), node.get("maximum"))
        case "boolean":
            return rng.random() < 0.5
        case "null":
            return None
        case _:
            return any_json(rng)


def _splice(arguments: object, hostile: Raw, where: int) -> object:
    """`arguments` with one value (or one new key) replaced by `hostile`."""
    if isinstance(arguments, dict) and arguments:
        keys = sorted(arguments)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
        key = keys[where % len(keys)]  # pyright: ignore[reportUnknownVariableType]
        return {**arguments, key: hostile}  # pyright: ignore[reportUnknownVariableType]
    return {"x": hostile}


def tool_case(seed: int, schemas: Mapping[str, Mapping[str, Any]]) -> tuple[str, str, str]:
    """(tool name, arguments as JSON text, kind) for one seed: valid, valid with one hostile value, or any JSON."""
    rng = Random(seed)
    name = rng.choice(sorted(schemas))
    kind = rng.choice(["schema", "hostile", "hostile", "any"])
    if kind == "any":
        arguments: object = {text(rng, 0, 12): any_json(rng) for _ in range(rng.randint(0, 6))}
    else:
        schema = schemas[name]
        arguments = schema_value(rng, schema, cast(Mapping[str, Mapping[str, Any]], schema.get("$defs", {})))
        if kind == "hostile":
            arguments = _splice(arguments, hostile_value(rng), rng.randint(0, 50))
    return name, to_text(arguments), kind


def call_line(request_id: int, tool: str, arguments_text: str) -> bytes:
    """One tools/call request line."""
    head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call"})[:-1]
    return f'{head},"params":{{"name":{json.dumps(tool)},"arguments":{arguments_text}}}}}'.encode()


MALFORMED_SAMPLES: Final = (
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
    b'{"jsonrpc":"2.0","method":"notifications/no_such"}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[1]}}',
    b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":"x"}}',
    b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}',
    b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}',
    b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"ibkr_health","arguments":{}}}',
)

NOTIFICATION_METHODS: Final = (
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/message",
    "tools/call",
    "ping",
)


def malformed_line(seed: int) -> bytes:
    """One line that is not a well-formed JSON-RPC request (never blank, never holding a newline)."""
    rng = Random(seed)
    pick = rng.randrange(5)
    if pick == 0:
        line = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))).replace(b"\n", b" ")
    elif pick == 1:
        line = rng.choice(MALFORMED_SAMPLES)
    elif pick == 2:
        chars = [chr(rng.choice((rng.randint(0, 0x7F), rng.randint(0, 0xFFFF)))) for _ in range(rng.randint(1, 80))]
        line = "".join(chars).replace("\n", " ").encode("utf-8", "surrogatepass")
    elif pick == 3:  # a notification: a known method or not, params fitting or not
        message: dict[str, object] = {"jsonrpc": "2.0", "method": rng.choice(NOTIFICATION_METHODS)}
        if rng.random() < 0.8:
            message["params"] = (
                any_json(rng)
                if rng.random() < 0.3
                else {
                    rng.choice(("requestId", "progressToken", "progress", "reason", "x")): any_json(rng)
                    for _ in range(rng.randint(0, 3))
                }
            )
        line = to_text(message).encode("utf-8", "surrogatepass")
    else:  # a request envelope with exactly one part wrong (a well-formed request is no malformed line)
        envelope: dict[str, object] = {
            "jsonrpc": "2.0",
            "id": rng.choice((rng.randint(0, 99), text(rng, 1, 8))),
            "method": rng.choice(NOTIFICATION_METHODS),
            "params": {},
        }
        part = rng.choice(("jsonrpc", "id", "method", "params"))
        wrong: dict[str, tuple[object, ...]] = {
            "jsonrpc": ("1.0", 2, None, "2.00"),
            "id": ({}, [1], 1.5, True, None),
            "method": (5, None, [], {}),
            "params": ([], [1], "x", 3, True),
        }
        if rng.random() < 0.2 and part != "id":
            del envelope[part]
            envelope.setdefault("params", {})
            if part == "params":  # without params a request is still well formed: break the id instead
                envelope["id"] = rng.choice(wrong["id"])
        else:
            envelope[part] = rng.choice(wrong[part])
        line = to_text(envelope).encode("utf-8", "surrogatepass")
    return line if line.strip() else b"?"


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


def is_quiet_notification(line: bytes) -> bool:
    """A well-formed notification the server reads and audits not: the protocol's housekeeping.

    Such a message runs no operation and is answered by nothing (`initialized`, `cancelled`,
    `progress`, `roots/list_changed` with params the protocol's model accepts); every other
    notification is dropped and leaves exactly one `mcp_notification_dropped` event.
    """
    if screen_message(line) is not None:
        return False  # refused (and audited) before the protocol reads it
    message = cast(dict[str, Any], json.loads(line))
    method = message.get("method")
    params = message.get("params")
    if not (isinstance(method, str) and "id" not in message and (params is None or isinstance(params, dict))):
        return False
    return dropped_notification_reason(method, cast(dict[str, Any] | None, params), "2025-11-25") is None
