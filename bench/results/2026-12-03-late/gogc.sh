#!/bin/bash
# A/B of the Go heap goal on the 50 M ledger: medgate serve with GOGC=$1 (empty: default), 20 s closed loop, 64 connections.
W=/work/growth/f2
env ${1:+GOGC=$1} $W/medgate serve --world $W/world --db $W/big --listen 127.0.0.1:18181 --log-level warn --modules /work/main/build/policies > /tmp/gogc-serve.log 2>&1 &
pid=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:18181/healthz >/dev/null && break; sleep 1; done
sleep 20
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
$W/medbench load -addr 127.0.0.1:18181 -world $W/world -mode closed -connections 64 -duration 20s > /tmp/gogc-load.log 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid
echo "GOGC=${1:-default} server CPU $((c1-c0)) ticks, RSS ${rss} kB | $(tail -1 /tmp/gogc-load.log | tr '\r' '\n' | tail -1)"
