#!/bin/bash
# usage: olm.sh label binary rate [duration] — open loop; diff of server histograms
d=${4:-15s}
rm -rf /tmp/ab/db-$1
$2 serve --world /tmp/ab/world --db /tmp/ab/db-$1 --listen 127.0.0.1:18191 --admin-listen 127.0.0.1:18192 --modules /work/main/build/policies --log-level warn > /tmp/ab/serve-$1.log 2>&1 &
pid=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 0.5; done
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world -mode closed -connections 64 -duration 5s > /dev/null 2>&1
curl -s http://127.0.0.1:18192/metrics > /tmp/ab/m0-$1.txt
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world -mode open -rate $3 -duration $d > /tmp/ab/load-$1.log 2>&1
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
curl -s http://127.0.0.1:18192/metrics > /tmp/ab/m1-$1.txt
kill -TERM $pid; wait $pid
line=$(tail -1 /tmp/ab/load-$1.log | tr '\r' '\n' | tail -1)
echo "$1: cpu $(( (t1-t0) )) ticks | $line"
for h in 'medgate_http_request_duration_seconds_bucket{class="2xx",method="POST",route="/v1/settlements"' 'medgate_ledger_commit_duration_seconds_bucket'; do
  echo "  $h"
  paste <(grep -F "$h" /tmp/ab/m0-$1.txt) <(grep -F "$h" /tmp/ab/m1-$1.txt) | awk '{split($1,a,"le=\""); split(a[2],b,"\""); d=$4-$2; if (NR==1) {} ; print "    le " b[1] ": " d}' | awk '{a[NR]=$0; v[NR]=$3} END {n=v[NR]; for(i=1;i<=NR;i++) printf "%s (%.2f%%)\n", a[i], 100*v[i]/n}'
done
