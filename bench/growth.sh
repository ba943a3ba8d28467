#!/usr/bin/env bash
# Growth run: the same closed-loop load against a ledger pre-filled with
# ENTRIES settlements (medbench prefill: written through the ledger's own
# writer, without HTTP or policies; default 50,000,000) and against an
# empty one, twice, each on a freshly started gateway.
# Usage: make bench-growth [ENTRIES=50000000] [MEASURE=20s] [WORK=dir]
# The prefilled ledger takes about 2.5 KB an entry (125 GB for 50 M):
# WORK must be on a disk with room for it. Writes $OUT (default
# bench/out/growth) with the logs and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
ENTRIES=${ENTRIES:-50000000}
MEASURE=${MEASURE:-20s}
OUT=${OUT:-bench/out/growth}
ADDR=127.0.0.1:18181
mkdir -p "$OUT"
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
need=$((ENTRIES / 1000 * 2700 / 1024)) # KiB, 2.7 KB an entry with some room
free=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
if [ "$free" -lt "$need" ]; then
  echo "bench-growth: $ENTRIES entries need about $((need / 1024 / 1024)) GiB; $WORK has $((free / 1024 / 1024)) GiB free (set WORK or ENTRIES)" >&2
  exit 1
fi
go build -o "$WORK/medgate" ./cmd/medgate
go build -o "$WORK/medbench" ./cmd/medbench
"$WORK/medbench" world -out "$WORK/world" >/dev/null
run() { # db duration label
  local began=$SECONDS
  "$WORK/medgate" serve --world "$WORK/world" --db "$1" --listen "$ADDR" --log-level info --modules build/policies >"$OUT/serve-$3.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 3600); do curl -sf "http://$ADDR/healthz" >/dev/null && break; sleep 1; done
  local ready=$((SECONDS - began))
  # Key filters that grew many links are rebuilt in the background after a
  # start (ledger/keyfilter.go): measure the steady state after it.
  for _ in $(seq 1 3600); do
    [ "$(curl -s "http://$ADDR/metrics" | awk '/^medgate_ledger_filter_rebuilds /{print $2}')" = "0" ] && break
    sleep 1
  done
  local rebuilt=$((SECONDS - began))
  "$WORK/medbench" load -addr "$ADDR" -world "$WORK/world" -mode closed -connections 64 -duration "$2" >"$OUT/load-$3.log" 2>&1
  local head
  head=$(curl -s "http://$ADDR/metrics" | awk '/^medgate_ledger_head_seq/{print $2}')
  kill -TERM "$pid"; wait "$pid" || true
  printf '%-7s %11s entries  ready in %4ss  filters rebuilt in %4ss  %s\n' "$3" "$head" "$ready" "$rebuilt" "$(tail -1 "$OUT/load-$3.log" | tr '\r' '\n' | tail -1)" | tee -a "$OUT/summary.txt"
}
: >"$OUT/summary.txt"
echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, $ENTRIES prefilled entries, measure $MEASURE" | tee -a "$OUT/summary.txt"
if [ ! -e "$WORK/big.prefilled" ]; then
  "$WORK/medbench" prefill -world "$WORK/world" -db "$WORK/big" -entries "$ENTRIES" 2>"$OUT/prefill-progress.log" | tee -a "$OUT/summary.txt"
  touch "$WORK/big.prefilled"
fi
du -sh "$WORK/big" | tee -a "$OUT/summary.txt"
run "$WORK/big" "$MEASURE" big
run "$WORK/empty" "$MEASURE" empty
run "$WORK/big" "$MEASURE" big2
run "$WORK/empty2" "$MEASURE" empty2
