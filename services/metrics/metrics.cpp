#include "services/metrics/metrics.hpp"

#include <spdlog/spdlog.h>

namespace fleettwin::metrics {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries buckets{
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
  return buckets;
}

/// The ingest probe: counters per node, active twins per partition.
class prometheus_ingest_probe final : public runtime::ingest_probe {
public:
  explicit prometheus_ingest_probe(prometheus::Registry& r)
      : consumed_(BuildCounter()
                      .Name("fleettwin_records_consumed_total")
                      .Help("Telemetry records consumed from Kafka")
                      .Register(r)
                      .Add({})),
        bytes_(BuildCounter()
                   .Name("fleettwin_bytes_consumed_total")
                   .Help("Telemetry key and payload bytes consumed")
                   .Register(r)
                   .Add({})),
        batches_(BuildCounter()
                     .Name("fleettwin_batches_total")
                     .Help("Consumed batches processed by partition actors")
                     .Register(r)
                     .Add({})),
        applied_(BuildCounter()
                     .Name("fleettwin_records_applied_total")
                     .Help("Telemetry records that changed a twin")
                     .Register(r)
                     .Add({})),
        rejected_(BuildCounter()
                      .Name("fleettwin_records_rejected_total")
                      .Help("Records sent to the dead-letter topic, by reason")
                      .Register(r)),
        duplicates_(BuildCounter()
                        .Name("fleettwin_duplicates_total")
                        .Help("Records ignored because their sequence was already applied")
                        .Register(r)
                        .Add({})),
        out_of_order_(
            BuildCounter()
                .Name("fleettwin_out_of_order_records_total")
                .Help("Records not applied because every sample was older than the stored "
                      "one, or the sequence was below the duplicate window")
                .Register(r)
                .Add({})),
        unchanged_(BuildCounter()
                       .Name("fleettwin_unchanged_records_total")
                       .Help("New records that changed nothing: no samples, and attributes "
                             "as stored (a source re-sending its attributes)")
                       .Register(r)
                       .Add({})),
        anomalies_by_kind_(BuildCounter()
                               .Name("fleettwin_anomalies_total")
                               .Help("Numeric samples the twins' anomaly detectors scored at "
                                     "least 0.5, by the detector behind the score")
                               .Register(r)),
        alert_transitions_(BuildCounter()
                               .Name("fleettwin_alert_transitions_total")
                               .Help("Anomaly alerts of twin properties raised, updated, "
                                     "cleared and acknowledged, by severity")
                               .Register(r)),
        scaled_error_(BuildCounter()
                          .Name("fleettwin_forecast_scaled_error_total")
                          .Help("One-step forecast errors of numeric samples, each divided by "
                                "its property's mean naive error; over "
                                "fleettwin_forecast_scored_samples_total it is the forecasts' "
                                "mean absolute scaled error (below 1: better than naive)")
                          .Register(r)
                          .Add({})),
        scored_samples_(BuildCounter()
                            .Name("fleettwin_forecast_scored_samples_total")
                            .Help("Numeric samples whose one-step forecast was scored")
                            .Register(r)
                            .Add({})),
        quality_flags_(BuildCounter()
                           .Name("fleettwin_quality_flags_total")
                           .Help("Numeric samples flagged by data-quality checks against their "
                                 "asset model (out_of_range, spike, stuck, gap)")
                           .Register(r)),
        stale_samples_(BuildCounter()
                           .Name("fleettwin_out_of_order_samples_total")
                           .Help("Property samples skipped because a newer sample was stored")
                           .Register(r)
                           .Add({})),
        sequence_restarts_(BuildCounter()
                               .Name("fleettwin_sequence_restarts_total")
                               .Help("Records applied although their sequence was at or below "
                                     "the twin's window, because they were newer than every "
                                     "sample: the source restarted its sequence counter")
                               .Register(r)
                               .Add({})),
        commit_latency_(BuildHistogram()
                            .Name("fleettwin_batch_commit_duration_seconds")
                            .Help("RocksDB group commit of one batch (state, history, offset)")
                            .Register(r)
                            .Add({}, latency_buckets())),
        phases_(BuildHistogram()
                    .Name("fleettwin_work_item_phase_seconds")
                    .Help("One work item of a partition by phase: apply (from its start to "
                          "handing the outputs to Kafka), publish (until Kafka acknowledged them "
                          "or committed their transaction); the local commit follows")
                    .Register(r)),
        apply_phase_(phases_.Add({{"phase", "apply"}}, latency_buckets())),
        publish_phase_(phases_.Add({{"phase", "publish"}}, latency_buckets())),
        commit_failures_(BuildCounter()
                             .Name("fleettwin_commit_failures_total")
                             .Help("Failed group commits")
                             .Register(r)
                             .Add({})),
        committed_twins_(BuildCounter()
                             .Name("fleettwin_committed_twin_writes_total")
                             .Help("Twin states written by group commits")
                             .Register(r)
                             .Add({})),
        history_points_(BuildCounter()
                            .Name("fleettwin_history_segments_written_total")
                            .Help("History segments written (one per twin per batch)")
                            .Register(r)
                            .Add({})),
        active_(BuildGauge()
                    .Name("fleettwin_twins_active")
                    .Help("Resident twin actors, by partition")
                    .Register(r)),
        passivated_(BuildCounter()
                        .Name("fleettwin_twins_passivated_total")
                        .Help("Twin actors passivated (state kept in RocksDB)")
                        .Register(r)
                        .Add({})),
        deltas_applied_(BuildCounter()
                            .Name("fleettwin_aggregate_member_updates_applied_total")
                            .Help("Member views (deltas) folded into aggregates")
                            .Register(r)
                            .Add({})),
        contributions_(BuildCounter()
                           .Name("fleettwin_aggregate_contributions_produced_total")
                           .Help("Contributions (one child to one parent, coalesced per commit) "
                                 "published to the aggregate-updates topic")
                           .Register(r)
                           .Add({})),
        aggregate_changes_(BuildCounter()
                               .Name("fleettwin_aggregate_changes_total")
                               .Help("Aggregate changes committed")
                               .Register(r)
                               .Add({})),
        anomalies_(BuildCounter()
                       .Name("fleettwin_aggregate_anomalies_total")
                       .Help("Contributions to ids of no aggregate kind (misdirected), a relation "
                             "cycle met (cycle), paths beyond the depth limit (too_deep), late "
                             "older member versions (stale_version), holds that ended before "
                             "the member arrived (expired_hold)")
                       .Register(r)),
        propagation_(BuildHistogram()
                         .Name("fleettwin_aggregate_propagation_seconds")
                         .Help("From the ingest of a twin change to the committed change of an "
                               "aggregate it reaches, by levels below the aggregate")
                         .Register(r)),
        active_aggregates_(BuildGauge()
                               .Name("fleettwin_aggregates_active")
                               .Help("Resident aggregate actors, by partition")
                               .Register(r)),
        checks_(BuildCounter()
                    .Name("fleettwin_aggregate_recompute_checks_total")
                    .Help("Aggregates whose incremental measures were compared with a full "
                          "recompute from their members")
                    .Register(r)
                    .Add({})),
        mismatches_(BuildCounter()
                        .Name("fleettwin_aggregate_recompute_mismatches_total")
                        .Help("Recompute checks that found a measure differing from the full "
                              "recompute (must stay 0; each is logged)")
                        .Register(r)
                        .Add({})) {
    for (const char* level : {"1", "2", "3", "4+"})
      levels_.push_back(&propagation_.Add(
          {{"levels", level}},
          prometheus::Histogram::BucketBoundaries{0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
                                                  0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30}));
    // Every label set exists from the start at 0, so that alert rules and
    // dashboards see a rate of 0 rather than no series until the first event.
    for (const char* reason : {"malformed", "oversized", "unsupported_content_type", "key_mismatch",
                               "invalid", "wrong_partition", "relation_refused", "tenant_conflict"})
      rejected_.Add({{"reason", reason}});
    for (auto k = static_cast<size_t>(core::anomaly_kind::spike);
         k <= static_cast<size_t>(core::anomaly_kind::stuck); ++k)
      anomalies_by_kind_.Add({{"kind", core::to_string(static_cast<core::anomaly_kind>(k))}});
    for (auto e : {core::alert_event::raised, core::alert_event::updated,
                   core::alert_event::cleared, core::alert_event::acknowledged})
      for (auto sev : {core::alert_severity::warning, core::alert_severity::critical})
        alert_transitions_.Add({{"event", core::to_string(e)}, {"severity", core::to_string(sev)}});
    for (size_t b = 0; b < 4; ++b)
      quality_flags_.Add({{"flag", core::quality_flag_name(b)}});
  }

  void on_batch(size_t records, size_t bytes) override {
    consumed_.Increment(static_cast<double>(records));
    bytes_.Increment(static_cast<double>(bytes));
    batches_.Increment();
  }
  void on_applied(size_t records) override {
    applied_.Increment(static_cast<double>(records));
  }
  void on_duplicates(size_t n) override {
    duplicates_.Increment(static_cast<double>(n));
  }
  void on_analysis(const core::analysis_output& found) override {
    for (size_t k = 1; k < found.anomalies.size(); ++k)
      if (found.anomalies[k] > 0)
        anomalies_by_kind_.Add({{"kind", core::to_string(static_cast<core::anomaly_kind>(k))}})
            .Increment(static_cast<double>(found.anomalies[k]));
    for (const auto& a : found.alerts)
      alert_transitions_
          .Add({{"event", core::to_string(a.event)}, {"severity", core::to_string(a.severity)}})
          .Increment();
    if (found.scored > 0) {
      scaled_error_.Increment(found.scaled_error);
      scored_samples_.Increment(static_cast<double>(found.scored));
    }
    for (size_t b = 0; b < found.quality.size(); ++b)
      if (found.quality[b] > 0)
        quality_flags_.Add({{"flag", core::quality_flag_name(b)}})
            .Increment(static_cast<double>(found.quality[b]));
  }
  void on_unchanged(size_t records) override {
    unchanged_.Increment(static_cast<double>(records));
  }
  void on_out_of_order(size_t records, size_t samples) override {
    out_of_order_.Increment(static_cast<double>(records));
    stale_samples_.Increment(static_cast<double>(samples));
  }
  void on_sequence_restarts(size_t records) override {
    sequence_restarts_.Increment(static_cast<double>(records));
  }
  void on_rejected(std::string_view code) override {
    rejected_.Add({{"reason", std::string{code}}}).Increment();
  }
  void on_commit(double seconds, size_t twins, size_t history) override {
    commit_latency_.Observe(seconds);
    committed_twins_.Increment(static_cast<double>(twins));
    history_points_.Increment(static_cast<double>(history));
  }
  void on_commit_failed() override {
    commit_failures_.Increment();
  }
  void on_item_phases(double apply_seconds, double publish_seconds) override {
    apply_phase_.Observe(apply_seconds);
    publish_phase_.Observe(publish_seconds);
  }
  void on_active_twins(int32_t partition, size_t n) override {
    active_.Add({{"partition", std::to_string(partition)}}).Set(static_cast<double>(n));
  }
  void on_passivated(size_t n) override {
    passivated_.Increment(static_cast<double>(n));
  }
  void on_contributions(size_t deltas, size_t misdirected,
                        const core::apply_counts& counts) override {
    deltas_applied_.Increment(static_cast<double>(deltas));
    auto add = [this](const char* kind, size_t n) {
      if (n > 0)
        anomalies_.Add({{"kind", kind}}).Increment(static_cast<double>(n));
    };
    add("misdirected", misdirected);
    add("cycle", counts.cycles);
    add("too_deep", counts.too_deep);
    add("stale_version", counts.stale_versions);
    add("expired_hold", counts.expired_holds);
  }
  void on_aggregate_outputs(size_t contributions, size_t aggregates) override {
    contributions_.Increment(static_cast<double>(contributions));
    aggregate_changes_.Increment(static_cast<double>(aggregates));
  }
  void on_aggregate_latency(uint32_t hops, double seconds) override {
    levels_[std::min<size_t>(hops, 4) - 1]->Observe(seconds);
  }
  void on_active_aggregates(int32_t partition, size_t n) override {
    active_aggregates_.Add({{"partition", std::to_string(partition)}}).Set(static_cast<double>(n));
  }
  void on_aggregate_check(const std::string& mismatch) override {
    checks_.Increment();
    if (mismatch.empty())
      return;
    mismatches_.Increment();
    spdlog::error("event=aggregate_recompute_mismatch {}", mismatch);
  }

private:
  prometheus::Counter& consumed_;
  prometheus::Counter& bytes_;
  prometheus::Counter& batches_;
  prometheus::Counter& applied_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Counter& duplicates_;
  prometheus::Counter& out_of_order_;
  prometheus::Counter& unchanged_;
  prometheus::Family<prometheus::Counter>& anomalies_by_kind_;
  prometheus::Family<prometheus::Counter>& alert_transitions_;
  prometheus::Counter& scaled_error_;
  prometheus::Counter& scored_samples_;
  prometheus::Family<prometheus::Counter>& quality_flags_;
  prometheus::Counter& stale_samples_;
  prometheus::Counter& sequence_restarts_;
  prometheus::Histogram& commit_latency_;
  prometheus::Family<prometheus::Histogram>& phases_;
  prometheus::Histogram& apply_phase_;
  prometheus::Histogram& publish_phase_;
  prometheus::Counter& commit_failures_;
  prometheus::Counter& committed_twins_;
  prometheus::Counter& history_points_;
  prometheus::Family<prometheus::Gauge>& active_;
  prometheus::Counter& passivated_;
  prometheus::Counter& deltas_applied_;
  prometheus::Counter& contributions_;
  prometheus::Counter& aggregate_changes_;
  prometheus::Family<prometheus::Counter>& anomalies_;
  prometheus::Family<prometheus::Histogram>& propagation_;
  std::vector<prometheus::Histogram*> levels_;
  prometheus::Family<prometheus::Gauge>& active_aggregates_;
  prometheus::Counter& checks_;
  prometheus::Counter& mismatches_;
};

class scrape_collectable final : public prometheus::Collectable {
public:
  explicit scrape_collectable(std::vector<scrape_gauge> gauges) : gauges_(std::move(gauges)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    for (const auto& g : gauges_) {
      prometheus::MetricFamily fam;
      fam.name = g.name;
      fam.help = g.help;
      fam.type = g.counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge;
      for (const auto& s : g.sample()) {
        prometheus::ClientMetric m;
        for (const auto& [k, v] : s.labels)
          m.label.push_back({k, v});
        if (g.counter)
          m.counter.value = s.value;
        else
          m.gauge.value = s.value;
        fam.metric.push_back(std::move(m));
      }
      out.push_back(std::move(fam));
    }
    return out;
  }

private:
  std::vector<scrape_gauge> gauges_;
};

}  // namespace

grpc_probe::grpc_probe(prometheus::Registry& r)
    : requests_(BuildCounter()
                    .Name("fleettwin_grpc_requests_total")
                    .Help("gRPC calls by method and status code")
                    .Register(r)),
      latency_(BuildHistogram()
                   .Name("fleettwin_grpc_request_duration_seconds")
                   .Help("gRPC call latency by method (server side)")
                   .Register(r)),
      watchers_(BuildGauge()
                    .Name("fleettwin_watch_streams")
                    .Help("Open WatchTwins streams")
                    .Register(r)
                    .Add({})),
      aggregate_watchers_(BuildGauge()
                              .Name("fleettwin_aggregate_watch_streams")
                              .Help("Open WatchAggregates streams")
                              .Register(r)
                              .Add({})),
      alert_watchers_(BuildGauge()
                          .Name("fleettwin_alert_watch_streams")
                          .Help("Open WatchAlerts streams")
                          .Register(r)
                          .Add({})),
      watch_overflows_(BuildCounter()
                           .Name("fleettwin_watch_overflows_total")
                           .Help("Watch streams ended with RESOURCE_EXHAUSTED because their client "
                                 "fell more than the queue limit behind, by stream kind")
                           .Register(r)),
      throttled_(BuildCounter()
                     .Name("fleettwin_grpc_throttled_total")
                     .Help("Calls refused RESOURCE_EXHAUSTED by a limit, by limit (rate: a "
                           "principal's requests per second; watch_streams: a principal's open "
                           "watch streams; bulk_calls: the node's bulk calls in progress)")
                     .Register(r)),
      bulk_outcomes_(BuildCounter()
                         .Name("fleettwin_bulk_desired_twins_total")
                         .Help("Twins of BatchUpdateDesired and BulkUpdateDesired calls by outcome "
                               "(changed, unchanged, conflict, not_found, failed), counted by the "
                               "node the call came to; dry runs apart")
                         .Register(r)) {
  for (const char* stream : {"twins", "aggregates", "alerts"})
    overflow_counters_[stream] = &watch_overflows_.Add({{"stream", stream}});
  for (const char* limit : {"rate", "watch_streams", "bulk_calls"})
    throttled_counters_[limit] = &throttled_.Add({{"limit", limit}});
  for (int dry = 0; dry < 2; ++dry)
    for (size_t k = 0; k < bulk_outcome_names.size(); ++k)
      bulk_counters_[dry][k] = &bulk_outcomes_.Add(
          {{"outcome", bulk_outcome_names[k]}, {"dry_run", dry ? "true" : "false"}});
}

void grpc_probe::on_bulk_outcomes(bool dry_run, const std::array<int64_t, 5>& counts) {
  // Created in the constructor, never added to: no lock needed.
  for (size_t k = 0; k < counts.size(); ++k)
    if (counts[k] > 0)
      bulk_counters_[dry_run ? 1 : 0][k]->Increment(static_cast<double>(counts[k]));
}

void grpc_probe::on_request(const std::string& method, const char* code, double seconds) {
  prometheus::Counter* counter;
  prometheus::Histogram* histogram;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    auto& c = counters_[{method, code}];
    if (!c)
      c = &requests_.Add({{"method", method}, {"code", code}});
    auto& h = histograms_[method];
    if (!h)
      h = &latency_.Add({{"method", method}}, latency_buckets());
    counter = c;
    histogram = h;
  }
  counter->Increment();
  histogram->Observe(seconds);
}

method_probe::method_probe(prometheus::Family<prometheus::Counter>& requests,
                           prometheus::Histogram& latency, std::string method)
    : requests_(requests), latency_(latency), method_(std::move(method)) {}

void method_probe::on_request(int code, const char* code_name, double seconds) {
  latency_.Observe(seconds);
  if (code < 0 || code >= static_cast<int>(by_code_.size()))
    code = 2;  // UNKNOWN
  auto* counter = by_code_[static_cast<size_t>(code)].load(std::memory_order_acquire);
  if (!counter) {
    std::lock_guard<std::mutex> guard{mutex_};
    counter = by_code_[static_cast<size_t>(code)].load();
    if (!counter) {
      counter = &requests_.Add({{"method", method_}, {"code", code_name}});
      by_code_[static_cast<size_t>(code)].store(counter, std::memory_order_release);
    }
  }
  counter->Increment();
}

method_probe& grpc_probe::method(const std::string& name) {
  std::lock_guard<std::mutex> guard{mutex_};
  auto& m = methods_[name];
  if (!m) {
    auto& h = histograms_[name];
    if (!h)
      h = &latency_.Add({{"method", name}}, latency_buckets());
    m = std::make_unique<method_probe>(requests_, *h, name);
  }
  return *m;
}

void grpc_probe::on_watchers(size_t n) {
  watchers_.Set(static_cast<double>(n));
}

void grpc_probe::on_aggregate_watchers(size_t n) {
  aggregate_watchers_.Set(static_cast<double>(n));
}

void grpc_probe::on_alert_watchers(size_t n) {
  alert_watchers_.Set(static_cast<double>(n));
}

void grpc_probe::on_watch_overflow(const std::string& stream) {
  // Created in the constructor, never added to: no lock needed.
  if (auto it = overflow_counters_.find(stream); it != overflow_counters_.end())
    it->second->Increment();
}

void grpc_probe::on_throttled(const std::string& limit) {
  // Created in the constructor, never added to: no lock needed.
  if (auto it = throttled_counters_.find(limit); it != throttled_counters_.end())
    it->second->Increment();
}

restore_probe::restore_probe(prometheus::Registry& r)
    : restores_(BuildCounter()
                    .Name("fleettwin_restores_total")
                    .Help("Partitions restored from the changelog before serving them")
                    .Register(r)
                    .Add({})),
      records_(BuildCounter()
                   .Name("fleettwin_restore_records_total")
                   .Help("Changelog records read by restores (standbys not included)")
                   .Register(r)
                   .Add({})),
      duration_(BuildHistogram()
                    .Name("fleettwin_restore_duration_seconds")
                    .Help("Time from assignment to a restored, serving partition")
                    .Register(r)
                    .Add({}, prometheus::Histogram::BucketBoundaries{
                                 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300})) {}

void restore_probe::on_restored(uint64_t records, double seconds) {
  restores_.Increment();
  records_.Increment(static_cast<double>(records));
  duration_.Observe(seconds);
}

reliability_probe::reliability_probe(prometheus::Registry& r)
    : resets_(BuildCounter()
                  .Name("fleettwin_input_resets_total")
                  .Help("Partitions whose stored input position lay beyond a new or reset log "
                        "(consumed again from the log's start), by reason")
                  .Register(r)),
      skipped_(BuildCounter()
                   .Name("fleettwin_records_skipped_total")
                   .Help("Telemetry records never read (deleted by retention first), by reason")
                   .Register(r)),
      gaps_(BuildCounter()
                .Name("fleettwin_offset_gaps_total")
                .Help("Offsets the telemetry consumer jumped over, by verdict of an independent "
                      "read_committed reader: empty (transaction markers, aborted records), "
                      "skipped or unknown (both read again)")
                .Register(r)),
      gaps_empty_(gaps_.Add({{"verdict", "empty"}})),
      revivals_(BuildCounter()
                    .Name("fleettwin_partition_revivals_total")
                    .Help("Partition actors replaced over their committed state after an aborted "
                          "transaction or failed output")
                    .Register(r)
                    .Add({})),
      refetches_(BuildCounter()
                     .Name("fleettwin_input_refetches_total")
                     .Help("Input partitions fetched anew because their log held records they "
                           "were not given for 3 s (event=input_stalled)")
                     .Register(r)
                     .Add({})) {
  // Present (at 0) before the first event, so that rate() and alerts work.
  for (auto reason : {"log_truncated", "embedded_kafka_restarted", "kafka_cluster_changed"})
    resets_.Add({{"reason", reason}});
  skipped_.Add({{"reason", "retention"}});
  for (auto verdict : {"skipped", "unknown"})
    gaps_.Add({{"verdict", verdict}});
}

void reliability_probe::on_input_reset(std::string_view reason, uint64_t partitions) {
  resets_.Add({{"reason", std::string{reason}}}).Increment(static_cast<double>(partitions));
}

void reliability_probe::on_records_skipped(std::string_view reason, int64_t n) {
  skipped_.Add({{"reason", std::string{reason}}}).Increment(static_cast<double>(n));
}

void reliability_probe::on_offset_gap(std::string_view verdict) {
  if (verdict == "empty")
    gaps_empty_.Increment();  // at the head of a transactional topic: every transaction
  else
    gaps_.Add({{"verdict", std::string{verdict}}}).Increment();
}

void reliability_probe::on_input_refetch() {
  refetches_.Increment();
}

void reliability_probe::on_revival() {
  revivals_.Increment();
}

node_metrics::node_metrics(const std::string& address, const https_files& tls)
    : registry_(std::make_shared<prometheus::Registry>()),
      exposer_(tls.cert_file.empty() ? std::make_unique<prometheus::Exposer>(address) : nullptr),
      https_exposer_(tls.cert_file.empty() ? nullptr
                                           : std::make_unique<https_exposer>(address, tls)),
      ingest_(std::make_shared<prometheus_ingest_probe>(*registry_)),
      grpc_(std::make_unique<grpc_probe>(*registry_)),
      restore_(std::make_unique<restore_probe>(*registry_)),
      reliability_(std::make_unique<reliability_probe>(*registry_)) {
  auth_refusals_ = &BuildCounter()
                        .Name("fleettwin_auth_refusals_total")
                        .Help(
                            "gRPC calls refused by token authentication, by reason (missing, "
                            "invalid, expired token; forbidden: a role is missing)")
                        .Register(*registry_);
  if (exposer_)
    exposer_->RegisterCollectable(registry_);
  else
    https_exposer_->add(registry_);
}

node_metrics::~node_metrics() = default;

void node_metrics::add_scrape_gauges(std::vector<scrape_gauge> gauges) {
  auto c = std::make_shared<scrape_collectable>(std::move(gauges));
  if (exposer_)
    exposer_->RegisterCollectable(c);
  else
    https_exposer_->add(c);
  collectables_.push_back(std::move(c));
}

uint16_t node_metrics::port() const {
  if (https_exposer_)
    return https_exposer_->port();
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace fleettwin::metrics
