// TwinService.DeleteTwin: erases a twin on the node that owns it (its state, history and
// analytics, tombstones in the changelog, its membership of aggregates), committed like
// any change of the twin.

#include "services/grpc/convert.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr const char* delete_method = "/fleettwin.v1.TwinService/DeleteTwin";

}  // namespace

::grpc::ServerUnaryReactor* twin_service::DeleteTwin(::grpc::CallbackServerContext* ctx,
                                                     const fleettwin::v1::DeleteTwinRequest* req,
                                                     fleettwin::v1::DeleteTwinResponse* resp) {
  call c{ctx, delete_};
  if (!c.admit(backend_))
    return c.reactor();
  auto audit = c.audit(backend_, delete_method, req->name(), true);
  std::string error;
  auto id = parse_twin_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  if (req->has_expected_version() && req->expected_version() == 0) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "expected_version 0 names no version a twin has: leave it unset to erase "
              "whatever version the twin is at"});
    return c.reactor();
  }
  auto r = backend_.route_asset(*id, error);
  if (!r) {
    forward_if_remote(backend_, c, *id, error, delete_method, *req, resp);
    return c.reactor();
  }
  const uint64_t expected = req->has_expected_version() ? req->expected_version() : 0;
  when_visible(
      backend_, c, *r, *id, [c, resp, expected, actor = r->actor, id = *id, audit]() mutable {
        runtime::twin_completion done{[c, resp](runtime::twin_reply reply) {
                                        c.committed_audit(reply);
                                        if (reply.error != runtime::query_error::none) {
                                          c.finish(to_status(reply));
                                          return;
                                        }
                                        resp->set_erased_ms(reply.twin->erased_ms);
                                        resp->set_version(reply.twin->version);
                                        c.finish(Status::OK);
                                      },
                                      unanswered()};
        done.audit = audit;
        caf::anon_send(actor, runtime::erase_atom::value, std::move(id), expected, std::move(done));
      });
  return c.reactor();
}

}  // namespace fleettwin::grpc_api
