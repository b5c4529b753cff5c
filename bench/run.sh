#!/usr/bin/env bash
# make bench: gw next to nginx, HAProxy and nginx+lua in one run (bench/gwbench.py), plus the
# router microbenchmark. Prints the figures; bench/RESULTS.md keeps the last recorded ones.
set -u
cd "$(dirname "$0")/.." || exit 1
secs=${BENCH_SECS:-5}; rounds=${BENCH_ROUNDS:-3}
echo "== router: 10,000 routes"
make -s build/bench/router_bench && build/bench/router_bench 10000
echo "== reload: POST /config with 1,000 services and 5,000 routes"
bin/gw lua bench/reload.lua
mkdir -p /tmp/gwbench
for f in gw-proxy gw-chain gw-proxy-bare gw-proxy-logged; do bin/gw check bench/$f.yaml >/dev/null || exit 1; done
rm -f /tmp/gwbench/access.log
bin/gw run -c bench/gw-proxy.yaml 2>/tmp/gwbench/gw-proxy.log & p1=$!
bin/gw run -c bench/gw-chain.yaml 2>/tmp/gwbench/gw-chain.log & p2=$!
# observability overhead: gw-proxy without the metrics table, and with the access log as well
bin/gw run -c bench/gw-proxy-bare.yaml 2>/tmp/gwbench/gw-proxy-bare.log & p3=$!
bin/gw run -c bench/gw-proxy-logged.yaml 2>/tmp/gwbench/gw-proxy-logged.log & p4=$!
trap 'kill $p1 $p2 $p3 $p4 2>/dev/null; wait $p1 $p2 $p3 $p4 2>/dev/null' EXIT
sleep 1
echo "== proxy throughput (wrk, 1 thread, 50 connections, ${secs}s x ${rounds} rounds, interleaved)"
python3 bench/gwbench.py --secs "$secs" --rounds "$rounds" \
  "gw-proxy=http://127.0.0.1:9104/api/v1/users/42@$p1" \
  "gw-chain=http://127.0.0.1:9105/api/v1/users/42@$p2" \
  "gw-proxy-bare=http://127.0.0.1:9106/api/v1/users/42@$p3" \
  "gw-proxy-logged=http://127.0.0.1:9107/api/v1/users/42@$p4"
echo "== TLS termination: gw beside nginx on the same certificate (${secs}s x ${rounds} rounds, interleaved)"
python3 bench/tlsbench.py --secs "$secs" --rounds "$rounds"
