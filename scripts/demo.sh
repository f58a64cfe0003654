#!/usr/bin/env bash
# The main job on the embedded default: build a demo store from the simulator, run a sample
# investigation on it, then start the service over it. Ctrl-C stops the service.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
flowatlas_venv ""

STORE="${FLOWATLAS_STORE:-$ROOT/demo}"
export FLOWATLAS_STORE="$STORE"
if [ ! -f "$STORE/ground-truth.json" ]; then
    echo "== building the demo store in $STORE (simulated internet, 14 days, planted scenarios)"
    flowatlas simulate --flows 5000000 --seed 1 --store "$STORE"
    flowatlas store compact
fi

C2="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["scenarios"]["c2"][0]["address"])' "$STORE/ground-truth.json")"
echo "== store"
flowatlas store stats | tail -n 4
echo "== top 10 talkers by bytes"
flowatlas top -s ip -o bytes -n 10
echo "== profile of a planted C2 server, $C2"
flowatlas ip "$C2" -n 5
if flowatlas victims --help >/dev/null 2>&1; then
    echo "== who are its victims?"
    flowatlas victims "$C2" | head -n 30
fi
if flowatlas serve --help >/dev/null 2>&1; then
    echo "== starting the service on http://127.0.0.1:8080 (Ctrl-C to stop)"
    exec flowatlas serve --store "$STORE" --host 127.0.0.1 --port 8080 --demo
fi
