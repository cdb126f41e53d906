"""Every `ibkr-agent` command line shown in the docs parses, and the error sample on the reference page is real.

A command line in a fenced block (`bash`, `console` after `$ `, `text`, `sh`) is cut at shell operators
and comments, taken from the word `ibkr-agent` on, and parsed by the CLI's own parser without running
it: unknown commands or options, a value missing after an option or a value of the wrong type fail.
Placeholders such as `<preview_id>` are ordinary values to the parser.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from ibkr_gateway_cli.app import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md", *(ROOT / "packages").glob("*/README.md")])
_FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", re.M | re.S)
_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&", ">&", "("}


def _command_lines(text: str) -> list[str]:
    lines: list[str] = []
    for match in _FENCE.finditer(text):
        language, body = match.group(2), match.group(3)
        if language not in ("bash", "console", "sh", "shell", "text", ""):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for raw in joined.splitlines():
            line = raw.strip()
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if "[OPTIONS]" in line:  # a usage synopsis of the CLI reference, not a command line
                continue
            if re.search(r"(^|\s|/)ibkr-agent(\s|$)", line):
                lines.append(line)
    return lines


def _words(line: str) -> list[str]:
    text = re.sub(r"<([\w-]+)>", r"\1", line)  # a placeholder, not a redirection
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _argv(line: str) -> list[str] | None:
    """The arguments after `ibkr-agent`, or None when another program runs it (the MCP Inspector's `npx`)."""
    words = _words(line)
    if "ibkr-agent" not in [Path(word).name for word in words] or words[0] == "npx":
        return None
    start = [Path(word).name for word in words].index("ibkr-agent") + 1
    argv: list[str] = []
    for word in words[start:]:
        if word in _OPERATORS:
            break
        argv.append(word)
    return argv


DOCUMENTED = sorted(
    {
        (path.relative_to(ROOT).as_posix(), line)
        for path in PAGES
        for line in _command_lines(path.read_text(encoding="utf-8"))
    }
)


def test_the_docs_show_many_command_lines() -> None:
    """The extraction finds the walkthrough's and the guide's commands (a broken pattern finds none)."""
    assert len(DOCUMENTED) > 60
    assert any("orders live-submit" in line for _, line in DOCUMENTED)


def _parse(command: Any, argv: list[str], parent: Any, name: str) -> None:
    ctx = command.make_context(name, list(argv), parent=parent)
    if hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]  # pyright: ignore[reportPrivateUsage]
        assert rest, f"{name}: a command group without a command"
        sub_name, sub, sub_args = command.resolve_command(ctx, rest)
        _parse(sub, sub_args, ctx, sub_name)


@pytest.mark.parametrize(("page", "line"), DOCUMENTED, ids=[f"{p}:{line[:60]}" for p, line in DOCUMENTED])
def test_documented_command_line_parses(page: str, line: str) -> None:
    argv = _argv(line)
    if argv is None:
        pytest.skip("run by another program, whose own options follow")
    root = typer.main.get_command(app)
    try:
        _parse(root, argv, None, "ibkr-agent")
    except typer.Exit as exc:  # --help, --version
        assert exc.exit_code == 0
    except typer.TyperException as exc:  # the parser's refusal: an unknown command or option, a bad value
        format_message = getattr(exc, "format_message", None)
        pytest.fail(f"{page}: `{line}` does not parse: {format_message() if callable(format_message) else exc}")


def test_the_error_sample_on_the_reference_page_is_the_real_text(tmp_path: Path) -> None:
    """docs/reference/errors.md shows an error exactly as the CLI prints it (but the event id)."""
    page = (ROOT / "docs" / "reference" / "errors.md").read_text(encoding="utf-8")
    shown = json.loads(page.split("```json\n", 1)[1].split("```", 1)[0])
    proc = subprocess.run(
        [sys.executable, "-m", "ibkr_gateway_cli", "account", "summary", "--account", "DU0000000", "--json"],
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
        env={**os.environ, "IBKR_AGENT_STATE_DIR": str(tmp_path)},
    )
    real = json.loads(proc.stderr)
    assert {**real, "audit_event_id": "…"} == shown
