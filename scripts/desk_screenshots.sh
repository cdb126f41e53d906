#!/usr/bin/env bash
# Refresh the approval desk screenshots in docs/images/ (desk-*.png) from the browser tests:
# they drive the real desk in headless Chromium and save each page they visit.
set -euo pipefail
cd "$(dirname "$0")/.."
IBKR_DESK_SCREENSHOTS="$PWD/docs/images" uv run --frozen pytest -q tests-integration/test_approval_desk.py "$@"
