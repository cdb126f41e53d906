"""The walkthrough's terminal picture shows what the commands print today.

`scripts/walkthrough_svg.py --check` runs the pictured commands again on the simulator and compares
the picture it would draw with the committed one, ids and times masked. The fix for a failure is
`uv run python scripts/walkthrough_svg.py`, then commit the picture.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_walkthrough_picture_matches_the_real_output() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "walkthrough_svg.py"), "--check"],
        capture_output=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_walkthrough_page_shows_the_picture() -> None:
    page = (ROOT / "docs" / "walkthrough.md").read_text(encoding="utf-8")
    assert "](assets/walkthrough.svg)" in page
    svg = (ROOT / "docs" / "assets" / "walkthrough.svg").read_text(encoding="utf-8")
    assert "ibkr-agent orders submit" in svg and "SEQUENCE" in svg and "chain_valid: yes" in svg
