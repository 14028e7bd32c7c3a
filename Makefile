# FleetTwin: `make run` and `make test` install what is missing, build, and run.

BUILD ?= build
JOBS ?= $(shell nproc)
BUILD_TYPE ?= RelWithDebInfo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian bookworm packages the build, the tests and the tools need.
APT_PACKAGES := cmake ninja-build g++ pkg-config git \
  libcaf-dev libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev \
  librdkafka-dev librocksdb-dev prometheus-cpp-dev libcli11-dev libspdlog-dev libfmt-dev \
  libsimdjson-dev libtomlplusplus-dev libjemalloc-dev libgtest-dev googletest libbenchmark-dev clang-format kcat curl \
  openjdk-17-jre-headless maven prometheus

.PHONY: all deps configure build run test chaos-soak bench bench-cluster bench-failover evaluate format \
  clean kafka-jars kafka-start kafka-stop grpcurl

all: build

deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi

configure: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

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

test: build kafka-jars grpcurl
	cd $(BUILD) && ctest --output-on-failure --timeout 900 -j 2

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

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
