#!/bin/bash
# perfrun.sh LABEL ENV: fresh server, 4 s warm-up, closed loop 20 s with perf record of the server for 10 s
L=$1; E=$2; W=/work/growth/g1; O=/work/growth/perf; mkdir -p $O; rm -rf $O/db
cd /work/main
env $E ${BIN:-/work/growth/medgate-cur} serve --world $W/world --db $O/db --listen 127.0.0.1:18191 --modules /work/main/build/policies --log-level warn > $O/serve-$L.log 2>&1 &
p=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 0.5; done
/work/growth/medbench-cur load -addr 127.0.0.1:18191 -world $W/world -mode closed -connections 32 -duration 4s > /dev/null 2>&1
/work/growth/medbench-cur load -addr 127.0.0.1:18191 -world $W/world ${MODE:--mode closed -connections 32} -duration 20s > $O/load-$L.log 2>&1 &
c=$!
sleep 5
perf record -F 1999 -g -o $O/perf-$L.data -p $p -- sleep 10 > /dev/null 2>&1
perf stat -e context-switches,cpu-migrations,task-clock -p $p -- sleep 4 2> $O/stat-$L.txt
wait $c
kill -TERM $p; wait $p
tail -1 $O/load-$L.log | tr '\r' '\n' | tail -1
