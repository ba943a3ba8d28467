#!/usr/bin/env bash
# Growth run: the same closed-loop load against a ledger pre-filled with
# ENTRIES settlements (medbench prefill: written through the ledger's own
# writer, without HTTP or policies; default 50,000,000) and against an
# empty one, twice, each on a freshly started gateway.
# Usage: make bench-growth [ENTRIES=50000000] [MEASURE=60s] [WORK=dir]
#        [STEPS="10000000 20000000 ..."]
# The prefilled ledger takes about 1.1 KB an entry (1,060–1,122 bytes
# measured at 25 and 50 M with entry format 2, 49.3 GiB for 50 M; format 1
# took 1,508–1,550): WORK must be on a disk with room for it. Writes $OUT (default
# bench/out/growth) with the logs, CPU profiles, Pebble's per-level report
# before and after each pass's load (ledger-*.txt), and a summary.
# A pass measures the steady state: after the key filters' background
# rebuild, and (unless SETTLE=0) after Pebble's compactions have paid the
# debt a fast prefill leaves (medgate_ledger_compaction_debt_bytes 0, or
# no compaction running for 10 s; at most SETTLE_MAX seconds, default
# 1800). The summary says how long each wait took and what debt there was.
# With STEPS, the ledger is grown in stages instead, and each stage is
# measured (big, then a fresh empty ledger) before the next is added: a
# curve of throughput against ledger size. It stops early, saying so, when
# the disk would keep less than 10 GiB free after the next stage
# (measured at the size reached so far, not guessed).
set -euo pipefail
cd "$(dirname "$0")/.."
ENTRIES=${ENTRIES:-50000000}
if [ -n "${STEPS:-}" ]; then
  ENTRIES=${STEPS%% *} # the first stage must fit to begin with
fi
MEASURE=${MEASURE:-60s} # 20 s passes moved by more than the effect measured (bench/RESULTS.md, 2026-12-04)
OUT=${OUT:-bench/out/growth}
ADDR=${ADDR:-127.0.0.1:18181}
ADMIN=${ADMIN:-127.0.0.1:18182} # pprof: each pass saves a CPU profile of its load
mkdir -p "$OUT"
if [ -z "${WORK:-}" ]; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
need=$((ENTRIES / 1000 * 1300 / 1024)) # KiB, 1.3 KB an entry: 1.1 and some room
free=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
if [ "$free" -lt "$need" ] && [ ! -e "$WORK/big.prefilled" ]; then # a prefilled WORK is measured again
  echo "bench-growth: $ENTRIES entries need about $((need / 1024 / 1024)) GiB; $WORK has $((free / 1024 / 1024)) GiB free (set WORK or ENTRIES)" >&2
  exit 1
fi
go build -o "$WORK/medgate" ./cmd/medgate
go build -o "$WORK/medbench" ./cmd/medbench
"$WORK/medbench" world -out "$WORK/world" >/dev/null
metric() { # the value of a gauge of the running gateway, as an integer
  # %.0f, not %d: mawk's %d stops at 2^31-1 (a debt of 2 GiB and more).
  curl -s "http://$ADDR/metrics" | awk -v m="$1" '$1 == m {printf "%.0f\n", $2}'
}
run() { # db duration label
  local began=$SECONDS
  "$WORK/medgate" serve --world "$WORK/world" --db "$1" --listen "$ADDR" --admin-listen "$ADMIN" --log-level info --modules build/policies >"$OUT/serve-$3.log" 2>&1 &
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
  local debt0 debt
  debt0=$(metric medgate_ledger_compaction_debt_bytes)
  if [ "${SETTLE:-1}" != 0 ]; then
    # Settled: no debt, or no compaction running for 10 s in a row
    # (Pebble leaves a few level-0 tables and their small debt alone).
    local idle=0
    for _ in $(seq 1 "${SETTLE_MAX:-1800}"); do
      [ "$(metric medgate_ledger_compaction_debt_bytes)" = 0 ] && break
      if [ "$(metric medgate_ledger_compactions_running)" = 0 ]; then idle=$((idle + 1)); else idle=0; fi
      [ "$idle" -ge 10 ] && break
      sleep 1
    done
  fi
  local settled=$((SECONDS - began))
  local secs=${2%s} prof
  prof=$((secs > 8 ? secs - 5 : secs / 2))
  # Pebble's per-level report before and after the load: where the
  # compactions' bytes went during it (cumulative since the start).
  curl -s -o "$OUT/ledger-$3-before.txt" "http://$ADMIN/debug/ledger" || true
  (sleep 3; curl -s -o "$OUT/cpu-$3.prof" "http://$ADMIN/debug/pprof/profile?seconds=$prof") &
  local profiler=$!
  local loadrc=0 # medbench load exits 1 when a request was not answered 200
  "$WORK/medbench" load -addr "$ADDR" -world "$WORK/world" -mode closed -connections 64 -duration "$2" >"$OUT/load-$3.log" 2>&1 || loadrc=$?
  wait "$profiler" || true
  curl -s -o "$OUT/ledger-$3-after.txt" "http://$ADMIN/debug/ledger" || true
  local head
  head=$(metric medgate_ledger_head_seq)
  kill -TERM "$pid"; wait "$pid" || true
  printf '%-7s %11s entries  ready in %4ss  filters rebuilt in %4ss  compaction debt %s bytes, settled in %4ss  %s\n' "$3" "$head" "$ready" "$rebuilt" "${debt0:-?}" "$settled" "$(tr '\r' '\n' <"$OUT/load-$3.log" | grep ' loop, ' | tail -1)" | tee -a "$OUT/summary.txt"
  if [ "$loadrc" != 0 ]; then
    echo "bench-growth: the $3 pass had requests not answered 200 ($OUT/load-$3.log): not a measurement" | tee -a "$OUT/summary.txt" >&2
    exit 1
  fi
}
: >"$OUT/summary.txt"
echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, $ENTRIES prefilled entries, measure $MEASURE" | tee -a "$OUT/summary.txt"
head_of() { # the head of ledger $1 (0 when it does not exist yet)
  if [ -d "$1" ]; then
    "$WORK/medbench" prefill -world "$WORK/world" -db "$1" -entries 0 2>/dev/null | sed -E 's/.*ledger head ([0-9]+).*/\1/'
  else
    echo 0
  fi
}
if [ -n "${STEPS:-}" ]; then
  for step in $STEPS; do
    # The measurement passes append to the big ledger too: ask its head.
    have=$(head_of "$WORK/big")
    if [ "$have" -ge "$step" ]; then
      continue
    fi
    if [ "$have" -gt 0 ]; then
      used=$(du -sk "$WORK/big" | awk '{print $1}')
      per=$((used * 1024 / have)) # bytes an entry
      need=$((per * (step - have) / 1024 + 10 * 1024 * 1024))
      free=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
      if [ "$free" -lt "$need" ]; then
        echo "stopped before $step entries: the ledger takes $per bytes an entry, $((free / 1024 / 1024)) GiB are free" | tee -a "$OUT/summary.txt"
        break
      fi
    fi
    "$WORK/medbench" prefill -world "$WORK/world" -db "$WORK/big" -entries "$((step - have))" 2>>"$OUT/prefill-progress.log" | tee -a "$OUT/summary.txt"
    du -sh "$WORK/big" | tee -a "$OUT/summary.txt"
    run "$WORK/big" "$MEASURE" "big-$step"
    rm -rf "$WORK/empty"
    run "$WORK/empty" "$MEASURE" "empty-$step"
  done
  exit 0
fi
if [ ! -e "$WORK/big.prefilled" ]; then
  "$WORK/medbench" prefill -world "$WORK/world" -db "$WORK/big" -entries "$ENTRIES" 2>"$OUT/prefill-progress.log" | tee -a "$OUT/summary.txt"
  touch "$WORK/big.prefilled"
fi
du -sh "$WORK/big" | tee -a "$OUT/summary.txt"
# Each empty pass starts from a fresh ledger (an earlier run left entries).
rm -rf "$WORK/empty" "$WORK/empty2"
run "$WORK/big" "$MEASURE" big
run "$WORK/empty" "$MEASURE" empty
run "$WORK/big" "$MEASURE" big2
run "$WORK/empty2" "$MEASURE" empty2
