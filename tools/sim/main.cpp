// fleettwin-sim: produces a deterministic simulated fleet's telemetry, and the
// relations of its topology, to Kafka.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "tools/sim/generator.hpp"
#include "tools/sim/producer.hpp"
#include "tools/sim/rate_limiter.hpp"
#include "tools/sim/report.hpp"
#include "tools/sim/truth.hpp"

namespace {

using namespace fleettwin::sim;
using steady = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  g_stop.store(true);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = &on_signal;
  sigemptyset(&sa.sa_mask);
  // A second signal takes the default action, so a stuck flush can be killed.
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct options {
  std::string bootstrap;
  std::string topic = "fleettwin.telemetry";
  std::optional<std::string> relations_topic;
  bool no_topology = false;
  double topology_interval = 60;
  std::string truth;
  uint64_t print = 0;
  uint32_t assets = 100;
  std::vector<std::string> kinds{"vehicle", "machine", "meter"};
  double rate = 1000;
  std::optional<double> virtual_rate;
  double duration = 0;
  std::optional<uint64_t> count;
  uint64_t seed = 1;
  std::string tenant = "demo";
  std::optional<int64_t> start_time_ms;
  std::string format = "protobuf";
  std::vector<std::string> faults;
  uint64_t malformed = 0;
  uint64_t malformed_every = 0;
  size_t max_record_bytes = size_t{1} << 20;
  std::string report;
  std::vector<std::string> kafka_properties;
  double flush_timeout = 30;
  bool dry_run = false;
  bool quiet = false;
};

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Builds the generator config; throws std::invalid_argument with a message.
config make_config(const options& o) {
  config cfg;
  cfg.seed = o.seed;
  cfg.assets = o.assets;
  cfg.kinds.clear();
  for (const auto& k : o.kinds) {
    auto kind = parse_asset_kind(k);
    if (!kind) {
      throw std::invalid_argument(
          fmt::format("--kinds: unknown kind '{}' (vehicle, machine, meter)", k));
    }
    cfg.kinds.push_back(*kind);
  }
  cfg.rate = o.virtual_rate ? *o.virtual_rate : (o.rate > 0 ? o.rate : 1000.0);
  cfg.start_time_ms = o.start_time_ms ? *o.start_time_ms : wall_clock_ms();
  cfg.tenant = o.tenant;
  cfg.format = *parse_payload_format(o.format);
  for (const auto& spec : o.faults) {
    std::string error;
    auto f = parse_fault(spec, error);
    if (!f) {
      throw std::invalid_argument("--fault: " + error);
    }
    cfg.faults.push_back(std::move(*f));
  }
  if (o.count) {
    cfg.count = *o.count;
  } else if (o.duration > 0 && o.rate > 0) {
    // A paced run of fixed duration is a fixed number of records.
    cfg.count = std::max<uint64_t>(1, generator::records_for_duration(o.duration, o.rate));
  }
  cfg.malformed = o.malformed;
  cfg.malformed_every = o.malformed_every;
  cfg.max_record_bytes = o.max_record_bytes;
  cfg.topology = !o.no_topology;
  cfg.topology_interval_s = o.topology_interval;
  return cfg;
}

// The relations topic: as given, else beside a prefixed telemetry topic
// ("test.telemetry" -> "test.relations"), else fleettwin.relations.
std::string relations_topic_of(const options& o) {
  if (o.relations_topic) {
    return *o.relations_topic;
  }
  constexpr std::string_view suffix = ".telemetry";
  std::string_view t = o.topic;
  if (t.size() > suffix.size() && t.ends_with(suffix)) {
    return std::string{t.substr(0, t.size() - suffix.size())} + ".relations";
  }
  return "fleettwin.relations";
}

// One line for --print: topic, key, content-type and the payload in JSON
// (protobuf payloads in their JSON form).
void print_record(const record& r, std::string_view topic, std::string& line) {
  line.clear();
  line.append(topic);
  line.push_back('\t');
  line.append(r.key);
  line.push_back('\t');
  line.append(r.content_type);
  line.push_back('\t');
  if (r.malformed) {
    fmt::format_to(std::back_inserter(line), "malformed {} ({} bytes)", to_string(*r.malformed),
                   r.value.size());
  } else if (r.relation != nullptr) {
    encode_relation_json(*r.relation, line);
  } else if (r.data != nullptr) {
    encode_json(*r.data, line);
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
}

// Sleeps for `d` in slices, so that a signal ends the wait promptly.
void sleep_interruptibly(steady::duration d) {
  auto until = steady::now() + d;
  while (!g_stop.load(std::memory_order_relaxed)) {
    auto now = steady::now();
    if (now >= until) {
      return;
    }
    std::this_thread::sleep_for(
        std::min<steady::duration>(until - now, std::chrono::milliseconds(100)));
  }
}

double seconds_since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

// FNV-1a, to fingerprint a dry run's output.
void fnv1a(uint64_t& h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h = (h ^ c) * 0x100000001b3ULL;
  }
  h = (h ^ 0xff) * 0x100000001b3ULL;  // field separator
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (const char* env = std::getenv("FLEETTWIN_KAFKA"); env != nullptr && *env != '\0') {
    o.bootstrap = env;
  } else {
    o.bootstrap = "127.0.0.1:9092";
  }

  CLI::App app{
      "fleettwin-sim: deterministic fleet telemetry simulator. Produces records keyed by asset "
      "id with a content-type header; the same seed and --start-time-ms give the same bytes. "
      "Unless --no-topology, the fleet has a topology: meters feed transformers "
      "(transformers/tr-NNNN), feeders (fd-NNN), substations (ss-NN) and grids/main; vehicles "
      "belong to fleets (north, south, east, west; regions nordics-east/-west) and depots "
      "(depot-N), and charge at chargers (chargers/depot-N-cK, charging_at relations on "
      "--relations-topic); machines belong to lines (line-N) of plants (plant-N). The "
      "aggregates' own attributes (parent, capacity_kw, region) go out as telemetry records "
      "keyed by the aggregate id."};
  app.option_defaults()->always_capture_default();
  app.add_option("--bootstrap", o.bootstrap, "Kafka bootstrap servers (env FLEETTWIN_KAFKA)");
  app.add_option("--topic", o.topic, "Telemetry topic");
  app.add_option("--relations-topic", o.relations_topic,
                 "Relations topic for charging_at changes (default: beside a '*.telemetry' "
                 "--topic, e.g. test.telemetry -> test.relations, else fleettwin.relations)");
  app.add_flag("--no-topology", o.no_topology,
               "Leave out the topology: no parent attributes (assets carry fleet, site, make "
               "as before), no aggregate attribute records, no relation records");
  app.add_option("--topology-interval", o.topology_interval,
                 "Virtual seconds between rounds of the aggregates' attribute records "
                 "(transformers, feeders, substations, fleets, depots, chargers, lines; one "
                 "round also before the first reading)")
      ->check(CLI::PositiveNumber);
  app.add_option("--truth", o.truth,
                 "At the end (count reached, duration over, SIGINT/SIGTERM) write the "
                 "aggregates' ground truth as JSON to this file: per aggregate id the twins below "
                 "it and the sum/min/max of the numeric properties they last reported");
  app.add_option("--print", o.print,
                 "Print the first N records to stdout: topic, key, content-type, payload as JSON");
  app.add_option("--assets", o.assets, "Number of simulated assets")
      ->check(CLI::Range(1u, 100'000'000u));
  app.add_option("--kinds", o.kinds, "Asset kinds, assigned round-robin")
      ->delimiter(',')
      ->check(CLI::IsMember({"vehicle", "machine", "meter"}));
  app.add_option("--rate", o.rate, "Records per second in total (0 = as fast as possible)")
      ->check(CLI::NonNegativeNumber);
  app.add_option(
         "--virtual-rate", o.virtual_rate,
         "Records per second of the virtual clock (default: --rate, or 1000 if --rate is 0)")
      ->check(CLI::PositiveNumber);
  auto* duration = app.add_option("--duration", o.duration,
                                  "Seconds to run (0 = until SIGINT/SIGTERM); with --rate > 0 "
                                  "this means exactly rate*duration records")
                       ->check(CLI::NonNegativeNumber);
  auto* count = app.add_option(
      "--count", o.count,
      "Exact number of records to produce (all of them: readings, aggregate and relation "
      "records, malformed ones)");
  count->excludes(duration);
  duration->excludes(count);
  app.add_option("--seed", o.seed, "Random seed");
  app.add_option("--tenant", o.tenant, "Tenant of every asset");
  app.add_option("--start-time-ms", o.start_time_ms,
                 "Virtual clock start, Unix ms (default: now; fix it for reproducible output)");
  app.add_option("--format", o.format, "Payload encoding")
      ->check(CLI::IsMember({"protobuf", "json", "mixed"}));
  app.add_option("--fault", o.faults,
                 "TYPE:ASSET:PROPERTY:START_S:DURATION_S[:MAGNITUDE], TYPE in drift, spike, "
                 "stuck, dropout, level_shift, variance (repeatable)")
      ->take_all();
  app.add_option("--malformed", o.malformed,
                 "Malformed records spread evenly through the run (needs --count or --duration "
                 "with --rate > 0)");
  app.add_option("--malformed-every", o.malformed_every, "Make every K-th record malformed");
  app.add_option("--max-record-bytes", o.max_record_bytes,
                 "The platform's record size limit; oversized malformed records exceed it by 10%")
      ->check(CLI::Range(size_t{256}, size_t{512} << 20));
  app.add_option("--report", o.report, "Write a JSON summary to this file at the end");
  app.add_option("-X,--kafka-property", o.kafka_properties,
                 "Extra librdkafka property KEY=VALUE (repeatable)")
      ->take_all();
  app.add_option("--flush-timeout", o.flush_timeout, "Seconds to wait for deliveries at exit")
      ->check(CLI::NonNegativeNumber);
  app.add_flag(
      "--dry-run", o.dry_run,
      "Generate without Kafka; print throughput, counts (malformed, aggregate and relation "
      "records) and a checksum of the output (see --print to see records)");
  app.add_flag("-q,--quiet", o.quiet, "Only print the final summary and errors");
  CLI11_PARSE(app, argc, argv);

  config cfg;
  std::unique_ptr<generator> gen;
  try {
    cfg = make_config(o);
    gen = std::make_unique<generator>(cfg);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "fleettwin-sim: {}\n", e.what());
    return 2;
  }

  producer_options popts;
  popts.bootstrap = o.bootstrap;
  popts.topic = o.topic;
  popts.relations_topic = relations_topic_of(o);
  popts.max_message_bytes = gen->oversized_bytes();
  for (const auto& kv : o.kafka_properties) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      fmt::print(stderr, "fleettwin-sim: --kafka-property '{}': expected KEY=VALUE\n", kv);
      return 2;
    }
    popts.properties.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }

  std::unique_ptr<kafka_producer> producer;
  run_counts dry;
  if (o.dry_run) {
    dry.per_asset.assign(gen->asset_count(), 0);
  } else {
    std::string error;
    producer = kafka_producer::make(popts, gen->asset_count(), error);
    if (!producer) {
      fmt::print(stderr, "fleettwin-sim: {}\n", error);
      return 2;
    }
  }

  if (!o.quiet) {
    fmt::print(stderr,
               "fleettwin-sim: {} topic={} assets={} kinds={} rate={} count={} duration={}s "
               "seed={} start_time_ms={} format={} faults={} malformed={} malformed_every={}\n",
               o.dry_run ? "dry run" : "bootstrap=" + o.bootstrap, o.topic, cfg.assets,
               fmt::join(o.kinds, ","), o.rate,
               cfg.count == 0 ? std::string("unbounded") : std::to_string(cfg.count), o.duration,
               cfg.seed, cfg.start_time_ms, o.format, cfg.faults.size(), cfg.malformed,
               cfg.malformed_every);
    if (const auto* t = gen->topo()) {
      fmt::print(stderr,
                 "fleettwin-sim: topology relations_topic={} substations={} feeders={} "
                 "transformers={} depots={} chargers={} lines={} plants={} (one round of {} "
                 "aggregate records every {}s of virtual time)\n",
                 popts.relations_topic, t->substations, t->feeders, t->transformers, t->depots,
                 t->chargers, t->lines, t->plants, t->aggregates.size(), cfg.topology_interval_s);
    } else {
      fmt::print(stderr, "fleettwin-sim: topology off\n");
    }
  }
  std::optional<ground_truth> truth;
  if (!o.truth.empty()) {
    truth.emplace(*gen);
  }
  uint64_t printed = 0;
  std::string line;

  install_signal_handlers();
  const auto t0 = steady::now();
  // With --rate 0 --duration D there is no record budget, only a deadline.
  std::optional<steady::time_point> deadline;
  if (cfg.count == 0 && o.duration > 0) {
    deadline = t0 + std::chrono::duration_cast<steady::duration>(
                        std::chrono::duration<double>(o.duration));
  }
  std::optional<token_bucket> bucket;
  if (o.rate > 0) {
    bucket.emplace(o.rate, o.rate * 0.01, t0);
  }
  auto next_progress = t0 + std::chrono::seconds(5);
  uint64_t checksum = 0xcbf29ce484222325ULL;
  std::string error;
  uint64_t errors_logged = 0;
  record rec;

  auto counts = [&]() -> const run_counts& { return producer ? producer->counts() : dry; };

  while (!g_stop.load(std::memory_order_relaxed) && gen->next(rec)) {
    const uint64_t n = rec.index;
    if (bucket) {
      auto wait = bucket->acquire(steady::now());
      // Short debts are carried over rather than slept off one by one.
      if (wait > std::chrono::microseconds(200)) {
        if (producer) {
          producer->poll(0);
        }
        sleep_interruptibly(wait);
        if (g_stop.load(std::memory_order_relaxed)) {
          break;
        }
      }
    }
    const std::string_view topic =
        rec.type == record_type::relation ? popts.relations_topic : popts.topic;
    if (printed < o.print) {
      ++printed;
      print_record(rec, topic, line);
    }
    if (producer) {
      if (producer->produce(rec, g_stop, error)) {
        if (truth) {
          truth->observe(rec);
        }
      } else if (errors_logged++ < 10) {
        fmt::print(stderr, "fleettwin-sim: {}\n", error);
      }
      if (producer->fatal()) {
        break;
      }
      if (n % 1024 == 0) {
        producer->poll(0);
      }
    } else {
      ++dry.sent;
      ++dry.delivered;
      if (rec.malformed) {
        ++dry.malformed_sent;
        ++dry.malformed_delivered;
      } else if (rec.type == record_type::aggregate) {
        ++dry.aggregates_sent;
        ++dry.aggregates_delivered;
      } else if (rec.type == record_type::relation) {
        ++dry.relations_sent;
        ++dry.relations_delivered;
      } else {
        ++dry.per_asset[rec.asset_index];
      }
      if (truth) {
        truth->observe(rec);
      }
      if (rec.type == record_type::relation) {
        fnv1a(checksum, "relations");  // the topic, for records of the relations topic only
      }
      fnv1a(checksum, rec.key);
      fnv1a(checksum, rec.content_type);
      fnv1a(checksum, rec.malformed ? to_string(*rec.malformed) : std::string_view{});
      fnv1a(checksum, rec.value);
    }
    if ((bucket || n % 1024 == 0) && (deadline || !o.quiet)) {
      auto now = steady::now();
      if (deadline && now >= *deadline) {
        break;
      }
      if (!o.quiet && now >= next_progress) {
        next_progress = now + std::chrono::seconds(5);
        const auto& c = counts();
        double secs = seconds_since(t0);
        fmt::print(stderr, "fleettwin-sim: sent={} delivered={} failed={} rate={:.0f}/s\n", c.sent,
                   c.delivered, c.failed, static_cast<double>(c.sent) / secs);
      }
    }
  }
  const double produce_seconds = seconds_since(t0);

  // Before the flush, so that a second signal during a long flush cannot lose it;
  // delivery failures show in the summary and the --report.
  bool truth_ok = true;
  if (truth) {
    std::ofstream out(o.truth, std::ios::binary | std::ios::trunc);
    out << truth->json(wall_clock_ms());
    if (!out) {
      fmt::print(stderr, "fleettwin-sim: cannot write truth {}\n", o.truth);
      truth_ok = false;
    }
  }

  if (producer) {
    producer->flush(std::chrono::milliseconds(static_cast<int64_t>(o.flush_timeout * 1000)));
  }
  const double elapsed = seconds_since(t0);
  const auto& c = counts();
  fmt::print(stderr,
             "fleettwin-sim: sent={} delivered={} failed={} malformed={} aggregates={} "
             "relations={} elapsed={:.3f}s rate={:.0f}/s{}{}{}\n",
             c.sent, c.delivered, c.failed, c.malformed_sent, c.aggregates_sent, c.relations_sent,
             elapsed, produce_seconds > 0 ? static_cast<double>(c.sent) / produce_seconds : 0.0,
             o.dry_run ? fmt::format(" checksum={:016x}", checksum) : std::string{},
             g_stop.load() ? " (interrupted)" : "",
             producer && !producer->first_error().empty()
                 ? " first_error=\"" + producer->first_error() + "\""
                 : std::string{});

  if (!o.report.empty()) {
    std::ofstream out(o.report, std::ios::binary | std::ios::trunc);
    out << report_json(c, *gen, elapsed);
    if (!out) {
      fmt::print(stderr, "fleettwin-sim: cannot write report {}\n", o.report);
      return 1;
    }
  }
  bool ok = c.failed == 0 && (!producer || !producer->fatal()) && truth_ok;
  return ok ? 0 : 1;
}
