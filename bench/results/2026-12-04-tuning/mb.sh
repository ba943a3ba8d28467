#!/bin/bash
# make bench in /work/wt-x (HEAD + exp knobs), alternating Pebble's default
# L0 compaction threshold (4) with 2; each run's outputs kept.
cd /work/wt-x
export PATH=$PATH:/usr/local/go/bin
for i in 1 2; do
  for v in base l02; do
    if [ $v = l02 ]; then export EXP_L0_THRESH=2; else unset EXP_L0_THRESH; fi
    make bench > /work/growth/mb-$v-$i.log 2>&1
    mkdir -p /work/growth/mb-$v-$i && cp bench/out/table.txt bench/out/result.json /work/growth/mb-$v-$i/
  done
done
