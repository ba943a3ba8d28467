#!/bin/bash
# make bench alternating: Go's default GOMAXPROCS for the gateway targets against MEDGATE_PROCS=1
cd /work/wt-procs
export PATH=$PATH:/usr/local/go/bin
for r in 1 2; do
  for v in default procs1; do
    if [ $v = procs1 ]; then E="MEDGATE_PROCS=1"; else E="MEDGATE_PROCS=0"; fi
    echo "== $v run $r $(date -u +%H:%M:%S)"
    env $E go run ./cmd/medbench run -out /work/growth/mb/$v-$r > /work/growth/mb/$v-$r.log 2>&1
    grep -A30 "^target" /work/growth/mb/$v-$r/table.txt | head -40
  done
done
