#!/bin/bash
# usage: ab.sh label binary
rm -rf /tmp/ab/db-$1
$2 serve --world /tmp/ab/world --db /tmp/ab/db-$1 --listen 127.0.0.1:18191 --modules build/policies --log-level warn > /tmp/ab/serve-$1.log 2>&1 &
pid=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:18191/healthz >/dev/null && break; sleep 1; done
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world -mode closed -connections 64 -duration 8s > /dev/null 2>&1
/tmp/ab/medbench load -addr 127.0.0.1:18191 -world /tmp/ab/world -mode open -rate 1900 -duration 20s > /tmp/ab/load-$1.log 2>&1
kill -TERM $pid; wait $pid
echo "$1: $(tail -1 /tmp/ab/load-$1.log | tr '\r' '\n' | tail -1)"
