#!/bin/bash
# closed-loop A/B, one server at a time, fresh ledger: cl.sh BIN "ENV_A" "ENV_B" ROUNDS
BIN=$1; EA=$2; EB=$3; N=${4:-3}
W=/work/growth/g1; O=/work/growth/cl; mkdir -p $O
D=${DUR:-30s}
cd /work/main
one() {
  rm -rf $O/db
  env $1 $BIN serve --world $W/world --db $O/db --listen 127.0.0.1:18191 --modules /work/main/build/policies --log-level warn > $O/serve-$2.log 2>&1 &
  p=$!
  for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 0.5; done
  /work/growth/medbench-cur load -addr 127.0.0.1:18191 -world $W/world -mode closed -connections 32 -duration 4s > /dev/null 2>&1
  c0=$(awk '{print $14+$15}' /proc/$p/stat)
  /work/growth/medbench-cur load -addr 127.0.0.1:18191 -world $W/world ${MODE:--mode closed -connections 32} -duration $D > $O/load-$2.log 2>&1
  c1=$(awk '{print $14+$15}' /proc/$p/stat)
  kill -TERM $p; wait $p
  line=$(tail -1 $O/load-$2.log | tr '\r' '\n' | tail -1)
  n=$(echo "$line" | sed -E 's/.*: ([0-9]+) req\/s.*/\1/')
  echo "$2 [$1] server $(( (c1-c0)*10000*1000 / (n*${D%s}) / 1000 )) us CPU/req | $line" | tee -a $O/summary.txt
}
for r in $(seq 1 $N); do
  if [ $((r % 2)) = 1 ]; then one "$EA" A$r; one "$EB" B$r; else one "$EB" B$r; one "$EA" A$r; fi
done
