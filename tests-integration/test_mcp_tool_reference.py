"""docs/reference/mcp-tools.md is what scripts/gen_tool_reference.py renders from the registry today."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tool_reference_is_up_to_date() -> None:
    """A registry change without a regenerated page fails here (run scripts/gen_tool_reference.py)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_tool_reference.py"), "--check"],
        capture_output=True,
        encoding="utf-8",
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
