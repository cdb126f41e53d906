"""Every runnable example of the docs runs and prints what its page says.

Each example under docs_src/ runs as its own process (`sys.executable`), in an empty directory, with
the state directory pointed at a temporary one, as a reader would run it after copying it from the
page. The guide pages' `console` samples run through `scripts/docs_samples.py`: every `$ ` line, in
page order, compared with the output shown under it. Error samples outside them (`text` and `json`
blocks that nothing runs) must at least give an action the product gives.
"""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from ibkr_gateway_core.errors import ERROR_CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
DOCS_SRC = ROOT / "docs_src"


def _docs_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_samples", ROOT / "scripts" / "docs_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


SAMPLES = _docs_samples()

EXPECTED_OUTPUT: dict[str, str] = {
    "getting_started/tutorial001.py": r"visible_accounts=[1-9]\d*\n",
    "library/tutorial001.py": r"pnl_available=True options=[1-9]\d*\npreview=AAPL 1 @ 200\n",
}
"""Regular expression that the whole stdout of each example must match."""

EXAMPLES = sorted(path.relative_to(DOCS_SRC).as_posix() for path in DOCS_SRC.rglob("*.py"))


def test_every_example_has_an_expected_output() -> None:
    """A new example needs an entry here, so none runs unchecked."""
    assert sorted(EXPECTED_OUTPUT) == EXAMPLES


def test_every_example_is_included_in_a_page() -> None:
    """An example file that no page includes is dead weight (pages include with pymdownx.snippets)."""
    pages = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "docs").rglob("*.md"))
    missing = [example for example in EXAMPLES if f'--8<-- "docs_src/{example}"' not in pages]
    assert missing == []


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs_and_prints_its_documented_output(example: str, tmp_path: Path) -> None:
    """The example exits 0 and prints the output shown on its page."""
    env = {**os.environ, "IBKR_AGENT_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, str(DOCS_SRC / example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(EXPECTED_OUTPUT[example], proc.stdout), proc.stdout


def _code_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_library_snippet_in_the_readme_is_the_tested_example() -> None:
    """The README's library snippet is this example, line for line (the design fixes the snippet).

    Blank lines are ignored: the formatter may space the README's copy differently.
    """
    snippet = _code_lines((DOCS_SRC / "getting_started" / "tutorial001.py").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [_code_lines(block.split("```", 1)[0]) for block in readme.split("```python\n")[1:]]
    assert snippet in blocks


@pytest.mark.slow
@pytest.mark.parametrize("page", SAMPLES.PAGES)
def test_console_samples_print_what_the_page_shows(page: str) -> None:
    """Each command of the page runs (in a fresh state directory) and prints the sample shown under it.

    The fix for a failure is the page: `uv run python scripts/docs_samples.py --page PAGE --write`
    puts the real output in, then put back the elisions (`…`) the sample needs.
    """
    result = SAMPLES.run_page(page)
    assert len(result.outputs) >= 3, "no console samples found: a broken pattern finds none"
    assert result.problems == []


def test_the_sample_matcher_masks_only_what_changes_between_runs() -> None:
    """Ids, times and hashes are masked; a field, a word or a column that differs is not."""
    align = SAMPLES.align
    shown = ['  "preview_id": "pv-c571461cf294418ea7c1747e661fcd69",', '  "created_at": "2026-11-25T13:13:05.686322Z",']
    real = ['  "preview_id": "pv-0123456789abcdef0123456789abcdef",', '  "created_at": "2026-12-06T07:06:53.431075Z",']
    assert align(shown, real) is not None
    assert align(shown, [real[0], '  "expires_at": "2026-12-06T07:06:53.431075Z",']) is None
    assert align(["estimated cost: amount: 460 currency: USD"], ["estimated cost: 460 USD"]) is None
    assert align(["{", "…", "}"], ["{", '  "a": 1,', '  "b": 2', "}"]) is not None  # a line of its own: any lines
    assert align(["{", "}"], ["{", '  "a": 1', "}"]) is None  # no elision: every line counts
    assert align(["{'result': [{'a': 1, …}, …]}"], ["{'result': [{'a': 1, 'b': 2}, {'a': 3}]}"]) is not None
    assert align(["AAPL: 24 bars"], ["AAPL: 23 bars"]) is None
    bar = "2026-11-24T12:00:00+00:00  215.68  216.45  213.47  214.24  47222"
    assert align([bar], ["2026-12-05T06:00:00+00:00  214.37  215.72  210.42  211.77  31020"]) is not None


_SHOWN_TEXT_ERROR = re.compile(
    r"^\s*(?:\[(?P<bracketed>[A-Z][A-Z_]+)\]|(?P<plain>[A-Z][A-Z_]+):) .*\n\s*(?:User action|Action): (?P<action>.+)$",
    re.M,
)
_SHOWN_JSON_ERROR = re.compile(r'"code": "(?P<code>[A-Z][A-Z_]+)",[^{}]*?"user_action": "(?P<action>(?:[^"\\]|\\.)*)"')
ERROR_SAMPLE_PAGES = sorted(
    [*(ROOT / "docs").rglob("*.md"), ROOT / "README.md", *(ROOT / "packages").glob("*/README.md")]
)


def _shown_error_actions() -> list[tuple[str, str, str]]:
    """(page, code, user action) of every error sample the docs show, as text or as JSON."""
    shown: list[tuple[str, str, str]] = []
    for path in ERROR_SAMPLE_PAGES:
        text = path.read_text(encoding="utf-8")
        page = path.relative_to(ROOT).as_posix()
        shown.extend(
            (page, match["bracketed"] or match["plain"], match["action"].strip())
            for match in _SHOWN_TEXT_ERROR.finditer(text)
        )
        shown.extend(
            (page, match["code"], json.loads(f'"{match["action"]}"')) for match in _SHOWN_JSON_ERROR.finditer(text)
        )
    return shown


def _source_strings() -> set[str]:
    """Every string literal of the packages' sources: the actions a call sets of its own are among them."""
    strings: set[str] = set()
    for path in ROOT.glob("packages/*/src/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
    return strings


def test_every_error_sample_gives_an_action_the_product_gives() -> None:
    """A shown error's code exists, and its user action is the code's catalogue action or one a call sets itself.

    Console samples also run (the slow test above); `text` and `json` samples, such as the MCP tool
    error on docs/mcp.md, run nowhere, so a changed action would stay stale on the page without this.
    """
    shown = _shown_error_actions()
    assert len(shown) >= 10, "no error samples found: a broken pattern finds none"
    catalogue = {str(code): info.user_action for code, info in ERROR_CATALOGUE.items()}
    known = _source_strings()
    stale: list[str] = []
    for page, code, action in shown:
        if code not in catalogue:
            stale.append(f"{page}: {code} is no error code")
            continue
        pattern = re.compile(".*?".join(map(re.escape, action.split("…"))), re.S)
        if not any(pattern.fullmatch(candidate) for candidate in (catalogue[code], *known)):
            stale.append(f"{page}: {code}: {action}")
    assert stale == []
