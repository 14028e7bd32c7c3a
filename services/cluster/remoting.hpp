#pragma once

// Forwarding of gRPC calls between nodes over CAF remoting: a node that does
// not own a twin's partition hands the serialized call to its forwarder
// actor, which sends it to the owner's gateway actor; the gateway runs the
// call through the owner's own gRPC service (in-process channel, no socket)
// marked as forwarded, so every method keeps one implementation and a
// forwarded call is never forwarded again.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <caf/all.hpp>

#include "actors/runtime/interfaces.hpp"
#include "services/grpc/watch_hub.hpp"

namespace fleettwin::cluster {

/// Metadata of a call forwarded by another node (value: its node id): the
/// call is answered here or fails, never forwarded again.
inline constexpr const char* forwarded_header = "x-fleettwin-forwarded";
/// ListTwins forwarded: the partitions the receiver must list ("1,2,3").
inline constexpr const char* partitions_header = "x-fleettwin-partitions";

/// Metadata of a forwarded call, encoded as "key=value\n" lines.
std::string encode_metadata(const std::vector<std::pair<std::string, std::string>>& kv);
std::vector<std::pair<std::string, std::string>> decode_metadata(std::string_view text);

/// Splits "host:port"; nullopt when malformed.
std::optional<std::pair<std::string, uint16_t>> split_endpoint(const std::string& endpoint);

/// Another node's watch, fed by this node's hub: matching changes go to the
/// watch relay there, one message per commit.
class remote_watcher final : public grpc_api::watcher {
public:
  remote_watcher(std::optional<std::string> asset_id, core::filter f, caf::actor relay)
      : asset_id_(std::move(asset_id)), filter_(std::move(f)), relay_(std::move(relay)) {}
  bool wants(const core::twin_change& c, const core::twin* snapshot, int64_t now_ms,
             int64_t stale_after_ms) const override {
    return grpc_api::watch_matches(asset_id_, filter_, c, snapshot, now_ms, stale_after_ms);
  }
  bool needs_snapshots() const override {
    return !filter_.matches_all();
  }
  void push(const fleettwin::v1::TwinChange& change) override;
  void flush() override;

private:
  std::optional<std::string> asset_id_;
  core::filter filter_;
  caf::actor relay_;
  std::vector<std::string> batch_;  // guarded by the hub's lock
};

/// Shared by a gateway and its node: once `closing`, the gateway answers
/// forwarded calls UNAVAILABLE instead of starting them on the node's
/// in-process channel, and the node waits until the calls already started
/// are answered before it shuts its gRPC server down.
struct gateway_control {
  std::mutex mutex;
  std::condition_variable idle;
  bool closing = false;
  size_t running = 0;
  /// This node authenticates its calls: a forwarded call must carry the caller the
  /// forwarding node authenticated, whose role is checked here again.
  bool authenticating = false;
  /// Stops new calls and waits (at most `timeout`) for the running ones;
  /// false when some are still running.
  bool close(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock{mutex};
    closing = true;
    return idle.wait_for(lock, timeout, [this] { return running == 0; });
  }
};

struct gateway_state {
  std::unique_ptr<::grpc::GenericStub> stub;
  std::string node_id;
  std::shared_ptr<grpc_api::watch_hub> hub;
  std::shared_ptr<gateway_control> control;
  runtime::forwarder_actor forwarder;
  uint64_t next_id = 1;
  std::map<uint64_t, caf::typed_response_promise<int32_t, std::string, std::string>> pending;
  /// Watches of other nodes, by their relay.
  std::map<caf::actor_addr, std::unique_ptr<remote_watcher>> watchers;
  ~gateway_state() {
    for (auto& [addr, w] : watchers)
      hub->remove(w.get());
  }
  static inline const char* name = "gateway";
};

/// Runs forwarded calls on `local` (the node's in-process channel) and
/// feeds other nodes' watches from `hub`.
runtime::gateway_actor::behavior_type gateway(
    runtime::gateway_actor::stateful_pointer<gateway_state> self,
    std::shared_ptr<::grpc::Channel> local, std::string node_id,
    std::shared_ptr<grpc_api::watch_hub> hub, std::shared_ptr<gateway_control> control,
    runtime::forwarder_actor forwarder);

/// The local end of a WatchTwins stream, nulled when the stream is done.
struct watch_target {
  std::mutex mutex;
  grpc_api::watch_stream* stream = nullptr;
};

struct watch_relay_state {
  std::set<std::string> subscribed;
  std::map<caf::actor_addr, std::string> gateways;
  static inline const char* name = "watch-relay";
};

/// Receives the changes other nodes stream for one WatchTwins call and
/// pushes them into the local stream; subscribes to every endpoint it is
/// told about (`endpoints`), again when a node came back.
caf::behavior watch_relay(caf::stateful_actor<watch_relay_state>* self,
                          std::shared_ptr<watch_target> target, std::string name,
                          std::string filter, runtime::forwarder_actor forwarder);

/// What the forwarder tells its node about a peer it keeps a connection to.
enum class peer_event {
  /// Connected (again).
  up,
  /// The connection dropped: the peer's process may be gone (a kill -9 closes its
  /// connections at once, long before the consumer group's session timeout).
  down,
  /// Still not connected after another attempt (or another pause, on the side that
  /// waits for the peer to connect).
  unreachable,
};

struct forwarder_state {
  struct peer {
    std::optional<runtime::gateway_actor> handle;
    bool connecting = false;
    /// Run once connected (with the gateway) or when that failed (with why).
    std::vector<std::function<void(const runtime::gateway_actor*, const std::string& why)>> waiting;
  };
  std::map<std::string, peer> peers;  // by endpoint
  /// Calls in flight, so that they fail as soon as their node is known to be
  /// gone (connection lost, or it left the group) instead of timing out.
  struct call {
    std::string endpoint;
    runtime::forward_completion done;
    /// A read (Get*, List*, BatchGet*) keeps its request: when the connection drops
    /// before the answer, it is sent again on a new connection (at most
    /// max_read_attempts sends in all).
    std::string method;
    std::string request;
    std::string metadata;
    int attempt = 0;
  };
  static constexpr int max_read_attempts = 4;
  /// Reads waiting to be sent again to an endpoint whose connection dropped: they go
  /// after a pause (retry_pause, doubling with each attempt) so that the new connection
  /// is not the one CAF is still closing.
  std::map<std::string, std::vector<call>> retrying;
  static constexpr std::chrono::milliseconds retry_pause{100};
  /// Gateways monitored (once each: a handle adopted again is not monitored twice).
  std::set<caf::actor_addr> monitored;
  std::map<uint64_t, call> calls;
  uint64_t next_call = 1;
  std::chrono::milliseconds timeout{5'000};
  /// This node's endpoint and gateway (self_atom), sent in a hello to each node this
  /// one connects to.
  std::string own_endpoint;
  caf::actor own_gateway;
  /// The live peers (endpoints_atom): connected to ahead of any call and kept connected,
  /// so that a peer whose process dies is noticed when its connection drops. Of each pair,
  /// the node with the smaller endpoint connects (one connection per pair, see below);
  /// the other waits for its hello.
  std::set<std::string> kept;
  /// Attempts since a kept peer was last connected (the pause doubles, up to 5 s).
  std::map<std::string, int> reconnects;
  /// Kept peers with a look at their connection scheduled (endpoints_atom, endpoint).
  std::set<std::string> looking;
  std::function<void(const std::string& endpoint, peer_event)> on_peer;
  static inline const char* name = "forwarder";
};

/// Connects to peers on first use (asynchronously, through the middleman, or CAF's
/// OpenSSL module when loaded) and forgets a peer whose connection went down. One
/// connection per pair of nodes: a node introduces itself to the node it connected to
/// (hello), which then calls back over that connection. (Two connections between the
/// same two nodes make CAF drop one; with the OpenSSL module it drops the older, so
/// calls in both directions would keep failing.) `on_peer` hears of the kept peers'
/// connections (from the forwarder's thread; it must not block).
runtime::forwarder_actor::behavior_type forwarder(
    runtime::forwarder_actor::stateful_pointer<forwarder_state> self,
    std::chrono::milliseconds timeout,
    std::function<void(const std::string& endpoint, peer_event)> on_peer);

}  // namespace fleettwin::cluster
