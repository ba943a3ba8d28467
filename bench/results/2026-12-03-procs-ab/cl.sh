#!/bin/bash
# usage: cl.sh label binary [duration] — closed loop; prints req/s and server CPU µs per request
d=${3:-20s}
rm -rf /tmp/ab/db-$1
$2 serve --world /tmp/ab/world --db /tmp/ab/db-$1 --listen 127.0.0.1:18191 --modules /work/main/build/policies --log-level warn > /tmp/ab/serve-$1.log 2>&1 &
pid=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 0.5; done
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world -mode closed -connections 64 -duration 5s > /dev/null 2>&1
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world -mode closed -connections 64 -duration $d > /tmp/ab/load-$1.log 2>&1
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill -TERM $pid; wait $pid
line=$(tail -1 /tmp/ab/load-$1.log | tr '\r' '\n' | tail -1)
rps=$(echo "$line" | sed -E 's/.*connections: ([0-9]+) req\/s.*/\1/')
secs=${d%s}
echo "$1: $rps req/s, server $(( (t1-t0)*10000*1000/ (rps*secs) / 1000 )) us CPU/req  | $line"
