#include "services/grpc/alert_service.hpp"

#include <algorithm>
#include <set>

#include "services/grpc/convert.hpp"
#include "services/grpc/privacy.hpp"
#include "services/grpc/unary_call.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr const char* list_method = "/fleettwin.v1.AlertService/ListAlerts";
constexpr const char* ack_method = "/fleettwin.v1.AlertService/AcknowledgeAlert";

/// Calls `f(property, alert)` for each alert of `tw` a listing shows: those
/// raised now, and with `cleared` the last cleared one of each property;
/// `f` returns whether the alert matched.
template <class F>
bool each_alert(const core::twin& tw, bool cleared, F f) {
  bool any = false;
  for (const auto& [property, a] : tw.analysis) {
    if (a.alert.raised_count == 0 || (!a.alert.active && !cleared))
      continue;
    any |= f(property, a.alert);
  }
  return any;
}

/// Merges the pages of several nodes: a page holds whole twins (each with
/// all its matching alerts), at most page_size of them, in twin order.
Status merge_alert_pages(std::vector<fleettwin::v1::ListAlertsResponse>& parts,
                         const std::string& filter, size_t page_size,
                         fleettwin::v1::ListAlertsResponse& out) {
  std::optional<std::string> cut;
  if (!listing_cut(parts, filter, cut))
    return {StatusCode::INTERNAL, "a node returned a page token for another filter"};
  std::vector<fleettwin::v1::Alert*> all;
  for (auto& p : parts)
    for (auto& a : *p.mutable_alerts())
      if (!cut || a.asset_id() <= *cut)
        all.push_back(&a);
  std::sort(all.begin(), all.end(), [](const auto* a, const auto* b) {
    return std::tie(a->asset_id(), a->property()) < std::tie(b->asset_id(), b->property());
  });
  size_t twins = 0;
  std::string last;
  for (auto* a : all) {
    if (twins == 0 || a->asset_id() != last) {
      if (twins == page_size) {
        out.set_next_page_token(encode_page_token(filter, last));
        return Status::OK;
      }
      ++twins;
      last = a->asset_id();
    }
    out.add_alerts()->Swap(a);
  }
  if (cut)
    out.set_next_page_token(encode_page_token(filter, *cut));
  return Status::OK;
}

}  // namespace

alert_service::alert_service(twin_backend& backend, query_pool& pool, alert_watch_hub* watch,
                             metrics::grpc_probe& probe, service_limits limits,
                             std::shared_ptr<runtime::models_holder> models)
    : backend_(backend),
      pool_(pool),
      watch_(watch),
      probe_(probe),
      limits_(limits),
      list_(probe.method("ListAlerts")),
      ack_(probe.method("AcknowledgeAlert")),
      models_(std::move(models)) {}

::grpc::ServerUnaryReactor* alert_service::ListAlerts(::grpc::CallbackServerContext* ctx,
                                                      const fleettwin::v1::ListAlertsRequest* req,
                                                      fleettwin::v1::ListAlertsResponse* resp) {
  call c{ctx, list_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  auto listing = parse_listing(c, req->page_size(), req->filter(), req->page_token(), limits_);
  if (!listing)
    return c.reactor();
  auto plan = plan_listing(backend_, c);
  if (!plan)
    return c.reactor();
  const size_t page_size = listing->page_size;
  if (auto why = privacy{c.who(), models_.get()}.refuses(listing->filter)) {
    c.finish({StatusCode::PERMISSION_DENIED, *why});
    return c.reactor();
  }
  if (!scope_listing(c, req->filter(), *listing))
    return c.reactor();
  auto f = std::move(listing->filter);
  auto start_after = std::move(listing->start_after);
  const auto& partitions = plan->local;
  const bool cleared = req->include_cleared();
  auto stale = backend_.stale_after_ms();
  auto filter_text = req->filter();
  auto max_scanned = limits_.max_scanned_per_page;
  auto& store = backend_.store();
  auto list_local = [=, &store](fleettwin::v1::ListAlertsResponse* out) -> Status {
    auto now = wall_ms();
    auto matches = [&](const core::twin& tw, std::string_view property,
                       const core::alert_state& a) {
      return f.matches(core::alert_view{&tw, property, &a}, now, stale);
    };
    std::string error;
    auto page = store.list_twins(
        partitions, start_after,
        [&](const core::twin& tw) {
          return each_alert(tw, cleared, [&](std::string_view p, const core::alert_state& a) {
            return matches(tw, p, a);
          });
        },
        page_size, max_scanned, error);
    if (!error.empty())
      return {StatusCode::INTERNAL, "reading twins: " + error};
    for (const auto& tw : page.twins)
      each_alert(tw, cleared, [&](std::string_view p, const core::alert_state& a) {
        if (!matches(tw, p, a))
          return false;
        alert_to_proto(tw.asset_id, tw.kind, tw.tenant, p, a, *out->add_alerts());
        return true;
      });
    if (!page.next_page_token.empty())
      out->set_next_page_token(encode_page_token(filter_text, page.next_page_token));
    return Status::OK;
  };
  gather_listing<fleettwin::v1::ListAlertsResponse>(
      backend_, pool_, c, list_method, req->SerializeAsString(), *plan, resp, list_local,
      [filter_text, page_size](std::vector<fleettwin::v1::ListAlertsResponse>& parts,
                               fleettwin::v1::ListAlertsResponse& out) {
        return merge_alert_pages(parts, filter_text, page_size, out);
      });
  return c.reactor();
}

::grpc::ServerWriteReactor<fleettwin::v1::AlertEvent>* alert_service::WatchAlerts(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::WatchAlertsRequest* req) {
  auto started = std::chrono::steady_clock::now();
  auto fail = [&](Status s) {
    probe_.on_request(
        "WatchAlerts", code_name(s.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (s.error_code() == StatusCode::UNAVAILABLE)
      s = Status{s.error_code(),
                 s.error_message() + " (retry in " + std::to_string(retry_after_ms) + " ms)"};
    return new failed_stream<fleettwin::v1::AlertEvent>(std::move(s));
  };
  std::string id;
  if (!req->twin().empty()) {
    std::string error;
    auto parsed = parse_twin_name(req->twin(), error);
    if (!parsed)
      return fail({StatusCode::INVALID_ARGUMENT, "twin: " + error});
    id = std::move(*parsed);
  }
  if (!fleettwin::v1::AlertSeverity_IsValid(req->min_severity()))
    return fail({StatusCode::INVALID_ARGUMENT,
                 "min_severity must be WARNING or CRITICAL (or unset for every alert)"});
  if (!watch_)
    return fail({StatusCode::UNAVAILABLE, "this node follows no alerts topic"});
  if (!watch_->ready())
    return fail({StatusCode::UNAVAILABLE, "this node is still positioning on the alerts topic"});
  auto who = caller_of(*ctx);
  std::shared_ptr<void> slot;
  if (auto s = open_watch(backend_, *ctx, who, slot); !s.ok())
    return fail(std::move(s));
  probe_.on_request("WatchAlerts", "OK", 0);
  auto* stream = new alert_watch_stream(*watch_, std::move(id), req->min_severity(),
                                        limits_.max_watch_queue, who ? who->tenant : "");
  stream->hold(std::move(slot));
  stream->on_overflow([&probe = probe_] { probe.on_watch_overflow("alerts"); });
  watch_->add(stream);
  // Headers go out now so that clients know the watch is registered.
  stream->StartSendInitialMetadata();
  return stream;
}

::grpc::ServerUnaryReactor* alert_service::AcknowledgeAlert(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::AcknowledgeAlertRequest* req,
    fleettwin::v1::Alert* resp) {
  call c{ctx, ack_};
  if (!c.admit(backend_))
    return c.reactor();
  auto audit = c.audit(backend_, ack_method, req->name(), true);
  std::string error;
  auto name = parse_alert_name(req->name(), error);
  if (!name) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  auto r = backend_.route_asset(name->asset_id, error);
  if (!r) {
    forward_if_remote(backend_, c, name->asset_id, error, ack_method, *req, resp);
    return c.reactor();
  }
  auto id = name->asset_id;
  // The completion is made only when the acknowledgement is sent: one never sent must not
  // answer the call a second time (a completion answers "unanswered" when dropped).
  when_visible(backend_, c, *r, id,
               [c, resp, actor = r->actor, name = std::move(*name), audit]() mutable {
                 runtime::twin_completion done{
                     [c, resp, property = name.property](runtime::twin_reply reply) {
                       c.committed_audit(reply);
                       if (reply.error != runtime::query_error::none) {
                         c.finish(to_status(reply));
                         return;
                       }
                       const auto& tw = *reply.twin;
                       const auto& a = tw.analysis.find(property)->second.alert;
                       alert_to_proto(tw.asset_id, tw.kind, tw.tenant, property, a, *resp);
                       c.finish(Status::OK);
                     },
                     unanswered()};
                 done.audit = audit;
                 caf::anon_send(actor, runtime::ack_atom::value, std::move(name.asset_id),
                                std::move(name.property), name.number, std::move(done));
               });
  return c.reactor();
}

}  // namespace fleettwin::grpc_api
