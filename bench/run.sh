#!/usr/bin/env bash
# make bench: gw next to nginx, HAProxy and nginx+lua in one run (bench/gwbench.py), plus the
# router microbenchmark and reload timings. Prints the figures, the ratios gw/peer and the issue's
# targets; bench/RESULTS.md keeps the recorded ones.
#   BENCH_SECS, BENCH_ROUNDS   wrk seconds per round, rounds (5, 3)
#   BENCH_IDLE                 idle keep-alive connections per target (10000; 0 skips)
#   BENCH_SMOKE=1              the CI smoke: gw-proxy and gw-chain only, no TLS bench
#   BENCH_PORT_OFFSET, BENCH_TMP   shift every 9xxx port, move /tmp/gwbench (see gwbench.py)
set -u
cd "$(dirname "$0")/.." || exit 1
secs=${BENCH_SECS:-5}; rounds=${BENCH_ROUNDS:-3}; idle=${BENCH_IDLE:-10000}; smoke=${BENCH_SMOKE:-0}
tmp=${BENCH_TMP:-/tmp/gwbench}; off=${BENCH_PORT_OFFSET:-0}
echo "== router: 10,000 routes"
make -s build/bench/router_bench || exit 1
router=$(build/bench/router_bench 10000) || exit 1
echo "$router"
router_ns=$(echo "$router" | sed -n 's/^median: \([0-9.]*\) ns.*/\1/p')
echo "== reload: POST /config with 1,000 services and 5,000 routes"
reload=$(bin/gw lua bench/reload.lua) || exit 1
echo "$reload"
reload_ms=$(echo "$reload" | sed -n 's/^POST \/config answered in \([0-9.]*\) ms.*/\1/p')
mkdir -p "$tmp"
gws="gw-proxy gw-chain"
[ "$smoke" = 1 ] || gws="$gws gw-proxy-bare gw-proxy-logged"
rm -f "$tmp/access.log"
pids=""; args=""
for f in $gws; do
  conf=$(python3 bench/gwbench.py --prep "bench/$f.yaml") || exit 1
  bin/gw check "$conf" >/dev/null || exit 1
  port=$(sed -n 's/.*listen: \["127.0.0.1:\([0-9]*\)"\].*/\1/p' "$conf")
  bin/gw run -c "$conf" 2>"$tmp/$f.log" & p=$!
  pids="$pids $p"; args="$args $f=http://127.0.0.1:$port/api/v1/users/42@$p"
done
# gw-proxy-bare: without the metrics table; gw-proxy-logged: metrics and the access log as well
trap 'kill $pids 2>/dev/null; wait $pids 2>/dev/null' EXIT
sleep 1
echo "== proxy throughput (wrk, 1 thread, 50 connections, ${secs}s x ${rounds} rounds, interleaved)"
# shellcheck disable=SC2086
python3 bench/gwbench.py --secs "$secs" --rounds "$rounds" --idle "$idle" \
  ${router_ns:+--router-ns "$router_ns"} ${reload_ms:+--reload-ms "$reload_ms"} $args || exit 1
[ "$smoke" = 1 ] && exit 0
[ "$off" = 0 ] || exit 0   # tlsbench.py keeps its own fixed ports
echo "== TLS termination: gw beside nginx on the same certificate (${secs}s x ${rounds} rounds, interleaved)"
python3 bench/tlsbench.py --secs "$secs" --rounds "$rounds"
