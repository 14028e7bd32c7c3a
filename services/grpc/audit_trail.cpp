// AdminService.ListAuditEvents: the audit trail of a twin (with its alerts) or another
// audited target, read from the audit topic's partition that holds it, on the query pool.

#include "services/grpc/convert.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr const char* audit_method = "/fleettwin.v1.AdminService/ListAuditEvents";
constexpr int32_t default_audit_page = 100;
constexpr int32_t max_audit_page = 1000;

}  // namespace

::grpc::ServerUnaryReactor* admin_service::ListAuditEvents(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListAuditEventsRequest* req,
    fleettwin::v1::ListAuditEventsResponse* resp) {
  call c{ctx, audit_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  c.audit(backend_, audit_method, req->target(), false);
  const auto& target = req->target();
  if (target.empty()) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "target is required: \"twins/{asset_id}\", or another audited target such as "
              "\"models/{kind}\", \"aggregate-kinds/{kind}\" or \"cluster\""});
    return c.reactor();
  }
  if (target.starts_with("twins/")) {
    std::string error;
    if (!parse_twin_name(target, error)) {
      c.finish({StatusCode::INVALID_ARGUMENT, error});
      return c.reactor();
    }
  }
  if (req->since_ms() < 0 || req->page_size() < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "since_ms and page_size must not be negative"});
    return c.reactor();
  }
  // The trail shows every tenant's callers: for platform operators only.
  if (c.who() && c.who()->scoped()) {
    c.finish({StatusCode::PERMISSION_DENIED,
              "the audit trail shows the calls of every tenant: '" + c.who()->subject +
                  "' (tenant " + c.who()->tenant +
                  ") may not read it; use a token without a tenant claim"});
    return c.reactor();
  }
  const size_t limit = static_cast<size_t>(
      req->page_size() == 0 ? default_audit_page : std::min(req->page_size(), max_audit_page));
  auto& backend = backend_;
  if (!pool_.submit([c, &backend, target, since = req->since_ms(), limit, resp] {
        c.finish(backend.audit_trail(target, since, limit, *resp));
      }))
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

}  // namespace fleettwin::grpc_api
