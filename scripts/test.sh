#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need, lints, tests.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

# Real peers the tests drive: nfdump/nfcapd as reference decoder, softflowd and pmacct as exporters;
# Debian's Chromium for the console's browser tests (Playwright drives it; it never downloads one).
apt_install nfdump softflowd pmacct chromium
flowatlas_venv dev
console_assets

echo "== ruff" && ruff check src tests benchmarks
echo "== mypy" && mypy
echo "== pytest"
set +e
python -m pytest -q -p no:cacheprovider "$@"
status=$?
set -e
# pytest's 5 means no test ran: that is a failure here, never a pass.
[ "$status" = 5 ] && echo "no tests ran" >&2 && exit 1
exit "$status"
