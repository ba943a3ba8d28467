#!/bin/bash
# Bucket shift 20 (the default) against 18 on two 10 M ledgers prefilled at the same time
# (medbench prefill of 88a0287, and the same with defaultBucketShift = 18), measured with the
# gateway of d5c0e59 (/tmp/ab/new): passes alternate s20, s18, a fresh empty ledger, once (the session was ending).
S=/work/main/bench/results/2026-12-03-night/cache-ab.sh
O=/work/main/bench/results/2026-12-03-night/shift-10M
W=/work/growth/g50/world
for r in 1; do
  bash $S /tmp/ab/new /work/growth/sh/s20 $W $O s20-$r 1024
  bash $S /tmp/ab/new /work/growth/sh/s18 $W $O s18-$r 1024
  rm -rf /work/growth/sh/empty
  bash $S /tmp/ab/new /work/growth/sh/empty $W $O empty-$r 1024
done
