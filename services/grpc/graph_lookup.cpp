#include "services/grpc/graph_lookup.hpp"

#include "services/grpc/convert.hpp"
#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr std::string_view aggregate_prefix = "aggregates/";
constexpr std::string_view twin_prefix = "twins/";

runtime::aggregate_reply unanswered_aggregate() {
  return {query_error::unavailable,
          "the aggregate's partition stopped before answering (rebalance or shutdown); retry",
          {}};
}

}  // namespace

void add_parents(const std::string& child, const core::twin& tw, const std::set<std::string>& types,
                 fleettwin::v1::Relations& out) {
  for (const auto& r : tw.relations) {
    if (!types.empty() && !types.count(r.type))
      continue;
    auto* rel = out.add_parents();
    rel->set_type(r.type);
    rel->set_child(child);
    rel->set_parent(std::string{aggregate_prefix} + r.parent);
    rel->set_origin(static_cast<fleettwin::v1::RelationOrigin>(r.origin));
  }
}

std::optional<Status> lookup_refusal(const call& c, const std::string& name, const Status& st,
                                     const std::string& tenant) {
  const bool twin = std::string_view{name}.starts_with(twin_prefix);
  auto not_found = [&] {
    return twin ? twin_not_found(name.substr(twin_prefix.size()))
                : aggregate_not_found(name.substr(aggregate_prefix.size()));
  };
  if (st.error_code() == StatusCode::NOT_FOUND && confined(c))
    return not_found();
  if (!st.ok())
    return st;
  if (!c.sees(tenant))
    return not_found();
  return std::nullopt;
}

graph_lookup::graph_lookup(twin_backend& backend, std::shared_ptr<runtime::kinds_holder> kinds,
                           bool may_forward, std::string metadata)
    : backend_(backend),
      kinds_(std::move(kinds)),
      may_forward_(may_forward),
      metadata_(std::move(metadata)) {}

std::string node_metadata(const call& c) {
  if (!c.who())
    return {};
  security::caller self;
  self.subject = "fleettwin-node";
  self.granted = security::role::admin;
  return cluster::encode_metadata({{security::caller_header, security::encode_caller(self)}});
}

bool graph_lookup::is_aggregate(const std::string& id) const {
  auto registry = kinds_ ? kinds_->get() : nullptr;
  return registry && registry->is_aggregate(id);
}

void graph_lookup::forward(const std::string& id, const std::string& why, const char* method,
                           std::string request,
                           std::function<void(::grpc::Status, std::string)> done) {
  std::string reason = why;
  std::optional<std::string> endpoint;
  if (may_forward_)
    endpoint = backend_.remote_owner(id, reason);
  if (!endpoint) {
    done({StatusCode::UNAVAILABLE, reason}, {});
    return;
  }
  runtime::forward_completion fc{
      [done](runtime::forward_reply r) {
        done(r.code == 0 ? Status::OK : Status{static_cast<StatusCode>(r.code), r.message},
             std::move(r.response));
      },
      runtime::forward_reply{static_cast<int32_t>(StatusCode::UNAVAILABLE),
                             "the forwarded call was dropped (node stopping); retry",
                             {}}};
  backend_.forward(*endpoint, method, std::move(request), metadata_, std::move(fc));
}

void graph_lookup::relations(const std::string& id, bool twin,
                             answer<fleettwin::v1::Relations> done) {
  const std::string name = std::string{twin ? twin_prefix : aggregate_prefix} + id;
  std::string why;
  auto r = backend_.route_asset(id, why);
  if (!r) {
    fleettwin::v1::GetRelationsRequest req;
    req.set_name(name);
    forward(id, why, "/fleettwin.v1.AggregateService/GetRelations", req.SerializeAsString(),
            [done](Status s, std::string bytes) {
              fleettwin::v1::Relations out;
              if (s.ok() && !out.ParseFromString(bytes))
                s = {StatusCode::INTERNAL, "a node sent unreadable relations"};
              done(std::move(s), std::move(out));
            });
    return;
  }
  if (twin) {
    runtime::twin_completion c{[done, name](runtime::twin_reply reply) {
                                 fleettwin::v1::Relations out;
                                 if (reply.error != query_error::none) {
                                   done(to_status(reply), std::move(out));
                                   return;
                                 }
                                 out.set_name(name);
                                 out.set_tenant(reply.twin->tenant);
                                 add_parents(name, *reply.twin, {}, out);
                                 out.set_version(reply.twin->version);
                                 done(Status::OK, std::move(out));
                               },
                               unanswered()};
    caf::anon_send(r->actor, runtime::get_atom::value, id, std::move(c));
    return;
  }
  auto registry = kinds_ ? kinds_->get() : nullptr;
  runtime::aggregate_completion c{
      [done, name, registry](runtime::aggregate_reply reply) {
        fleettwin::v1::Relations out;
        if (reply.error != query_error::none) {
          done(to_status(reply.error, reply.message), std::move(out));
          return;
        }
        const auto& v = *reply.view;
        out.set_name(name);
        out.set_tenant(v.header.tenant);
        if (v.self)
          add_parents(name, *v.self, {}, out);
        out.set_version(v.header.version);
        for (const auto& [child, type] : v.children) {
          auto* rel = out.add_children();
          rel->set_type(type);
          const bool agg = registry && registry->is_aggregate(child);
          rel->set_child(std::string{agg ? aggregate_prefix : twin_prefix} + child);
          rel->set_parent(name);
        }
        done(Status::OK, std::move(out));
      },
      unanswered_aggregate()};
  caf::anon_send(r->actor, runtime::get_atom::value, id, runtime::aggregate_query{}, std::move(c));
}

void graph_lookup::twin(const std::string& id, answer<core::twin> done) {
  std::string why;
  auto r = backend_.route_asset(id, why);
  if (!r) {
    fleettwin::v1::GetTwinRequest req;
    req.set_name(std::string{twin_prefix} + id);
    forward(id, why, "/fleettwin.v1.TwinService/GetTwin", req.SerializeAsString(),
            [done](Status s, std::string bytes) {
              fleettwin::v1::Twin t;
              if (s.ok() && !t.ParseFromString(bytes))
                s = {StatusCode::INTERNAL, "a node sent an unreadable twin"};
              done(std::move(s), s.ok() ? from_proto(t) : core::twin{});
            });
    return;
  }
  if (auto tw = backend_.cached_twin(id)) {
    done(Status::OK, *tw);
    return;
  }
  runtime::twin_completion c{[done](runtime::twin_reply reply) {
                               if (reply.error != query_error::none)
                                 done(to_status(reply), {});
                               else
                                 done(Status::OK, *reply.twin);
                             },
                             unanswered()};
  caf::anon_send(r->actor, runtime::get_atom::value, id, std::move(c));
}

void graph_lookup::aggregate(const std::string& id, answer<fleettwin::v1::Aggregate> done) {
  std::string why;
  auto r = backend_.route_asset(id, why);
  if (!r) {
    fleettwin::v1::GetAggregateRequest req;
    req.set_name(std::string{aggregate_prefix} + id);
    forward(id, why, "/fleettwin.v1.AggregateService/GetAggregate", req.SerializeAsString(),
            [done](Status s, std::string bytes) {
              fleettwin::v1::Aggregate a;
              if (s.ok() && !a.ParseFromString(bytes))
                s = {StatusCode::INTERNAL, "a node sent an unreadable aggregate"};
              done(std::move(s), std::move(a));
            });
    return;
  }
  runtime::aggregate_completion c{[done](runtime::aggregate_reply reply) {
                                    fleettwin::v1::Aggregate a;
                                    if (reply.error != query_error::none) {
                                      done(to_status(reply.error, reply.message), std::move(a));
                                      return;
                                    }
                                    to_proto(reply.view->header, reply.view->self.get(), a);
                                    a.set_direct_members(reply.view->children.size());
                                    done(Status::OK, std::move(a));
                                  },
                                  unanswered_aggregate()};
  caf::anon_send(r->actor, runtime::get_atom::value, id, runtime::aggregate_query{}, std::move(c));
}

}  // namespace fleettwin::grpc_api
