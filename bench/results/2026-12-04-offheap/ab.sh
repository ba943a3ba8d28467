#!/bin/bash
# One pass of an A/B: medgate binary $1 serves ledger $2, 20 s warm-up, then
# a 20 s closed loop of 64 connections (medbench load); prints server CPU
# ticks, RSS and the load line. Extra environment for serve: $3 (e.g. GOGC=25).
W=/work/growth/f2
env $3 $1 serve --world $W/world --db $2 --listen 127.0.0.1:18181 --log-level warn --modules /work/main/build/policies > /tmp/ab-serve.log 2>&1 &
pid=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:18181/healthz >/dev/null && break; sleep 1; done
sleep 20
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
$W/medbench load -addr 127.0.0.1:18181 -world $W/world -mode closed -connections 64 -duration 20s > /tmp/ab-load.log 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid
echo "$(basename $1) $(basename $2) ${3:-} server CPU $((c1-c0)) ticks, RSS ${rss} kB | $(tail -1 /tmp/ab-load.log | tr '\r' '\n' | tail -1)"
