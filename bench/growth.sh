#!/usr/bin/env bash
# Growth run: the same closed-loop load against a ledger pre-filled by the
# gateway itself (PREFILL of sustained load: about 550,000 entries for 420s
# on the machine of RESULTS.md) and against an empty one, twice, each on a
# freshly started gateway. Usage: make bench-growth [PREFILL=420s] [MEASURE=20s].
# Writes $OUT (default bench/out/growth) with the load logs and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFILL=${PREFILL:-420s}
MEASURE=${MEASURE:-20s}
OUT=${OUT:-bench/out/growth}
ADDR=127.0.0.1:18181
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"
go build -o "$work/medgate" ./cmd/medgate
go build -o "$work/medbench" ./cmd/medbench
"$work/medbench" world -out "$work/world" >/dev/null
run() { # db duration label
  "$work/medgate" serve --world "$work/world" --db "$1" --listen "$ADDR" --log-level warn --modules build/policies >"$OUT/serve-$3.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do curl -sf "http://$ADDR/healthz" >/dev/null && break; sleep 1; done
  "$work/medbench" load -addr "$ADDR" -world "$work/world" -mode closed -connections 64 -duration "$2" >"$OUT/load-$3.log" 2>&1
  local head
  head=$(curl -s "http://$ADDR/metrics" | awk '/^medgate_ledger_head_seq/{print $2}')
  kill -TERM "$pid"; wait "$pid" || true
  printf '%-8s %10s entries  %s\n' "$3" "$head" "$(tail -1 "$OUT/load-$3.log" | tr '\r' '\n' | tail -1)" | tee -a "$OUT/summary.txt"
}
: >"$OUT/summary.txt"
echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, prefill $PREFILL, measure $MEASURE" | tee -a "$OUT/summary.txt"
run "$work/big" "$PREFILL" prefill
run "$work/big" "$MEASURE" big
run "$work/empty" "$MEASURE" empty
run "$work/big" "$MEASURE" big2
run "$work/empty2" "$MEASURE" empty2
