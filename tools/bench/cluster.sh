#!/usr/bin/env bash
# make bench-cluster: node ingest on a real Apache Kafka (one broker on loopback, started
# here and stopped on exit), with 1 node and then 3 nodes in the benchmark process, each
# against a plain librdkafka consumer on the same topic in the same run.
#
# Usage: tools/bench/cluster.sh [BUILD_DIR]
# Environment (defaults in brackets):
#   BENCH_RECORDS [400000]  BENCH_ASSETS [10000]  BENCH_PARTITIONS [12]
#   BENCH_GUARANTEE [exactly-once]  BENCH_NODES ["1 3"]  BENCH_EXTRA (more ingest flags)
set -euo pipefail

build=${1:-build}
records=${BENCH_RECORDS:-400000}
assets=${BENCH_ASSETS:-10000}
partitions=${BENCH_PARTITIONS:-12}
guarantee=${BENCH_GUARANTEE:-exactly-once}
node_counts=${BENCH_NODES:-1 3}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kafka_sh="$here/../kafka/kafka.sh"
bench="$build/fleettwin-bench"
[[ -x "$bench" ]] || { echo "cluster.sh: no $bench (build first)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/fleettwin-bench-cluster.XXXXXX")"
cleanup() {
  "$kafka_sh" stop --dir "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --owner: the broker also goes when this script is killed (kill -9 skips the trap).
echo "== starting a single Kafka broker in $work/kafka"
# New consumer groups wait 8 s for their members, so that the nodes of a run start together.
bootstrap="$(FLEETTWIN_KAFKA_GROUP_DELAY_MS=8000 "$kafka_sh" start --dir "$work/kafka" --owner $$ | tail -n 1)"
echo "bootstrap $bootstrap"

for n in $node_counts; do
  echo "== ingest: $n node(s), $guarantee, $records records, $assets assets, $partitions partitions"
  # shellcheck disable=SC2086 # BENCH_EXTRA is a list of flags
  "$bench" ingest --kafka "$bootstrap" --nodes "$n" --guarantee "$guarantee" \
    --records "$records" --assets "$assets" --partitions "$partitions" ${BENCH_EXTRA:-} \
    2> >(grep -v '^%[5-7]|' >&2) | tee "$work/nodes-$n.out"
  grep '^{"bench"' "$work/nodes-$n.out" | tail -n 1 >>"$work/results.jsonl"
done

# Realistic producers: the simulator's fleet produced at a fixed rate by an ordinary producer
# (linger 5 ms) while the node consumes, with a read-after-ingest probe; one work item in flight
# per partition, then the pipeline (the node's default), on the same broker in the same run.
for inflight in 1 8; do
  echo "== realistic producers: ${BENCH_RATE:-20000} records/s, max items in flight $inflight"
  flag=()
  [[ $inflight -gt 0 ]] && flag=(--max-items-in-flight "$inflight")
  "$bench" aggregates --kafka "$bootstrap" --aggregates none --assets "$assets" \
    --rate "${BENCH_RATE:-20000}" --seconds 20 --partitions "$partitions" "${flag[@]}" \
    2> >(grep -v '^%[5-7]|' >&2) | grep -v 'level(s): 0 changes'
done

# Hot twin: one asset's steady producer at 50,000 records/s beside the fleet at 5,000 records/s.
echo "== hot twin: 50000 records/s for one asset beside the fleet at 5000 records/s"
"$bench" aggregates --kafka "$bootstrap" --aggregates none --assets "$assets" --rate 5000 \
  --seconds 20 --partitions "$partitions" --hot-rate 50000 \
  2> >(grep -v '^%[5-7]|' >&2) | grep -v 'level(s): 0 changes'

echo "== bulk desired update of 10,000 twins (exactly-once) vs one transaction per update"
"$bench" bulk --kafka "$bootstrap" --twins 10000 --partitions "$partitions" \
  2> >(grep -v '^%[5-7]|' >&2)

echo "== summary (real Kafka, one broker; compare ratios within a run, not absolutes)"
# node rec/s: all nodes together, from the first record applied to the last (as the embedded
# bench measures); moves: partitions that moved between nodes while ingesting.
python3 - "$work/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'nodes':>5} {'guarantee':>13} {'node rec/s':>11} {'plain rec/s':>12} {'ratio':>6} "
      f"{'seconds':>8} {'moves':>5}  transactions per node")
for r in rows:
    tx = ", ".join(f"{n['node']}={n['transactions_committed']:.0f}" for n in r["per_node"])
    print(f"{r['nodes']:>5} {r['guarantee']:>13} {r['node_records_per_s']:>11,.0f} "
          f"{r['plain_records_per_s']:>12,.0f} {r['ratio']:>6.3f} {r['seconds']:>8.2f} "
          f"{r['partition_moves']:>5}  {tx}")
base = next((r for r in rows if r["nodes"] == 1), None)
for r in rows:
    if base and r is not base:
        print(f"{r['nodes']} nodes vs 1: {r['node_records_per_s'] / base['node_records_per_s']:.2f}x "
              "(the nodes share the machine's cores with each other and the broker)")
for r in rows:
    print(json.dumps(r, separators=(",", ":")))
EOF
