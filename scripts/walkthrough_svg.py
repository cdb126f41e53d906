"""Draw the walkthrough's key steps as a terminal picture, from the real commands.

    uv run python scripts/walkthrough_svg.py           # run the commands, write docs/assets/walkthrough.svg
    uv run python scripts/walkthrough_svg.py --check   # run them again; exit 1 when the picture is stale

Each step runs the real `ibkr-agent` (this interpreter's) on the embedded simulator, in a fresh state
directory, and the picture shows what it printed. Ids, times and broker order ids differ on every run,
so `--check` compares the picture with one drawn now after masking those; any other change in a
command's output (a column, a word, a flag) makes the committed picture stale, and
tests-integration/test_walkthrough_picture.py fails until it is redrawn.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "assets" / "walkthrough.svg"
ACCOUNT = "DU1234567"
COLUMNS = 104
"""Characters per line; longer lines are cut with `…`, so the picture has a fixed size."""
_VOLATILE = re.compile(
    r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00"  # times
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # event ids
    r"|(?:pv|ap)-[0-9a-f]{8,}|iag-[0-9a-f]{24}"  # preview, approval and client order ids
    r"|\b\d{7,}\b"  # broker order ids
)


def _cli() -> list[str]:
    found = shutil.which("ibkr-agent", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "ibkr_gateway_cli"]


def _run(argv: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([*_cli(), *argv], env=env, capture_output=True, encoding="utf-8", check=False, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"ibkr-agent {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}: (\S+)$", text, re.M)
    if match is None:
        raise SystemExit(f"no {name} in:\n{text}")
    return match.group(1)


def session() -> list[tuple[str, str]]:
    """The key steps as (command line, output) pairs, run for real."""
    steps: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="ibkr-agent-walkthrough-") as state:
        env = {**os.environ, "IBKR_AGENT_STATE_DIR": state, "COLUMNS": "120"}

        def step(shown: str, argv: list[str], keep: int | None = None) -> str:
            out = _run(argv, env)
            lines = out.rstrip("\n").splitlines()
            cut = lines[:keep] if keep is not None and len(lines) > keep else lines
            steps.append((shown, "\n".join([*cut, *(["…"] if len(cut) < len(lines) else [])])))
            return out

        step("ibkr-agent accounts list", ["accounts", "list"])
        preview = step(
            f"ibkr-agent orders preview --account {ACCOUNT} --symbol AAPL --side buy --quantity 1 "
            "--limit-price 100 --enable-preview",
            [
                "orders",
                "preview",
                "--account",
                ACCOUNT,
                "--symbol",
                "AAPL",
                "--side",
                "buy",
                "--quantity",
                "1",
                "--limit-price",
                "100",
                "--enable-preview",
            ],  # fmt: skip
            keep=3,
        )
        preview_id = re.search(r"^preview (\S+):", preview, re.M)
        assert preview_id is not None, preview
        approval = step(
            f"ibkr-agent approvals create --account {ACCOUNT} --preview-id {preview_id.group(1)}",
            ["approvals", "create", "--account", ACCOUNT, "--preview-id", preview_id.group(1)],
            keep=4,
        )
        approval_id = _field(approval, "approval_id")
        submit = ["orders", "submit", "--account", ACCOUNT, "--approval-id", approval_id]
        step(
            f"ibkr-agent orders submit --account {ACCOUNT} --approval-id {approval_id} "
            "--idempotency-key first-order --enable-paper",
            [*submit, "--idempotency-key", "first-order", "--enable-paper"],
        )
        step("ibkr-agent audit tail --limit 4", ["audit", "tail", "--limit", "4"])
        step("ibkr-agent audit verify", ["audit", "verify"], keep=2)
    return steps


def _lines(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(kind, text) per picture line: `command` or `output`, cut to `COLUMNS`."""
    out: list[tuple[str, str]] = []
    for command, text in steps:
        out.append(("command", command))
        out.extend(("output", line) for line in text.splitlines())
        out.append(("output", ""))
    out.pop()
    return [(kind, text if len(text) <= COLUMNS else text[: COLUMNS - 1] + "…") for kind, text in out]


def render(steps: list[tuple[str, str]]) -> str:
    """The SVG: a dark terminal window, commands after a green prompt, outputs in grey."""
    lines = _lines(steps)
    char, height, pad, top = 7.8, 18, 18, 44
    width = round(COLUMNS * char + 2 * pad + 16)
    total = top + len(lines) * height + pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total}" width="{width}" height="{total}" '
        'role="img" aria-labelledby="title">',
        '  <title id="title">ibkr-agent: accounts, a previewed, approved and submitted paper order, the audit '
        "trail</title>",
        "  <style>text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace;"
        "font-size:13px;white-space:pre}.p{fill:#7ee787}.c{fill:#f0f6fc}.o{fill:#b8c4ce}</style>",
        f'  <rect width="{width}" height="{total}" rx="10" fill="#0d1b1e"/>',
        '  <circle cx="20" cy="18" r="6" fill="#ff5f57"/><circle cx="40" cy="18" r="6" fill="#febc2e"/>'
        '<circle cx="60" cy="18" r="6" fill="#28c840"/>',
        f'  <text x="{width / 2:.0f}" y="22" text-anchor="middle" class="o">ibkr-agent on the embedded simulator'
        "</text>",
    ]
    for index, (kind, text) in enumerate(lines):
        y = top + index * height
        if kind == "command":
            parts.append(
                f'  <text x="{pad}" y="{y}" xml:space="preserve"><tspan class="p">$ </tspan>'
                f'<tspan class="c">{escape(text)}</tspan></text>'
            )
        elif text:
            parts.append(f'  <text x="{pad}" y="{y}" xml:space="preserve" class="o">{escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def masked(svg: str) -> str:
    """The picture with every id, time and broker order id replaced, for comparing two runs."""
    return _VOLATILE.sub("#", svg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed picture is stale")
    args = parser.parse_args(argv)
    svg = render(session())
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if masked(current) != masked(svg):
            print("stale: docs/assets/walkthrough.svg (run: uv run python scripts/walkthrough_svg.py)", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(svg, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
