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


REFUSED_BY_THE_PARSER = "INPUT_INVALID_ARGUMENT: No such "
"""A console block line after a command that starts so shows the parser refusing it, on purpose."""


def _command_lines(text: str) -> list[tuple[str, bool]]:
    """(command line, shown as refused by the parser) for every `ibkr-agent` line of a fenced block."""
    lines: list[tuple[str, bool]] = []
    for match in _FENCE.finditer(text):
        language, body = match.group(2), match.group(3)
        if language not in ("bash", "console", "sh", "shell", "text", ""):
            continue
        joined = re.sub(r"\\\n\s*", " ", body).splitlines()
        for index, raw in enumerate(joined):
            line = raw.strip()
            after = joined[index + 1].strip() if index + 1 < len(joined) else ""
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if "[OPTIONS]" in line:  # a usage synopsis of the CLI reference, not a command line
                continue
            if re.search(r"(^|\s|/)ibkr-agent(\s|$)", line):
                lines.append((line, language == "console" and after.startswith(REFUSED_BY_THE_PARSER)))
    return lines


def _words(line: str) -> list[str]:
    # a placeholder (`<preview_id>`, `<the one you reviewed>`) is one value, not a redirection
    text = re.sub(r"<([\w][^<>|;&]*?)>", lambda m: m.group(1).replace(" ", "_"), line)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _argv(line: str) -> list[str] | None:
    """The arguments after `ibkr-agent`, or None when another program runs it (the MCP Inspector's `npx`)."""
    words = _words(line)
    names = [Path(word).name for word in words]
    if "ibkr-agent" not in names or words[0] == "npx":
        return None
    at = names.index("ibkr-agent")
    run_by = (
        all("=" in word for word in words[:at])  # `VAR=value ibkr-agent …`, or the program itself
        or words[at - 1] in ("run", "exec")  # `uv run ibkr-agent …`
        or (at >= 2 and words[at - 2] == "--from")  # `uvx --from ibkr-gateway-cli ibkr-agent …`
    )
    if not run_by:
        return None  # a path or a name that merely ends in ibkr-agent (`python -m venv ~/.venvs/ibkr-agent`)
    start = at + 1
    argv: list[str] = []
    for word in words[start:]:
        if word in _OPERATORS:
            break
        argv.append(word)
    return argv


DOCUMENTED = sorted(
    {
        (path.relative_to(ROOT).as_posix(), line, refused)
        for path in PAGES
        for line, refused in _command_lines(path.read_text(encoding="utf-8"))
    }
)


def test_the_docs_show_many_command_lines() -> None:
    """The extraction finds the walkthrough's and the guide's commands (a broken pattern finds none)."""
    assert len(DOCUMENTED) > 60
    assert any("orders live-submit" in line for _, line, _ in DOCUMENTED)


def _parse(command: Any, argv: list[str], parent: Any, name: str) -> None:
    ctx = command.make_context(name, list(argv), parent=parent)
    if hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]  # pyright: ignore[reportPrivateUsage]
        assert rest, f"{name}: a command group without a command"
        sub_name, sub, sub_args = command.resolve_command(ctx, rest)
        _parse(sub, sub_args, ctx, sub_name)


@pytest.mark.parametrize(("page", "line", "refused"), DOCUMENTED, ids=[f"{p}:{line[:60]}" for p, line, _ in DOCUMENTED])
def test_documented_command_line_parses(page: str, line: str, refused: bool) -> None:
    """Each command line parses; one the page shows being refused (a mistyped command) is refused."""
    argv = _argv(line)
    if argv is None:
        pytest.skip("not an ibkr-agent command line: another program runs it, or a path ends in ibkr-agent")
    root = typer.main.get_command(app)
    try:
        _parse(root, argv, None, "ibkr-agent")
    except typer.Exit as exc:  # --help, --version
        assert exc.exit_code == 0
    except typer.TyperException as exc:  # the parser's refusal: an unknown command or option, a bad value
        format_message = getattr(exc, "format_message", None)
        if not refused:
            pytest.fail(f"{page}: `{line}` does not parse: {format_message() if callable(format_message) else exc}")
        return
    assert not refused, f"{page}: `{line}` is shown refused by the parser, but it parses"


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
