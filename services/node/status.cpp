// What a node reports: GetStatus, GetCluster, readiness and the gauges
// computed at scrape time.

#include <spdlog/spdlog.h>

#include "services/node/node.hpp"

namespace fleettwin::node {

namespace {

std::string join(const std::set<int32_t>& ps) {
  std::string out;
  for (auto p : ps)
    out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

}  // namespace

std::string node::not_ready_reason() {
  if (stopping_.load())
    return "the node is shutting down";
  if (producer_->failed())
    return "the Kafka producer stopped for good (another process uses node id " + cfg_.node_id +
           ")";
  if (producer_->replacing())
    return "the Kafka producer is being replaced after the broker fenced it (an outage longer "
           "than the transaction timeout); partitions resume once it is back";
  std::set<int32_t> active;
  std::set<int32_t> restoring;
  {
    std::shared_lock<std::shared_mutex> lock{routes_mutex_};
    if (!store_failure_.empty())
      return "the local store failed: " + store_failure_;
    for (const auto& [p, s] : partitions_)
      active.insert(p);
    for (const auto& [p, g] : restoring_)
      restoring.insert(p);
  }
  if (!restoring.empty())
    return "restoring partitions " + join(restoring) + " from the changelog";
  std::set<int32_t> assigned;
  if (lease_->enabled()) {
    auto v = lease_->view();
    if (!v.held)
      return v.why;
    if (!v.assignment_known)
      return "the consumer group is rebalancing";
    assigned = v.assignment;
  } else {
    if (consumer_->member_id().empty() || !consumer_->assigned_once())
      return "not joined to the consumer group yet";
    for (const auto& p : consumer_->progress())
      assigned.insert(p.partition);
    // The embedded Kafka has this node only: it gets every partition.
    if (embedded_ && static_cast<int32_t>(assigned.size()) < consumer_->partition_count())
      return "waiting for the consumer group to assign every partition";
  }
  std::set<int32_t> missing;
  for (auto p : assigned)
    if (!active.contains(p))
      missing.insert(p);
  if (!missing.empty())
    return "partitions " + join(missing) + " are assigned but not served yet";
  return {};
}

void node::node_status(std::function<void(fleettwin::v1::NodeStatus)> done) {
  // Answered from figures the partition actors publish: never waits for an
  // actor busy with a backlog.
  fleettwin::v1::NodeStatus st;
  st.set_node_id(cfg_.node_id);
  st.set_version(FLEETTWIN_VERSION);
  st.set_started_ms(started_ms_);
  st.set_kafka_bootstrap(bootstrap_);
  st.set_kafka_embedded(embedded_ != nullptr);
  st.set_telemetry_topic(topics_.telemetry);
  st.set_data_dir(cfg_.data_dir);
  st.set_stored_twins(store_->stored_twins());
  auto reason = not_ready_reason();
  st.set_ready(reason.empty());
  st.set_not_ready_reason(reason);
  std::map<int32_t, kafka::partition_progress> progress;
  for (const auto& p : consumer_->progress())
    progress[p.partition] = p;
  std::map<int32_t, std::shared_ptr<runtime::partition_gauges>> gauges;
  {
    std::shared_lock<std::shared_mutex> lock{routes_mutex_};
    for (const auto& [p, s] : partitions_)
      gauges.emplace(p, s.gauges);
  }
  uint64_t active = 0;
  uint64_t applied = 0;
  for (const auto& [p, g] : gauges) {
    auto* ps = st.add_partitions();
    ps->set_partition(p);
    ps->set_committed_offset(g->next_offset.load());
    ps->set_active_twins(g->active_twins.load());
    if (auto it = progress.find(p); it != progress.end()) {
      ps->set_high_watermark(it->second.high_watermark);
      ps->set_lag(it->second.lag());
    } else {
      ps->set_high_watermark(-1);
      ps->set_lag(-1);
    }
    active += g->active_twins.load();
    applied += g->records_applied.load();
  }
  st.set_active_twins(active);
  st.set_records_applied(applied);
  done(std::move(st));
}

void node::cluster_status(std::function<void(fleettwin::v1::ClusterStatus)> done) {
  fleettwin::v1::ClusterStatus cs;
  cs.set_answered_by(cfg_.node_id);
  cs.set_group_id(cfg_.group_id);
  cs.set_guarantee(cfg_.guarantee);
  auto count = consumer_->partition_count();
  cs.set_partitions(count);
  auto now = wall_ms();
  std::set<int32_t> served;
  auto add = [&](fleettwin::v1::Member record, bool alive) {
    auto* n = cs.add_nodes();
    n->set_alive(alive);
    n->set_age_ms(std::max<int64_t>(0, now - record.updated_ms()));
    *n->mutable_member() = std::move(record);
  };
  // This node from its live state; the others from their last records.
  auto self = member_record();
  self.set_updated_ms(now);
  for (const auto& p : self.partitions())
    if (p.role() == fleettwin::v1::PARTITION_ROLE_ACTIVE)
      served.insert(p.partition());
  add(std::move(self), true);
  if (membership_)
    for (auto& m : membership_->members()) {
      if (m.record.node_id() == cfg_.node_id)
        continue;
      add(m.record, m.alive);
    }
  for (int32_t p = 0; p < count; ++p) {
    std::string why;
    if (!served.contains(p) && !owner_endpoint(p, why))
      cs.add_unserved_partitions(p);
  }
  std::sort(
      cs.mutable_nodes()->begin(), cs.mutable_nodes()->end(),
      [](const auto& a, const auto& b) { return a.member().node_id() < b.member().node_id(); });
  done(std::move(cs));
}

void node::register_scrape_gauges() {
  auto* consumer = consumer_.get();
  auto* store = store_.get();
  using metrics::gauge_sample;
  auto per_partition = [consumer](auto field) {
    return [consumer, field] {
      std::vector<gauge_sample> out;
      for (const auto& p : consumer->progress())
        if (auto v = field(p); v >= 0)  // unknown (-1) is left out, never shown as 0
          out.push_back({{{"partition", std::to_string(p.partition)}}, v});
      return out;
    };
  };
  auto store_value = [store](auto field) {
    return [store, field] { return std::vector<gauge_sample>{{{}, field(store->stats())}}; };
  };
  auto one = [](double v) { return std::vector<gauge_sample>{{{}, v}}; };
  if (restorer_) {
    // Under standbys_mutex_, which shutdown holds to reset the restorer: a
    // scrape during a stop never reads it after it is gone.
    auto restoring = [this, one](bool standby) {
      std::lock_guard<std::mutex> guard{standbys_mutex_};
      double n = 0;
      if (restorer_)
        for (const auto& p : restorer_->progress())
          n += p.standby == standby ? 1 : 0;
      return one(n);
    };
    metrics_->add_scrape_gauges({
        {"fleettwin_partitions_restoring", "Assigned partitions being restored from the changelog",
         [restoring] { return restoring(false); }},
        {"fleettwin_standby_partitions", "Partitions of other nodes kept warm here",
         [restoring] { return restoring(true); }},
        {"fleettwin_cluster_peers_connected",
         "Other nodes this node holds a connection to (a dropped one is noticed at once)",
         [this, one] {
           std::lock_guard<std::mutex> guard{standbys_mutex_};
           return one(double(connected_peers_.size()));
         }},
        {"fleettwin_cluster_peers_lost",
         "Nodes whose connection dropped while the group still counted them: their partitions "
         "are read from the changelog ahead of the group's move",
         [this, one] {
           std::lock_guard<std::mutex> guard{standbys_mutex_};
           return one(double(lost_peers_.size()));
         }},
        {"fleettwin_changelog_lag_records",
         "Changelog records not yet read by a restore or standby",
         [this] {
           std::vector<gauge_sample> out;
           std::lock_guard<std::mutex> guard{standbys_mutex_};
           if (restorer_)
             for (const auto& p : restorer_->progress())
               out.push_back({{{"partition", std::to_string(p.partition)},
                               {"mode", p.standby ? "standby" : "restore"}},
                              double(p.lag())});
           return out;
         }},
    });
  }
  auto* producer = producer_.get();
  if (producer->transactional())
    metrics_->add_scrape_gauges({
        {"fleettwin_transactions_committed_total", "Kafka transactions committed",
         [producer, one] { return one(double(producer->commits())); }, true},
        {"fleettwin_transaction_commit_seconds_total",
         "Time spent committing Kafka transactions (flushing their records, adding the input "
         "offsets, ending them), over the committed ones",
         [producer, one] { return one(double(producer->commit_micros()) / 1e6); }, true},
        {"fleettwin_transactions_aborted_total", "Kafka transactions aborted",
         [producer, one] { return one(double(producer->aborts())); }, true},
        {"fleettwin_producer_replacements_total",
         "Transactional producers replaced after the broker fenced them or they failed fatally",
         [producer, one] { return one(double(producer->replacements())); }, true},
        {"fleettwin_offset_regressions_total",
         "Input offsets refused because they were below an offset committed before (a bug "
         "if ever above 0)",
         [producer, one] { return one(double(producer->offset_regressions())); }, true},
    });
  auto* lease = lease_.get();
  auto* ready = readiness_.get();
  metrics_->add_scrape_gauges({
      {"fleettwin_ready", "1 while the node serves every partition the group gave it",
       [ready, one] { return one(ready && ready->ready() ? 1 : 0); }},
      {"fleettwin_read_lease_held",
       "1 while the node's membership of the group is confirmed within the read lease (reads "
       "are answered only then)",
       [lease, one] { return one(lease->held() ? 1 : 0); }},
      {"fleettwin_consumer_lag_records",
       "Records in the partition not yet committed (absent while the log's end is unknown)",
       per_partition([](const kafka::partition_progress& p) { return double(p.lag()); })},
      {"fleettwin_consumer_committed_offset", "Next offset committed with the twin state",
       per_partition([](const kafka::partition_progress& p) { return double(p.committed); })},
      {"fleettwin_partitions_assigned", "Partitions of the telemetry topic served by this node",
       [consumer, one] { return one(double(consumer->progress().size())); }},
      {"fleettwin_topic_partitions",
       "Partitions of the telemetry topic (the consumer group spreads them over the nodes; 0 "
       "until known)",
       [consumer, one] { return one(double(std::max(0, consumer->partition_count()))); }},
      {"fleettwin_twins_stored", "Twins in the local store",
       store_value([](const storage::store_stats& s) { return double(s.stored_twins); })},
      {"fleettwin_aggregates_stored", "Aggregates in the local store",
       [store, one] { return one(double(store->stored_aggregates())); }},
      {"fleettwin_rocksdb_sst_bytes", "Size of RocksDB SST files",
       store_value([](const storage::store_stats& s) { return double(s.sst_bytes); })},
      {"fleettwin_rocksdb_memtable_bytes", "Size of RocksDB memtables",
       store_value([](const storage::store_stats& s) { return double(s.memtable_bytes); })},
      {"fleettwin_rocksdb_block_cache_bytes", "RocksDB block cache usage",
       store_value([](const storage::store_stats& s) { return double(s.block_cache_bytes); })},
      {"fleettwin_rocksdb_pending_compaction_bytes", "Bytes RocksDB estimates to compact",
       store_value(
           [](const storage::store_stats& s) { return double(s.pending_compaction_bytes); })},
      {"fleettwin_rocksdb_write_stopped", "1 while RocksDB stops writes",
       store_value([](const storage::store_stats& s) { return s.write_stopped ? 1.0 : 0.0; })},
      {"fleettwin_rocksdb_delayed_write_rate_bytes", "Write rate RocksDB throttles to (0 = none)",
       store_value([](const storage::store_stats& s) { return double(s.delayed_write_rate); })},
      {"fleettwin_rocksdb_write_stall_seconds_total", "Time writes were stalled by RocksDB",
       store_value([](const storage::store_stats& s) { return double(s.stall_micros) / 1e6; }),
       true},
  });
}

}  // namespace fleettwin::node
