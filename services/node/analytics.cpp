// The node's analytics: asset models, the alert feed behind WatchAlerts,
// and the gauge of open alerts.

#include <chrono>
#include <mutex>

#include <spdlog/spdlog.h>

#include "services/node/model_config.hpp"
#include "services/node/node.hpp"

namespace fleettwin::node {

namespace {

/// The open alerts are counted at most this often (a count reads every
/// stored twin of the served partitions).
constexpr auto alert_count_interval = std::chrono::seconds{15};

}  // namespace

bool node::load_models(runtime::asset_config& acfg, std::string& error) {
  // Models set through the API join these (see model_catalog).
  auto set = std::make_shared<core::model_set>();
  if (!cfg_.models_file.empty()) {
    auto models = load_model_config(cfg_.models_file, error);
    if (!error.empty())
      return false;
    for (auto& m : models) {
      auto kind = m.kind;
      set->emplace(std::move(kind), std::move(m));
    }
    spdlog::info("event=asset_models_loaded file={} models={}", cfg_.models_file, set->size());
  }
  acfg.models = std::make_shared<runtime::models_holder>(std::move(set));
  return true;
}

bool node::start_alert_feed(std::string& error) {
  alert_hub_ = std::make_unique<grpc_api::alert_watch_hub>(
      [this] { return alert_feed_ && alert_feed_->ready(); },
      [m = metrics_.get()](size_t n) { m->grpc().on_alert_watchers(n); });
  kafka::topic_feed_options fo;
  fo.bootstrap = bootstrap_;
  fo.topic = topics_.alerts;
  fo.client_id = cfg_.node_id + "-alert-feed";
  fo.settings = kafka_settings_;
  alert_feed_ = kafka::topic_feed::start(
      fo,
      [hub = alert_hub_.get()](std::string_view k, std::string_view v) { hub->on_record(k, v); },
      error);
  return alert_feed_ != nullptr;
}

void node::register_alert_gauges() {
  // Counted from the committed twins of the partitions served here, so the
  // figure is exact after restarts and partition moves; a count reads every
  // stored twin, hence at most one per interval (scrapes in between reuse
  // it).
  struct counted {
    std::mutex mutex;
    std::chrono::steady_clock::time_point at;
    bool known = false;
    double warning = 0, critical = 0;
  };
  auto count = std::make_shared<counted>();
  metrics_->add_scrape_gauges({
      {"fleettwin_alerts_open",
       "Anomaly alerts open (raised, acknowledged or not) on the twins this node serves, by "
       "severity (counted from the store at most every 15 s)",
       [this, count] {
         std::lock_guard<std::mutex> lock{count->mutex};
         const auto now = std::chrono::steady_clock::now();
         if (!count->known || now - count->at >= alert_count_interval) {
           double warning = 0, critical = 0;
           std::string error;
           const auto partitions = local_partitions();
           if (!partitions.empty())
             store_->list_twins(
                 partitions, {},
                 [&](const core::twin& tw) {
                   for (const auto& [name, a] : tw.analysis)
                     if (a.alert.active)
                       (a.alert.severity == core::alert_severity::critical ? critical : warning) +=
                           1;
                   return false;  // counted, not kept
                 },
                 0, 0, error);
           if (error.empty()) {
             count->warning = warning;
             count->critical = critical;
             count->known = true;
             count->at = now;
           } else {
             spdlog::warn("event=alert_count_failed error=\"{}\"", error);
           }
         }
         std::vector<metrics::gauge_sample> out;
         if (count->known) {
           out.push_back({{{"severity", "warning"}}, count->warning});
           out.push_back({{{"severity", "critical"}}, count->critical});
         }
         return out;
       }},
  });
}

}  // namespace fleettwin::node
