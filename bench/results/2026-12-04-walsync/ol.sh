#!/bin/bash
# ol.sh BIN RATE DUR TAG [ENV]: fresh ledger, warmup, open loop; saves load log and /metrics
BIN=$1; RATE=$2; D=$3; TAG=$4; ENVV=${5:-X=1}
W=/work/growth/g1; O=/work/growth/lo
rm -rf $O/db
env $ENVV $BIN serve --world $W/world --db $O/db --listen 127.0.0.1:18191 --admin-listen 127.0.0.1:18192 --modules /work/main/build/policies --log-level warn > $O/serve-$TAG.log 2>&1 &
p=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 0.5; done
/work/growth/medbench-cur load -addr 127.0.0.1:18191 -world $W/world -mode closed -connections 32 -duration 4s > /dev/null 2>&1
curl -s http://127.0.0.1:18192/metrics > $O/m0-$TAG.txt
c0=$(awk '{print $14+$15}' /proc/$p/stat)
/work/growth/medbench-cur load -addr 127.0.0.1:18191 -world $W/world -mode open -rate $RATE -duration $D > $O/load-$TAG.log 2>&1
c1=$(awk '{print $14+$15}' /proc/$p/stat)
curl -s http://127.0.0.1:18192/metrics > $O/m1-$TAG.txt
kill -TERM $p; wait $p
line=$(tail -1 $O/load-$TAG.log | tr '\r' '\n' | tail -1)
echo "$TAG [$ENVV] cpu ticks $((c1-c0)) | $line" | tee -a $O/summary.txt
