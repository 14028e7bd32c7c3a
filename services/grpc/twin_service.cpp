#include "services/grpc/twin_service.hpp"

#include <chrono>
#include <mutex>

#include "actors/core/filter.hpp"
#include "services/grpc/convert.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::grpc_api {

using ::grpc::Status;
using ::grpc::StatusCode;

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* code_name(StatusCode c) {
  switch (c) {
    case StatusCode::OK:
      return "OK";
    case StatusCode::CANCELLED:
      return "CANCELLED";
    case StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case StatusCode::ABORTED:
      return "ABORTED";
    case StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case StatusCode::INTERNAL:
      return "INTERNAL";
    default:
      return "UNKNOWN";
  }
}

/// Finishes a unary call and measures it.
class call {
public:
  call(::grpc::CallbackServerContext* ctx, metrics::method_probe& probe)
      : reactor_(ctx->DefaultReactor()), probe_(&probe), start_(std::chrono::steady_clock::now()) {}

  void finish(Status s) const {
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    probe_->on_request(s.error_code(), code_name(s.error_code()), secs);
    reactor_->Finish(std::move(s));
  }

  ::grpc::ServerUnaryReactor* reactor() const {
    return reactor_;
  }

private:
  ::grpc::ServerUnaryReactor* reactor_;
  metrics::method_probe* probe_;
  std::chrono::steady_clock::time_point start_;
};

Status to_status(const runtime::twin_reply& r) {
  switch (r.error) {
    case runtime::query_error::none:
      return Status::OK;
    case runtime::query_error::not_found:
      return {StatusCode::NOT_FOUND, r.message};
    case runtime::query_error::invalid:
      return {StatusCode::INVALID_ARGUMENT, r.message};
    case runtime::query_error::aborted:
      return {StatusCode::ABORTED, r.message};
    case runtime::query_error::unavailable:
      return {StatusCode::UNAVAILABLE, r.message};
    default:
      return {StatusCode::INTERNAL, r.message};
  }
}

runtime::twin_reply unanswered() {
  return {runtime::query_error::unavailable,
          "the twin's partition stopped before answering (rebalance or shutdown); retry",
          {}};
}

/// Completes a call with the twin of the reply, or its error.
runtime::twin_completion answer_with_twin(const call& c, fleettwin::v1::Twin* resp,
                                          int64_t stale_after_ms) {
  return {[c, resp, stale_after_ms](runtime::twin_reply reply) {
            if (reply.error != runtime::query_error::none) {
              c.finish(to_status(reply));
              return;
            }
            to_proto(*reply.twin, wall_ms(), stale_after_ms, *resp);
            c.finish(Status::OK);
          },
          unanswered()};
}

constexpr char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url(std::string_view in) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (unsigned char c : in) {
    buf = (buf << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(b64[(buf >> bits) & 63]);
    }
  }
  if (bits > 0)
    out.push_back(b64[(buf << (6 - bits)) & 63]);
  return out;
}

std::optional<std::string> unbase64url(std::string_view in) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = std::char_traits<char>::find(b64, 64, c);
    if (!p)
      return std::nullopt;
    buf = (buf << 6) | static_cast<uint32_t>(p - b64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  return out;
}

std::string filter_fingerprint(const std::string& filter) {
  return std::to_string(std::hash<std::string>{}(filter)&0xffffffffu);
}

}  // namespace

std::string encode_page_token(const std::string& filter, const std::string& last_asset_id) {
  return base64url("v1|" + filter_fingerprint(filter) + "|" + last_asset_id);
}

std::optional<std::string> decode_page_token(const std::string& token, const std::string& filter) {
  auto raw = unbase64url(token);
  if (!raw)
    return std::nullopt;
  auto expected = "v1|" + filter_fingerprint(filter) + "|";
  if (raw->compare(0, expected.size(), expected) != 0)
    return std::nullopt;
  return raw->substr(expected.size());
}

twin_service::twin_service(twin_backend& backend, query_pool& pool, watch_hub& hub,
                           metrics::grpc_probe& probe, service_limits limits)
    : backend_(backend),
      pool_(pool),
      hub_(hub),
      probe_(probe),
      limits_(limits),
      get_twin_(probe.method("GetTwin")),
      batch_get_(probe.method("BatchGetTwins")),
      list_(probe.method("ListTwins")),
      update_desired_(probe.method("UpdateDesired")),
      history_(probe.method("GetHistory")) {}

::grpc::ServerUnaryReactor* twin_service::GetTwin(::grpc::CallbackServerContext* ctx,
                                                  const fleettwin::v1::GetTwinRequest* req,
                                                  fleettwin::v1::Twin* resp) {
  call c{ctx, get_twin_};
  std::string error;
  auto id = parse_twin_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  auto stale = backend_.stale_after_ms();
  if (auto tw = backend_.cached_twin(*id)) {
    to_proto(*tw, wall_ms(), stale, *resp);
    c.finish(Status::OK);
    return c.reactor();
  }
  auto r = backend_.route_asset(*id, error);
  if (!r) {
    c.finish({StatusCode::UNAVAILABLE, error});
    return c.reactor();
  }
  auto done = answer_with_twin(c, resp, stale);
  caf::anon_send(r->actor, runtime::get_atom::value, std::move(*id), std::move(done));
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::BatchGetTwins(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::BatchGetTwinsRequest* req,
    fleettwin::v1::BatchGetTwinsResponse* resp) {
  call c{ctx, batch_get_};
  const auto n = static_cast<size_t>(req->names_size());
  if (n == 0 || n > limits_.max_batch_get) {
    c.finish({StatusCode::INVALID_ARGUMENT, "names must list 1 to " +
                                                std::to_string(limits_.max_batch_get) +
                                                " twins, got " + std::to_string(n)});
    return c.reactor();
  }
  struct gather {
    std::mutex mutex;
    std::vector<std::shared_ptr<const core::twin>> twins;
    std::optional<Status> error;
    std::atomic<size_t> remaining;
  };
  auto g = std::make_shared<gather>();
  g->twins.resize(n);
  g->remaining = n;
  std::vector<std::pair<std::string, route>> routes;
  routes.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string error;
    auto id = parse_twin_name(req->names(static_cast<int>(i)), error);
    if (!id) {
      c.finish({StatusCode::INVALID_ARGUMENT, "names[" + std::to_string(i) + "]: " + error});
      return c.reactor();
    }
    auto r = backend_.route_asset(*id, error);
    if (!r) {
      c.finish({StatusCode::UNAVAILABLE, error});
      return c.reactor();
    }
    routes.emplace_back(std::move(*id), std::move(*r));
  }
  auto stale = backend_.stale_after_ms();
  for (size_t i = 0; i < n; ++i) {
    runtime::twin_completion done{[c, g, i, resp, stale](runtime::twin_reply reply) {
                                    {
                                      std::lock_guard<std::mutex> guard{g->mutex};
                                      if (reply.error != runtime::query_error::none) {
                                        if (!g->error)
                                          g->error = to_status(reply);
                                      } else {
                                        g->twins[i] = std::move(reply.twin);
                                      }
                                    }
                                    if (g->remaining.fetch_sub(1) != 1)
                                      return;
                                    if (g->error) {
                                      c.finish(*g->error);
                                      return;
                                    }
                                    auto now = wall_ms();
                                    for (const auto& tw : g->twins)
                                      to_proto(*tw, now, stale, *resp->add_twins());
                                    c.finish(Status::OK);
                                  },
                                  unanswered()};
    caf::anon_send(routes[i].second.actor, runtime::get_atom::value, std::move(routes[i].first),
                   std::move(done));
  }
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::ListTwins(::grpc::CallbackServerContext* ctx,
                                                    const fleettwin::v1::ListTwinsRequest* req,
                                                    fleettwin::v1::ListTwinsResponse* resp) {
  call c{ctx, list_};
  if (req->page_size() < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "page_size must not be negative"});
    return c.reactor();
  }
  size_t page_size = req->page_size() == 0
                         ? static_cast<size_t>(limits_.default_page_size)
                         : static_cast<size_t>(std::min(req->page_size(), limits_.max_page_size));
  core::filter f;
  if (auto err = core::filter::parse(req->filter(), f)) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "filter: " + err->message + " (at offset " + std::to_string(err->position) + ")"});
    return c.reactor();
  }
  std::string start_after;
  if (!req->page_token().empty()) {
    auto last = decode_page_token(req->page_token(), req->filter());
    if (!last) {
      c.finish({StatusCode::INVALID_ARGUMENT,
                "page_token is invalid or was issued for a different filter; start again "
                "without a page_token"});
      return c.reactor();
    }
    start_after = std::move(*last);
  }
  auto stale = backend_.stale_after_ms();
  auto partitions = backend_.local_partitions();
  auto filter_text = req->filter();
  auto max_scanned = limits_.max_scanned_per_page;
  auto& store = backend_.store();
  bool queued = pool_.submit([=, &store]() mutable {
    auto now = wall_ms();
    std::string error;
    auto page = store.list_twins(
        partitions, start_after, [&](const core::twin& tw) { return f.matches(tw, now, stale); },
        page_size, max_scanned, error);
    if (!error.empty()) {
      c.finish({StatusCode::INTERNAL, "reading twins: " + error});
      return;
    }
    for (const auto& tw : page.twins)
      to_proto(tw, now, stale, *resp->add_twins());
    if (!page.next_page_token.empty())
      resp->set_next_page_token(encode_page_token(filter_text, page.next_page_token));
    c.finish(Status::OK);
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::UpdateDesired(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::UpdateDesiredRequest* req,
    fleettwin::v1::Twin* resp) {
  call c{ctx, update_desired_};
  std::string error;
  auto id = parse_twin_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  core::desired_update update;
  for (const auto& [name, v] : req->desired()) {
    auto value = from_proto(v);
    if (!value) {
      c.finish({StatusCode::INVALID_ARGUMENT,
                "desired[\"" + name +
                    "\"] has no value: set one of double_value, int_value, "
                    "bool_value or string_value"});
      return c.reactor();
    }
    update.set.emplace_back(name, std::move(*value));
  }
  update.remove.assign(req->remove().begin(), req->remove().end());
  if (req->has_expected_version())
    update.expected_version = req->expected_version();
  if (update.set.empty() && update.remove.empty()) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "nothing to change: set at least one entry of desired or remove"});
    return c.reactor();
  }
  auto r = backend_.route_asset(*id, error);
  if (!r) {
    c.finish({StatusCode::UNAVAILABLE, error});
    return c.reactor();
  }
  auto stale = backend_.stale_after_ms();
  auto done = answer_with_twin(c, resp, stale);
  caf::anon_send(r->actor, runtime::desired_atom::value, std::move(*id), std::move(update),
                 std::move(done));
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::GetHistory(::grpc::CallbackServerContext* ctx,
                                                     const fleettwin::v1::GetHistoryRequest* req,
                                                     fleettwin::v1::GetHistoryResponse* resp) {
  call c{ctx, history_};
  std::string error;
  auto id = parse_twin_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  if (auto err = core::validate_name(req->property(), core::limits{}, "property")) {
    c.finish({StatusCode::INVALID_ARGUMENT, *err});
    return c.reactor();
  }
  if (req->start_time_ms() < 0 || req->end_time_ms() < 0 ||
      (req->end_time_ms() != 0 && req->end_time_ms() <= req->start_time_ms())) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "time range must satisfy 0 <= start_time_ms < end_time_ms (0 = unbounded)"});
    return c.reactor();
  }
  if (req->limit() < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "limit must not be negative"});
    return c.reactor();
  }
  auto r = backend_.route_asset(*id, error);
  if (!r) {
    c.finish({StatusCode::UNAVAILABLE, error});
    return c.reactor();
  }
  auto& store = backend_.store();
  auto partition = r->partition;
  auto property = req->property();
  auto start = req->start_time_ms();
  auto end = req->end_time_ms();
  auto limit = static_cast<size_t>(req->limit());
  bool queued = pool_.submit([=, &store, id = std::move(*id)] {
    std::string err;
    core::twin tw;
    switch (store.load_twin(partition, id, tw, err)) {
      case runtime::load_status::missing:
        c.finish({StatusCode::NOT_FOUND, "twin \"" + id + "\" not found"});
        return;
      case runtime::load_status::failed:
        c.finish({StatusCode::INTERNAL, err});
        return;
      case runtime::load_status::found:
        break;
    }
    if (!tw.reported.contains(property)) {
      c.finish({StatusCode::NOT_FOUND,
                "twin \"" + id + "\" has no reported property \"" + property + "\""});
      return;
    }
    auto points = store.read_history(partition, id, property, start, end, limit, err);
    if (!err.empty()) {
      c.finish({StatusCode::INTERNAL, "reading history: " + err});
      return;
    }
    for (const auto& p : points)
      to_proto(p, *resp->add_points());
    c.finish(Status::OK);
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

namespace {

/// A stream that fails at once with a status.
class failed_stream final : public ::grpc::ServerWriteReactor<fleettwin::v1::TwinChange> {
public:
  explicit failed_stream(Status s) {
    Finish(std::move(s));
  }
  void OnDone() override {
    delete this;
  }
};

}  // namespace

::grpc::ServerWriteReactor<fleettwin::v1::TwinChange>* twin_service::WatchTwins(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::WatchTwinsRequest* req) {
  auto started = std::chrono::steady_clock::now();
  auto fail = [&](Status s) {
    probe_.on_request(
        "WatchTwins", code_name(s.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return new failed_stream(std::move(s));
  };
  std::optional<std::string> asset_id;
  if (!req->name().empty()) {
    std::string error;
    asset_id = parse_twin_name(req->name(), error);
    if (!asset_id)
      return fail({StatusCode::INVALID_ARGUMENT, error});
  }
  core::filter f;
  if (auto err = core::filter::parse(req->filter(), f))
    return fail({StatusCode::INVALID_ARGUMENT,
                 "filter: " + err->message + " (at offset " + std::to_string(err->position) + ")"});
  probe_.on_request("WatchTwins", "OK", 0);
  auto* stream = new watch_stream(hub_, std::move(asset_id), std::move(f), limits_.max_watch_queue);
  hub_.add(stream);
  // Headers go out now so that clients know the watch is registered.
  stream->StartSendInitialMetadata();
  return stream;
}

node_service::node_service(twin_backend& backend, metrics::grpc_probe& probe)
    : backend_(backend), probe_(probe), status_(probe.method("GetStatus")) {}

::grpc::ServerUnaryReactor* node_service::GetStatus(::grpc::CallbackServerContext* ctx,
                                                    const fleettwin::v1::GetStatusRequest*,
                                                    fleettwin::v1::NodeStatus* resp) {
  call c{ctx, status_};
  backend_.node_status([c, resp](fleettwin::v1::NodeStatus status) {
    *resp = std::move(status);
    c.finish(Status::OK);
  });
  return c.reactor();
}

::grpc::ServerUnaryReactor* node_service::Ping(::grpc::CallbackServerContext* ctx,
                                               const fleettwin::v1::PingRequest*,
                                               fleettwin::v1::PingResponse*) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(Status::OK);
  return reactor;
}

}  // namespace fleettwin::grpc_api
