#!/usr/bin/env bash
# Runs every suite: the C unit tests given as arguments, the busted specs inside gw's LuaJIT, the
# libFuzzer smoke (each build/fuzz/fuzz_* for FUZZ_SECS, default 30 here), and the busted specs
# again on the ASan+UBSan build (bin/gw-asan, where any sanitizer report is a failure).
# GW_SUITES picks stages (default "c busted fuzz asan"; `make test-asan` runs "asan" alone).
# Prints each suite's own output, then one last line summing them: "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
suites=" ${GW_SUITES:-c busted fuzz asan} "
passed=0; failed=0

# Adds a suite's "N passed, N failed" line (from its output $1, exit code $2) to the totals.
add_summary() {
  local line p f
  line=$(echo "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
  fi
  [ "$2" -ne 0 ] && [ -z "$line" ] && failed=$((failed + 1))
}

# Runs the busted specs with gw binary $1; adds busted's summary to the totals.
run_busted() {
  local bin=$1 log dirs="" d rc sum s fl er
  log=$(mktemp)
  for d in spec/01-unit spec/02-integration spec/03-plugins spec/04-kong-compat; do
    [ -d "$d" ] && [ -n "$(find "$d" -name '*_spec.lua' | head -n 1)" ] && dirs="$dirs $d"
  done
  "$bin" test -o utfTerminal $dirs 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  sum=$(grep -aE '[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
  if [ -n "$sum" ]; then
    s=$(echo "$sum" | grep -oE '[0-9]+ success' | grep -oE '[0-9]+')
    fl=$(echo "$sum" | grep -oE '[0-9]+ failure' | grep -oE '[0-9]+')
    er=$(echo "$sum" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+')
    passed=$((passed + s)); failed=$((failed + fl + er))
  elif [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
  fi
  rm -f "$log"
}

if [[ $suites == *" c "* ]]; then
  for t in "$@"; do
    echo "== $t"
    out=$("$t" 2>&1); rc=$?
    echo "$out" | tail -n 3
    add_summary "$out" $rc
  done
fi

if [[ $suites == *" busted "* ]]; then
  echo "== busted (bin/gw test)"
  run_busted bin/gw
fi

if [[ $suites == *" fuzz "* ]]; then
  echo "== fuzz smoke (fuzz/run.sh, ${FUZZ_SECS:-30} s per target)"
  targets=$(ls build/fuzz/fuzz_* 2>/dev/null | grep -v '\.' )
  if [ -z "$targets" ]; then
    echo "no fuzz targets built (make fuzz-build)"; failed=$((failed + 1))
  else
    out=$(FUZZ_SECS=${FUZZ_SECS:-30} bash fuzz/run.sh $targets 2>&1); rc=$?
    echo "$out"
    add_summary "$out" $rc
  fi
fi

if [[ $suites == *" asan "* ]]; then
  # Every gw process (test runner, masters, workers) writes sanitizer reports to files named
  # san.PID here; any file is a failure. halt_on_error: the first error ends the process.
  echo "== busted on ASan+UBSan (bin/gw-asan test)"
  rep=$PWD/build-asan/reports
  rm -rf "$rep"; mkdir -p "$rep"
  if [ ! -x bin/gw-asan ]; then
    echo "bin/gw-asan is not built (make bin/gw-asan)"; failed=$((failed + 1))
  else
    export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:log_path=$rep/san"
    export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$rep/san"
    GW_BIN=$PWD/bin/gw-asan run_busted bin/gw-asan
    unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
    nrep=$(find "$rep" -type f | wc -l)
    if [ "$nrep" -eq 0 ]; then
      echo "sanitizer reports: none"; passed=$((passed + 1))
    else
      echo "sanitizer reports: $nrep (in $rep)"
      for f in $(find "$rep" -type f | head -n 5); do echo "--- $f"; head -n 30 "$f"; done
      failed=$((failed + nrep))
    fi
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
