#!/usr/bin/env bash
# make bench: every benchmark, each against its baseline in the same run.
set -euo pipefail
build=${1:-build}
echo "== core micro benchmarks (Google Benchmark)"
"$build/fleettwin-core-bench" --benchmark_min_time=0.2
echo "== ingest"
"$build/fleettwin-bench" ingest
echo "== query"
"$build/fleettwin-bench" query
echo "== memory"
"$build/fleettwin-bench" memory
