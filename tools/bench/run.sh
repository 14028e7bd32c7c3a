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
echo "== realistic producers (embedded Kafka): plain telemetry at a fixed rate with a"
echo "   read-after-ingest probe; one work item in flight per partition, then the pipeline"
for inflight in 1 8; do
  flag=()
  [[ $inflight -gt 0 ]] && flag=(--max-items-in-flight "$inflight")
  "$build/fleettwin-bench" aggregates --aggregates none --assets 10000 --rate "${BENCH_RATE:-5000}" \
    --seconds 20 --partitions 12 "${flag[@]}" | grep -v 'level(s): 0 changes'
done
echo "== realistic producers (embedded Kafka): the highest rate sustained (target 100,000"
echo "   records/s): one 20 s run per rate until one is not"
"$build/fleettwin-bench" aggregates --aggregates none --assets 10000 \
  --rates "${BENCH_RATES:-40000,80000,100000,120000,140000}" --seconds 20 --partitions 12 |
  sed -n '/^rate sweep/,$p'
echo "== hot twins (embedded Kafka): a backlog for one asset, then one asset's steady producer"
echo "   at 50,000 records/s beside the fleet at 5,000 (target: the hot twin keeps up)"
"$build/fleettwin-bench" ingest --assets 1 --records 200000
"$build/fleettwin-bench" aggregates --aggregates none --assets 10000 --rate 5000 --seconds 20 \
  --partitions 12 --hot-rate 50000 | grep -v 'level(s): 0 changes'
echo "== aggregates under a realistic topology (embedded Kafka)"
"$build/fleettwin-bench" aggregates --assets 10000 --rate 5000 --seconds 20 --partitions 12
echo "== bulk desired update of 10,000 twins (embedded Kafka) vs one item per update"
"$build/fleettwin-bench" bulk --twins 10000 --partitions 12
