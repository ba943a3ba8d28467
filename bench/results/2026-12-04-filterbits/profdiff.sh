#!/bin/bash
# Per-request CPU of two profiles, function by function, and the
# difference: where does a settlement on ledger A cost more than on B?
#   profdiff.sh A.prof A_per_second B.prof B_per_second [seconds] [cum|flat]
# A_per_second and B_per_second are the passes' committed settlements a
# second; seconds is how long each profile sampled (default 55, the
# growth.sh profiles of 60 s passes). Prints the 40 largest differences in
# µs a settlement: A − B, A, B, function.
set -eu
a=$1 ra=$2 b=$3 rb=$4 secs=${5:-55} kind=${6:-cum}
col=4; [ "$kind" = flat ] && col=1
flags=-cum; [ "$kind" = flat ] && flags=
table() { # profile → "seconds<TAB>function"
  go tool pprof -top $flags -nodecount=100000 -nodefraction=0 -edgefraction=0 "$1" 2>/dev/null |
    awk -v c=$col 'NR>6 && $c ~ /s$/ {v=$c; if (v ~ /ms$/) {sub(/ms$/,"",v); v=v/1000} else sub(/s$/,"",v);
      name=$6; for (i=7;i<=NF;i++) name=name" "$i; print v"\t"name}'
}
join_rates() {
  awk -F'\t' -v ra="$ra" -v rb="$rb" -v s="$secs" '
    FNR==NR {x[$2]=$1*1e6/(ra*s); next}
    {y[$2]=$1*1e6/(rb*s)}
    END {for (n in x) print x[n]-y[n]"\t"x[n]"\t"y[n]"\t"n
         for (n in y) if (!(n in x)) print -y[n]"\t0\t"y[n]"\t"n}' "$1" "$2"
}
ta=$(mktemp) tb=$(mktemp)
trap 'rm -f $ta $tb' EXIT
table "$a" > $ta
table "$b" > $tb
join_rates $ta $tb | sort -g -r | head -40 | awk -F'\t' '{printf "%+7.1f %7.1f %7.1f  %s\n", $1, $2, $3, substr($4, 1, 120)}'
