"""Every runnable example under docs_src/ runs and prints what its page says.

Each example runs as its own process (`sys.executable`), in an empty directory, with the state
directory pointed at a temporary one, as a reader would run it after copying it from the page.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS_SRC = ROOT / "docs_src"

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
