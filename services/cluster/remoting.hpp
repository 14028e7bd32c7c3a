#pragma once

// Forwarding of gRPC calls between nodes over CAF remoting: a node that does
// not own a twin's partition hands the serialized call to its forwarder
// actor, which sends it to the owner's gateway actor; the gateway runs the
// call through the owner's own gRPC service (in-process channel, no socket)
// marked as forwarded, so every method keeps one implementation and a
// forwarded call is never forwarded again.

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <caf/all.hpp>

#include "actors/runtime/interfaces.hpp"

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

struct gateway_state {
  std::unique_ptr<::grpc::GenericStub> stub;
  std::string node_id;
  uint64_t next_id = 1;
  std::map<uint64_t, caf::typed_response_promise<int32_t, std::string, std::string>> pending;
  static inline const char* name = "gateway";
};

/// Runs forwarded calls on `local` (the node's in-process channel).
runtime::gateway_actor::behavior_type gateway(
    runtime::gateway_actor::stateful_pointer<gateway_state> self,
    std::shared_ptr<::grpc::Channel> local, std::string node_id);

struct forwarder_state {
  struct peer {
    std::optional<runtime::gateway_actor> handle;
    bool connecting = false;
    struct call {
      std::string method, request, metadata;
      runtime::forward_completion done;
    };
    std::vector<call> waiting;
  };
  std::map<std::string, peer> peers;  // by endpoint
  std::chrono::milliseconds timeout{5'000};
  static inline const char* name = "forwarder";
};

/// Connects to peers on first use (asynchronously, through the middleman)
/// and forgets a peer whose connection went down.
runtime::forwarder_actor::behavior_type forwarder(
    runtime::forwarder_actor::stateful_pointer<forwarder_state> self,
    std::chrono::milliseconds timeout);

}  // namespace fleettwin::cluster
