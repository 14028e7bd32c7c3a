#include "services/grpc/aggregate_service.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "services/grpc/convert.hpp"
#include "services/grpc/unary_call.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr const char* get_method = "/fleettwin.v1.AggregateService/GetAggregate";
constexpr const char* members_method = "/fleettwin.v1.AggregateService/ListMembers";
constexpr const char* relations_method = "/fleettwin.v1.AggregateService/GetRelations";
constexpr const char* list_method = "/fleettwin.v1.AggregateService/ListAggregates";
constexpr std::string_view aggregate_prefix = "aggregates/";
constexpr std::string_view twin_prefix = "twins/";

runtime::aggregate_reply unanswered_aggregate() {
  return {query_error::unavailable,
          "the aggregate's partition stopped before answering (rebalance or shutdown); retry",
          {}};
}

std::string member_name(const std::string& id, bool twin) {
  return std::string{twin ? twin_prefix : aggregate_prefix} + id;
}

void to_proto(const std::string& id, const core::member_entry& e,
              fleettwin::v1::AggregateMember& out) {
  out.set_name(member_name(id, e.twin));
  out.set_twin(e.twin);
  out.set_depth(e.depth);
  for (const auto& p : e.paths) {
    out.add_via(p.via);
    if (p.via == id && p.depth == 1)
      out.set_relation_type(p.type);
  }
  out.set_in_transit(e.in_transit());
  if (!e.twin)
    return;
  out.set_kind(e.values.kind);
  out.set_version(e.values.version);
  out.set_last_seen_ms(e.values.last_seen_ms);
  for (const auto& [k, v] : e.values.reported)
    grpc_api::to_proto(v, (*out.mutable_reported())[k]);
  for (const auto& [k, v] : e.values.attributes)
    (*out.mutable_attributes())[k] = v;
}

/// Sends an aggregate query to the local owner, or forwards the call.
template <class Request, class Response, class Answer>
void ask(twin_backend& backend, const call& c, const std::string& id, const char* method,
         const Request& req, Response* resp, runtime::aggregate_query q, Answer answer) {
  std::string why;
  auto r = backend.route_asset(id, why);
  if (!r) {
    forward_if_remote(backend, c, id, why, method, req, resp);
    return;
  }
  runtime::aggregate_completion done{[c, answer](runtime::aggregate_reply reply) {
                                       if (reply.error != query_error::none) {
                                         c.finish(to_status(reply.error, reply.message));
                                         return;
                                       }
                                       answer(*reply.view);
                                       c.finish(Status::OK);
                                     },
                                     unanswered_aggregate()};
  caf::anon_send(r->actor, runtime::get_atom::value, id, std::move(q), std::move(done));
}

/// An aggregate as the filter language sees it: a twin whose reported
/// properties are its measures (and its member counts).
core::twin as_twin(const core::aggregate_header& h) {
  core::twin tw;
  tw.asset_id = h.id;
  tw.kind = h.kind;
  tw.version = h.version;
  for (const auto& [name, v] : h.measures)
    if (v)
      tw.reported[name].val = *v;
  tw.reported["member_twins"].val = static_cast<int64_t>(h.twins);
  tw.reported["members"].val = static_cast<int64_t>(h.members);
  return tw;
}

}  // namespace

std::optional<std::string> parse_aggregate_name(const std::string& name,
                                                const core::kind_registry* kinds,
                                                std::string& error) {
  if (!std::string_view{name}.starts_with(aggregate_prefix) ||
      name.size() == aggregate_prefix.size()) {
    error = "name \"" + name +
            "\" is not an aggregate name: expected aggregates/{collection}/{id}, "
            "e.g. aggregates/fleets/north";
    return std::nullopt;
  }
  std::string id = name.substr(aggregate_prefix.size());
  if (!kinds) {
    error = "this node has no aggregate kinds (start it with --aggregates <file>)";
    return std::nullopt;
  }
  if (!kinds->kind_of(id)) {
    auto c = core::collection_of(id);
    error = c.empty() ? "\"" + id + "\" is not an aggregate id: expected {collection}/{id}"
                      : "no aggregate kind has collection \"" + std::string{c} + "\"";
    return std::nullopt;
  }
  return id;
}

std::optional<std::string> aggregate_service::aggregate_id(const call& c,
                                                           const std::string& name) const {
  std::string error;
  auto registry = kinds_ ? kinds_->get() : nullptr;
  auto id = parse_aggregate_name(name, registry.get(), error);
  if (!id)
    c.finish({StatusCode::INVALID_ARGUMENT, error});
  return id;
}

aggregate_service::aggregate_service(twin_backend& backend, query_pool& pool,
                                     std::shared_ptr<runtime::kinds_holder> kinds,
                                     metrics::grpc_probe& probe, service_limits limits)
    : backend_(backend),
      pool_(pool),
      kinds_(std::move(kinds)),
      limits_(limits),
      get_(probe.method("GetAggregate")),
      list_(probe.method("ListAggregates")),
      members_(probe.method("ListMembers")),
      relations_(probe.method("GetRelations")),
      kinds_list_(probe.method("ListAggregateKinds")) {}

::grpc::ServerUnaryReactor* aggregate_service::GetAggregate(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::GetAggregateRequest* req,
    fleettwin::v1::Aggregate* resp) {
  call c{ctx, get_};
  auto id = aggregate_id(c, req->name());
  if (!id)
    return c.reactor();
  ask(backend_, c, *id, get_method, *req, resp, runtime::aggregate_query{},
      [resp](const runtime::aggregate_view& v) {
        to_proto(v.header, v.self.get(), *resp);
        resp->set_direct_members(v.children.size());
      });
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::ListAggregates(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListAggregatesRequest* req,
    fleettwin::v1::ListAggregatesResponse* resp) {
  call c{ctx, list_};
  if (req->page_size() < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "page_size must not be negative"});
    return c.reactor();
  }
  const size_t page_size =
      req->page_size() == 0
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
  auto plan = plan_listing(backend_, c);
  if (!plan)
    return c.reactor();
  const auto& partitions = plan->local;
  auto filter_text = req->filter();
  auto max_scanned = limits_.max_scanned_per_page;
  auto stale = backend_.stale_after_ms();
  auto& store = backend_.store();
  auto list_local = [=, &store](fleettwin::v1::ListAggregatesResponse* out) -> Status {
    const auto now = wall_ms();
    std::string error;
    auto page = store.list_aggregates(
        partitions, start_after,
        [&](const core::aggregate_header& h) { return f.matches(as_twin(h), now, stale); },
        page_size, max_scanned, error);
    if (!error.empty())
      return {StatusCode::INTERNAL, "reading aggregates: " + error};
    for (const auto& h : page.aggregates)
      to_proto(h, nullptr, *out->add_aggregates());
    if (!page.next_page_token.empty())
      out->set_next_page_token(encode_page_token(filter_text, page.next_page_token));
    return Status::OK;
  };
  gather_listing<fleettwin::v1::ListAggregatesResponse>(
      backend_, pool_, c, list_method, req->SerializeAsString(), *plan, resp, list_local,
      [filter_text, page_size](std::vector<fleettwin::v1::ListAggregatesResponse>& parts,
                               fleettwin::v1::ListAggregatesResponse& out) {
        return merge_listing_pages(
            parts, filter_text, page_size, out,
            [](fleettwin::v1::ListAggregatesResponse* r) { return r->mutable_aggregates(); },
            [](const fleettwin::v1::Aggregate& a) -> const std::string& {
              return a.aggregate_id();
            });
      });
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::ListMembers(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListMembersRequest* req,
    fleettwin::v1::ListMembersResponse* resp) {
  call c{ctx, members_};
  auto id = aggregate_id(c, req->name());
  if (!id)
    return c.reactor();
  runtime::aggregate_query q;
  q.depth = req->depth() == 0 ? 1 : req->depth();
  if (q.depth > core::max_relation_depth) {
    c.finish({StatusCode::INVALID_ARGUMENT, "depth must be 1 to " +
                                                std::to_string(core::max_relation_depth) +
                                                ", got " + std::to_string(req->depth())});
    return c.reactor();
  }
  if (req->page_size() < 0 || req->page_size() > limits_.max_page_size) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "page_size must be 0 to " + std::to_string(limits_.max_page_size)});
    return c.reactor();
  }
  if (req->twins_only() && req->aggregates_only()) {
    c.finish({StatusCode::INVALID_ARGUMENT, "twins_only and aggregates_only exclude each other"});
    return c.reactor();
  }
  q.page_size =
      static_cast<uint32_t>(req->page_size() == 0 ? limits_.default_page_size : req->page_size());
  q.twins_only = req->twins_only();
  q.aggregates_only = req->aggregates_only();
  if (!req->filter().empty()) {
    auto f = std::make_shared<core::filter>();
    if (auto err = core::filter::parse(req->filter(), *f)) {
      c.finish({StatusCode::INVALID_ARGUMENT,
                "filter at " + std::to_string(err->position) + ": " + err->message});
      return c.reactor();
    }
    q.filter = std::move(f);
  }
  // The token is bound to everything that selects members.
  const std::string selection = req->filter() + "|" + std::to_string(q.depth) + "|" +
                                (q.twins_only ? "t" : "") + (q.aggregates_only ? "a" : "");
  if (!req->page_token().empty()) {
    auto after = decode_page_token(req->page_token(), selection);
    if (!after) {
      c.finish({StatusCode::INVALID_ARGUMENT,
                "page_token was not issued for this aggregate's members with this filter, depth "
                "and selection"});
      return c.reactor();
    }
    q.start_after = std::move(*after);
  }
  q.now_ms = wall_ms();
  q.stale_after_ms = backend_.stale_after_ms();
  ask(backend_, c, *id, members_method, *req, resp, std::move(q),
      [resp, selection](const runtime::aggregate_view& v) {
        for (const auto& [mid, e] : v.members)
          to_proto(mid, e, *resp->add_members());
        resp->set_total(v.total);
        if (!v.next_after.empty())
          resp->set_next_page_token(encode_page_token(selection, v.next_after));
      });
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::GetRelations(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::GetRelationsRequest* req,
    fleettwin::v1::Relations* resp) {
  call c{ctx, relations_};
  std::set<std::string> types(req->types().begin(), req->types().end());
  auto wanted = [types](const std::string& t) { return types.empty() || types.count(t) > 0; };
  auto add_parents = [resp, wanted](const std::string& child, const core::twin& tw) {
    for (const auto& r : tw.relations) {
      if (!wanted(r.type))
        continue;
      auto* rel = resp->add_parents();
      rel->set_type(r.type);
      rel->set_child(child);
      rel->set_parent(std::string{aggregate_prefix} + r.parent);
      rel->set_origin(static_cast<fleettwin::v1::RelationOrigin>(r.origin));
    }
  };
  resp->set_name(req->name());
  std::string error;
  if (std::string_view{req->name()}.starts_with(twin_prefix)) {
    auto id = parse_twin_name(req->name(), error);
    if (!id) {
      c.finish({StatusCode::INVALID_ARGUMENT, error});
      return c.reactor();
    }
    auto r = backend_.route_asset(*id, error);
    if (!r) {
      forward_if_remote(backend_, c, *id, error, relations_method, *req, resp);
      return c.reactor();
    }
    std::string name = req->name();
    runtime::twin_completion done{[c, resp, add_parents, name](runtime::twin_reply reply) {
                                    if (reply.error != query_error::none) {
                                      c.finish(to_status(reply));
                                      return;
                                    }
                                    add_parents(name, *reply.twin);
                                    resp->set_version(reply.twin->version);
                                    c.finish(Status::OK);
                                  },
                                  unanswered()};
    caf::anon_send(r->actor, runtime::get_atom::value, std::move(*id), std::move(done));
    return c.reactor();
  }
  auto registry = kinds_ ? kinds_->get() : nullptr;
  auto id = parse_aggregate_name(req->name(), registry.get(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error + " (or twins/{asset_id} for a twin)"});
    return c.reactor();
  }
  std::string name = req->name();
  ask(backend_, c, *id, relations_method, *req, resp, runtime::aggregate_query{},
      [resp, add_parents, wanted, name](const runtime::aggregate_view& v) {
        if (v.self)
          add_parents(name, *v.self);
        resp->set_version(v.header.version);
        for (const auto& [child, type] : v.children) {
          if (!wanted(type))
            continue;
          auto* rel = resp->add_children();
          rel->set_type(type);
          rel->set_child(child);
          rel->set_parent(name);
        }
      });
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::ListAggregateKinds(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListAggregateKindsRequest*,
    fleettwin::v1::ListAggregateKindsResponse* resp) {
  call c{ctx, kinds_list_};
  auto registry = kinds_ ? kinds_->get() : nullptr;
  if (registry) {
    for (const auto& [name, k] : registry->kinds()) {
      auto* out = resp->add_kinds();
      out->set_name(k->def.name);
      out->set_collection(k->def.collection);
      for (const auto& t : k->def.member_relations)
        out->add_member_relations(t);
      for (const auto& [m, expr] : k->def.measures) {
        auto* md = out->add_measures();
        md->set_name(m);
        md->set_expression(expr);
      }
      out->set_description(k->def.description);
    }
    for (const auto& r : registry->rules()) {
      auto* out = resp->add_rules();
      out->set_attribute(r.attribute);
      out->set_type(r.type);
      out->set_collection(r.collection);
    }
  }
  c.finish(Status::OK);
  return c.reactor();
}

}  // namespace fleettwin::grpc_api
