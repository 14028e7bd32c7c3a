#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft mode, loopback only) for development, cluster tests,
# chaos tests and benchmarks. The broker jars come from Maven Central through
# tools/kafka/pom.xml (which pins the version) and are cached outside the repository.
#
# Usage:
#   kafka.sh fetch
#       Fill the jar cache ${FLEETTWIN_KAFKA_CACHE:-$HOME/.cache/fleettwin/kafka}/<version>/libs
#       with Maven; does nothing when the cache is complete for the current pom.
#   kafka.sh start --dir DIR [--brokers 1|3] [--port P] [--owner PID] [--sasl-ssl]
#       Fetch if needed, write KRaft configs into DIR, format storage, start the broker(s) in
#       the background and wait until every broker answers a metadata request. Writes
#       DIR/bootstrap and DIR/pids (line N = PID of broker N) and prints the bootstrap
#       (127.0.0.1:port[,...]) as the last line of stdout. --port P gives broker N the port
#       P+N-1; without it free loopback ports are chosen. Logs: DIR/broker-N.log (log4j) and
#       DIR/broker-N.out (JVM stdout/stderr). DIR must be new, empty or a previous cluster's
#       (stopped) dir, which is wiped. With --owner PID a watchdog stops the cluster within
#       about a second of PID's exit, so a crashed or killed test leaves no broker behind.
#       --sasl-ssl adds a SASL_SSL listener to every broker (TLS with a certificate of a CA
#       made for the cluster, SCRAM-SHA-512 with the user "fleettwin" and a random password)
#       beside the loopback PLAINTEXT one the brokers use among themselves, and writes
#       DIR/bootstrap-sasl-ssl (its addresses), DIR/tls/ca.crt and
#       DIR/client-sasl-ssl.properties (mode 0600: the librdkafka settings a client needs,
#       password included), e.g. for fleettwin-node --kafka-options-file.
#   kafka.sh stop --dir DIR
#       SIGTERM every broker, wait (FLEETTWIN_KAFKA_STOP_TIMEOUT, 30 s), then SIGKILL.
#   kafka.sh kill --dir DIR --broker N
#       SIGKILL broker N (1-based) and wait until it is gone: a crash, for chaos tests.
#   kafka.sh restart-broker --dir DIR --broker N
#       Stop broker N if it runs, start it again with its config and data, wait until ready.
#   kafka.sh status --dir DIR
#       One line per broker; exit status 0 when all run, 1 otherwise.
#   kafka.sh version
#       The pinned Kafka version (<kafka.version> in pom.xml).
#
# Layout: one broker is a combined broker+controller node. Three brokers are three combined
# nodes forming a 3-voter controller quorum (static controller.quorum.voters), so killing any
# one node leaves both a controller majority and two replicas of every partition
# (replication factor 3, min.insync.replicas 2): acks=all producers and transactions go on.
# Readiness is a metadata request with kcat listing every broker (without kcat: the
# listeners accept connections).
#
# Environment: JAVA_HOME (else `java` on PATH; Java 17 or newer), FLEETTWIN_KAFKA_CACHE,
# FLEETTWIN_KAFKA_HEAP_OPTS (default "-Xms256m -Xmx512m"), FLEETTWIN_KAFKA_JVM_OPTS (more JVM
# flags, none by default; the tests ask for -XX:TieredStopAtLevel=1), FLEETTWIN_KAFKA_START_TIMEOUT
# (seconds a broker has to become ready, default 60), FLEETTWIN_KAFKA_RESTART_TIMEOUT (the same
# for restart-broker, default 180), FLEETTWIN_KAFKA_STOP_TIMEOUT.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly POM="${SCRIPT_DIR}/pom.xml"
readonly CACHE_ROOT="${FLEETTWIN_KAFKA_CACHE:-${HOME}/.cache/fleettwin/kafka}"
readonly HEAP_OPTS="${FLEETTWIN_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
readonly JVM_OPTS="${FLEETTWIN_KAFKA_JVM_OPTS:-}"
readonly START_TIMEOUT="${FLEETTWIN_KAFKA_START_TIMEOUT:-60}"
# A restarted broker catches up with the cluster's metadata first: on a loaded 2-core machine
# that took more than a minute.
readonly RESTART_TIMEOUT="${FLEETTWIN_KAFKA_RESTART_TIMEOUT:-180}"
readonly STOP_TIMEOUT="${FLEETTWIN_KAFKA_STOP_TIMEOUT:-30}"
# The JVM flags kafka-run-class.sh uses for a broker (G1, short pauses).
readonly GC_OPTS="-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
-XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"
# A marker dropped into DIR so that `start` only ever wipes a dir it created itself.
readonly MARKER=".fleettwin-kafka"

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

log() {
  echo "kafka.sh: $*" >&2
}

kafka_version() {
  local v
  v="$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1)"
  [[ -n "$v" ]] || die "no <kafka.version> in $POM"
  echo "$v"
}

VERSION="$(kafka_version)"
readonly VERSION
readonly LIBS="${CACHE_ROOT}/${VERSION}/libs"
readonly COMPLETE="${CACHE_ROOT}/${VERSION}/complete"

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
    echo "${JAVA_HOME}/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "java not found: install Java 17 (Debian: openjdk-17-jre-headless, or 'make deps')"
  fi
}

# Kafka 3.9 runs on Java 11+, but the project standardises on 17 (and Kafka 4 needs 17).
check_java() {
  local java version major
  java="$(java_bin)"
  version="$("$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  major="${version%%.*}"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot read the version of $java"
  ((major >= 17)) ||
    die "$java is Java $version; Kafka here needs Java 17 (openjdk-17-jre-headless)"
  echo "$java"
}

pom_digest() {
  sha256sum "$POM" | cut -d' ' -f1
}

cache_complete() {
  [[ -f "$COMPLETE" && "$(cat "$COMPLETE")" == "$(pom_digest)" ]]
}

cmd_fetch() {
  cache_complete && return 0
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: install Maven (Debian: maven, or 'make deps')"
  mkdir -p "${CACHE_ROOT}/${VERSION}"
  # Two fetches at once (two shells, parallel make) must not interleave.
  exec 9>"${CACHE_ROOT}/${VERSION}/lock"
  flock 9
  if ! cache_complete; then
    log "fetching Apache Kafka ${VERSION} jars into ${LIBS}"
    local tmp="${LIBS}.tmp"
    rm -rf "$tmp"
    local mvn_log="${CACHE_ROOT}/${VERSION}/maven.log"
    if ! mvn -B -q -Dstyle.color=never -f "$POM" package "-Dkafka.libs.dir=${tmp}" \
      >"$mvn_log" 2>&1; then
      sed 's/\x1b\[[0-9;]*m//g' "$mvn_log" >&2
      die "Maven could not fetch the Kafka jars (log above, also in ${mvn_log})"
    fi
    [[ -f "${tmp}/kafka_2.13-${VERSION}.jar" ]] || die "Maven finished but ${tmp} has no broker jar"
    rm -rf "$LIBS" "${CACHE_ROOT}/${VERSION}/maven-target"
    mv "$tmp" "$LIBS"
    pom_digest >"$COMPLETE"
  fi
  exec 9>&-
}

# N free TCP ports on 127.0.0.1, one per line. All sockets are bound at once so the ports
# are distinct; a port can still be taken before the broker binds it, which `start`
# survives by retrying with new ports.
free_ports() {
  local n="$1"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
EOF
  else
    # Below the kernel's ephemeral range, so outgoing connections do not take them later.
    local found=() p
    while ((${#found[@]} < n)); do
      p=$((20000 + RANDOM % 12000))
      [[ " ${found[*]} " == *" $p "* ]] && continue
      (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
      found+=("$p")
    done
    printf '%s\n' "${found[@]}"
  fi
}

# A random Kafka cluster id: 16 random bytes, URL-safe base64 without padding.
# A random KRaft cluster id (16 bytes, base64url). One starting with '-' would be read as an
# option by the storage tool, so such ids are drawn again.
random_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $id == -* ]] || break
  done
  printf '%s\n' "$id"
}

parse_dir_args() {
  DIR=""
  BROKER=""
  BROKERS=1
  PORT=""
  OWNER=""
  SASL_SSL=0
  while (($# > 0)); do
    case "$1" in
      --sasl-ssl) SASL_SSL=1; shift ;;
      --dir) DIR="${2:?--dir needs a value}"; shift 2 ;;
      --broker) BROKER="${2:?--broker needs a value}"; shift 2 ;;
      --brokers) BROKERS="${2:?--brokers needs a value}"; shift 2 ;;
      --port) PORT="${2:?--port needs a value}"; shift 2 ;;
      --owner) OWNER="${2:?--owner needs a value}"; shift 2 ;;
      *) die "unknown argument: $1" ;;
    esac
  done
  [[ -n "$DIR" ]] || die "--dir DIR is required"
  # Absolute, so configs and the watchdog do not depend on the caller's working dir.
  [[ -d "$DIR" ]] || [[ "$CMD" == start ]] || die "no such dir: ${DIR}"
  DIR="$(mkdir -p "$DIR" && cd "$DIR" && pwd)"
}

load_cluster() {
  [[ -f "${DIR}/cluster.env" ]] || die "${DIR} holds no cluster (no cluster.env)"
  # shellcheck source=/dev/null
  source "${DIR}/cluster.env"
}

check_broker_arg() {
  if ! [[ "$BROKER" =~ ^[0-9]+$ ]] || ((BROKER < 1 || BROKER > BROKERS)); then
    die "--broker must be 1..${BROKERS}"
  fi
}

broker_pid() {
  sed -n "${1}p" "${DIR}/pids" 2>/dev/null
}

is_running() {
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

set_pid() {
  local n="$1" pid="$2" i lines=()
  for ((i = 1; i <= BROKERS; i++)); do
    if ((i == n)); then lines+=("$pid"); else lines+=("$(broker_pid "$i")"); fi
  done
  printf '%s\n' "${lines[@]}" >"${DIR}/pids.tmp"
  mv "${DIR}/pids.tmp" "${DIR}/pids"
}

# A CA, a broker certificate for 127.0.0.1 (one PEM keystore: PKCS#8 key, then the chain)
# and a SCRAM password, for the SASL_SSL listeners.
write_sasl_ssl_material() {
  local tls="${DIR}/tls"
  mkdir -p "$tls"
  "${SCRIPT_DIR}/../scripts/make-certs.sh" "$tls" ca >/dev/null 2>&1 ||
    die "could not make a CA in ${tls} (openssl)"
  "${SCRIPT_DIR}/../scripts/make-certs.sh" "$tls" node broker >/dev/null 2>&1 ||
    die "could not make the broker certificate in ${tls}"
  (umask 077 && openssl pkcs8 -topk8 -nocrypt -in "${tls}/broker.key" >"${tls}/broker.pem" &&
    cat "${tls}/broker.crt" >>"${tls}/broker.pem") || die "could not write ${tls}/broker.pem"
  SCRAM_PASSWORD="$(openssl rand -hex 24)"
}

write_configs() {
  local -a bports=("$@")
  local -a cports sports=()
  mapfile -t cports < <(free_ports "$BROKERS")
  ((SASL_SSL == 0)) || mapfile -t sports < <(free_ports "$BROKERS")
  local voters="" i
  for ((i = 1; i <= BROKERS; i++)); do
    voters+="${voters:+,}${i}@127.0.0.1:${cports[i - 1]}"
  done
  local rf="$BROKERS" isr=1
  ((BROKERS == 1)) || isr=2
  for ((i = 1; i <= BROKERS; i++)); do
    cat >"${DIR}/broker-${i}.properties" <<EOF
# Written by tools/kafka/kafka.sh: node ${i} of ${BROKERS}, combined broker+controller.
process.roles=broker,controller
node.id=${i}
controller.quorum.voters=${voters}
listeners=PLAINTEXT://127.0.0.1:${bports[i - 1]},CONTROLLER://127.0.0.1:${cports[i - 1]}${sports[i - 1]:+,SASL_SSL://127.0.0.1:${sports[i - 1]}}
advertised.listeners=PLAINTEXT://127.0.0.1:${bports[i - 1]}${sports[i - 1]:+,SASL_SSL://127.0.0.1:${sports[i - 1]}}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=${DIR}/data/broker-${i}

# Tests create every topic they use, with the partitions and config they mean.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=${rf}
min.insync.replicas=${isr}
# Internal topics: replicated like the data, few partitions so the first
# FindCoordinator (which creates them) is quick.
offsets.topic.replication.factor=${rf}
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=${rf}
transaction.state.log.min.isr=${isr}
transaction.state.log.num.partitions=4
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
# Consumer groups form at once (FLEETTWIN_KAFKA_GROUP_DELAY_MS delays it) and short session
# timeouts are allowed.
group.initial.rebalance.delay.ms=${FLEETTWIN_KAFKA_GROUP_DELAY_MS:-0}
group.min.session.timeout.ms=1000
# A killed node is fenced (and leaves the ISRs) after a few seconds.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
# The controller quorum tolerates a voter stalled for a few seconds (three brokers and three
# nodes on two shared cores): with the defaults (fetch 2 s, election 1 s) a node starved of CPU
# for 2 s started an election, and elections on a starved quorum followed one another for a
# minute while no broker could be fenced or unfenced. A dead controller is still replaced
# within about 5 s.
controller.quorum.fetch.timeout.ms=4000
controller.quorum.election.timeout.ms=2000

# Sized for a small, shared dev machine.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
    if ((SASL_SSL == 1)); then
      cat >>"${DIR}/broker-${i}.properties" <<EOF

# Clients: TLS and SCRAM-SHA-512 (users are created when the storage is formatted).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=${DIR}/tls/broker.pem
EOF
    fi
  done
  if ((SASL_SSL == 1)); then
    local sasl_bootstrap=""
    for ((i = 0; i < BROKERS; i++)); do
      sasl_bootstrap+="${sasl_bootstrap:+,}127.0.0.1:${sports[i]}"
    done
    echo "$sasl_bootstrap" >"${DIR}/bootstrap-sasl-ssl"
    (umask 077 && cat >"${DIR}/client-sasl-ssl.properties" <<EOF
# librdkafka settings of a client of the SASL_SSL listeners (written by kafka.sh).
security.protocol=SASL_SSL
sasl.mechanisms=SCRAM-SHA-512
sasl.username=fleettwin
sasl.password=${SCRAM_PASSWORD}
ssl.ca.location=${DIR}/tls/ca.crt
EOF
    )
  fi
  cat >"${DIR}/log4j.properties" <<'EOF'
# One file per broker: the path comes from -Dfleettwin.broker.log.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${fleettwin.broker.log}
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients.NetworkClient=WARN
EOF
  cat >"${DIR}/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

format_storage() {
  local java="$1" cluster_id="$2" i pids=() status=0
  for ((i = 1; i <= BROKERS; i++)); do
    # A short-lived tool: the C1 compiler alone starts faster.
    local -a scram=()
    ((SASL_SSL == 0)) || scram=(--add-scram "SCRAM-SHA-512=[name=fleettwin,password=${SCRAM_PASSWORD}]")
    "$java" -Xmx256m -XX:TieredStopAtLevel=1 \
      "-Dlog4j.configuration=file:${DIR}/tools-log4j.properties" -cp "${LIBS}/*" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "${DIR}/broker-${i}.properties" \
      "${scram[@]}" >"${DIR}/format-${i}.out" 2>&1 &
    pids+=("$!")
  done
  for ((i = 1; i <= BROKERS; i++)); do
    if ! wait "${pids[i - 1]}"; then
      status=1
      log "formatting the storage of broker ${i} failed:"
      cat "${DIR}/format-${i}.out" >&2
    fi
  done
  return "$status"
}

# Starts broker N in its own session (a Ctrl-C or the death of the caller does not reach
# it), detached from the caller's stdout so a `$(kafka.sh start)` or popen() returns.
launch_broker() {
  local java="$1" n="$2" pidfile="${DIR}/broker-${2}.pid"
  rm -f "$pidfile"
  # The inner shell records its own PID, then becomes the JVM (exec keeps the PID).
  # shellcheck disable=SC2086,SC2016 # word lists; $$ expands in the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' launch "$pidfile" \
    "$java" ${HEAP_OPTS} ${GC_OPTS} ${JVM_OPTS} \
    "-Dlog4j.configuration=file:${DIR}/log4j.properties" \
    "-Dfleettwin.broker.log=${DIR}/broker-${n}.log" "-Dkafka.logs.dir=${DIR}" \
    -cp "${LIBS}/*" kafka.Kafka "${DIR}/broker-${n}.properties" \
    </dev/null >>"${DIR}/broker-${n}.out" 2>&1 &
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s "$pidfile" ]] && break
    sleep 0.05
  done
  [[ -s "$pidfile" ]] || die "broker ${n} did not start (see ${DIR}/broker-${n}.out)"
  set_pid "$n" "$(cat "$pidfile")"
}

# Number of brokers the cluster reports in a metadata response (0 if it does not answer).
metadata_brokers() {
  local out
  out="$(kcat -L -b "$1" -m 2 2>/dev/null)" || {
    echo 0
    return
  }
  sed -n 's/^ *\([0-9][0-9]*\) brokers:.*/\1/p' <<<"$out" | head -n 1
}

show_failure() {
  local i
  for ((i = 1; i <= BROKERS; i++)); do
    log "--- broker ${i}: first errors, then the tail of ${DIR}/broker-${i}.log and .out ---"
    # The cause comes first; the tail is mostly shutdown noise after a fatal error.
    grep -m 6 -A 1 -E '\] (ERROR|FATAL) ' "${DIR}/broker-${i}.log" >&2 2>/dev/null || true
    tail -n 20 "${DIR}/broker-${i}.log" >&2 2>/dev/null || true
    tail -n 10 "${DIR}/broker-${i}.out" >&2 2>/dev/null || true
  done
}

# Waits until all brokers run and the cluster's metadata lists all of them.
# Returns 1 on a timeout, 2 when a broker exited (3 if it was a port clash).
wait_ready() {
  local timeout="${1:-$START_TIMEOUT}"
  local deadline=$((SECONDS + timeout)) i seen
  while ((SECONDS < deadline)); do
    for ((i = 1; i <= BROKERS; i++)); do
      if ! is_running "$(broker_pid "$i")"; then
        if grep -qs 'Address already in use' "${DIR}/broker-${i}.log" "${DIR}/broker-${i}.out"; then
          return 3
        fi
        log "broker ${i} exited during startup"
        return 2
      fi
    done
    if command -v kcat >/dev/null 2>&1; then
      seen="$(metadata_brokers "$(cat "${DIR}/bootstrap")")"
      ((${seen:-0} == BROKERS)) && return 0
    else
      # Without kcat, the listeners accepting connections is the best sign we have.
      local up=0 p
      for p in $(tr ',' ' ' <"${DIR}/bootstrap"); do
        (: <"/dev/tcp/${p%:*}/${p##*:}") 2>/dev/null && up=$((up + 1))
      done
      ((up == BROKERS)) && return 0
    fi
    sleep 0.2
  done
  log "the cluster was not ready after ${timeout} s"
  return 1
}

kill_all() {
  local i pid
  for ((i = 1; i <= BROKERS; i++)); do
    pid="$(broker_pid "$i")"
    if is_running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# Removes only what an earlier `start` wrote.
prepare_dir() {
  if [[ -f "${DIR}/${MARKER}" ]]; then
    local n i
    n="$(wc -l <"${DIR}/pids" 2>/dev/null || echo 0)"
    for ((i = 1; i <= n; i++)); do
      is_running "$(broker_pid "$i")" && die "a broker from ${DIR} still runs; stop it first"
    done
    rm -rf "${DIR}/data" "${DIR}"/broker-* "${DIR}"/format-* "${DIR}/pids" "${DIR}/bootstrap" \
      "${DIR}/cluster.env" "${DIR}"/*.properties "${DIR}"/watchdog.* "${DIR}/tls" \
      "${DIR}/bootstrap-sasl-ssl"
  elif [[ -n "$(ls -A "$DIR")" ]]; then
    die "${DIR} is not empty and was not made by kafka.sh; give a new or empty dir"
  fi
  touch "${DIR}/${MARKER}"
}

cmd_start() {
  parse_dir_args "$@"
  [[ "$BROKERS" == 1 || "$BROKERS" == 3 ]] || die "--brokers must be 1 or 3"
  [[ -z "$PORT" || "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number"
  [[ -z "$OWNER" ]] || is_running "$OWNER" || die "--owner ${OWNER} is not a running process"
  local java
  java="$(check_java)"
  cmd_fetch
  prepare_dir
  ((SASL_SSL == 0)) || write_sasl_ssl_material
  local attempt rc=1 i
  for attempt in 1 2 3; do
    local -a bports=()
    if [[ -n "$PORT" ]]; then
      for ((i = 0; i < BROKERS; i++)); do bports+=($((PORT + i))); done
    else
      mapfile -t bports < <(free_ports "$BROKERS")
    fi
    rm -rf "${DIR}/data" "${DIR}"/broker-* "${DIR}/pids"
    write_configs "${bports[@]}"
    local bootstrap=""
    for ((i = 0; i < BROKERS; i++)); do bootstrap+="${bootstrap:+,}127.0.0.1:${bports[i]}"; done
    echo "$bootstrap" >"${DIR}/bootstrap"
    printf 'BROKERS=%s\nKAFKA_VERSION=%s\n' "$BROKERS" "$VERSION" >"${DIR}/cluster.env"
    format_storage "$java" "$(random_cluster_id)" || die "could not format the storage in ${DIR}"
    : >"${DIR}/pids"
    for ((i = 1; i <= BROKERS; i++)); do launch_broker "$java" "$i"; done
    rc=0
    wait_ready || rc=$?
    ((rc == 0)) && break
    kill_all
    # Only a port somebody took between our probe and the broker's bind is worth a retry.
    [[ $rc == 3 && -z "$PORT" ]] || break
    log "a port was taken meanwhile; retrying with new ports (attempt ${attempt})"
  done
  if ((rc != 0)); then
    show_failure
    kill_all
    die "Kafka did not start in ${DIR}"
  fi
  [[ -z "$OWNER" ]] || start_watchdog
  log "Apache Kafka ${VERSION}: ${BROKERS} broker(s) ready in ${DIR}"
  ((SASL_SSL == 0)) || log "SASL_SSL listeners: $(cat "${DIR}/bootstrap-sasl-ssl") (client settings in ${DIR}/client-sasl-ssl.properties)"
  cat "${DIR}/bootstrap"
}

# Polls once a second (a watchdog, not a synchronisation) and runs `stop` once the owner
# is gone. Own session and no inherited stdout, like the brokers.
start_watchdog() {
  local pidfile="${DIR}/watchdog.pid"
  # shellcheck disable=SC2016 # expands in the inner shell
  setsid bash -c 'echo $$ >"$1"; while kill -0 "$2" 2>/dev/null; do sleep 1; done
    exec "$3" stop --dir "$4"' watchdog "$pidfile" "$OWNER" "${SCRIPT_DIR}/kafka.sh" "$DIR" \
    </dev/null >>"${DIR}/watchdog.out" 2>&1 &
}

# Waits for the given PIDs to exit; SIGKILLs those left after the deadline.
wait_exit() {
  local deadline=$((SECONDS + STOP_TIMEOUT)) pid left killed=0
  while :; do
    left=0
    for pid in "$@"; do is_running "$pid" && left=1; done
    ((left == 0)) && return 0
    if ((SECONDS >= deadline)); then
      ((killed == 0)) || die "PIDs $* survived SIGKILL"
      for pid in "$@"; do
        if is_running "$pid"; then
          log "PID ${pid} ignored SIGTERM for ${STOP_TIMEOUT} s; SIGKILL"
          kill -KILL "$pid" 2>/dev/null || true
        fi
      done
      deadline=$((SECONDS + 10))
      killed=1
    fi
    sleep 0.1
  done
}

# All brokers get SIGTERM at once. A single broker stops in about 2 s; three take about 7 s
# because the Raft leader's graceful resignation waits (5 s, not configurable) for voters
# that are stopping too.
cmd_stop() {
  parse_dir_args "$@"
  load_cluster
  local i pid pids=()
  # The watchdog of --owner has no more work (unless it is the one running this stop).
  pid="$(cat "${DIR}/watchdog.pid" 2>/dev/null || true)"
  if [[ -n "$pid" && "$pid" != "$$" ]] && is_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for ((i = 1; i <= BROKERS; i++)); do
    pid="$(broker_pid "$i")"
    if is_running "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  ((${#pids[@]} == 0)) || wait_exit "${pids[@]}"
  log "stopped the brokers in ${DIR}"
}

cmd_kill() {
  parse_dir_args "$@"
  load_cluster
  check_broker_arg
  local pid
  pid="$(broker_pid "$BROKER")"
  is_running "$pid" || die "broker ${BROKER} does not run"
  kill -KILL "$pid"
  wait_exit "$pid"
}

cmd_restart_broker() {
  parse_dir_args "$@"
  load_cluster
  check_broker_arg
  local java pid
  java="$(check_java)"
  pid="$(broker_pid "$BROKER")"
  if is_running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_exit "$pid"
  fi
  launch_broker "$java" "$BROKER"
  if ! wait_ready "$RESTART_TIMEOUT"; then
    show_failure
    die "broker ${BROKER} did not come back"
  fi
  log "broker ${BROKER} is back"
}

cmd_status() {
  parse_dir_args "$@"
  load_cluster
  local i pid all=0 port
  local -a ports
  IFS=, read -r -a ports <"${DIR}/bootstrap"
  for ((i = 1; i <= BROKERS; i++)); do
    pid="$(broker_pid "$i")"
    port="${ports[i - 1]}"
    if is_running "$pid"; then
      echo "broker ${i}: running, pid ${pid}, ${port}"
    else
      echo "broker ${i}: stopped, ${port}"
      all=1
    fi
  done
  return "$all"
}

main() {
  CMD="${1:-}"
  (($# == 0)) || shift
  case "$CMD" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    restart-broker) cmd_restart_broker "$@" ;;
    status) cmd_status "$@" ;;
    version) echo "$VERSION" ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
}

main "$@"
