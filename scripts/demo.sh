#!/usr/bin/env bash
# The main job on the embedded default: build a demo store from the simulator, run a sample
# investigation on it, then start the service (HTTP API + collector) over it. Ctrl-C stops it.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
flowatlas_venv ""
console_assets

STORE="${FLOWATLAS_STORE:-$ROOT/demo}"
PORT="${FLOWATLAS_PORT:-8080}"
export FLOWATLAS_STORE="$STORE"
if [ ! -f "$STORE/ground-truth.json" ]; then
    echo "== building the demo store in $STORE (simulated internet, 14 days, planted scenarios)"
    flowatlas simulate --flows 5000000 --seed 1 --store "$STORE"
    flowatlas store compact
    # The simulator's prefix classes: residential space is pseudonymised by the service.
    flowatlas classes import "$STORE/ground-truth.prefixes.csv"
    # Flows from unregistered exporters are counted, never stored: register loopback so that
    # `flowatlas simulate --udp 127.0.0.1:2055` (or softflowd) can feed the running service.
    flowatlas sources add 127.0.0.1 --id 1 --partner "demo exporter on loopback" --basis internal
fi

C2="$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["scenarios"]["c2"][0]["address"])' "$STORE/ground-truth.json")"
echo "== store"
flowatlas store stats | tail -n 4
echo "== top 10 talkers by bytes"
flowatlas top -s ip/bytes -n 10
echo "== profile of a planted C2 server, $C2"
flowatlas ip "$C2" -n 5
echo "== who are its victims? (ground truth: $STORE/ground-truth.json)"
flowatlas victims "$C2" --netclass "$STORE/ground-truth.prefixes.csv" | head -n 25
echo "== starting the service: web console on http://127.0.0.1:$PORT/ (sign in with the admin key below),"
echo "   API on http://127.0.0.1:$PORT/v1 (docs at /docs), collector on UDP 127.0.0.1:2055"
echo "   feed it from another terminal: .venv/bin/flowatlas simulate --flows 20000 --days 1 --udp 127.0.0.1:2055"
exec flowatlas serve --store "$STORE" --host 127.0.0.1 --port "$PORT" --collect 127.0.0.1:2055 --demo
