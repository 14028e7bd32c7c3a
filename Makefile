# FleetTwin: `make run` and `make test` install what is missing, build, and run.

BUILD ?= build
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian bookworm packages: what the node, CLI and simulator need to build (all the
# container image's build stage installs), then what the tests and tools need besides.
BUILD_PACKAGES := cmake ninja-build g++ pkg-config git \
  libcaf-dev libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev \
  librdkafka-dev librocksdb-dev prometheus-cpp-dev libcli11-dev libspdlog-dev libfmt-dev \
  libsimdjson-dev libtomlplusplus-dev libjemalloc-dev libssl-dev libcpp-jwt-dev libnlopt-dev
APT_PACKAGES := $(BUILD_PACKAGES) libgtest-dev googletest libbenchmark-dev clang-format kcat curl \
  openjdk-17-jre-headless maven prometheus python3-yaml python3-jsonschema \
  clang libclang-rt-14-dev openssl

.PHONY: all deps deps-build configure build run test chaos-soak bench bench-cluster bench-failover bench-flood \
  evaluate format clean kafka-jars kafka-start kafka-stop grpcurl deploy-tools dist image image-smoke fuzz

all: build

# Installs whichever of $(1) is missing.
define apt_install
	@missing=$$(for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(APT_PACKAGES))

deps-build:
	$(call apt_install,$(BUILD_PACKAGES))

# helm, kubeconform and the schemas of the deployment tests (make deploy-tools).
DEPLOY_CACHE ?= $(HOME)/.cache/fleettwin/deploy

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DFLEETTWIN_DEPLOY_CACHE=$(DEPLOY_CACHE)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# A node on the embedded Kafka, fed by the fleet simulator. Ctrl-C stops both.
run: build
	tools/scripts/run-dev.sh $(BUILD)

# The Apache Kafka jars for the cluster tests, through Maven (pinned in tools/kafka/pom.xml),
# cached outside the repo.
kafka-jars: deps
	tools/kafka/kafka.sh fetch

# A real single-broker Kafka in $(BUILD)/kafka to try things by hand; prints the bootstrap.
kafka-start: kafka-jars
	@tools/kafka/kafka.sh start --dir $(BUILD)/kafka

kafka-stop:
	tools/kafka/kafka.sh stop --dir $(BUILD)/kafka

# grpcurl, a client that knows only server reflection, for the health tests:
# built from the Go module proxy at a pinned version into $(BUILD)/extern.
GRPCURL_VERSION := v1.9.1
grpcurl: $(BUILD)/extern/grpcurl
$(BUILD)/extern/grpcurl:
	@command -v go >/dev/null 2>&1 || { $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends golang-go; }
	GOBIN=$(abspath $(BUILD)/extern) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

# helm and kubeconform for the deployment tests (helm lint, helm template | kubeconform):
# built from the Go module proxy at pinned versions into a cache outside the repo; then
# the Kubernetes API schemas (from the pinned Kubernetes release's OpenAPI documents),
# the Prometheus Operator's CRD schemas and the Compose specification's schema, turned
# into the form kubeconform reads, in the same cache (kubeconform would otherwise
# download them at run time).
HELM_VERSION := v3.22.0
KUBECONFORM_VERSION := v0.7.0
KUBERNETES_VERSION := v1.34.3
PROMETHEUS_OPERATOR_VERSION := v0.85.0
COMPOSE_GO_VERSION := v2.16.2
deploy-tools:
	@command -v go >/dev/null 2>&1 || { $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends golang-go; }
	DEPLOY_CACHE=$(DEPLOY_CACHE) HELM_VERSION=$(HELM_VERSION) \
	KUBECONFORM_VERSION=$(KUBECONFORM_VERSION) KUBERNETES_VERSION=$(KUBERNETES_VERSION) \
	PROMETHEUS_OPERATOR_VERSION=$(PROMETHEUS_OPERATOR_VERSION) \
	COMPOSE_GO_VERSION=$(COMPOSE_GO_VERSION) tools/scripts/deploy-tools.sh

test: build kafka-jars grpcurl deploy-tools
	cd $(BUILD) && ctest --output-on-failure --timeout 900 -j 2 || \
	  { $(CURDIR)/tools/scripts/failed-test-output.py . 40; exit 1; }
	$(MAKE) fuzz FUZZ_SECONDS=30

# The libFuzzer targets (tests/fuzz): built with clang, ASan and UBSan in $(FUZZ_BUILD),
# each run for FUZZ_SECONDS from seeds the project's own encoders write, then every kept
# regression input once. The corpora grow in $(FUZZ_BUILD)/tests/fuzz/work between runs.
FUZZ_SECONDS ?= 30
FUZZ_BUILD ?= $(BUILD)-fuzz
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_COMPILER=clang++ -DFLEETTWIN_BUILD_FUZZERS=ON -DFLEETTWIN_BUILD_TESTS=OFF \
	  -DFLEETTWIN_BUILD_BENCHMARKS=OFF -DFLEETTWIN_BUILD_TOOLS=OFF \
	  -DFLEETTWIN_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fleettwin_fuzzers
	cd $(FUZZ_BUILD) && ctest -L fuzz --output-on-failure -j $(JOBS)

# The node, CLI and simulator and the example configuration installed under $(DIST), as
# the container image holds them: a Release build without tests or benchmarks.
DIST ?= $(BUILD)/dist
DIST_BUILD ?= $(BUILD)-dist
dist: deps-build
	cmake -S . -B $(DIST_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DFLEETTWIN_BUILD_TESTS=OFF -DFLEETTWIN_BUILD_BENCHMARKS=OFF
	cmake --build $(DIST_BUILD) -j $(JOBS) --target fleettwin-node fleettwin fleettwin-sim
	cmake --install $(DIST_BUILD) --prefix $(DIST) --strip

# The container image (deploy/image/Containerfile) with podman or buildah, installed from
# Debian when neither is there.
IMAGE ?= localhost/fleettwin:0.1.0
image:
	IMAGE=$(IMAGE) deploy/image/build.sh

# Runs the built image end to end (embedded Kafka, simulator, health, gRPC, metrics, SIGTERM).
image-smoke: build
	IMAGE=$(IMAGE) FLEETTWIN_CLI=$(abspath $(BUILD))/fleettwin deploy/image/smoke.sh

# The exactly-once chaos test (tests/cluster/chaos_test.cpp) with soak settings: 10 minutes
# of telemetry, 20 kill -9s; then the fault suite (tests/cluster/fault_test.cpp) with long
# faults: a node frozen for 20 s, single-broker outages of 10 s, 45 s and 3 minutes (plus
# the broker's restart), at 1000 records/s. Override any of them:
# make chaos-soak CHAOS_KILLS=50 FAULT_OUTAGES=10,300 ...
CHAOS_KILLS ?= 20
CHAOS_SECONDS ?= 600
CHAOS_RATE ?= 3000
CHAOS_ASSETS ?= 1000
FAULT_PAUSE ?= 20
FAULT_OUTAGES ?= 10,45,180
FAULT_RATE ?= 1000
chaos-soak: build kafka-jars
	FLEETTWIN_CHAOS_KILLS=$(CHAOS_KILLS) FLEETTWIN_CHAOS_SECONDS=$(CHAOS_SECONDS) \
	FLEETTWIN_CHAOS_RATE=$(CHAOS_RATE) FLEETTWIN_CHAOS_ASSETS=$(CHAOS_ASSETS) \
	  $(BUILD)/fleettwin_cluster_tests --gtest_filter='ChaosTest.*'
	FLEETTWIN_FAULT_PAUSE_SECONDS=$(FAULT_PAUSE) FLEETTWIN_FAULT_OUTAGES=$(FAULT_OUTAGES) \
	FLEETTWIN_FAULT_RATE=$(FAULT_RATE) \
	  $(BUILD)/fleettwin_cluster_tests --gtest_filter='FaultTest.*'

bench: build
	tools/bench/run.sh $(BUILD)

# The twins' detectors and forecasters scored on fixed, labelled simulator corpora
# (fleettwin-analytics corpus + evaluate; README, "Analytics"): 8 hours every 5 s for
# the detectors, then a week every 5 minutes for the forecasts (seasons take days).
evaluate: build
	rm -rf $(BUILD)/evaluation-corpus $(BUILD)/forecast-corpus
	$(BUILD)/fleettwin-analytics corpus $(BUILD)/evaluation-corpus --seed 7 --assets 30 --hours 8
	$(BUILD)/fleettwin-analytics evaluate $(BUILD)/evaluation-corpus --models deploy/models.toml
	$(BUILD)/fleettwin-analytics corpus $(BUILD)/forecast-corpus --seed 7 --assets 30 --hours 168 \
	  --interval 300
	$(BUILD)/fleettwin-analytics evaluate $(BUILD)/forecast-corpus --models deploy/models.toml

# Ingest on a real Kafka broker (started and stopped by the script): 1 node, then 3 nodes.
bench-cluster: build kafka-jars
	tools/bench/cluster.sh $(BUILD)

# Failover time (kill -9 of a node, 1M twins), without and with a warm standby.
bench-failover: build kafka-jars
	tools/bench/failover.sh $(BUILD) --standby 0
	tools/bench/failover.sh $(BUILD) --standby 1

# A node under a flood of bad records and bulk calls, its resident memory sampled (README,
# "A node under a flood"); the broker stops with the recipe's shell (--owner).
FLOOD_SECONDS ?= 60
bench-flood: build kafka-jars
	dir=$$(mktemp -d) && \
	  bootstrap=$$(tools/kafka/kafka.sh start --dir $$dir --owner $$$$ | tail -n 1) && \
	  $(BUILD)/fleettwin-bench flood --kafka $$bootstrap --node $(BUILD)/fleettwin-node \
	    --seconds $(FLOOD_SECONDS) --request-threads 256; \
	  status=$$?; tools/kafka/kafka.sh stop --dir $$dir >/dev/null; rm -rf $$dir; exit $$status

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
