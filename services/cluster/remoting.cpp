#include "services/cluster/remoting.hpp"

#include <spdlog/spdlog.h>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "fleettwin/v1/twin.pb.h"
#include "services/security/caller.hpp"

namespace fleettwin::cluster {

namespace {

constexpr int32_t unavailable = static_cast<int32_t>(::grpc::StatusCode::UNAVAILABLE);

/// One local call made for a forwarded one.
struct local_call {
  ::grpc::ClientContext ctx;
  ::grpc::ByteBuffer request;
  ::grpc::ByteBuffer response;
};

std::string to_string(const ::grpc::ByteBuffer& buf) {
  std::vector<::grpc::Slice> slices;
  std::string out;
  if (!buf.Dump(&slices).ok())
    return out;
  out.reserve(buf.Length());
  for (const auto& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

/// Why a forwarded call of `method` with metadata `kv` may not run here (status code and
/// message); nullopt when it may. The forwarding node authenticated its caller and sends it
/// along; this node checks the caller's role like its own authenticator would, and, when it
/// authenticates its calls, refuses forwarded calls without a caller (a node configured
/// without authentication forwarding to one with).
std::optional<std::pair<int32_t, std::string>> check_caller(
    const std::string& method, const std::vector<std::pair<std::string, std::string>>& kv,
    bool authenticating) {
  for (const auto& [k, v] : kv) {
    if (k != security::caller_header)
      continue;
    auto who = security::decode_caller(v);
    if (!who)
      return std::pair{static_cast<int32_t>(::grpc::StatusCode::UNAUTHENTICATED),
                       std::string{"the forwarding node sent an unreadable caller"}};
    if (auto why = security::forbidden(*who, method))
      return std::pair{static_cast<int32_t>(::grpc::StatusCode::PERMISSION_DENIED),
                       std::move(*why)};
    return std::nullopt;
  }
  if (authenticating && security::required_role(method))
    return std::pair{static_cast<int32_t>(::grpc::StatusCode::UNAUTHENTICATED),
                     std::string{"the forwarding node sent no caller: every node of a cluster "
                                 "must authenticate its calls when one does"}};
  return std::nullopt;
}

}  // namespace

std::string encode_metadata(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string out;
  for (const auto& [k, v] : kv)
    out += k + "=" + v + "\n";
  return out;
}

std::vector<std::pair<std::string, std::string>> decode_metadata(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0)
      continue;
    out.emplace_back(std::string{line.substr(0, eq)}, std::string{line.substr(eq + 1)});
  }
  return out;
}

std::optional<std::pair<std::string, uint16_t>> split_endpoint(const std::string& endpoint) {
  auto colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size())
    return std::nullopt;
  uint32_t port = 0;
  for (char c : endpoint.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535)
      return std::nullopt;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > 65535)
    return std::nullopt;
  auto host = endpoint.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return std::pair<std::string, uint16_t>{host, static_cast<uint16_t>(port)};
}

void remote_watcher::push(const fleettwin::v1::TwinChange& change) {
  batch_.push_back(change.SerializeAsString());
}

void remote_watcher::flush() {
  if (batch_.empty())
    return;
  caf::anon_send(relay_, runtime::changes_atom::value, std::move(batch_));
  batch_.clear();
}

runtime::gateway_actor::behavior_type gateway(
    runtime::gateway_actor::stateful_pointer<gateway_state> self,
    std::shared_ptr<::grpc::Channel> local, std::string node_id,
    std::shared_ptr<grpc_api::watch_hub> hub, std::shared_ptr<gateway_control> control,
    runtime::forwarder_actor forwarder) {
  self->state.stub = std::make_unique<::grpc::GenericStub>(std::move(local));
  self->state.forwarder = std::move(forwarder);
  self->state.node_id = std::move(node_id);
  self->state.hub = std::move(hub);
  self->state.control = std::move(control);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    auto it = st.watchers.find(msg.source);
    if (it == st.watchers.end())
      return;
    st.hub->remove(it->second.get());
    st.watchers.erase(it);
  });
  return {
      [self](runtime::hello_atom, std::string& endpoint, caf::actor& gateway) {
        self->send(self->state.forwarder, runtime::hello_atom::value, std::move(endpoint),
                   std::move(gateway));
      },
      [self](runtime::watch_atom, std::string& name, std::string& filter, caf::actor& relay,
             std::string& endpoint) {
        auto& st = self->state;
        if (!relay || st.watchers.contains(relay.address()))
          return;
        core::filter f;
        if (core::filter::parse(filter, f))
          return;  // the relay's node validated it already
        std::optional<std::string> asset_id;
        if (!name.empty())
          asset_id = name;
        auto w = std::make_unique<remote_watcher>(std::move(asset_id), std::move(f), relay);
        st.hub->add(w.get());
        st.watchers.emplace(relay.address(), std::move(w));
        self->monitor(relay);
        // Sent as the gateway, so that the relay can watch this node go down.
        caf::send_as(caf::actor_cast<caf::actor>(self), relay, runtime::watching_atom::value,
                     std::move(endpoint), true);
      },
      [self](
          runtime::forward_atom, std::string& method, std::string& request,
          std::string& metadata) -> caf::typed_response_promise<int32_t, std::string, std::string> {
        auto& st = self->state;
        auto rp = self->make_response_promise<int32_t, std::string, std::string>();
        auto kv = decode_metadata(metadata);
        if (auto refusal = check_caller(method, kv, st.control->authenticating)) {
          rp.deliver(refusal->first, std::move(refusal->second), std::string{});
          return rp;
        }
        {
          // Never start a call on the in-process channel of a server that
          // is shutting down.
          std::lock_guard<std::mutex> guard{st.control->mutex};
          if (st.control->closing) {
            rp.deliver(unavailable,
                       "node " + st.node_id +
                           " is shutting down; its partitions move to "
                           "other nodes; retry shortly",
                       std::string{});
            return rp;
          }
          ++st.control->running;
        }
        auto id = st.next_id++;
        st.pending.emplace(id, rp);
        auto call = std::make_shared<local_call>();
        call->ctx.AddMetadata(forwarded_header, st.node_id);
        for (auto& [k, v] : kv)
          call->ctx.AddMetadata(k, v);
        call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{30});
        ::grpc::Slice slice{request};
        call->request = ::grpc::ByteBuffer{&slice, 1};
        auto handle = caf::actor_cast<runtime::gateway_actor>(self);
        st.stub->UnaryCall(&call->ctx, method, ::grpc::StubOptions{}, &call->request,
                           &call->response, [call, handle, id](::grpc::Status s) {
                             auto code = static_cast<int32_t>(s.error_code());
                             auto message = s.error_message();
                             // Nobody cancels these calls: CANCELLED means this
                             // node's server stopped under it, which the caller
                             // on the other node should retry like any move.
                             if (s.error_code() == ::grpc::StatusCode::CANCELLED) {
                               code = unavailable;
                               message =
                                   "the node that owns this twin stopped while answering; "
                                   "retry shortly";
                             }
                             caf::anon_send(handle, runtime::answer_atom::value, id, code,
                                            std::move(message),
                                            s.ok() ? to_string(call->response) : std::string{});
                           });
        return rp;
      },
      [self](runtime::answer_atom, uint64_t id, int32_t code, std::string& message,
             std::string& response) {
        auto& st = self->state;
        auto it = st.pending.find(id);
        if (it == st.pending.end())
          return;
        it->second.deliver(code, std::move(message), std::move(response));
        st.pending.erase(it);
        std::lock_guard<std::mutex> guard{st.control->mutex};
        if (--st.control->running == 0)
          st.control->idle.notify_all();
      },
  };
}

namespace {

using forwarder_ptr = runtime::forwarder_actor::stateful_pointer<forwarder_state>;

/// Completes call `id` (once: it may have failed already because its node went away).
void complete(forwarder_ptr self, uint64_t id, runtime::forward_reply reply) {
  auto it = self->state.calls.find(id);
  if (it == self->state.calls.end())
    return;
  auto done = std::move(it->second.done);
  self->state.calls.erase(it);
  done(std::move(reply));
}

/// True for the methods that change nothing (safe to send twice).
bool is_read(const std::string& method) {
  auto name = std::string_view{method}.substr(method.rfind('/') + 1);
  return name.rfind("Get", 0) == 0 || name.rfind("List", 0) == 0 || name.rfind("BatchGet", 0) == 0;
}

/// Fails every call in flight to `endpoint` with `why`.
void fail_calls(forwarder_ptr self, const std::string& endpoint, const std::string& why) {
  std::vector<runtime::forward_completion> failed;
  for (auto it = self->state.calls.begin(); it != self->state.calls.end();) {
    if (it->second.endpoint == endpoint) {
      failed.push_back(std::move(it->second.done));
      it = self->state.calls.erase(it);
    } else {
      ++it;
    }
  }
  if (!failed.empty())
    spdlog::info("event=forwarded_calls_failed endpoint={} calls={} reason=\"{}\"", endpoint,
                 failed.size(), why);
  for (auto& done : failed)
    done(runtime::forward_reply{unavailable, why, {}});
}

void send_call(forwarder_ptr self, const std::string& endpoint, runtime::gateway_actor handle,
               std::string method, std::string request, std::string metadata,
               runtime::forward_completion done, int attempt = 0) {
  auto id = self->state.next_call++;
  forwarder_state::call c{endpoint, std::move(done)};
  c.attempt = attempt;
  if (attempt + 1 < forwarder_state::max_read_attempts && is_read(method)) {
    c.method = method;
    c.request = request;
    c.metadata = metadata;
  }
  self->state.calls.emplace(id, std::move(c));
  self->request(handle, self->state.timeout, runtime::forward_atom::value, std::move(method),
                std::move(request), std::move(metadata))
      .then(
          [self, id](int32_t code, std::string& message, std::string& response) {
            complete(self, id,
                     runtime::forward_reply{code, std::move(message), std::move(response)});
          },
          [self, id, endpoint](caf::error& e) {
            complete(self, id,
                     runtime::forward_reply{unavailable,
                                            "the node at " + endpoint +
                                                " that owns this twin did not answer (" +
                                                self->system().render(e) + "); retry shortly",
                                            {}});
          });
}

/// `handle` is the gateway of the node at `endpoint`: calls waiting for it go now.
void adopt_peer(forwarder_ptr self, const std::string& endpoint, runtime::gateway_actor handle) {
  auto& p = self->state.peers[endpoint];
  if (p.handle && *p.handle == handle)
    return;
  if (self->state.monitored.insert(handle.address()).second)
    self->monitor(handle);
  p.connecting = false;
  const bool was_connected = p.handle.has_value();
  p.handle = handle;
  if (self->state.kept.contains(endpoint)) {
    self->state.reconnects.erase(endpoint);
    if (!was_connected && self->state.on_peer)
      self->state.on_peer(endpoint, peer_event::up);
  }
  auto waiting = std::move(p.waiting);
  p.waiting.clear();
  for (auto& w : waiting)
    w(&handle, {});
}

/// Runs `action` with the gateway at `endpoint`, connecting first if needed.
void with_gateway(
    forwarder_ptr self, const std::string& endpoint,
    std::function<void(const runtime::gateway_actor*, const std::string& why)> action) {
  auto& peer = self->state.peers[endpoint];
  if (peer.handle) {
    action(&*peer.handle, {});
    return;
  }
  peer.waiting.push_back(std::move(action));
  if (peer.connecting)
    return;
  peer.connecting = true;
  auto fail_all = [self, endpoint](const std::string& why) {
    auto waiting = std::move(self->state.peers[endpoint].waiting);
    self->state.peers.erase(endpoint);
    for (auto& w : waiting)
      w(nullptr, why);
  };
  auto hp = split_endpoint(endpoint);
  if (!hp) {
    fail_all("the owner's cluster endpoint \"" + endpoint + "\" is malformed");
    return;
  }
  // Mutual TLS when the node loaded CAF's OpenSSL module (only ever with certificates).
  auto mm = self->system().has_openssl_manager() ? self->system().openssl_manager().actor_handle()
                                                 : self->system().middleman().actor_handle();
  self->request(mm, self->state.timeout, caf::connect_atom::value, hp->first, hp->second)
      .then(
          [self, endpoint, fail_all](const caf::node_id&, caf::strong_actor_ptr& ptr,
                                     const std::set<std::string>&) {
            if (!ptr) {
              fail_all("no FleetTwin node listens at " + endpoint + "; retry shortly");
              return;
            }
            auto handle = caf::actor_cast<runtime::gateway_actor>(ptr);
            if (!self->state.own_endpoint.empty())
              self->send(handle, runtime::hello_atom::value, self->state.own_endpoint,
                         self->state.own_gateway);
            adopt_peer(self, endpoint, handle);
          },
          [self, endpoint, fail_all](caf::error& e) {
            fail_all("cannot reach the node at " + endpoint + " that owns this twin (" +
                     self->system().render(e) + "); retry shortly");
          });
}

/// Sends the reads waiting for `endpoint` again, connecting first.
void resend(forwarder_ptr self, const std::string& endpoint) {
  auto it = self->state.retrying.find(endpoint);
  if (it == self->state.retrying.end())
    return;
  auto again = std::move(it->second);
  self->state.retrying.erase(it);
  spdlog::info("event=forwarded_calls_retried endpoint={} calls={}", endpoint, again.size());
  for (auto& c : again) {
    with_gateway(self, endpoint,
                 [self, endpoint, c = std::move(c)](const runtime::gateway_actor* gw,
                                                    const std::string& why) mutable {
                   if (!gw) {
                     c.done(runtime::forward_reply{unavailable, why, {}});
                     return;
                   }
                   send_call(self, endpoint, *gw, std::move(c.method), std::move(c.request),
                             std::move(c.metadata), std::move(c.done), c.attempt + 1);
                 });
  }
}

/// Connects to the kept peer at `endpoint` unless connected or connecting; the node with
/// the larger endpoint only waits for the peer's hello. Either way, while the peer stays
/// unconnected, it reports so and looks again after a pause.
void look_again_later(forwarder_ptr self, const std::string& endpoint) {
  if (!self->state.looking.insert(endpoint).second)
    return;  // one look pending per peer
  auto& n = self->state.reconnects[endpoint];
  const auto pause = std::chrono::milliseconds{250} * (1 << std::min(n, 4));
  ++n;
  self->delayed_send(self, std::min<std::chrono::milliseconds>(pause, std::chrono::seconds{5}),
                     runtime::endpoints_atom::value, endpoint);
}

void keep_connected(forwarder_ptr self, const std::string& endpoint) {
  auto& st = self->state;
  if (!st.kept.contains(endpoint))
    return;
  if (auto it = st.peers.find(endpoint);
      it != st.peers.end() && (it->second.handle || it->second.connecting))
    return;
  if (st.own_endpoint.empty() || !(st.own_endpoint < endpoint)) {
    if (st.reconnects.contains(endpoint) && st.on_peer)
      st.on_peer(endpoint, peer_event::unreachable);
    look_again_later(self, endpoint);
    return;
  }
  with_gateway(self, endpoint,
               [self, endpoint](const runtime::gateway_actor* gw, const std::string&) {
                 if (gw || !self->state.kept.contains(endpoint))
                   return;
                 if (self->state.on_peer)
                   self->state.on_peer(endpoint, peer_event::unreachable);
                 look_again_later(self, endpoint);
               });
}

/// The connection to `endpoint` dropped: reads in flight go again on a new connection
/// (a stranger's failed TLS handshake can close the other connections of CAF's OpenSSL
/// module), up to max_read_attempts sends each, after a pause that doubles with each
/// attempt (connecting at once may get the connection CAF is still closing); the other
/// calls fail with `why`.
void retry_or_fail(forwarder_ptr self, const std::string& endpoint, const std::string& why) {
  auto& waiting = self->state.retrying[endpoint];
  const bool scheduled = !waiting.empty();
  int attempt = 0;
  for (auto it = self->state.calls.begin(); it != self->state.calls.end();) {
    if (it->second.endpoint == endpoint && !it->second.method.empty()) {
      attempt = std::max(attempt, it->second.attempt);
      waiting.push_back(std::move(it->second));
      it = self->state.calls.erase(it);
    } else {
      ++it;
    }
  }
  fail_calls(self, endpoint, why);
  if (waiting.empty()) {
    self->state.retrying.erase(endpoint);
    return;
  }
  if (!scheduled)
    self->delayed_send(self, forwarder_state::retry_pause * (1 << attempt),
                       runtime::tick_atom::value, endpoint);
}

}  // namespace

caf::behavior watch_relay(caf::stateful_actor<watch_relay_state>* self,
                          std::shared_ptr<watch_target> target, std::string name,
                          std::string filter, runtime::forwarder_actor forwarder) {
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    auto it = st.gateways.find(msg.source);
    if (it == st.gateways.end())
      return;
    // That node went away: subscribe again when it is back.
    st.subscribed.erase(it->second);
    st.gateways.erase(it);
  });
  return {
      [self, name, filter, forwarder](runtime::endpoints_atom,
                                      const std::vector<std::string>& endpoints) {
        auto& st = self->state;
        for (const auto& ep : endpoints)
          if (st.subscribed.insert(ep).second)
            caf::anon_send(forwarder, runtime::watch_atom::value, ep, name, filter,
                           caf::actor_cast<caf::actor>(self));
      },
      [self](runtime::watching_atom, std::string& endpoint, bool ok) {
        if (!ok) {  // not reachable now: try again with the next endpoints update
          self->state.subscribed.erase(endpoint);
          return;
        }
        auto sender = caf::actor_cast<caf::actor>(self->current_sender());
        if (!sender)
          return;
        self->monitor(sender);
        self->state.gateways[sender.address()] = std::move(endpoint);
      },
      [target](runtime::changes_atom, const std::vector<std::string>& batch) {
        std::lock_guard<std::mutex> guard{target->mutex};
        if (!target->stream)
          return;
        fleettwin::v1::TwinChange msg;
        for (const auto& bytes : batch)
          if (msg.ParseFromString(bytes))
            target->stream->push(msg);
      },
  };
}

runtime::forwarder_actor::behavior_type forwarder(
    forwarder_ptr self, std::chrono::milliseconds timeout,
    std::function<void(const std::string& endpoint, peer_event)> on_peer) {
  self->state.timeout = timeout;
  self->state.on_peer = std::move(on_peer);
  self->set_down_handler([self](caf::down_msg& msg) {
    self->state.monitored.erase(msg.source);
    for (auto it = self->state.peers.begin(); it != self->state.peers.end(); ++it)
      if (it->second.handle && it->second.handle->address() == msg.source) {
        auto endpoint = it->first;
        spdlog::info("event=peer_down endpoint={}", endpoint);
        self->state.peers.erase(it);
        // The connection is gone: its calls cannot be answered over it any more.
        retry_or_fail(self, endpoint,
                      "the connection to node " + endpoint +
                          ", which owns this twin, was lost; its partitions move to another "
                          "node; retry shortly");
        if (self->state.kept.contains(endpoint)) {
          if (self->state.on_peer)
            self->state.on_peer(endpoint, peer_event::down);
          // Connect again after a pause (not at once: CAF may still be closing this one).
          self->state.reconnects[endpoint] = 0;
          look_again_later(self, endpoint);
        }
        return;
      }
  });
  return {
      [self](runtime::forward_atom, std::string& endpoint, std::string& method,
             std::string& request, std::string& metadata, runtime::forward_completion& done) {
        with_gateway(self, endpoint,
                     [self, endpoint, method = std::move(method), request = std::move(request),
                      metadata = std::move(metadata), done = std::move(done)](
                         const runtime::gateway_actor* gw, const std::string& why) mutable {
                       if (!gw) {
                         done(runtime::forward_reply{unavailable, why, {}});
                         return;
                       }
                       send_call(self, endpoint, *gw, std::move(method), std::move(request),
                                 std::move(metadata), std::move(done));
                     });
      },
      [self](runtime::watch_atom, std::string& endpoint, std::string& name, std::string& filter,
             caf::actor& relay) {
        with_gateway(self, endpoint,
                     [self, endpoint, name = std::move(name), filter = std::move(filter), relay](
                         const runtime::gateway_actor* gw, const std::string& why) {
                       if (!gw) {
                         spdlog::warn("event=watch_subscribe_failed endpoint={} reason=\"{}\"",
                                      endpoint, why);
                         // The relay subscribes again on the next membership change.
                         caf::anon_send(relay, runtime::watching_atom::value, endpoint, false);
                         return;
                       }
                       self->send(*gw, runtime::watch_atom::value, name, filter, relay, endpoint);
                     });
      },
      [self](runtime::self_atom, std::string& endpoint, caf::actor& gateway) {
        self->state.own_endpoint = std::move(endpoint);
        self->state.own_gateway = std::move(gateway);
      },
      [self](runtime::hello_atom, std::string& endpoint, caf::actor& gateway) {
        // A node connected to this one: call it over that connection from now on.
        auto& p = self->state.peers[endpoint];
        if (p.handle || !gateway)
          return;
        spdlog::debug("event=peer_hello endpoint={}", endpoint);
        adopt_peer(self, endpoint, caf::actor_cast<runtime::gateway_actor>(gateway));
      },
      [self](runtime::gone_atom, std::string& endpoint) {
        const auto why = "node " + endpoint +
                         ", which owned this twin, left the group; its partitions move to "
                         "another node; retry shortly";
        if (auto it = self->state.retrying.find(endpoint); it != self->state.retrying.end()) {
          auto waiting = std::move(it->second);
          self->state.retrying.erase(it);
          for (auto& c : waiting)
            c.done(runtime::forward_reply{unavailable, why, {}});
        }
        fail_calls(self, endpoint, why);
      },
      [self](runtime::tick_atom, std::string& endpoint) { resend(self, endpoint); },
      [self](runtime::endpoints_atom, std::string& endpoint) {
        self->state.looking.erase(endpoint);
        keep_connected(self, endpoint);
      },
      [self](runtime::endpoints_atom, std::vector<std::string>& endpoints) {
        auto& st = self->state;
        std::set<std::string> kept{endpoints.begin(), endpoints.end()};
        kept.erase(st.own_endpoint);
        std::erase_if(st.reconnects, [&](const auto& r) { return !kept.contains(r.first); });
        const auto before = std::move(st.kept);
        st.kept = std::move(kept);
        for (const auto& ep : st.kept) {
          if (before.contains(ep))
            continue;
          // Connected already (the peer connected first, or a call did): said now.
          if (auto it = st.peers.find(ep); it != st.peers.end() && it->second.handle) {
            if (st.on_peer)
              st.on_peer(ep, peer_event::up);
            continue;
          }
          keep_connected(self, ep);
        }
      },
  };
}

}  // namespace fleettwin::cluster
