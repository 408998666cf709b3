#!/usr/bin/env bash
# Fuzzing (issue 10): builds the libFuzzer targets with clang-14 (ASan + UBSan) in build-fuzz/
# and runs each one for a bounded time on its seeds (corpus/<target>/) and past crashes
# (regressions/<target>/).
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     default: 10 s each, every target
# CI (./dev test) runs the default: under 2 minutes after the build. tests/fuzz/long.sh is the
# hour-long run. A crash, a leak, a hang (libFuzzer's -timeout) or UB fails the run; the input is
# kept in tests/fuzz/out/<target>/ and its report printed. A new crash becomes a regression input:
# copy the file into regressions/<target>/ and commit it with the fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
shift || true
[ "$SECS" -ge 1 ] || { echo "run.sh: SECONDS_PER_TARGET must be at least 1" >&2; exit 2; }
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_http1 fuzz_http2 fuzz_upstream fuzz_config fuzz_range
  fuzz_accept_encoding fuzz_cache_control fuzz_headers)
JOBS=${JOBS:-2}
BUILD=${EDGE_FUZZ_BUILD:-build-fuzz}

CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD" -DEDGE_FUZZ=ON -DEDGE_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target fuzzers -j"$JOBS"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for t in "${TARGETS[@]}"; do
  out=tests/fuzz/out/$t
  mkdir -p "$out/corpus" tests/fuzz/regressions/$t
  rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*  # (an earlier run's)
  # (the first directory receives new inputs; the seeds and regressions are only read)
  set +e
  "$BUILD/tests/fuzz/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" tests/fuzz/corpus/$t \
    tests/fuzz/regressions/$t >"$out/log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log")
  cov=$(grep -o 'cov: [0-9]*' "$out/log" | tail -1 || true)  # (none when a seed crashes)
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc) after ${execs:-?} runs; input(s):" $(ls "$out" | grep -E '^(crash|leak|timeout|oom)-' || true)
    grep -E 'ERROR|SUMMARY|#[0-9]+ 0x.* in ' "$out/log" | head -30
  else
    echo "fuzz: $t ok: ${execs:-?} runs in ${SECS} s, $cov"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (logs in tests/fuzz/out/<target>/log)"
  exit 1
fi
