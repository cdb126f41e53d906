"""Run the commands of the guide pages and compare what they print with the sample outputs shown.

    uv run python scripts/docs_samples.py                        # check every page; exit 1 on a difference
    uv run python scripts/docs_samples.py --page docs/cli.md     # one page
    uv run python scripts/docs_samples.py --show docs/cli.md     # print what each command prints today

Each page runs as a reader would run it: a fresh temporary directory as the working directory and
as `IBKR_AGENT_STATE_DIR`, the `$ ` lines of its `console` blocks in page order, through `bash` with
this interpreter's `ibkr-agent` and `python` first on `PATH`. A fenced block whose first line is a
comment naming a file (`# agent.yaml: ...`) is written to that directory first, so a page's config
files and scripts are the ones it shows.

The lines after a `$ ` line are its sample output. A line that is only `…` stands for any number of
lines, a `…` inside a line for any text. Ids, times and hashes differ on every run and are compared
masked; an id the page shows (`pv-…`, `ap-…`) stands for the real one in the commands that follow,
and a placeholder such as `<preview_id>` for the last real one printed. Bar rows follow the clock,
so their numbers are masked too. Anything else that differs (a field, a column, a word, an exit
code) is reported, and tests-integration/test_docs_samples.py fails until the page is fixed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAGES = (
    "docs/getting-started.md",
    "docs/walkthrough.md",
    "docs/cli.md",
    "docs/orders.md",
    "docs/brackets-and-modify.md",
    "docs/options-and-brackets.md",
    "docs/mcp.md",
    "docs/runbooks/kill-switch.md",
)
"""Pages whose `console` blocks run on the embedded simulator from start to end."""

ELLIPSIS = "…"
_ID_KINDS = {
    "preview_id": r"pv-[0-9a-f]{32}",
    "approval_id": r"ap-[0-9a-f]{32}",
    "client_order_id": r"iag-[0-9a-f]{24}",
    "event_id": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
}
"""Ids that differ on every run: masked when compared, mapped from the page's to the real ones."""
_IDS = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _ID_KINDS.items()))
_VOLATILE = (
    (re.compile(r"\d{4}-\d\d-\d\d(?:[T ][\d:.]+(?:Z|[+-]\d\d:\d\d)?)?"), "<TIME>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<HASH>"),  # chain hashes
    (re.compile(r'("(?:key_id|signature)": )"[^"]*"'), r'\1"<KEY>"'),
    (re.compile(r'("?staleness_seconds"?:\s*)[\d.e-]+'), r"\1<SECONDS>"),
)
_ERROR = re.compile(r'^[A-Z][A-Z_]+: |^\s*"code": "[A-Z_]+"|^\[[A-Z_]+\] |^exit=[1-9]|^[1-9]$')
"""A shown line that says the command fails: its exit code may be non-zero."""
_BROKER_ORDER_ID = re.compile(r'"?broker_order_id"?:\s*"?(\d+)')
_PLACEHOLDER = re.compile(r"<(\w+)>")
_FILE_BLOCK = re.compile(r"^#\s*([\w.-]+\.(?:py|ya?ml|json))\b")
_FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", re.M | re.S)


@dataclass
class Step:
    """One `$ ` line of a console block and the sample output under it."""

    command: str
    shown: list[str]
    line: int
    """Line number of the `$ ` line in the page (1-based); the shown output follows its last line."""
    output_at: int = 0
    """Index (0-based) of the first shown line in the page's lines."""
    indent: str = ""


@dataclass
class Result:
    """What one page's commands printed, and where that differs from the page."""

    page: str
    outputs: list[tuple[Step, str]] = field(default_factory=lambda: [])
    problems: list[str] = field(default_factory=lambda: [])
    stale: list[tuple[Step, list[str]]] = field(default_factory=lambda: [])
    """Steps whose sample differs, with the real output in the page's ids."""


def steps(text: str) -> list[Step]:
    """Every `$ ` line of the page's console blocks, with continuation lines joined, and its shown output."""
    found: list[Step] = []
    for match in _FENCE.finditer(text):
        if match.group(2) != "console":
            continue
        first_line = text.count("\n", 0, match.start(3)) + 1
        indent = len(match.group(1))
        lines = [raw[indent:] for raw in match.group(3).splitlines()]
        index = 0
        while index < len(lines):
            line = lines[index]
            if not line.startswith("$ "):
                index += 1  # output before any command: not a sample of one
                continue
            start = index
            command = line[2:]
            while command.endswith("\\") and index + 1 < len(lines):
                index += 1
                command = command[:-1].rstrip() + " " + lines[index].strip()
            index += 1
            output_at = first_line - 1 + index
            shown: list[str] = []
            while index < len(lines) and not lines[index].startswith("$ "):
                shown.append(lines[index])
                index += 1
            found.append(Step(command, shown, first_line + start, output_at, match.group(1)))
    return found


def files(text: str) -> dict[str, str]:
    """Fenced blocks that name their file in a first-line comment (`# agent.yaml: ...`), by file name."""
    named: dict[str, str] = {}
    for match in _FENCE.finditer(text):
        indent = len(match.group(1))
        body = "\n".join(raw[indent:] for raw in match.group(3).splitlines()) + "\n"
        found = _FILE_BLOCK.match(body)
        if found:
            named[found.group(1)] = body
    return named


def mask(line: str) -> str:
    """The line with every id, time and hash replaced; a row of bars (a time, then numbers) loses its numbers."""
    line = _IDS.sub(lambda m: f"<{m.lastgroup.upper() if m.lastgroup else 'ID'}>", line.rstrip())
    for pattern, replacement in _VOLATILE:
        line = pattern.sub(replacement, line)
    if line.startswith("<TIME> ") and re.fullmatch(r"<TIME>(\s+[\d.]+)+", line):
        line = re.sub(r"[\d.]+", "<N>", re.sub(r"\s+", " ", line))
    return line


@cache
def _line_pattern(shown: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in mask(shown).split(ELLIPSIS)), re.S)


def _is_elision(line: str) -> bool:
    return line.strip() in (ELLIPSIS, ELLIPSIS + ",")


def align(shown: list[str], real: list[str]) -> list[tuple[int, int]] | None:
    """Pairs (shown line, real line) when the real output matches the shown sample, else None."""
    shown = list(shown)
    while shown and not shown[-1].strip():
        shown.pop()
    memo: dict[tuple[int, int], list[tuple[int, int]] | None] = {}

    def go(i: int, j: int) -> list[tuple[int, int]] | None:
        key = (i, j)
        if key in memo:
            return memo[key]
        result: list[tuple[int, int]] | None = None
        if i == len(shown):
            result = [] if j == len(real) else None
        elif _is_elision(shown[i]):
            for k in range(j, len(real) + 1):
                rest = go(i + 1, k)
                if rest is not None:
                    result = rest
                    break
        elif j < len(real) and _line_pattern(shown[i]).fullmatch(mask(real[j])):
            rest = go(i + 1, j + 1)
            result = None if rest is None else [(i, j), *rest]
        memo[key] = result
        return result

    return go(0, 0)


def _cli_bin() -> Path:
    return Path(sys.executable).parent


def run_page(page: str) -> Result:
    """Run the page's commands in a fresh directory and compare each output with the page's sample."""
    text = (ROOT / page).read_text(encoding="utf-8")
    result = Result(page)
    with tempfile.TemporaryDirectory(prefix="ibkr-agent-docs-") as tmp:
        work = Path(tmp)
        for name, body in files(text).items():
            (work / name).write_text(body, encoding="utf-8")
        env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("IBKR_")},
            "IBKR_AGENT_STATE_DIR": str(work / "state"),
            "PATH": f"{_cli_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
            "TERMINAL_WIDTH": "200",
        }
        env.pop("VIRTUAL_ENV", None)
        ids: dict[str, str] = {}  # the page's id -> the real one
        last: dict[str, str] = {}  # placeholder name -> the last real value printed
        returncode = 0
        for step in steps(text):
            # An id the page never showed printed (its output left out) stands for the last one of its kind.
            command = _IDS.sub(lambda m: ids.get(m[0], last.get(m.lastgroup or "", m[0])), step.command)
            command = _PLACEHOLDER.sub(lambda m: last.get(m.group(1), m.group(0)), command)
            if command.strip() == "echo $?":  # each line runs in its own shell: the previous line's exit code
                command = f"echo {returncode}"
            proc = subprocess.run(
                ["bash", "-c", command],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                encoding="utf-8",
                timeout=120,
                check=False,
            )
            output, returncode = proc.stdout, proc.returncode
            result.outputs.append((step, output))
            real = output.rstrip("\n").splitlines() if output.strip() else []
            for found in _IDS.finditer(output):
                last[found.lastgroup or ""] = found.group(0)
            for found in _BROKER_ORDER_ID.finditer(output):
                last["broker_order_id"] = found.group(1)
            # The n-th id of a kind the page shows is the n-th one printed, matching or not.
            for kind in _ID_KINDS:
                shown_ids = _ids_of(kind, "\n".join(step.shown))
                ids.update(zip(shown_ids, _ids_of(kind, output), strict=False))
            if returncode != 0 and not any(_ERROR.search(line) for line in step.shown):
                result.problems.append(f"{page}:{step.line}: `{step.command}` failed ({returncode}):\n{output}")
            elif step.shown and align(step.shown, real) is None:
                result.problems.append(_difference(page, step, real))
                result.stale.append((step, _in_page_ids(real, ids)))
    return result


def rewrite(result: Result) -> None:
    """Replace each stale sample of the page with the real output (the page's ids kept, elisions not)."""
    path = ROOT / result.page
    lines = path.read_text(encoding="utf-8").split("\n")
    for step, real in sorted(result.stale, key=lambda item: -item[0].output_at):
        shown = list(step.shown)
        while shown and not shown[-1].strip():
            shown.pop()
        lines[step.output_at : step.output_at + len(shown)] = [(step.indent + line).rstrip() for line in real]
    path.write_text("\n".join(lines), encoding="utf-8")


def _in_page_ids(real: list[str], ids: dict[str, str]) -> list[str]:
    """The real output with each real id the page showed under another name written as the page's."""
    back = {real_id: shown_id for shown_id, real_id in ids.items()}
    return [_IDS.sub(lambda m: back.get(m[0], m[0]), line) for line in real]


def _ids_of(kind: str, text: str) -> list[str]:
    """The distinct ids of one kind in `text`, in order of first appearance."""
    return list(dict.fromkeys(re.findall(_ID_KINDS[kind], text)))


def _difference(page: str, step: Step, real: list[str]) -> str:
    import difflib

    shown = [mask(line) for line in step.shown]
    diff = difflib.unified_diff(shown, [mask(line) for line in real], "page", "real", lineterm="", n=1)
    return f"{page}:{step.line}: `{step.command}` prints something else:\n" + "\n".join(diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--page", action="append", help="check only this page (repeatable)")
    parser.add_argument("--show", metavar="PAGE", help="print what each command of PAGE prints today")
    parser.add_argument("--write", action="store_true", help="replace stale samples with the real output")
    args = parser.parse_args(argv)
    if args.show:
        for step, output in run_page(args.show).outputs:
            print(f"--- {args.show}:{step.line}\n$ {step.command}\n{output}", end="" if output.endswith("\n") else "\n")
        return 0
    problems: list[str] = []
    for page in args.page or PAGES:
        result = run_page(page)
        problems.extend(result.problems)
        if args.write and result.stale:
            rewrite(result)
            print(f"rewrote {len(result.stale)} sample(s) of {page}: put back the elisions (…) it needs")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
