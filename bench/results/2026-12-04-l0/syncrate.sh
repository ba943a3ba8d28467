#!/bin/bash
# syncrate.sh BIN TAG [ENV] [MODE...]: fresh server, warm-up, load 20 s, perf stat of syscalls for 10 s
BIN=$1; L=$2; E=${3:-X=1}; shift 3; MODE=${@:--mode closed -connections 64}
cd /work/main; W=/work/growth/g1; O=/work/growth/sr; mkdir -p $O; rm -rf $O/db
env $E $BIN serve --world $W/world --db $O/db --listen 127.0.0.1:18191 --admin-listen 127.0.0.1:18192 --modules /work/main/build/policies --log-level warn > $O/serve-$L.log 2>&1 &
p=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 0.5; done
/work/growth/medbench-s0 load -addr 127.0.0.1:18191 -world $W/world -mode closed -connections 32 -duration 4s > /dev/null 2>&1
/work/growth/medbench-s0 load -addr 127.0.0.1:18191 -world $W/world $MODE -duration 20s > $O/load-$L.log 2>&1 &
c=$!
sleep 4
c0=$(awk '{print $14+$15}' /proc/$p/stat)
perf stat -e 'syscalls:sys_enter_fdatasync,syscalls:sys_enter_write,syscalls:sys_enter_read,context-switches,task-clock' -p $p -- sleep 10 2> $O/stat-$L.txt
c1=$(awk '{print $14+$15}' /proc/$p/stat)
wait $c
kill -TERM $p; wait $p
echo "$L [$E] ticks/10s $((c1-c0)) | $(tail -1 $O/load-$L.log | tr '\r' '\n' | tail -1)"
grep -E "fdatasync|write|read|context|task" $O/stat-$L.txt
