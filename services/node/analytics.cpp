// The node's analytics: asset models, the alert feed behind WatchAlerts,
// and the gauges of open alerts and of twins online and stale.

#include <chrono>
#include <condition_variable>
#include <mutex>

#include <spdlog/spdlog.h>

#include "services/node/model_config.hpp"
#include "services/node/node.hpp"

namespace fleettwin::node {

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
  fo.settings = consumer_settings_;
  alert_feed_ = kafka::topic_feed::start(
      fo,
      [hub = alert_hub_.get()](std::string_view k, std::string_view v) { hub->on_record(k, v); },
      error);
  return alert_feed_ != nullptr;
}

struct node::alert_count {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  bool known = false;
  double warning = 0, critical = 0;
  double online = 0, stale = 0;
};

void node::register_alert_gauges() {
  if (cfg_.alert_count_interval_ms <= 0)
    return;
  // Counted from the committed twins of the partitions served here, so the
  // figure is exact after restarts and partition moves. A count reads every
  // stored twin, so it runs on a thread of its own, and scrapes show the
  // last one.
  alert_count_ = std::make_shared<alert_count>();
  auto count = alert_count_;
  // Two values of the last count under one label (nothing before the first).
  auto pair = [count](const char* label, const char* a, double alert_count::*first, const char* b,
                      double alert_count::*second) {
    return [=] {
      std::lock_guard<std::mutex> lock{count->mutex};
      std::vector<metrics::gauge_sample> out;
      if (count->known) {
        out.push_back({{{label, a}}, (*count).*first});
        out.push_back({{{label, b}}, (*count).*second});
      }
      return out;
    };
  };
  metrics_->add_scrape_gauges({
      {"fleettwin_alerts_open",
       "Anomaly alerts open (raised, acknowledged or not) on the twins this node serves, by "
       "severity, as of the last count (--alert-count-interval-ms)",
       pair("severity", "warning", &alert_count::warning, "critical", &alert_count::critical)},
      {"fleettwin_twins_connectivity",
       "Twins this node serves by connectivity (online: a record within --stale-after-ms; "
       "stale), as of the last count (--alert-count-interval-ms)",
       pair("state", "online", &alert_count::online, "stale", &alert_count::stale)},
  });
  const auto interval = std::chrono::milliseconds{cfg_.alert_count_interval_ms};
  alert_counter_ = std::thread{[this, count, interval] {
    for (;;) {
      double warning = 0, critical = 0, online = 0, stale = 0;
      std::string error;
      const auto partitions = local_partitions();
      const auto now = runtime::asset_config::system_clock_ms();
      if (!partitions.empty())
        store_->list_twins(
            partitions, {},
            [&](const core::twin& tw) {
              for (const auto& [name, a] : tw.analysis)
                if (a.alert.active)
                  (a.alert.severity == core::alert_severity::critical ? critical : warning) += 1;
              (core::connectivity_of(tw, now, cfg_.stale_after_ms) == core::connectivity::online
                   ? online
                   : stale) += 1;
              return false;  // counted, not kept
            },
            0, 0, error);
      std::unique_lock<std::mutex> lock{count->mutex};
      if (count->stop)
        return;
      if (error.empty()) {
        count->warning = warning;
        count->critical = critical;
        count->online = online;
        count->stale = stale;
        count->known = true;
      } else {
        spdlog::warn("event=alert_count_failed error=\"{}\"", error);
      }
      if (count->wake.wait_for(lock, interval, [&] { return count->stop; }))
        return;
    }
  }};
}

void node::stop_alert_count() {
  if (!alert_count_)
    return;
  {
    std::lock_guard<std::mutex> lock{alert_count_->mutex};
    alert_count_->stop = true;
  }
  alert_count_->wake.notify_all();
  if (alert_counter_.joinable())
    alert_counter_.join();
}

}  // namespace fleettwin::node
