#!/bin/sh
# Runs the built image as a user would and checks it end to end: a node on its embedded
# Kafka with a read-only root file system and its data in a volume; the simulator, from
# the same image, feeds it; the health check turns SERVING; a twin is read over gRPC and
# the metrics are scraped from the host; SIGTERM stops it cleanly.
#   IMAGE=localhost/fleettwin:0.1.0 deploy/image/smoke.sh     (make image-smoke)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
image=${IMAGE:-localhost/fleettwin:0.1.0}
cli=${FLEETTWIN_CLI:-$root/build/fleettwin}
engine=$(command -v podman || true)
[ -n "$engine" ] || { echo "image-smoke: needs podman" >&2; exit 1; }
flags=""
[ -z "$(command -v runc)" ] || flags="--runtime runc"
limits=""
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 1048576 ]; then
  limits="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096"
fi
name=fleettwin-smoke-$$
volume=$name-data
grpc_port=${GRPC_PORT:-50351}
metrics_port=${METRICS_PORT:-9764}
cleanup() {
  $engine $flags rm -f "$name" >/dev/null 2>&1 || true
  $engine volume rm -f "$volume" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
  echo "image-smoke: FAIL: $*" >&2
  $engine $flags logs "$name" 2>&1 | tail -20 >&2
  exit 1
}
# Polls "$@" every half second for up to $1 seconds.
within() {
  limit=$1
  shift
  tries=$((limit * 2))
  until "$@" >/dev/null 2>&1; do
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || return 1
    sleep 0.5
  done
}

$engine $flags run -d --name "$name" --read-only --tmpfs /tmp -v "$volume:/var/lib/fleettwin" \
  $limits -p "127.0.0.1:$grpc_port:50051" -p "127.0.0.1:$metrics_port:9464" \
  -e FLEETTWIN_NODE_ID=smoke-1 -e FLEETTWIN_INSECURE=true "$image" >/dev/null
within 60 "$cli" --server "127.0.0.1:$grpc_port" --timeout 2 health || fail "never SERVING"
echo "image-smoke: health SERVING"
[ "$($engine $flags exec "$name" id -u)" = 10001 ] || fail "not running as user 10001"
$engine $flags healthcheck run "$name" 2>/dev/null || fail "the image's HEALTHCHECK failed"

# The simulator from the same image, on the node's embedded Kafka.
bootstrap=$($engine $flags exec "$name" cat /var/lib/fleettwin/data/kafka.bootstrap)
$engine $flags exec "$name" fleettwin-sim --bootstrap "$bootstrap" --assets 50 --count 500 \
  --rate 0 --format json --no-topology -q >/dev/null || fail "the simulator failed"
within 30 sh -c "'$cli' --server 127.0.0.1:$grpc_port --json get veh-000001 | grep -q applied_records" ||
  fail "twin veh-000001 never appeared"
echo "image-smoke: twin veh-000001 read over gRPC"
within 10 sh -c "curl -sf http://127.0.0.1:$metrics_port/metrics | grep -q '^fleettwin_records_applied_total'" ||
  fail "no fleettwin_records_applied_total on /metrics"
echo "image-smoke: metrics scraped"
$engine $flags stop -t 60 "$name" >/dev/null
$engine $flags logs "$name" 2>&1 | grep -q 'event=stopped' || fail "no clean stop on SIGTERM"
echo "image-smoke: stopped cleanly on SIGTERM"
