// The node's analytics: asset models, and the alert feed behind WatchAlerts.

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
  fo.settings = kafka_settings_;
  alert_feed_ = kafka::topic_feed::start(
      fo,
      [hub = alert_hub_.get()](std::string_view k, std::string_view v) { hub->on_record(k, v); },
      error);
  return alert_feed_ != nullptr;
}

}  // namespace fleettwin::node
