#!/usr/bin/env bash
# Starts fleettwin-node on its embedded Kafka and feeds it with the simulator.
# Usage: run-dev.sh BUILD_DIR   (extra node flags via FLEETTWIN_* variables)
set -euo pipefail
build=${1:-build}
data_dir=${FLEETTWIN_DATA_DIR:-./data}
mkdir -p "$data_dir"
rm -f "$data_dir/kafka.bootstrap"
# Aggregate kinds (fleets, depots, feeders, substations, lines, plants ...).
aggregates=${FLEETTWIN_AGGREGATES:-$(dirname "$0")/../../deploy/aggregates.toml}
models=${FLEETTWIN_MODELS:-$(dirname "$0")/../../deploy/models.toml}
"$build/fleettwin-node" --data-dir "$data_dir" --aggregates "$aggregates" --models "$models" &
node=$!
sim=""
cleanup() {
  [ -n "$sim" ] && kill "$sim" 2>/dev/null || true
  kill -TERM "$node" 2>/dev/null || true
  wait "$node" 2>/dev/null || true
}
trap cleanup INT TERM EXIT
# The node writes the embedded Kafka's address once it is up.
for _ in $(seq 1 300); do
  [ -s "$data_dir/kafka.bootstrap" ] && break
  kill -0 "$node" 2>/dev/null || { echo "fleettwin-node exited" >&2; exit 1; }
  sleep 0.1
done
bootstrap=$(cat "$data_dir/kafka.bootstrap")
echo "fleet simulator -> $bootstrap (1000 assets, 2000 records/s, grid/fleet/plant topology)"
echo "try:  $build/fleettwin list --filter 'kind = \"vehicle\"'   |   $build/fleettwin status"
echo "      $build/fleettwin agg list   |   $build/fleettwin agg get fleets/north"
echo "      $build/fleettwin agg list --filter 'kind = \"feeder\"'   |   $build/fleettwin agg get grids/main"
echo "      $build/fleettwin agg list --filter 'kind = \"charger\"'   |   $build/fleettwin relations veh-000001"
echo "      $build/fleettwin alerts list   |   $build/fleettwin forecast veh-000001 battery --horizon 30m"
echo "      $build/fleettwin bulk-desired speed_limit=60 --filter 'attributes.fleet = \"north\"' --dry-run"
# Batches of 50 ms compress well: the embedded Kafka keeps 5 MiB of batches per
# partition, about 4 minutes of this load (the node normally reads it at once).
"$build/fleettwin-sim" --bootstrap "$bootstrap" --assets 1000 --rate 2000 --duration 0 \
  -X linger.ms=50 --quiet &
sim=$!
wait "$node"
