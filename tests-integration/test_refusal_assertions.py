"""Every refusal test names the one code it means: no bare `GatewayError` catch in the test tree.

A `pytest.raises(GatewayError)` that never looks at the code passes for *any* refusal, so a test can
stop at the wrong gate (an account check, a broker error) and still look green. This scan reads
every test file's syntax tree and fails on:

- `pytest.raises(GatewayError)` (or a tuple naming it) without `as NAME`;
- `pytest.raises(GatewayError) as NAME` when `NAME.value.code` is never read before the next
  `pytest.raises(...) as NAME` in the same function (reading it through `error = NAME.value` and
  `error.code`, or returning `NAME.value` from a helper whose callers check the code, counts);
- `except GatewayError` (alone or in a tuple) whose handler never reads the caught error's `.code`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_TREES = (ROOT / "tests-integration", *sorted((ROOT / "packages").glob("*/tests")))


def _names_gateway_error(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "GatewayError"
    if isinstance(node, ast.Attribute):
        return node.attr == "GatewayError"
    if isinstance(node, ast.Tuple):
        return any(_names_gateway_error(item) for item in node.elts)
    return False


def _is_value_of(node: ast.AST | None, name: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "value"
        and isinstance(node.value, ast.Name)
        and node.value.id == name
    )


def _code_read(nodes: Sequence[ast.AST], name: str, *, through_value: bool) -> bool:
    """True when the code of the error bound to `name` is read among `nodes`.

    `through_value`: `name` is a `pytest.raises` handle (the error is `name.value`); else the error itself.
    """
    errors = set[str]() if through_value else {name}
    for node in nodes:
        if through_value and isinstance(node, ast.Assign) and _is_value_of(node.value, name):
            errors |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    for node in nodes:
        if through_value and isinstance(node, ast.Return) and _is_value_of(node.value, name):
            return True
        if isinstance(node, ast.Attribute) and node.attr == "code":
            if through_value and _is_value_of(node.value, name):
                return True
            if isinstance(node.value, ast.Name) and node.value.id in errors:
                return True
    return False


def _raises_handle(item: ast.withitem) -> str | None:
    """The name after `as` of a `pytest.raises(GatewayError)` item ("" without one); None for another item."""
    call = item.context_expr
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "raises"
        and call.args
        and _names_gateway_error(call.args[0])
    ):
        return None
    return item.optional_vars.id if isinstance(item.optional_vars, ast.Name) else ""


def bare_catches(source: str) -> Iterator[tuple[int, str]]:
    """(line, what) for each catch of `GatewayError` in `source` that asserts no code."""
    tree = ast.parse(source)
    scopes: list[ast.AST] = [
        node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    checked: set[int] = set()
    for scope in [*scopes, tree]:  # innermost first is not needed: each `with` is checked once
        nodes = list(ast.walk(scope))
        handles: list[tuple[ast.With | ast.AsyncWith, str]] = []
        for node in nodes:
            if isinstance(node, ast.With | ast.AsyncWith) and node.lineno not in checked:
                handles += [(node, name) for item in node.items if (name := _raises_handle(item)) is not None]
        handles.sort(key=lambda pair: pair[0].lineno)
        for index, (node, name) in enumerate(handles):
            checked.add(node.lineno)
            if not name:
                yield node.lineno, "pytest.raises(GatewayError) without `as`"
                continue
            rebound = [other.lineno for other, again in handles[index + 1 :] if again == name]
            end = min(rebound, default=1 << 30)
            window = [item for item in nodes if node.lineno <= getattr(item, "lineno", 0) < end]
            if not _code_read(window, name, through_value=True):
                yield node.lineno, f"pytest.raises(GatewayError) as {name}: its code is never asserted"
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and _names_gateway_error(node.type):
            if node.name is None or not _code_read(list(ast.walk(node)), node.name, through_value=False):
                yield node.lineno, "except GatewayError: its code is never read"


def test_no_test_accepts_any_gateway_error() -> None:
    """Each test file of every package and of the integration tests asserts the code it expects."""
    files = [path for tree in TEST_TREES for path in sorted(tree.rglob("*.py"))]
    assert len(files) > 50, TEST_TREES
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in files
        for line, what in bare_catches(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "snippet",
    [
        "def t():\n    with pytest.raises(GatewayError):\n        f()\n",
        "async def t():\n    with anyio.fail_after(1), pytest.raises(GatewayError) as caught:\n        await f()\n"
        "    assert caught.value.message\n",
        "def t():\n    with pytest.raises((GatewayError, ValueError)) as caught:\n        f()\n",
        "def t():\n    with pytest.raises(errors.GatewayError, match='x'):\n        f()\n",
        "def t():\n    with pytest.raises(GatewayError) as caught:\n        f()\n    assert caught.value.code is A\n"
        "    with pytest.raises(GatewayError) as caught:\n        g()\n",
        "def t():\n    try:\n        f()\n    except GatewayError:\n        pass\n",
        "def t():\n    try:\n        f()\n    except (GatewayError, OSError) as exc:\n        seen.append(exc)\n",
    ],
)
def test_the_scan_finds_a_bare_catch(snippet: str) -> None:
    """The scan itself: each of these accepts any refusal and is reported."""
    assert list(bare_catches(snippet)) != []


@pytest.mark.parametrize(
    "snippet",
    [
        "def t():\n    with pytest.raises(GatewayError) as caught:\n        f()\n    assert caught.value.code is A\n",
        "def t():\n    with pytest.raises(GatewayError) as caught:\n        f()\n    error = caught.value\n"
        "    assert error.code == A\n",
        "async def h():\n    with pytest.raises(GatewayError) as caught:\n        await f()\n    return caught.value\n",
        "def t():\n    for _ in range(3):\n        with pytest.raises(GatewayError) as caught:\n            f()\n"
        "        assert caught.value.code is A\n    with pytest.raises(GatewayError) as caught:\n        g()\n"
        "    assert caught.value.code is B\n",
        "def t():\n    try:\n        f()\n    except GatewayError as exc:\n        codes.append(exc.code)\n",
        "def t():\n    with pytest.raises(ValueError):\n        f()\n",
    ],
)
def test_the_scan_accepts_a_catch_that_names_its_code(snippet: str) -> None:
    """The scan itself: these read the code (or catch something else) and pass."""
    assert list(bare_catches(snippet)) == []
