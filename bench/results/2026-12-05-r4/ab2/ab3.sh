#!/bin/bash
# A/B: closed loop native and wasm, 128e419 (old) vs the code as submitted (new), alternating.
cd /work/benchwt
for r in 6 7 8; do
  for v in new old; do
    rm -rf /tmp/ab2/w; mkdir -p /tmp/ab2/$v-$r
    /tmp/ab-medbench run -binary /tmp/ab2-$v-medgate -modules /tmp/ab2-$v-policies -targets wasm,native -duration 15s -warmup 8s -rounds 1 -open-fraction -1 -quiet-wait 10s -disk-sync-writes -1 -work /tmp/ab2/w -out /tmp/ab2/$v-$r > /tmp/ab2/$v-$r/log 2>&1
    echo "$v $r $(grep -E '^ +native +closed' /tmp/ab2/$v-$r/table.txt | head -1)"
    echo "$v $r $(grep -E '^ +wasm +closed' /tmp/ab2/$v-$r/table.txt | head -1)"
  done
done
