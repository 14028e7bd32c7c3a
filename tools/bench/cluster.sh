#!/usr/bin/env bash
# make bench-cluster: node ingest on a real Apache Kafka (one broker on loopback, started
# here and stopped on exit), with 1 node (protobuf, then JSON records) and then 3 nodes in the
# benchmark process, each against a plain librdkafka consumer on the same topic in the same
# run, with the node's and the broker's CPU per record over each drain.
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

# The broker's CPU per record over each drain comes from its process (kafka.sh's DIR/pids).
broker_pid="$(sed -n 1p "$work/kafka/pids")"
# A just-started broker's JIT compiles on the cores the node uses: the first drains cost both
# sides more CPU per record (8.1-8.2 us in the node instead of 5.7-6.7). A warm-up drain first,
# not reported.
echo "== warm-up drain (not reported)"
"$bench" ingest --kafka "$bootstrap" --nodes 1 --guarantee "$guarantee" --records 200000 \
  --assets "$assets" --partitions "$partitions" >/dev/null 2> >(grep -v '^%[5-7]|' >&2)
# One node on a protobuf backlog, then on a JSON one (the node's and the broker's CPU per
# record of each), then with one change event per record (--change-events each, the baseline
# of the merged events), then the other node counts on protobuf.
runs=()
for n in $node_counts; do
  runs+=("$n protobuf item")
  [[ $n == 1 ]] && runs+=("1 json item" "1 protobuf each")
done
for run in "${runs[@]}"; do
  read -r n format events <<<"$run"
  echo "== ingest: $n node(s), $guarantee, $records $format records, $assets assets, $partitions partitions, change events: $events"
  # shellcheck disable=SC2086 # BENCH_EXTRA is a list of flags
  "$bench" ingest --kafka "$bootstrap" --nodes "$n" --guarantee "$guarantee" \
    --records "$records" --assets "$assets" --partitions "$partitions" --format "$format" \
    --change-events "$events" --broker-pid "$broker_pid" ${BENCH_EXTRA:-} \
    2> >(grep -v '^%[5-7]|' >&2) | tee "$work/nodes-$n-$format-$events.out"
  grep '^{"bench"' "$work/nodes-$n-$format-$events.out" | tail -n 1 >>"$work/results.jsonl"
done

# Realistic producers: the simulator's fleet produced at a fixed rate by an ordinary producer
# (linger 5 ms) while the node consumes, with a read-after-ingest probe; one work item in flight
# per partition (the node's default), then the pipeline, on the same broker in the same run.
for inflight in 1 8; do
  echo "== realistic producers: ${BENCH_RATE:-20000} records/s, max items in flight $inflight"
  flag=()
  [[ $inflight -gt 0 ]] && flag=(--max-items-in-flight "$inflight")
  "$bench" aggregates --kafka "$bootstrap" --aggregates none --assets "$assets" \
    --rate "${BENCH_RATE:-20000}" --seconds 20 --partitions "$partitions" "${flag[@]}" \
    2> >(grep -v '^%[5-7]|' >&2) | grep -v 'level(s): 0 changes'
done

# The highest rate sustained (issue target 150,000 records/s): one 20 s run per rate until one
# is not (every record committed within 1 s after the load, nothing skipped, the rate sent).
echo "== realistic producers: the highest rate sustained (${BENCH_RATES:-40000,80000,100000,120000,150000} records/s)"
"$bench" aggregates --kafka "$bootstrap" --aggregates none --assets "$assets" \
  --rates "${BENCH_RATES:-40000,80000,100000,120000,150000}" --seconds 20 --partitions "$partitions" \
  2> >(grep -v '^%[5-7]|' >&2) | grep -v 'level(s): 0 changes' | sed -n '/^rate sweep/,$p'

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
print(f"{'nodes':>5} {'guarantee':>13} {'format':>8} {'events':>6} {'node rec/s':>11} {'plain rec/s':>12} "
      f"{'ratio':>6} {'seconds':>8} {'node us/rec':>11} {'broker us/rec':>13} {'moves':>5}  "
      f"transactions per node")
for r in rows:
    tx = ", ".join(f"{n['node']}={n['transactions_committed']:.0f}" for n in r["per_node"])
    broker = r.get("broker_cpu_us_per_record")
    print(f"{r['nodes']:>5} {r['guarantee']:>13} {r.get('format', 'protobuf'):>8} "
          f"{r.get('change_events', 'each'):>6} {r['node_records_per_s']:>11,.0f} {r['plain_records_per_s']:>12,.0f} "
          f"{r['ratio']:>6.3f} {r['seconds']:>8.2f} {r.get('node_cpu_us_per_record', 0):>11.2f} "
          f"{'-' if broker is None else f'{broker:.2f}':>13} {r['partition_moves']:>5}  {tx}")
# Node counts compare on the same records (protobuf).
protobuf = [r for r in rows if r.get("format", "protobuf") == "protobuf"
            and r.get("change_events", "item") == "item"]
base = next((r for r in protobuf if r["nodes"] == 1), None)
for r in protobuf:
    if base and r is not base:
        print(f"{r['nodes']} nodes vs 1: {r['node_records_per_s'] / base['node_records_per_s']:.2f}x "
              "(the nodes share the machine's cores with each other and the broker)")
for r in rows:
    print(json.dumps(r, separators=(",", ":")))
EOF
