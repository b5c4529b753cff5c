#!/usr/bin/env bash
# `make test-valgrind`: the integration specs with every gw process they start (masters, forked
# workers, `gw check`) under valgrind memcheck. A wrapper in build/valgrind/ stands in for bin/gw
# (GW_BIN); each process writes build/valgrind/logs/vg.PID. The result is the sum over the logs:
# bytes definitely lost and memory errors (invalid reads/writes, uninitialised jumps outside
# LuaJIT, see spec/valgrind.supp). Spec failures from the slowdown (timeouts) are printed but
# are not the point of this run. Exit 0 when nothing is definitely lost and no error is reported.
cd "$(dirname "$0")/.." || exit 1
out=$PWD/build/valgrind
rm -rf "$out"; mkdir -p "$out/logs"
cat > "$out/gw" <<WRAP
#!/bin/sh
exec valgrind --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \\
  --trace-children=yes --trace-children-skip='/bin/*,/usr/bin/*,/usr/sbin/*' --child-silent-after-fork=no \\
  --suppressions=$PWD/spec/valgrind.supp --log-file=$out/logs/vg.%p "$PWD/bin/gw" "\$@"
WRAP
chmod +x "$out/gw"
specs=${VALGRIND_SPECS:-spec/02-integration}
echo "== busted (bin/gw test $specs), gw under valgrind"
GW_BIN=$out/gw bin/gw test -o utfTerminal $specs > "$out/busted.log" 2>&1
grep -aE '^(Failure|Error) → ' "$out/busted.log"
grep -aE '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out/busted.log" | tail -n 1
echo "(spec output: $out/busted.log)"
logs=$(ls "$out"/logs/vg.* 2>/dev/null | wc -l)
lost=0; errs=0; bad=""
for f in "$out"/logs/vg.*; do
  [ -e "$f" ] || continue
  l=$(grep -aoE 'definitely lost: [0-9,]+ bytes' "$f" | grep -oE '[0-9,]+' | tr -d , | awk '{s+=$1} END {print s+0}')
  e=$(grep -aoE 'ERROR SUMMARY: [0-9]+ errors' "$f" | grep -oE '[0-9]+' | head -n 1)
  lost=$((lost + l)); errs=$((errs + ${e:-0}))
  [ "$l" -gt 0 ] || [ "${e:-0}" -gt 0 ] && bad="$bad $f"
done
echo "valgrind: $logs gw processes checked, $lost bytes definitely lost, $errs errors"
for f in $bad; do echo "--- $f"; head -n 60 "$f"; done
[ "$lost" -eq 0 ] && [ "$errs" -eq 0 ]
