#!/bin/bash
S=/work/main/bench/results/2026-12-03-night/cache-ab.sh
O=/work/main/bench/results/2026-12-03-night/ab-40M
B=/tmp/ab/medgate-exp
W=/work/growth/g50/world
for r in 1 2; do
  bash $S $B /work/growth/g50/big $W $O A$r 1024
  bash $S $B /work/growth/g50/big $W $O B$r 128
  MEDGATE_EXP_BLOBDEPTH=100 bash $S $B /work/growth/g50/big $W $O C$r 1024
  rm -rf /work/growth/g50/empty-ab
  bash $S $B /work/growth/g50/empty-ab $W $O E$r 1024
done
