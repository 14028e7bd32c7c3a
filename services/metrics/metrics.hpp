#pragma once

// Prometheus exposition of a node. Components get probes; nothing else
// touches prometheus-cpp (Redpanda-style).

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include "services/metrics/https_exposer.hpp"

#include "actors/runtime/ports.hpp"

namespace fleettwin::metrics {

/// One sample of a gauge computed at scrape time.
struct gauge_sample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// A gauge family whose samples come from a callback at scrape time.
struct scrape_gauge {
  std::string name;
  std::string help;
  std::function<std::vector<gauge_sample>()> sample;
  bool counter = false;
};

/// The series of one gRPC method, resolved once so that a call costs two
/// atomic increments and no lookups.
class method_probe {
public:
  method_probe(prometheus::Family<prometheus::Counter>& requests, prometheus::Histogram& latency,
               std::string method);
  /// `code` is a grpc::StatusCode value (0..16).
  void on_request(int code, const char* code_name, double seconds);

private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Histogram& latency_;
  std::string method_;
  std::mutex mutex_;
  std::array<std::atomic<prometheus::Counter*>, 17> by_code_{};
};

/// Measures gRPC calls: requests by method and status code, latency.
class grpc_probe {
public:
  explicit grpc_probe(prometheus::Registry& registry);
  void on_request(const std::string& method, const char* code, double seconds);
  /// The probe of one method; stable for the probe's lifetime.
  method_probe& method(const std::string& name);
  void on_watchers(size_t n);
  void on_aggregate_watchers(size_t n);
  void on_alert_watchers(size_t n);
  /// A watch stream (`stream`: twins, aggregates, alerts) was ended because
  /// its client fell too far behind.
  void on_watch_overflow(const std::string& stream);
  /// A call was refused by a per-principal limit ("rate", "watch_streams").
  void on_throttled(const std::string& limit);
  /// Twins of a batch or bulk desired update with an outcome, in the order of
  /// bulk_outcome_names.
  static constexpr std::array<const char*, 5> bulk_outcome_names{"changed", "unchanged", "conflict",
                                                                 "not_found", "failed"};
  void on_bulk_outcomes(bool dry_run, const std::array<int64_t, 5>& counts);

private:
  std::map<std::string, std::unique_ptr<method_probe>> methods_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Gauge& watchers_;
  prometheus::Gauge& aggregate_watchers_;
  prometheus::Gauge& alert_watchers_;
  prometheus::Family<prometheus::Counter>& watch_overflows_;
  std::map<std::string, prometheus::Counter*> overflow_counters_;
  prometheus::Family<prometheus::Counter>& throttled_;
  std::map<std::string, prometheus::Counter*> throttled_counters_;
  prometheus::Family<prometheus::Counter>& bulk_outcomes_;
  std::array<std::array<prometheus::Counter*, 5>, 2> bulk_counters_{};
  std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> counters_;
  std::map<std::string, prometheus::Histogram*> histograms_;
};

/// Measures restores of partitions from the changelog.
class restore_probe {
public:
  explicit restore_probe(prometheus::Registry& registry);
  void on_restored(uint64_t records, double seconds);

private:
  prometheus::Counter& restores_;
  prometheus::Counter& records_;
  prometheus::Histogram& duration_;
};

/// Measures what goes wrong around faults, so that nothing is ever lost or
/// replayed silently: stored positions the log disagreed with, records never
/// read, partitions revived, producers replaced.
class reliability_probe {
public:
  explicit reliability_probe(prometheus::Registry& registry);
  /// A stored input position lay beyond a new or reset log (`reason`:
  /// log_truncated, embedded_kafka_restarted, kafka_cluster_changed).
  void on_input_reset(std::string_view reason, uint64_t partitions = 1);
  /// `n` records were never read (`reason`: retention).
  void on_records_skipped(std::string_view reason, int64_t n);
  /// A partition's actor was replaced over its committed state.
  void on_revival();
  /// The consumer jumped over offsets (`verdict`: empty, skipped, unknown).
  void on_offset_gap(std::string_view verdict);
  /// An input partition was fetched anew: its log held records it was not given.
  void on_input_refetch();

private:
  prometheus::Family<prometheus::Counter>& resets_;
  prometheus::Family<prometheus::Counter>& skipped_;
  prometheus::Family<prometheus::Counter>& gaps_;
  prometheus::Counter& gaps_empty_;
  prometheus::Counter& revivals_;
  prometheus::Counter& refetches_;
};

/// The node's registry and its exposer: HTTP, or HTTPS when `tls` names a certificate.
class node_metrics {
public:
  /// Binds `address` ("host:port"); throws std::runtime_error when it cannot.
  explicit node_metrics(const std::string& address, const https_files& tls = {});
  ~node_metrics();

  prometheus::Registry& registry() {
    return *registry_;
  }

  std::shared_ptr<runtime::ingest_probe> ingest() const {
    return ingest_;
  }

  grpc_probe& grpc() {
    return *grpc_;
  }

  /// A call refused by token authentication ("missing", "invalid", "expired",
  /// "forbidden"): fleettwin_auth_refusals_total{reason}.
  void auth_refused(const char* reason) {
    auth_refusals_->Add({{"reason", reason}}).Increment();
  }

  restore_probe& restore() {
    return *restore_;
  }

  reliability_probe& reliability() {
    return *reliability_;
  }

  /// Adds gauges evaluated at every scrape (lag, store figures).
  void add_scrape_gauges(std::vector<scrape_gauge> gauges);

  /// The port actually bound (useful with port 0).
  uint16_t port() const;

private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;  // plaintext
  std::unique_ptr<https_exposer> https_exposer_;  // or TLS
  std::shared_ptr<runtime::ingest_probe> ingest_;
  std::unique_ptr<grpc_probe> grpc_;
  std::unique_ptr<restore_probe> restore_;
  std::unique_ptr<reliability_probe> reliability_;
  prometheus::Family<prometheus::Counter>* auth_refusals_ = nullptr;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
};

}  // namespace fleettwin::metrics
