#include "services/grpc/twin_service.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>

#include "actors/core/filter.hpp"
#include "services/cluster/remoting.hpp"
#include "services/grpc/convert.hpp"
#include "services/grpc/privacy.hpp"
#include "services/grpc/unary_call.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::grpc_api {

using ::grpc::Status;
using ::grpc::StatusCode;

namespace {

/// Completes a call with the twin of the reply, or its error.
runtime::twin_completion answer_with_twin(twin_backend& backend, const call& c, const char* method,
                                          fleettwin::v1::Twin* resp, int64_t stale_after_ms,
                                          privacy masks) {
  return {[&backend, c, method, resp, stale_after_ms, masks](runtime::twin_reply reply) {
            c.committed_audit(reply);
            if (reply.error != runtime::query_error::none) {
              c.finish(to_status(reply));
              return;
            }
            if (!c.sees(reply.twin->tenant)) {
              c.finish(twin_not_found(reply.twin->asset_id));
              return;
            }
            to_proto(*reply.twin, wall_ms(), stale_after_ms, *resp);
            masks.redact(*resp);
            audit_revealed(backend, c, method, resp->name(), masks.revealed(*resp));
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

std::atomic<int64_t>& calls_in_flight_counter() {
  static std::atomic<int64_t> n{0};
  return n;
}

int64_t calls_in_flight() {
  return calls_in_flight_counter().load();
}

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

namespace {}  // namespace

Status merge_pages(std::vector<fleettwin::v1::ListTwinsResponse>& parts, const std::string& filter,
                   size_t page_size, fleettwin::v1::ListTwinsResponse& out) {
  return merge_listing_pages(
      parts, filter, page_size, out,
      [](fleettwin::v1::ListTwinsResponse* r) { return r->mutable_twins(); },
      [](const fleettwin::v1::Twin& t) -> const std::string& { return t.asset_id(); });
}

twin_service::twin_service(twin_backend& backend, query_pool& pool, watch_hub& hub,
                           metrics::grpc_probe& probe, service_limits limits,
                           std::shared_ptr<runtime::models_holder> models)
    : backend_(backend),
      pool_(pool),
      hub_(hub),
      probe_(probe),
      limits_(limits),
      get_twin_(probe.method("GetTwin")),
      batch_get_(probe.method("BatchGetTwins")),
      list_(probe.method("ListTwins")),
      update_desired_(probe.method("UpdateDesired")),
      batch_update_(probe.method("BatchUpdateDesired")),
      history_(probe.method("GetHistory")),
      forecast_(probe.method("GetForecast")),
      delete_(probe.method("DeleteTwin")),
      models_(std::move(models)) {}

constexpr const char* get_method = "/fleettwin.v1.TwinService/GetTwin";

privacy twin_service::privacy_of(const call& c) const {
  return privacy{c.who(), models_.get()};
}

::grpc::ServerUnaryReactor* twin_service::GetTwin(::grpc::CallbackServerContext* ctx,
                                                  const fleettwin::v1::GetTwinRequest* req,
                                                  fleettwin::v1::Twin* resp) {
  call c{ctx, get_twin_};
  if (!c.admit(backend_))
    return c.reactor();
  std::string error;
  auto id = parse_twin_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  auto stale = backend_.stale_after_ms();
  // Ownership first (a node that lost the partition, or cannot confirm it
  // still owns it, never answers from what it remembers), then the snapshot
  // cache, then the twin's actor.
  auto r = backend_.route_asset(*id, error);
  if (!r) {
    forward_if_remote(backend_, c, *id, error, "/fleettwin.v1.TwinService/GetTwin", *req, resp);
    return c.reactor();
  }
  if (auto tw = backend_.cached_twin(*id)) {
    if (!c.sees(tw->tenant)) {
      c.finish(twin_not_found(*id));
      return c.reactor();
    }
    to_proto(*tw, wall_ms(), stale, *resp);
    auto masks = privacy_of(c);
    masks.redact(*resp);
    audit_revealed(backend_, c, get_method, resp->name(), masks.revealed(*resp));
    c.finish(Status::OK);
    return c.reactor();
  }
  auto done = answer_with_twin(backend_, c, get_method, resp, stale, privacy_of(c));
  caf::anon_send(r->actor, runtime::get_atom::value, std::move(*id), std::move(done));
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::BatchGetTwins(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::BatchGetTwinsRequest* req,
    fleettwin::v1::BatchGetTwinsResponse* resp) {
  call c{ctx, batch_get_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  const auto n = static_cast<size_t>(req->names_size());
  if (n == 0 || n > limits_.max_batch_get) {
    c.finish({StatusCode::INVALID_ARGUMENT, "names must list 1 to " +
                                                std::to_string(limits_.max_batch_get) +
                                                " twins, got " + std::to_string(n)});
    return c.reactor();
  }
  // Twins served here are asked from their partition actors; the others are
  // fetched from the nodes that serve them, one GetTwin each.
  std::vector<std::string> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string error;
    auto id = parse_twin_name(req->names(static_cast<int>(i)), error);
    if (!id) {
      c.finish({StatusCode::INVALID_ARGUMENT, "names[" + std::to_string(i) + "]: " + error});
      return c.reactor();
    }
    ids.push_back(std::move(*id));
  }
  auto targets = plan_batch(backend_, c, std::move(ids));
  if (!targets)
    return c.reactor();
  auto g = std::make_shared<batch_gather<fleettwin::v1::Twin>>(n);
  auto masks = privacy_of(c);
  auto settle = [c, g, resp] {
    g->settle(c, [resp](auto& twins) {
      for (auto& tw : twins)
        resp->add_twins()->Swap(&tw);
    });
  };
  auto stale = backend_.stale_after_ms();
  for (size_t i = 0; i < n; ++i) {
    auto& t = (*targets)[i];
    if (!t.local) {
      fleettwin::v1::GetTwinRequest one;
      one.set_name(req->names(static_cast<int>(i)));
      forward_batch_item(backend_, g, i, t.endpoint, "/fleettwin.v1.TwinService/GetTwin",
                         c.forward_metadata(), one, settle);
      continue;
    }
    runtime::twin_completion done{[this, c, g, i, settle, stale, masks](runtime::twin_reply reply) {
                                    if (reply.error != runtime::query_error::none)
                                      g->fail(to_status(reply));
                                    else if (!c.sees(reply.twin->tenant))
                                      g->fail(twin_not_found(reply.twin->asset_id));
                                    else {
                                      to_proto(*reply.twin, wall_ms(), stale, g->items[i]);
                                      masks.redact(g->items[i]);
                                      audit_revealed(
                                          backend_, c, "/fleettwin.v1.TwinService/BatchGetTwins",
                                          g->items[i].name(), masks.revealed(g->items[i]));
                                    }
                                    settle();
                                  },
                                  unanswered()};
    caf::anon_send(t.local->actor, runtime::get_atom::value, std::move(t.id), std::move(done));
  }
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::ListTwins(::grpc::CallbackServerContext* ctx,
                                                    const fleettwin::v1::ListTwinsRequest* req,
                                                    fleettwin::v1::ListTwinsResponse* resp) {
  call c{ctx, list_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  auto listing = parse_listing(c, req->page_size(), req->filter(), req->page_token(), limits_);
  if (!listing)
    return c.reactor();
  const size_t page_size = listing->page_size;
  auto masks = privacy_of(c);
  if (auto why = masks.refuses(listing->filter)) {
    c.finish({StatusCode::PERMISSION_DENIED, *why});
    return c.reactor();
  }
  if (!scope_listing(c, req->filter(), *listing))
    return c.reactor();
  auto f = std::move(listing->filter);
  auto start_after = std::move(listing->start_after);
  auto plan = plan_listing(backend_, c);
  if (!plan)
    return c.reactor();
  const auto& partitions = plan->local;
  auto stale = backend_.stale_after_ms();
  auto filter_text = req->filter();
  auto max_scanned = limits_.max_scanned_per_page;
  auto& store = backend_.store();
  // Lists this node's partitions into `out` (on the query pool).
  auto list_local = [=, &store,
                     &list_backend = backend_](fleettwin::v1::ListTwinsResponse* out) -> Status {
    auto now = wall_ms();
    std::string error;
    auto page = store.list_twins(
        partitions, start_after, [&](const core::twin& tw) { return f.matches(tw, now, stale); },
        page_size, max_scanned, error);
    if (!error.empty())
      return {StatusCode::INTERNAL, "reading twins: " + error};
    for (const auto& tw : page.twins) {
      auto* t = out->add_twins();
      to_proto(tw, now, stale, *t);
      masks.redact(*t);
      audit_revealed(list_backend, c, "/fleettwin.v1.TwinService/ListTwins", t->name(),
                     masks.revealed(*t));
    }
    if (!page.next_page_token.empty())
      out->set_next_page_token(encode_page_token(filter_text, page.next_page_token));
    return Status::OK;
  };
  gather_listing<fleettwin::v1::ListTwinsResponse>(
      backend_, pool_, c, "/fleettwin.v1.TwinService/ListTwins", req->SerializeAsString(), *plan,
      resp, list_local,
      [filter_text, page_size](std::vector<fleettwin::v1::ListTwinsResponse>& parts,
                               fleettwin::v1::ListTwinsResponse& out) {
        return merge_pages(parts, filter_text, page_size, out);
      });
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::UpdateDesired(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::UpdateDesiredRequest* req,
    fleettwin::v1::Twin* resp) {
  call c{ctx, update_desired_};
  if (!c.admit(backend_))
    return c.reactor();
  auto audit = c.audit(backend_, "/fleettwin.v1.TwinService/UpdateDesired", req->name(), true);
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
    forward_if_remote(backend_, c, *id, error, "/fleettwin.v1.TwinService/UpdateDesired", *req,
                      resp);
    return c.reactor();
  }
  auto stale = backend_.stale_after_ms();
  when_visible(backend_, c, *r, *id,
               [&backend = backend_, c, resp, stale, masks = privacy_of(c), actor = r->actor,
                id = *id, update = std::move(update), audit]() mutable {
                 auto done = answer_with_twin(backend, c, "/fleettwin.v1.TwinService/UpdateDesired",
                                              resp, stale, masks);
                 done.audit = audit;
                 caf::anon_send(actor, runtime::desired_atom::value, std::move(id),
                                std::move(update), std::move(done));
               });
  return c.reactor();
}

::grpc::ServerUnaryReactor* twin_service::GetHistory(::grpc::CallbackServerContext* ctx,
                                                     const fleettwin::v1::GetHistoryRequest* req,
                                                     fleettwin::v1::GetHistoryResponse* resp) {
  call c{ctx, history_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
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
    forward_if_remote(backend_, c, *id, error, "/fleettwin.v1.TwinService/GetHistory", *req, resp);
    return c.reactor();
  }
  auto& store = backend_.store();
  auto partition = r->partition;
  auto property = req->property();
  auto start = req->start_time_ms();
  auto end = req->end_time_ms();
  auto limit = static_cast<size_t>(req->limit());
  auto masks = privacy_of(c);
  bool queued = pool_.submit([=, &store, &store_backend = backend_, id = std::move(*id)] {
    // The twin decides whether to go on (it exists, the caller may see it and the property),
    // read with its history under one snapshot.
    std::optional<Status> refused;
    auto accept = [&](const core::twin* tw) {
      if (!tw || tw->empty() || !c.sees(tw->tenant)) {  // none, erased, or another tenant's
        refused = twin_not_found(id);
      } else if (masks.masked(tw->kind, property)) {
        refused = Status{StatusCode::PERMISSION_DENIED, sensitive_refusal(property, "its history")};
      } else if (!tw->reported.contains(property)) {
        refused = Status{StatusCode::NOT_FOUND,
                         "twin \"" + id + "\" has no reported property \"" + property + "\""};
      } else if (masks.reveals(tw->kind, property)) {
        audit_revealed(store_backend, c, "/fleettwin.v1.TwinService/GetHistory", "twins/" + id,
                       {property});
      }
      return !refused;
    };
    std::string err;
    auto points = store.read_history(partition, id, property, start, end, limit, err, accept);
    if (!err.empty()) {
      c.finish({StatusCode::INTERNAL, "reading history: " + err});
      return;
    }
    if (refused) {
      c.finish(*refused);
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

::grpc::ServerWriteReactor<fleettwin::v1::TwinChange>* twin_service::WatchTwins(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::WatchTwinsRequest* req) {
  auto started = std::chrono::steady_clock::now();
  auto fail = [&](Status s) {
    probe_.on_request(
        "WatchTwins", code_name(s.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return new failed_stream<fleettwin::v1::TwinChange>(std::move(s));
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
    return fail({StatusCode::INVALID_ARGUMENT, filter_error(*err)});
  auto who = caller_of(*ctx);
  privacy masks{who, models_.get()};
  if (auto why = masks.refuses(f))
    return fail({StatusCode::PERMISSION_DENIED, *why});
  // A caller of one tenant watches only that tenant's twins, on every node.
  auto filter = scoped_filter(who, req->filter());
  if (filter != req->filter())
    if (auto err = core::filter::parse(filter, f))
      return fail({StatusCode::INTERNAL, filter_error(*err)});
  std::shared_ptr<void> slot;
  if (auto s = open_watch(backend_, *ctx, who, slot); !s.ok())
    return fail(std::move(s));
  if (auto shown = masks.revealable(); !shown.empty()) {
    // A watch cannot list what it will show: its start is audited with what it may.
    runtime::audit_entry e;
    e.time_ms = wall_ms();
    e.subject = who->subject;
    e.tenant = who->tenant;
    e.role = security::role_name(who->granted);
    e.method = "/fleettwin.v1.TwinService/WatchTwins";
    e.target = asset_id ? "twins/" + *asset_id : "twins";
    e.code = "OK";
    e.message = "watch may show sensitive properties:";
    for (const auto& p : shown)
      e.message += " " + p;
    if (!req->filter().empty())
      e.message += " (filter: " + req->filter() + ")";
    backend_.audit(std::move(e));
  }
  probe_.on_request("WatchTwins", "OK", 0);
  auto* stream =
      new watch_stream(hub_, asset_id, std::move(f), limits_.max_watch_queue, std::move(masks));
  stream->hold(std::move(slot));
  stream->on_overflow([&probe = probe_] { probe.on_watch_overflow("twins"); });
  backend_.watch_cluster(stream, asset_id.value_or(""), filter);
  hub_.add(stream);
  // Headers go out now so that clients know the watch is registered.
  stream->StartSendInitialMetadata();
  return stream;
}

admin_service::admin_service(twin_backend& backend, query_pool& pool, metrics::grpc_probe& probe)
    : backend_(backend),
      pool_(pool),
      cluster_(probe.method("GetCluster")),
      audit_(probe.method("ListAuditEvents")) {}

::grpc::ServerUnaryReactor* admin_service::GetCluster(::grpc::CallbackServerContext* ctx,
                                                      const fleettwin::v1::GetClusterRequest*,
                                                      fleettwin::v1::ClusterStatus* resp) {
  call c{ctx, cluster_};
  if (!c.admit(backend_))
    return c.reactor();
  c.audit(backend_, "/fleettwin.v1.AdminService/GetCluster", "cluster", false);
  backend_.cluster_status([c, resp](fleettwin::v1::ClusterStatus status) {
    *resp = std::move(status);
    c.finish(Status::OK);
  });
  return c.reactor();
}

node_service::node_service(twin_backend& backend, metrics::grpc_probe& probe)
    : backend_(backend), probe_(probe), status_(probe.method("GetStatus")) {}

::grpc::ServerUnaryReactor* node_service::GetStatus(::grpc::CallbackServerContext* ctx,
                                                    const fleettwin::v1::GetStatusRequest*,
                                                    fleettwin::v1::NodeStatus* resp) {
  call c{ctx, status_};
  if (!c.admit(backend_))
    return c.reactor();
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
