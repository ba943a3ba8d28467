#!/bin/bash
# One pass: medgate binary $1 serves ledger $2 with extra environment $3
# (Pebble knobs of the experiment build), label $4: waits until the
# compaction debt settles (as growth.sh), then 20 s closed loop of 64
# connections; saves /debug/ledger before and after the load and a CPU
# profile, prints server CPU ticks, RSS and the load line.
cd /work/main
W=/work/growth/g1
O=/work/growth/exp
A=127.0.0.1:18182
env $3 $1 serve --world $W/world --db $2 --listen 127.0.0.1:18181 --admin-listen $A --log-level warn --modules /work/main/build/policies > $O/serve-$4.log 2>&1 &
pid=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:18181/healthz >/dev/null && break; sleep 1; done
metric() { curl -s "http://127.0.0.1:18181/metrics" | awk -v m="$1" '$1 == m {printf "%.0f\n", $2}'; }
for i in $(seq 1 300); do [ "$(metric medgate_ledger_filter_rebuilds)" = 0 ] && break; sleep 1; done
idle=0; t0=$SECONDS
for i in $(seq 1 600); do
  [ "$(metric medgate_ledger_compaction_debt_bytes)" = 0 ] && break
  if [ "$(metric medgate_ledger_compactions_running)" = 0 ]; then idle=$((idle+1)); else idle=0; fi
  [ $idle -ge 10 ] && break
  sleep 1
done
settle=$((SECONDS-t0))
curl -s -o $O/ledger-$4-before.txt http://$A/debug/ledger
(sleep 3; curl -s -o $O/cpu-$4.prof "http://$A/debug/pprof/profile?seconds=${PROF:-15}") &
prof=$!
c0=$(awk '{print $14+$15}' /proc/$pid/stat)
/work/growth/g1/medbench load -addr 127.0.0.1:18181 -world $W/world -mode closed -connections 64 -duration ${DUR:-20s} > $O/load-$4.log 2>&1
c1=$(awk '{print $14+$15}' /proc/$pid/stat)
wait $prof
curl -s -o $O/ledger-$4-after.txt http://$A/debug/ledger
rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid
echo "$4 [$3] settled ${settle}s server CPU $((c1-c0)) ticks, RSS ${rss} kB | $(tail -1 $O/load-$4.log | tr '\r' '\n' | tail -1)" | tee -a $O/summary.txt
