#!/bin/bash
# A/B: closed loop native and wasm, session start (338fb31) vs 128e419, alternating.
cd /work/benchwt
for r in 1 2 3; do
  for v in old new; do
    rm -rf /tmp/ab/w; mkdir -p /tmp/ab/$v-$r
    /tmp/ab-medbench run -binary /tmp/ab-$v-medgate -modules /tmp/ab-$v-policies -targets native,wasm -duration 15s -warmup 8s -rounds 1 -open-fraction -1 -quiet-wait 10s -disk-sync-writes -1 -work /tmp/ab/w -out /tmp/ab/$v-$r > /tmp/ab/$v-$r/log 2>&1
    echo "$v $r $(grep -E '^ +native +closed' /tmp/ab/$v-$r/table.txt | head -1)"
    echo "$v $r $(grep -E '^ +wasm +closed' /tmp/ab/$v-$r/table.txt | head -1)"
  done
done
