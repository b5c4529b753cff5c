#!/usr/bin/env bash
# Runs every suite: the C unit tests given as arguments, then the busted specs inside gw's LuaJIT.
# Prints each suite's own output, then one last line summing them: "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
passed=0; failed=0
for t in "$@"; do
  echo "== $t"
  out=$("$t" 2>&1); rc=$?
  echo "$out" | tail -n 3
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
  fi
  [ $rc -ne 0 ] && [ -z "$line" ] && failed=$((failed + 1))
done
echo "== busted (bin/gw test)"
log=$(mktemp)
dirs=""
for d in spec/01-unit spec/02-integration spec/03-plugins spec/04-kong-compat; do
  [ -d "$d" ] && [ -n "$(find "$d" -name '*_spec.lua' | head -n 1)" ] && dirs="$dirs $d"
done
bin/gw test -o utfTerminal $dirs 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
sum=$(grep -aE '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
if [ -n "$sum" ]; then
  s=$(echo "$sum" | grep -oE '[0-9]+ success' | grep -oE '[0-9]+')
  fl=$(echo "$sum" | grep -oE '[0-9]+ failure' | grep -oE '[0-9]+')
  er=$(echo "$sum" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+')
  passed=$((passed + s)); failed=$((failed + fl + er))
elif [ $rc -ne 0 ]; then
  failed=$((failed + 1))
fi
rm -f "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
