#!/bin/bash
# A/B: closed loop wasm, XP_COLLAPSE off/on alternating.
for r in 1 2 3; do
  for v in off on; do
    if [ $v = on ]; then export XP_COLLAPSE=1; else unset XP_COLLAPSE; fi
    rm -rf /tmp/ab/w; mkdir -p /tmp/ab/$v-$r
    /tmp/medbench run -binary /tmp/medgate-xp -modules build/policies -targets wasm -duration 15s -warmup 8s -rounds 1 -open-fraction -1 -quiet-wait 10s -disk-sync-writes -1 -work /tmp/ab/w -out /tmp/ab/$v-$r > /tmp/ab/$v-$r/log 2>&1
    echo "$v $r $(grep -E '^ +wasm +closed' /tmp/ab/$v-$r/table.txt | head -1)"
  done
done
