#!/bin/bash
# usage: prof.sh label binary [rate] — 5 s closed-loop warm-up, then 20 s of load (closed loop
# with 64 connections, or open loop at rate) with a 15 s CPU profile into /tmp/ab/cpu-<label>.prof
rm -rf /tmp/ab/db-$1
$2 serve --world /tmp/ab/world --db /tmp/ab/db-$1 --listen 127.0.0.1:18191 --admin-listen 127.0.0.1:18192 --modules /work/main/build/policies --log-level warn > /tmp/ab/serve-$1.log 2>&1 &
pid=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 0.5; done
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world -mode closed -connections 64 -duration 5s > /dev/null 2>&1
(sleep 3; curl -s -o /tmp/ab/cpu-$1.prof "http://127.0.0.1:18192/debug/pprof/profile?seconds=15") &
if [ -n "$3" ]; then mode="-mode open -rate $3"; else mode="-mode closed -connections 64"; fi
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world $mode -duration 20s > /tmp/ab/load-$1.log 2>&1
wait %2 2>/dev/null; sleep 1
du -sh /tmp/ab/db-$1
kill -TERM $pid; wait $pid
tail -1 /tmp/ab/load-$1.log | tr '\r' '\n' | tail -1
