#!/usr/bin/env bash
# make bench-failover: how long the twins of a node killed with SIGKILL are unavailable.
#
# Usage: tools/bench/failover.sh [BUILD_DIR] [--twins N] [--standby 0|1] [--partitions P]
#                                [--sample S] [--session-timeout-ms MS]
#
# Starts a single Kafka broker (temp dir, stopped on exit) and two fleettwin-node processes
# in one consumer group (exactly-once, changelog on, --standby-replicas from --standby), waits
# until the group has settled, produces N twins (one record each) with fleettwin-sim and
# waits until both nodes have applied them all (and, with a standby, until the survivor's
# standby copies have caught up). Then it kills node 2 with SIGKILL and polls node 1 every
# 50 ms, from one long-lived client (fleettwin-bench failover-probe), for
#   (a) all partitions ACTIVE on node 1 (GetCluster: node 1 serves every partition and none
#       is unserved), and
#   (b) every twin of a sample of node 2's twins answering through node 1 (BatchGetTwins)
#       with the version it had before the kill.
# It prints both times, node 1's restore figures (records, seconds) and a JSON line.
# Defaults: 1,000,000 twins, standby 0, 12 partitions, 200 sampled twins, session timeout
# 2000 ms (the broker's minimum is 1000).
set -euo pipefail

build=build
if (($# > 0)) && [[ "$1" != --* ]]; then
  build=$1
  shift
fi
twins=1000000
standby=0
partitions=12
sample=200
session_timeout_ms=2000
while (($# > 0)); do
  case "$1" in
    --twins) twins=${2:?--twins needs a value}; shift 2 ;;
    --standby) standby=${2:?--standby needs a value}; shift 2 ;;
    --partitions) partitions=${2:?--partitions needs a value}; shift 2 ;;
    --sample) sample=${2:?--sample needs a value}; shift 2 ;;
    --session-timeout-ms) session_timeout_ms=${2:?--session-timeout-ms needs a value}; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "failover.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ "$standby" == 0 || "$standby" == 1 ]] || { echo "failover.sh: --standby is 0 or 1" >&2; exit 2; }
for bin in fleettwin-node fleettwin fleettwin-sim; do
  [[ -x "$build/$bin" ]] || { echo "failover.sh: no $build/$bin (build first)" >&2; exit 1; }
done
build="$(cd "$build" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kafka_sh="$here/../kafka/kafka.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/fleettwin-failover.XXXXXX")"
cleanup() {
  local rc=$?
  # The node processes (python kills them too; this covers a killed python).
  if [[ -f "$work/pids" ]]; then
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$work/pids"
  fi
  "$kafka_sh" stop --dir "$work/kafka" >/dev/null 2>&1 || true
  if ((rc != 0)) && [[ -z "${FAILOVER_KEEP:-}" ]]; then
    for log in "$work"/node-*.log; do
      [[ -f "$log" ]] || continue
      echo "--- last lines of $(basename "$log")" >&2
      tail -n 15 "$log" >&2
    done
  fi
  if [[ -n "${FAILOVER_KEEP:-}" ]]; then
    echo "failover.sh: kept $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting a single Kafka broker in $work/kafka"
# --owner: the broker also goes when this script is killed (kill -9 skips the trap).
bootstrap="$("$kafka_sh" start --dir "$work/kafka" --owner $$ | tail -n 1)"
echo "bootstrap $bootstrap"

python3 - "$build" "$work" "$bootstrap" "$twins" "$standby" "$partitions" "$sample" \
  "$session_timeout_ms" <<'EOF'
import json, os, re, signal, subprocess, sys, time, urllib.request

build, work, bootstrap = sys.argv[1], sys.argv[2], sys.argv[3]
twins, standby, partitions, sample_size, session_ms = map(int, sys.argv[4:9])
sample_size = max(1, min(sample_size, 1000))  # BatchGetTwins takes at most 1000 names
prefix = "failover"
cli = os.path.join(build, "fleettwin")
nodes = {}  # id -> {"proc", "grpc", "metrics", "log"}


def log(msg):
    print(msg, flush=True)


def fail(msg):
    print(f"failover.sh: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def start_node(node_id):
    logf = os.path.join(work, f"{node_id}.log")
    args = [os.path.join(build, "fleettwin-node"), "--kafka", bootstrap,
            "--topic-prefix", prefix, "--group", prefix, "--node-id", node_id,
            "--data-dir", os.path.join(work, node_id), "--grpc", "127.0.0.1:0",
            "--metrics", "127.0.0.1:0", "--cluster-port", "0",
            "--partitions", str(partitions), "--session-timeout-ms", str(session_ms),
            "--standby-replicas", str(standby), "--guarantee", "exactly-once",
            "--log-level", "info"]
    proc = subprocess.Popen(args, stdout=open(logf, "w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    with open(os.path.join(work, "pids"), "a") as f:
        f.write(f"{proc.pid}\n")
    # The ports (0 = any free one) are in the node's "event=started" line.
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            fail(f"node {node_id} exited with {proc.returncode} while starting")
        m = re.search(r"event=started .*grpc=(\S+) metrics=(\S+)", open(logf).read())
        if m:
            nodes[node_id] = {"proc": proc, "grpc": m.group(1), "metrics": m.group(2), "log": logf}
            return
        time.sleep(0.1)
    fail(f"node {node_id} did not start within 60 s")


def cli_json(server, *args, timeout=5.0):
    """Runs the CLI with --json; returns (exit code, [documents])."""
    try:
        r = subprocess.run([cli, "--server", server, "--json", "--timeout", str(timeout), *args],
                           capture_output=True, text=True, timeout=timeout + 5,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, []
    docs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                docs.append(json.loads(line))
            except ValueError:
                pass
    return r.returncode, docs


def self_record(node_id):
    """The node's own member record (live), from its GetCluster; None if it does not answer."""
    rc, docs = cli_json(nodes[node_id]["grpc"], "status")
    if rc != 0 or len(docs) < 2:
        return None, None
    cluster = docs[1]
    for n in cluster.get("nodes", []):
        if n["member"]["node_id"] == node_id:
            return n["member"], cluster
    return None, cluster


def parts(member, role):
    return {p["partition"]: p for p in member.get("partitions", []) if p.get("role") == role}


ACTIVE, RESTORING, STANDBY = "PARTITION_ROLE_ACTIVE", "PARTITION_ROLE_RESTORING", "PARTITION_ROLE_STANDBY"


def scrape(node_id):
    text = urllib.request.urlopen(f"http://{nodes[node_id]['metrics']}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def wait_for(what, check, timeout, every=0.2, report=None):
    start = time.time()
    last_report = start
    while True:
        ok, state = check()
        if ok:
            return state
        if time.time() - start > timeout:
            fail(f"timed out after {timeout} s waiting for {what} (last state: {state})")
        for n in nodes.values():
            if n["proc"].poll() is not None:
                fail(f"a node exited with {n['proc'].returncode} while waiting for {what}")
        if report and time.time() - last_report > 5:
            report(state)
            last_report = time.time()
        time.sleep(every)


# --- Kafka's default partitioner (murmur2), to pick twins the victim owns ---------------
def murmur2(data: bytes) -> int:
    m, r = 0x5BD1E995, 24
    n = len(data)
    h = (0x9747B28C ^ n) & 0xFFFFFFFF
    for i in range(0, n - n % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest, tail = n % 4, n - n % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_of(asset_id):
    return (murmur2(asset_id.encode()) & 0x7FFFFFFF) % partitions


def asset_id(i):
    # fleettwin-sim's ids: kinds round-robin (vehicle, machine, meter), numbered from 1 per
    # kind. Checked below against the nodes' per-partition twin counts.
    return "%s-%06d" % (("veh", "mch", "mtr")[i % 3], i // 3 + 1)


try:
    # --- two nodes, settled ----------------------------------------------------------------
    log(f"== starting 2 nodes (exactly-once, standby replicas {standby}, {partitions} partitions, "
        f"session timeout {session_ms} ms)")
    start_node("node-1")
    start_node("node-2")
    survivor, victim = "node-1", "node-2"

    def settled():
        a, _ = self_record(survivor)
        b, _ = self_record(victim)
        if not a or not b:
            return False, "no answer"
        pa, pb = parts(a, ACTIVE), parts(b, ACTIVE)
        ok = len(pa) + len(pb) == partitions and not (set(pa) & set(pb)) and pa and pb \
            and not parts(a, RESTORING) and not parts(b, RESTORING)
        return ok, f"{survivor} active {sorted(pa)}, {victim} active {sorted(pb)}"
    log(wait_for("the group to settle", settled, 120))

    # --- N twins ----------------------------------------------------------------------------
    log(f"== producing {twins} twins (one record each)")
    t = time.time()
    subprocess.run([os.path.join(build, "fleettwin-sim"), "--bootstrap", bootstrap,
                    "--topic", f"{prefix}.telemetry", "--assets", str(twins), "--count", str(twins),
                    "--rate", "0", "--no-topology", "--quiet"], check=True,
                   stdin=subprocess.DEVNULL)
    produced_s = time.time() - t
    t = time.time()

    def applied():
        a, _ = self_record(survivor)
        b, _ = self_record(victim)
        if not a or not b:
            return False, "no answer"
        active = list(parts(a, ACTIVE).values()) + list(parts(b, ACTIVE).values())
        stored = sum(int(p.get("stored_twins", 0)) for p in active)
        lag = sum(int(p.get("lag", 0)) for p in active)
        ok = stored == twins and lag == 0 and len(active) == partitions
        if ok and standby:
            # The survivor stands by for the victim's partitions, caught up with the changelog.
            # Caught up is lag <= 1, not 0: the changelog is written in transactions, so its
            # last offset is a commit marker, which a standby that reached the end in the same
            # fetch as the last records does not count as read (the node then reports lag 1
            # until the next write). Lag 1 therefore still means every committed record is in.
            sb = parts(a, STANDBY)
            ok = set(sb) == set(parts(b, ACTIVE)) and all(int(p.get("lag", 0)) <= 1 for p in sb.values())
            return ok, (a, b, f"stored {stored}, lag {lag}; standby on {survivor}: "
                               f"{ {p: int(s.get('lag', 0)) for p, s in sorted(sb.items())} }")
        return ok, (a, b, f"stored {stored} of {twins}, lag {lag}")
    a, b, state = wait_for("the twins to be applied", applied, 3600, every=0.5,
                           report=lambda s: log(f"   ... {s if isinstance(s, str) else s[2]}"))
    applied_s = time.time() - t
    log(f"   {state} ({produced_s:.1f} s producing, {applied_s:.1f} s more until applied)")

    victim_parts = sorted(parts(b, ACTIVE))
    victim_twins = sum(int(p.get("stored_twins", 0)) for p in parts(b, ACTIVE).values())
    # The id scheme and the partitioner reimplemented here must match the nodes: the twins
    # per partition computed from them equal the stored twins of every partition.
    counts = [0] * partitions
    for i in range(twins):
        counts[partition_of(asset_id(i))] += 1
    stored = {p: int(s.get("stored_twins", 0))
              for m in (a, b) for p, s in parts(m, ACTIVE).items()}
    if any(counts[p] != stored.get(p) for p in range(partitions)):
        fail(f"murmur2 of the simulator's ids does not match the nodes: computed {counts}, "
             f"stored {[stored.get(p) for p in range(partitions)]}")
    # The sample: twins of the victim's partitions, spread over the whole id range.
    step = max(1, twins // (sample_size * 3))
    sample = []
    for i in range(0, twins, step):
        if partition_of(asset_id(i)) in victim_parts:
            sample.append(asset_id(i))
            if len(sample) == sample_size:
                break
    # Their versions before the kill, through the survivor.
    rc, docs = cli_json(nodes[survivor]["grpc"], "get", *sample, timeout=30)
    if rc != 0 or len(docs) != len(sample):
        fail(f"cannot read the sampled twins before the kill (exit {rc})")
    versions = {d["asset_id"]: d["version"] for d in docs}
    before = scrape(survivor)
    log(f"== {victim} owns partitions {victim_parts} ({victim_twins} twins); sampled "
        f"{len(sample)} of its twins")

    # --- kill -9 and poll the survivor -------------------------------------------------------
    # One long-lived client (fleettwin-bench failover-probe) polls every 50 ms: a CLI process
    # per poll took about 0.6 of the machine's 2 cores from the node being measured.
    sample_file = os.path.join(work, "sample.txt")
    with open(sample_file, "w") as f:
        for asset in sample:
            f.write(f"{asset} {versions[asset]}\n")
    limit = 1800
    probe = subprocess.Popen(
        [os.path.join(build, "fleettwin-bench"), "failover-probe",
         "--server", nodes[survivor]["grpc"], "--node-id", survivor,
         "--partitions", str(partitions),
         "--victim-partitions", ",".join(str(p) for p in victim_parts),
         "--sample", sample_file, "--poll-seconds", "0.05", "--timeout-seconds", str(limit)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if probe.stdout.readline().strip() != "ready":
        fail("the failover probe did not connect to the survivor")
    log(f"== kill -9 {victim} (pid {nodes[victim]['proc'].pid})")
    t0 = time.monotonic()
    os.kill(nodes[victim]["proc"].pid, signal.SIGKILL)
    probe.stdin.write(f"go {t0:.6f}\n")
    probe.stdin.flush()
    while probe.poll() is None:
        if nodes[survivor]["proc"].poll() is not None:
            probe.kill()
            break
        time.sleep(0.1)
    out = probe.stdout.read().strip().splitlines()
    nodes[victim]["proc"].wait()
    try:
        r = json.loads(out[-1]) if out else {}
    except ValueError:
        r = {}
    results = {k: v for k, v in {"moved_s": r.get("moved_s"), "all_active_s": r.get("all_active_s"),
                                  "twins_s": r.get("twins_s")}.items() if v is not None}
    if r.get("older_version_seen"):
        results["older_version_seen"] = True
    if "all_active_s" not in results or "twins_s" not in results:
        fail(f"the survivor did not take over within {limit} s: {r or out}")
    after = scrape(survivor)

    def delta(name):
        return after.get(name, 0.0) - before.get(name, 0.0)
    restore_records = delta("fleettwin_restore_records_total")
    restore_seconds = delta("fleettwin_restore_duration_seconds_sum")
    restores = delta("fleettwin_restore_duration_seconds_count")
    log(f"partitions assigned to {survivor}:        {results.get('moved_s', float('nan')):.3f} s after the kill "
        f"(session timeout {session_ms} ms)")
    log(f"(a) all {partitions} partitions ACTIVE on {survivor}: {results['all_active_s']:.3f} s")
    log(f"(b) {len(sample)} sampled twins answer with their version: {results['twins_s']:.3f} s")
    log(f"restore on {survivor}: {restores:.0f} partitions, {restore_records:.0f} changelog records, "
        f"{restore_seconds:.3f} s summed over partitions"
        + (f" ({restore_records / restore_seconds:.0f} records/s)" if restore_seconds > 0 else ""))
    print(json.dumps({
        "bench": "failover", "twins": twins, "partitions": partitions, "standby": standby,
        "session_timeout_ms": session_ms, "victim_partitions": victim_parts,
        "victim_twins": victim_twins, "sample": len(sample),
        "assigned_s": round(results.get("moved_s", -1), 3),
        "all_active_s": round(results["all_active_s"], 3),
        "twins_answer_s": round(results["twins_s"], 3),
        "restored_partitions": int(restores), "restore_records": int(restore_records),
        "restore_seconds_sum": round(restore_seconds, 3),
        "older_version_seen": results.get("older_version_seen", False),
        "produce_s": round(produced_s, 1), "apply_s": round(applied_s, 1),
    }, separators=(",", ":")), flush=True)
finally:
    for n in nodes.values():
        if n["proc"].poll() is None:
            n["proc"].send_signal(signal.SIGTERM)
    for n in nodes.values():
        try:
            n["proc"].wait(timeout=20)
        except subprocess.TimeoutExpired:
            n["proc"].kill()
EOF
