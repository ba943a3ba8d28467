#!/usr/bin/env bash
# usage: [MEDGATE_EXP_BLOBDEPTH=n] cache-ab.sh medgate-binary ledger-dir world-dir out-dir label cache-mb [duration]
# One growth-style pass (bench/growth.sh's run): start the gateway on the ledger with
# --ledger-cache-mb, wait for health, for the key filters' background rebuilds and for
# Pebble's compaction debt to be paid (medgate_ledger_compaction_debt_bytes 0), then
# 64 closed-loop connections for the duration (default 20s) with a CPU profile.
set -euo pipefail
BIN=$1 DB=$2 WORLD=$3 OUT=$4 LABEL=$5 MB=$6 D=${7:-20s}
ADDR=127.0.0.1:18181 ADMIN=127.0.0.1:18182
cd /work/main
mkdir -p "$OUT"
began=$SECONDS
"$BIN" serve --world "$WORLD" --db "$DB" --listen $ADDR --admin-listen $ADMIN --ledger-cache-mb "$MB" --log-level info --modules build/policies >"$OUT/serve-$LABEL.log" 2>&1 &
pid=$!
for _ in $(seq 1 3600); do curl -sf "http://$ADDR/healthz" >/dev/null && break; sleep 1; done
for _ in $(seq 1 3600); do
  [ "$(curl -s "http://$ADDR/metrics" | awk '/^medgate_ledger_filter_rebuilds /{print $2}')" = "0" ] && break
  sleep 1
done
ready=$((SECONDS - began))
metric() { curl -s "http://$ADDR/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'; }
debt0=$(metric medgate_ledger_compaction_debt_bytes)
idle=0
for _ in $(seq 1 1800); do
  [ "$(metric medgate_ledger_compaction_debt_bytes)" = 0 ] && break
  if [ "$(metric medgate_ledger_compactions_running)" = 0 ]; then idle=$((idle + 1)); else idle=0; fi
  [ "$idle" -ge 10 ] && break
  sleep 1
done
settled=$((SECONDS - began))
secs=${D%s}
(sleep 3; curl -s -o "$OUT/cpu-$LABEL.prof" "http://$ADMIN/debug/pprof/profile?seconds=$((secs - 5))") &
prof=$!
"${MEDBENCH:-/work/growth/g50/medbench}" load -addr $ADDR -world "$WORLD" -mode closed -connections 64 -duration "$D" >"$OUT/load-$LABEL.log" 2>&1
wait $prof || true
head=$(metric medgate_ledger_head_seq)
rss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
printf '%-12s cache %5s MiB depth %4s %11s entries  ready in %4ss  debt %s settled in %4ss  RSS peak %6d MiB  %s\n' "$LABEL" "$MB" "${MEDGATE_EXP_BLOBDEPTH:-10}" "$head" "$ready" "$debt0" "$settled" $((rss / 1024)) "$(tail -1 "$OUT/load-$LABEL.log" | tr '\r' '\n' | tail -1)" | tee -a "$OUT/summary.txt"
