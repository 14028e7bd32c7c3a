// What-if scenarios on a node: the registry (services/scenario), its gRPC
// services (ScenarioService for clients, ScenarioPartService for the other
// nodes of a cluster) and its gauges.

#include "services/node/node.hpp"

namespace fleettwin::node {

void node::start_scenarios() {
  scenario::world_sources src;
  src.store = store_.get();
  // The cluster's partitions: a fork spans every node's twins (the other nodes
  // hold parts of it, read through call forwarding).
  src.plan = [this](std::vector<int32_t>& local, std::string& why) {
    return list_plan(local, why);
  };
  src.parts = std::make_shared<grpc_api::forwarded_part_client>(*this);
  src.local_partitions = [this] { return local_partitions(); };
  if (auto kinds = asset_cfg_->kinds)
    src.kinds = [kinds] { return kinds->get(); };
  if (auto models = asset_cfg_->models)
    src.models = [models] { return models->get(); };
  src.stale_after_ms = cfg_.stale_after_ms;
  scenario::registry_limits limits;
  limits.max_scenarios = cfg_.scenario_max;
  limits.max_twins = cfg_.scenario_max_twins;
  limits.max_running = cfg_.scenario_max_running;
  scenarios_ = std::make_shared<scenario::registry>(std::move(src), limits);
  // The scenarios kept from before a restart (their inputs as clients sent them).
  if (const auto restored = scenarios_->restore(
          [](const std::string& raw, std::string& error) -> std::optional<core::scenario_input> {
            fleettwin::v1::ScenarioInput p;
            if (!p.ParseFromString(raw)) {
              error = "not a ScenarioInput";
              return std::nullopt;
            }
            return grpc_api::input_from_proto(p, error);
          }))
    spdlog::info("{} scenario(s) kept from before the restart", restored);
  kafka::export_target to{bootstrap_, kafka_settings_, topics_.scenario_results, cfg_.node_id};
  scenario_service_ = std::make_unique<grpc_api::scenario_service>(
      *scenarios_, *this, *pool_, metrics_->grpc(), asset_cfg_->models,
      [to](const std::vector<kafka::export_record>& records, std::string& error) {
        return kafka::export_records(to, records, runtime::asset_config::system_clock_ms(),
                                     std::chrono::seconds{30}, error);
      },
      topics_.scenario_results);
  scenario_part_service_ = std::make_unique<grpc_api::scenario_part_service>(
      *scenarios_, *this, *pool_, metrics_->grpc());

  // The gauges read the registry while it lives (it goes when the node stops).
  std::weak_ptr<scenario::registry> weak = scenarios_;
  auto gauge = [weak](auto read) {
    return [weak, read] {
      std::vector<metrics::gauge_sample> out;
      if (auto s = weak.lock())
        out.push_back({{}, static_cast<double>(read(*s))});
      return out;
    };
  };
  metrics_->add_scrape_gauges({
      {"fleettwin_scenarios", "What-if scenarios this node holds",
       gauge([](const scenario::registry& s) { return s.size(); })},
      {"fleettwin_scenario_parts",
       "Parts of other nodes' scenarios this node holds (snapshots of its partitions that "
       "those scenarios fork)",
       gauge([](const scenario::registry& s) { return s.parts(); })},
      {"fleettwin_scenario_runs_in_progress", "Scenario runs in progress on this node",
       gauge([](const scenario::registry& s) { return s.running(); })},
      {"fleettwin_scenario_memory_bytes",
       "Bytes the scenarios hold in memory (inputs and results; their twins stay in a "
       "RocksDB snapshot, copy-on-write)",
       gauge([](const scenario::registry& s) { return s.memory_bytes(); })},
      {"fleettwin_scenario_oldest_snapshot_age_seconds",
       "Age of the oldest RocksDB snapshot a scenario or a part of one holds (0: none): a "
       "snapshot keeps the "
       "versions it sees from compaction, so disk grows with what changes while it lives",
       [weak] {
         std::vector<metrics::gauge_sample> out;
         if (auto s = weak.lock()) {
           const auto oldest = s->oldest_snapshot_ms();
           const auto now = runtime::asset_config::system_clock_ms();
           out.push_back({{}, oldest == 0 ? 0.0 : static_cast<double>(now - oldest) / 1000.0});
         }
         return out;
       }},
      {"fleettwin_scenario_speed_ratio",
       "Virtual time simulated per second of wall time by the last scenario run that "
       "finished (x real time)",
       gauge([](const scenario::registry& s) { return s.last_speed(); })},
      {"fleettwin_scenario_runs_total",
       "Scenario runs that ended, by outcome (done, failed, "
       "cancelled)",
       [weak] {
         std::vector<metrics::gauge_sample> out;
         auto s = weak.lock();
         if (!s)
           return out;
         const auto runs = s->runs();
         const char* names[] = {"done", "failed", "cancelled"};
         for (size_t i = 0; i < runs.size(); ++i)
           out.push_back({{{"outcome", names[i]}}, static_cast<double>(runs[i])});
         return out;
       },
       true},
  });
}

}  // namespace fleettwin::node
