#!/bin/bash
cd /work/wt-procs
export PATH=$PATH:/usr/local/go/bin
make policies > /dev/null 2>&1
for r in 1 2; do
  echo "== 2f33bc5 run $r $(date -u +%H:%M:%S)"
  go run ./cmd/medbench run -out /work/growth/mb/lifo-$r > /work/growth/mb/lifo-$r.log 2>&1
done
echo done $(date -u +%H:%M:%S)
