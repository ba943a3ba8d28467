#!/bin/bash
# A/B of the trace filter's bits a key on the 50 M ledger: each pass puts
# the variant's own saved key-filter file in place, runs exp.sh (a fresh
# medgate serve, compactions settled, DUR closed loop of 64 connections,
# CPU profile), then keeps the file the server saved at close for the
# variant's next pass. Empty passes use a fresh ledger each. (exp.sh is
# results/2026-12-04-tuning/exp.sh with W=/work/growth/g1, kept at
# /work/growth/exp.sh when run; the 24-bit binary was built from 092428e.)
#   ROUNDS=3 DUR=60s ab.sh
set -u
G=/work/growth
FP=$G/fp
BIG=$G/g1/big
OLD=$G/g1/medgate        # a6e6907: ledger code of 1703c03, 16 bits a key
NEW=$G/medgate-fp24      # 24 bits a key
export DUR=${DUR:-60s}
pass() { # variant
  case $1 in
    big16) cp $FP/f16 $BIG/medgate-keyfilters; bash $G/exp.sh $OLD $BIG "X=1" big16-$r; cp $BIG/medgate-keyfilters $FP/f16 ;;
    big24) cp $FP/f24 $BIG/medgate-keyfilters; bash $G/exp.sh $NEW $BIG "X=1" big24-$r; cp $BIG/medgate-keyfilters $FP/f24 ;;
    empty24) rm -rf $G/fp/empty; bash $G/exp.sh $NEW $G/fp/empty "X=1" empty24-$r ;;
    empty16) rm -rf $G/fp/empty; bash $G/exp.sh $OLD $G/fp/empty "X=1" empty16-$r ;;
  esac
}
for r in $(seq ${FIRST:-1} ${ROUNDS:-3}); do
  if [ -n "${ORDER:-}" ]; then order=$ORDER; elif [ $((r % 2)) = 1 ]; then order="big16 big24 empty24 empty16"; else order="empty16 empty24 big24 big16"; fi
  for v in $order; do pass $v; done
done
