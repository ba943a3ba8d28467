#!/bin/bash
# pair2.sh "ENV_A" "ENV_B" BIN MODE [duration]: both servers at once, each its own client (closed 32 conns, or open at RATE)
EA=$1; EB=$2; BIN=$3; R=$4; d=${5:-20s}
W=/work/growth/g1; MB=/work/growth/medbench-cur
cd /work/main
for x in A B; do rm -rf /tmp/ab/db-pair$x; done
env $EA $BIN serve --world $W/world --db /tmp/ab/db-pairA --listen 127.0.0.1:18191 --modules /work/main/build/policies --log-level warn > /tmp/ab/serve-pairA.log 2>&1 &
pa=$!
env $EB $BIN serve --world $W/world --db /tmp/ab/db-pairB --listen 127.0.0.1:18193 --modules /work/main/build/policies --log-level warn > /tmp/ab/serve-pairB.log 2>&1 &
pb=$!
for p in 18191 18193; do for i in $(seq 1 60); do curl -sf http://127.0.0.1:$p/healthz >/dev/null && break; sleep 0.5; done; done
$MB load -addr 127.0.0.1:18191 -world $W/world -mode closed -connections 32 -duration 4s > /dev/null 2>&1 &
c1=$!
sleep 0.2
$MB load -addr 127.0.0.1:18193 -world $W/world -mode closed -connections 32 -duration 4s > /dev/null 2>&1 &
c2=$!
wait $c1 $c2
a0=$(awk '{print $14+$15}' /proc/$pa/stat); b0=$(awk '{print $14+$15}' /proc/$pb/stat)
if [ "$R" = closed ]; then mode="-mode closed -connections 32"; else mode="-mode open -rate $R"; fi
$MB load -addr 127.0.0.1:18191 -world $W/world $mode -duration $d > /tmp/ab/load-pairA.log 2>&1 &
c1=$!
$MB load -addr 127.0.0.1:18193 -world $W/world $mode -duration $d > /tmp/ab/load-pairB.log 2>&1 &
c2=$!
wait $c1 $c2
a1=$(awk '{print $14+$15}' /proc/$pa/stat); b1=$(awk '{print $14+$15}' /proc/$pb/stat)
kill -TERM $pa $pb; wait $pa $pb
secs=${d%s}
for x in A B; do
  line=$(tail -1 /tmp/ab/load-pair$x.log | tr '\r' '\n' | tail -1)
  if [ $x = A ]; then t=$((a1-a0)); e=$EA; else t=$((b1-b0)); e=$EB; fi
  n=$(echo "$line" | sed -E 's/.*: ([0-9]+) req\/s.*/\1/')
  echo "$x [$e]: server $(( t*10000*1000 / (n*secs) / 1000 )) us CPU/req | $line"
done
