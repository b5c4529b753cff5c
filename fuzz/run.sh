#!/usr/bin/env bash
# Runs each libFuzzer target given as argument (build/fuzz/fuzz_NAME) for FUZZ_SECS seconds
# (default 60) over its seed corpus fuzz/corpus/NAME/. New inputs it finds go to
# build/fuzz/corpus/NAME/ (the checked-in seeds stay as they are); a crash, leak, timeout or
# broken invariant leaves its input in build/fuzz/artifacts/ and fails the target.
# Prints one line per target, then "N passed, N failed" (one result per target).
cd "$(dirname "$0")/.." || exit 1
secs=${FUZZ_SECS:-60}
passed=0; failed=0
mkdir -p build/fuzz/artifacts
# LuaJIT-held buffers that look leaked (see the file)
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for t in "$@"; do
  name=$(basename "$t"); name=${name#fuzz_}
  mkdir -p "build/fuzz/corpus/$name"
  log=build/fuzz/$name.log
  # The targets with a Lua VM (config, proxy): LeakSanitizer does not scan LuaJIT's heap, so what
  # an input leaves to the Lua GC (a compiled regex in a userdata, a module's first-use cache)
  # looks leaked. Their leaks are checked by the ASan suite and valgrind instead.
  leaks=1
  case $name in config|proxy) leaks=0 ;; esac
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: the Lua VM targets grow slowly
  ASAN_OPTIONS="detect_leaks=$leaks${ASAN_OPTIONS:+:$ASAN_OPTIONS}" "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 -detect_leaks=$leaks \
       -artifact_prefix="build/fuzz/artifacts/$name-" \
       "build/fuzz/corpus/$name" "fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  runs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  cov=$(grep -aoE 'cov: [0-9]+' "$log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $name: ok, ${runs:-?} runs in ${secs}s, $cov"
  else
    failed=$((failed + 1))
    echo "fuzz $name: FAILED (exit $rc), log: $log"
    grep -aE 'ERROR|SUMMARY|invariant failed|Test unit written' "$log" | head -n 8
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
