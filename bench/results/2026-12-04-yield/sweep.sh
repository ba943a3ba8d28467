#!/bin/bash
# p99 against the open-loop rate: at each rate, one 30 s run without the
# yields (the experiment build with MEDGATE_EXP_YIELD=0, as 6635aac) and
# one of 3e774d9's code (B), the order swapped from rate to rate.
cd /work/growth/yield
for r in ${RATES:-1000 2000 2800}; do
  echo "--- rate $r" >> summary.txt
  RATE=$r BIN_B=/work/growth/medgate-head ./ol.sh /work/growth/medgate-yield "MEDGATE_EXP_YIELD=0" "X=1" 1
done
