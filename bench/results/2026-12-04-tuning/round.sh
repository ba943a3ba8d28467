#!/bin/bash
# Alternating 60 s passes: big and fresh-empty ledgers under each knob set.
E=/work/growth/medgate-exp; B=/work/growth/f3/big; export DUR=60s PROF=50
for v in "$@"; do
  name=${v%%:*}; envs=${v#*:}
  ./exp.sh $E $B "$envs" big-$name-$RUN
  rm -rf /work/growth/e1; ./exp.sh $E /work/growth/e1 "$envs" empty-$name-$RUN
done
