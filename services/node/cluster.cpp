// The cluster around a node: its record in the members topic, routing of
// calls to the owners of other partitions, watch relays, standbys.

#include <spdlog/spdlog.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "actors/core/partitioning.hpp"
#include "services/node/node.hpp"

namespace fleettwin::node {

bool node::start_remoting(std::string& error) {
  // Calls forwarded by other nodes run through this node's own gRPC
  // services, in process.
  ::grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  forwarder_ = system_->spawn(
      cluster::forwarder, std::chrono::milliseconds{5'000},
      [this](const std::string& endpoint, cluster::peer_event e) { on_peer_event(endpoint, e); });
  gateway_ = system_->spawn(cluster::gateway, server_->InProcessChannel(args), cfg_.node_id, hub_,
                            gateway_control_, forwarder_);
  const auto port_wanted = static_cast<uint16_t>(cfg_.cluster_port);
  auto port =
      cfg_.cluster_tls()
          ? caf::openssl::publish(gateway_, port_wanted, cfg_.advertise_host.c_str(), true)
          : system_->middleman().publish(gateway_, port_wanted, cfg_.advertise_host.c_str(), true);
  if (!port) {
    error = "cannot listen for other nodes on " + cfg_.advertise_host + ":" +
            std::to_string(cfg_.cluster_port) + ": " + system_->render(port.error());
    return false;
  }
  cluster_port_ = *port;
  caf::anon_send(forwarder_, runtime::self_atom::value,
                 cfg_.advertise_host + ":" + std::to_string(cluster_port_),
                 caf::actor_cast<caf::actor>(gateway_));
  cluster::membership_options mo;
  mo.bootstrap = bootstrap_;
  mo.topic = topics_.members;
  mo.group_id = cfg_.group_id;
  mo.node_id = cfg_.node_id;
  mo.incarnation = incarnation_;
  mo.started_ms = started_ms_;
  mo.settings = kafka_settings_;
  mo.live_clients = [l = lease_.get()] { return l->live_clients(); };
  mo.on_change = [this] {
    update_standbys();
    caf::anon_send(forwarder_, runtime::endpoints_atom::value, peer_endpoints());
    refresh_watch_relays();
    forget_gone_peers();
  };
  membership_ = cluster::membership::create(
      mo, [this] { return member_record(); }, error);
  return membership_ != nullptr;
}

fleettwin::v1::Member node::member_record() {
  fleettwin::v1::Member m;
  m.set_node_id(cfg_.node_id);
  m.set_grpc_endpoint(cfg_.advertise_host + ":" + std::to_string(grpc_port_));
  m.set_cluster_endpoint(cfg_.advertise_host + ":" + std::to_string(cluster_port_));
  m.set_started_ms(started_ms_);
  m.set_version(FLEETTWIN_VERSION);
  m.set_guarantee(cfg_.guarantee);
  m.set_incarnation(incarnation_);
  std::map<int32_t, kafka::partition_progress> progress;
  for (const auto& p : consumer_->progress())
    progress[p.partition] = p;
  std::map<int32_t, kafka::restore_progress> reading;
  if (restorer_)
    for (const auto& r : restorer_->progress())
      reading[r.partition] = r;
  auto add = [&](int32_t p, fleettwin::v1::PartitionRole role) {
    auto* ps = m.add_partitions();
    ps->set_partition(p);
    ps->set_role(role);
    ps->set_stored_twins(store_->stored_twins(p));
    if (role == fleettwin::v1::PARTITION_ROLE_ACTIVE) {
      if (auto it = progress.find(p); it != progress.end()) {
        ps->set_lag(it->second.lag());
        ps->set_committed_offset(it->second.committed);
      }
    } else if (auto it = reading.find(p); it != reading.end()) {
      ps->set_lag(it->second.lag());
    }
  };
  // A node that cannot confirm its membership claims nothing: the latest
  // claim routes calls, and a paused node waking up must not win it back.
  const bool held = lease_->held();
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  for (const auto& [p, s] : partitions_)
    if (held)
      add(p, fleettwin::v1::PARTITION_ROLE_ACTIVE);
  for (const auto& [p, g] : restoring_)
    if (held)
      add(p, fleettwin::v1::PARTITION_ROLE_RESTORING);
  for (const auto& [p, r] : reading)
    if (r.standby && !partitions_.contains(p) && !restoring_.contains(p))
      add(p, fleettwin::v1::PARTITION_ROLE_STANDBY);
  return m;
}

std::vector<std::string> node::peer_endpoints() {
  std::vector<std::string> out;
  if (!membership_)
    return out;
  for (const auto& m : membership_->members())
    if (m.alive && m.record.node_id() != cfg_.node_id && !m.record.cluster_endpoint().empty())
      out.push_back(m.record.cluster_endpoint());
  return out;
}

void node::refresh_watch_relays() {
  auto endpoints = peer_endpoints();
  std::lock_guard<std::mutex> guard{relays_mutex_};
  for (const auto& [id, relay] : relays_)
    caf::anon_send(relay, runtime::endpoints_atom::value, endpoints);
}

void node::forget_gone_peers() {
  if (!membership_)
    return;
  for (const auto& m : membership_->members())
    if (!m.alive && m.record.node_id() != cfg_.node_id && !m.record.cluster_endpoint().empty())
      caf::anon_send(forwarder_, runtime::gone_atom::value, m.record.cluster_endpoint());
}

void node::watch_cluster(grpc_api::watch_stream* stream, const std::string& asset_id,
                         const std::string& filter) {
  if (!membership_)
    return;
  auto target = std::make_shared<cluster::watch_target>();
  target->stream = stream;
  auto relay = system_->spawn(cluster::watch_relay, target, asset_id, filter, forwarder_);
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> guard{relays_mutex_};
    id = next_relay_++;
    relays_.emplace(id, relay);
  }
  stream->on_done([this, target, relay, id] {
    {
      std::lock_guard<std::mutex> guard{target->mutex};
      target->stream = nullptr;
    }
    // The other nodes see the relay go down and drop their watchers.
    caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
    std::lock_guard<std::mutex> guard{relays_mutex_};
    relays_.erase(id);
  });
  caf::anon_send(relay, runtime::endpoints_atom::value, peer_endpoints());
}

void node::on_peer_event(const std::string& endpoint, cluster::peer_event e) {
  if (stopping_ || !membership_)
    return;
  std::string peer;
  bool alive = false;
  for (const auto& m : membership_->members())
    if (m.record.cluster_endpoint() == endpoint && m.record.node_id() != cfg_.node_id) {
      peer = m.record.node_id();
      alive = m.alive;
    }
  if (peer.empty())
    return;
  {
    std::lock_guard<std::mutex> guard{standbys_mutex_};
    if (e == cluster::peer_event::up)
      connected_peers_.insert(peer);
    else
      connected_peers_.erase(peer);
    if (e == cluster::peer_event::up) {
      if (lost_peers_.erase(peer) > 0)
        spdlog::info("event=peer_back node={} endpoint={}", peer, endpoint);
    } else if (e == cluster::peer_event::down && alive && restorer_ &&
               lost_peers_.emplace(peer, std::chrono::steady_clock::now()).second) {
      spdlog::info(
          "event=peer_lost node={} endpoint={} action=read_its_partitions_changelog "
          "reason=\"its connection dropped while the group still counts it (a dead process "
          "leaves the group only after the session timeout)\"",
          peer, endpoint);
    }
  }
  update_standbys();
}

void node::update_standbys() {
  std::lock_guard<std::mutex> standbys_guard{standbys_mutex_};
  if (!restorer_ || !membership_ || stopping_)
    return;
  auto count = consumer_->partition_count();
  if (count <= 0)
    return;
  // A lost peer that neither came back nor left the group within this time is
  // alive but unreachable from here: its partitions are not read any more.
  const auto lost_for = std::max<std::chrono::milliseconds>(
      std::chrono::seconds{10}, std::chrono::milliseconds{3 * cfg_.session_timeout_ms});
  const auto now = std::chrono::steady_clock::now();
  for (auto it = lost_peers_.begin(); it != lost_peers_.end();) {
    if (now - it->second < lost_for) {
      ++it;
      continue;
    }
    spdlog::info("event=peer_lost_expired node={} seconds={}", it->first,
                 std::chrono::duration_cast<std::chrono::seconds>(now - it->second).count());
    it = lost_peers_.erase(it);
  }
  std::vector<std::string> ring{cfg_.node_id};
  std::set<std::string> listed;
  for (const auto& m : membership_->members()) {
    listed.insert(m.record.node_id());
    if (m.alive && m.record.node_id() != cfg_.node_id)
      ring.push_back(m.record.node_id());
  }
  std::erase_if(connected_peers_, [&](const std::string& id) { return !listed.contains(id); });
  std::sort(ring.begin(), ring.end());
  const auto self = std::find(ring.begin(), ring.end(), cfg_.node_id) - ring.begin();
  const auto n = static_cast<int64_t>(ring.size());
  std::set<int32_t> wanted;
  std::set<int32_t> mine;
  {
    std::shared_lock<std::shared_mutex> lock{routes_mutex_};
    for (const auto& [p, s] : partitions_)
      mine.insert(p);
  }
  for (int32_t p = 0; p < count; ++p) {
    if (mine.contains(p))
      continue;
    auto owner = membership_->owner_of(p);
    if (!owner)
      continue;
    // The last claim of a partition is a lost peer's until its new owner
    // claims it: read it meanwhile (every survivor does; those the group does
    // not give it to stop once the new owner's claim is read).
    if (lost_peers_.contains(owner->node_id)) {
      wanted.insert(p);
      continue;
    }
    if (cfg_.standby_replicas <= 0 || n <= 1)
      continue;
    auto at = std::find(ring.begin(), ring.end(), owner->node_id) - ring.begin();
    if (at == n)
      continue;  // the owner is gone: its successor takes the partition over
    for (int k = 1; k <= cfg_.standby_replicas && k < n; ++k)
      if ((at + k) % n == self)
        wanted.insert(p);
  }
  std::vector<int32_t> follow;
  std::vector<int32_t> unfollow;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    for (auto p : wanted)
      if (!standbys_.contains(p) && !partitions_.contains(p) && !restoring_.contains(p))
        follow.push_back(p);
    for (auto p : standbys_)
      if (!wanted.contains(p))
        unfollow.push_back(p);
    // Commands are queued in order under the lock, so that a restore queued
    // by a new assignment is never followed by a stale stop.
    for (auto p : follow) {
      standbys_.insert(p);
      restorer_->follow(p);
    }
    for (auto p : unfollow) {
      standbys_.erase(p);
      restorer_->stop(p);
    }
  }
  if (!follow.empty() || !unfollow.empty()) {
    spdlog::info("event=standbys_changed follow={} unfollow={}", follow.size(), unfollow.size());
    membership_->publish_soon();
  }
}

std::optional<std::string> node::owner_endpoint(int32_t partition, std::string& why) {
  bool owned_here = false;
  {
    std::shared_lock<std::shared_mutex> lock{routes_mutex_};
    if (restoring_.contains(partition)) {
      why = "partition " + std::to_string(partition) +
            " is being restored from the changelog on this node; retry shortly";
      return std::nullopt;
    }
    owned_here = partitions_.contains(partition);
  }
  auto owner = membership_ ? membership_->owner_of(partition) : std::nullopt;
  if (!owner) {
    if (owned_here)
      why =
          "partition " + std::to_string(partition) + ": " + lease_->view().why + "; retry shortly";
    else
      why = "no node serves partition " + std::to_string(partition) +
            " right now (assignment or rebalance in progress); retry shortly";
    return std::nullopt;
  }
  if (owner->restoring) {
    why = "partition " + std::to_string(partition) + " is being restored on node " +
          owner->node_id + "; retry shortly";
    return std::nullopt;
  }
  if (!owner->alive) {
    why = "node " + owner->node_id + ", the last owner of partition " + std::to_string(partition) +
          ", left the group; the partition moves to another node; retry shortly";
    return std::nullopt;
  }
  return owner->cluster_endpoint;
}

std::optional<std::string> node::remote_owner(const std::string& asset_id, std::string& why) {
  auto count = routable_partitions(why);
  if (!count)
    return std::nullopt;
  return owner_endpoint(core::kafka_partition(asset_id, *count), why);
}

std::optional<std::map<std::string, std::vector<int32_t>>> node::list_plan(
    std::vector<int32_t>& local, std::string& why) {
  auto count = routable_partitions(why);
  if (!count)
    return std::nullopt;
  auto mine = local_partitions();
  std::map<std::string, std::vector<int32_t>> remote;
  local.clear();
  for (int32_t p = 0; p < *count; ++p) {
    if (std::find(mine.begin(), mine.end(), p) != mine.end()) {
      local.push_back(p);
      continue;
    }
    auto endpoint = owner_endpoint(p, why);
    if (!endpoint)
      return std::nullopt;
    remote[*endpoint].push_back(p);
  }
  return remote;
}

void node::forward(const std::string& endpoint, const std::string& method, std::string request,
                   std::string metadata, runtime::forward_completion done) {
  caf::anon_send(forwarder_, runtime::forward_atom::value, endpoint, method, std::move(request),
                 std::move(metadata), std::move(done));
}

}  // namespace fleettwin::node
