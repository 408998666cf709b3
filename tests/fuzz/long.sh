#!/usr/bin/env bash
# The long fuzzing run (issue 10): an hour in total by default, shared between the targets, each
# target's corpus kept in tests/fuzz/out/<target>/corpus between runs (not committed).
#   tests/fuzz/long.sh [TOTAL_SECONDS]      default 3600
# Prints one line per target (runs, coverage, result); the same as run.sh with a longer budget.
set -euo pipefail
cd "$(dirname "$0")"
TOTAL=${1:-3600}
N=8
exec ./run.sh $((TOTAL / N))
