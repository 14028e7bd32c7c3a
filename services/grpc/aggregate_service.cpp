#include "services/grpc/aggregate_service.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "services/grpc/convert.hpp"
#include "services/grpc/graph_lookup.hpp"
#include "services/grpc/privacy.hpp"
#include "services/grpc/unary_call.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr const char* get_method = "/fleettwin.v1.AggregateService/GetAggregate";
constexpr const char* members_method = "/fleettwin.v1.AggregateService/ListMembers";
constexpr const char* list_method = "/fleettwin.v1.AggregateService/ListAggregates";
constexpr const char* set_relations_method = "/fleettwin.v1.AggregateService/SetRelations";
constexpr const char* delete_relations_method = "/fleettwin.v1.AggregateService/DeleteRelations";
constexpr const char* history_method = "/fleettwin.v1.AggregateService/GetAggregateHistory";
constexpr int32_t default_history_page = 1000;
constexpr int32_t max_history_page = 10'000;
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

void to_proto(const std::string& id, const core::member_entry& e, const privacy& masks,
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
    if (!masks.masked(e.values.kind, k))  // a measure may read a sensitive property
      grpc_api::to_proto(v, (*out.mutable_reported())[k]);
  for (const auto& [k, v] : e.values.attributes)
    (*out.mutable_attributes())[k] = v;
}

void to_proto(const runtime::aggregate_view& v, fleettwin::v1::Aggregate& out) {
  grpc_api::to_proto(v.header, v.self.get(), out);
  out.set_direct_members(v.children.size());
}

/// Why the caller may not have the answer of aggregate `id`'s owner (its error, or the
/// aggregate is not the caller's tenant's); nullopt when it may. A caller confined to a
/// tenant learns nothing of other tenants' aggregates: every one it may not see answers
/// like one that does not exist.
std::optional<Status> refusal(const call& c, const std::string& id,
                              const runtime::aggregate_reply& reply) {
  if (reply.error == query_error::not_found && confined(c))
    return aggregate_not_found(id);
  if (reply.error != query_error::none)
    return to_status(reply.error, reply.message);
  if (!c.sees(reply.view->header.tenant))
    return aggregate_not_found(id);
  return std::nullopt;
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
  runtime::aggregate_completion done{[c, id, answer](runtime::aggregate_reply reply) {
                                       if (auto no = refusal(c, id, reply)) {
                                         c.finish(*no);
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
  tw.tenant = h.tenant;
  tw.version = h.version;
  for (const auto& [name, v] : h.measures)
    if (v)
      tw.reported[name].val = *v;
  tw.reported[std::string{core::member_twins_measure}].val = static_cast<int64_t>(h.twins);
  tw.reported[std::string{core::members_measure}].val = static_cast<int64_t>(h.members);
  return tw;
}

}  // namespace

void kind_to_proto(const core::aggregate_kind& k, fleettwin::v1::AggregateKind& out) {
  out.set_name(k.name);
  out.set_collection(k.collection);
  for (const auto& t : k.member_relations)
    out.add_member_relations(t);
  for (const auto& [name, expr] : k.measures) {
    auto* m = out.add_measures();
    m->set_name(name);
    m->set_expression(expr);
  }
  out.set_description(k.description);
  out.set_revision(k.revision);
}

core::twin aggregate_as_twin(const fleettwin::v1::Aggregate& a) {
  core::twin tw;
  tw.asset_id = a.aggregate_id();
  tw.kind = a.kind();
  tw.tenant = a.tenant();
  tw.version = a.version();
  for (const auto& m : a.measures())
    if (m.has_value())
      tw.reported[m.name()].val = m.value();
  tw.reported[std::string{core::member_twins_measure}].val = static_cast<int64_t>(a.member_twins());
  tw.reported[std::string{core::members_measure}].val = static_cast<int64_t>(a.members());
  for (const auto& [k, v] : a.attributes())
    tw.attributes[k] = v;
  return tw;
}

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
                                     aggregate_watch_hub* watch, kind_writer put_kind,
                                     metrics::grpc_probe& probe, service_limits limits,
                                     std::shared_ptr<runtime::models_holder> models)
    : backend_(backend),
      pool_(pool),
      kinds_(std::move(kinds)),
      models_(std::move(models)),
      watch_(watch),
      put_kind_(std::move(put_kind)),
      probe_(probe),
      limits_(limits),
      get_(probe.method("GetAggregate")),
      batch_get_(probe.method("BatchGetAggregates")),
      history_(probe.method("GetAggregateHistory")),
      list_(probe.method("ListAggregates")),
      members_(probe.method("ListMembers")),
      relations_(probe.method("GetRelations")),
      traverse_(probe.method("Traverse")),
      set_relations_(probe.method("SetRelations")),
      delete_relations_(probe.method("DeleteRelations")),
      kinds_list_(probe.method("ListAggregateKinds")),
      kinds_put_(probe.method("PutAggregateKind")) {}

::grpc::ServerUnaryReactor* aggregate_service::GetAggregate(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::GetAggregateRequest* req,
    fleettwin::v1::Aggregate* resp) {
  call c{ctx, get_};
  if (!c.admit(backend_))
    return c.reactor();
  auto id = aggregate_id(c, req->name());
  if (!id)
    return c.reactor();
  ask(backend_, c, *id, get_method, *req, resp, runtime::aggregate_query{},
      [resp](const runtime::aggregate_view& v) { to_proto(v, *resp); });
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::BatchGetAggregates(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::BatchGetAggregatesRequest* req,
    fleettwin::v1::BatchGetAggregatesResponse* resp) {
  call c{ctx, batch_get_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  const auto n = static_cast<size_t>(req->names_size());
  if (n == 0 || n > limits_.max_batch_get) {
    c.finish({StatusCode::INVALID_ARGUMENT, "names must list 1 to " +
                                                std::to_string(limits_.max_batch_get) +
                                                " aggregates, got " + std::to_string(n)});
    return c.reactor();
  }
  auto registry = kinds_ ? kinds_->get() : nullptr;
  std::vector<std::string> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string error;
    auto id = parse_aggregate_name(req->names(static_cast<int>(i)), registry.get(), error);
    if (!id) {
      c.finish({StatusCode::INVALID_ARGUMENT, "names[" + std::to_string(i) + "]: " + error});
      return c.reactor();
    }
    ids.push_back(std::move(*id));
  }
  auto targets = plan_batch(backend_, c, std::move(ids));
  if (!targets)
    return c.reactor();
  auto g = std::make_shared<batch_gather<fleettwin::v1::Aggregate>>(n);
  auto settle = [c, g, resp] {
    g->settle(c, [resp](auto& items) {
      for (auto& a : items)
        resp->add_aggregates()->Swap(&a);
    });
  };
  for (size_t i = 0; i < n; ++i) {
    auto& t = (*targets)[i];
    if (!t.local) {
      fleettwin::v1::GetAggregateRequest one;
      one.set_name(req->names(static_cast<int>(i)));
      forward_batch_item(backend_, g, i, t.endpoint, get_method, c.forward_metadata(), one, settle);
      continue;
    }
    runtime::aggregate_completion done{
        [c, id = t.id, g, i, settle](runtime::aggregate_reply reply) {
          if (auto no = refusal(c, id, reply))
            g->fail(*no);
          else
            to_proto(*reply.view, g->items[i]);
          settle();
        },
        unanswered_aggregate()};
    caf::anon_send(t.local->actor, runtime::get_atom::value, std::move(t.id),
                   runtime::aggregate_query{}, std::move(done));
  }
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::GetAggregateHistory(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::GetAggregateHistoryRequest* req,
    fleettwin::v1::GetAggregateHistoryResponse* resp) {
  call c{ctx, history_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  auto id = aggregate_id(c, req->name());
  if (!id)
    return c.reactor();
  if (req->start_ms() < 0 || req->end_ms() < 0 ||
      (req->end_ms() != 0 && req->end_ms() <= req->start_ms())) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "time range must satisfy 0 <= start_ms < end_ms (0 = unbounded)"});
    return c.reactor();
  }
  if (req->page_size() < 0 || req->page_size() > max_history_page) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "page_size must be 0 to " + std::to_string(max_history_page)});
    return c.reactor();
  }
  auto registry = kinds_->get();
  const auto* kind = registry->kind_of(*id);
  std::vector<std::string> measures(req->measures().begin(), req->measures().end());
  for (const auto& m : measures) {
    bool known = m == core::member_twins_measure || m == core::members_measure;
    for (const auto& d : kind->measures)
      known = known || d.name == m;
    if (!known) {
      std::string names;
      for (const auto& d : kind->measures)
        names += (names.empty() ? "" : ", ") + d.name;
      c.finish({StatusCode::INVALID_ARGUMENT, "kind \"" + kind->def.name + "\" has no measure \"" +
                                                  m + "\" (it has " + names +
                                                  ", member_twins, members)"});
      return c.reactor();
    }
  }
  // The token is bound to the selection: measures and time range.
  std::string selection = std::to_string(req->start_ms()) + "|" + std::to_string(req->end_ms());
  for (const auto& m : measures)
    selection += "|" + m;
  uint64_t after = 0;
  if (!req->page_token().empty()) {
    auto last = decode_page_token(req->page_token(), selection);
    char* end = nullptr;
    if (last)
      after = std::strtoull(last->c_str(), &end, 10);
    if (!last || last->empty() || end != last->c_str() + last->size()) {
      c.finish({StatusCode::INVALID_ARGUMENT,
                "page_token was not issued for this aggregate's history with these measures and "
                "time range"});
      return c.reactor();
    }
  }
  std::string why;
  auto r = backend_.route_asset(*id, why);
  if (!r) {
    forward_if_remote(backend_, c, *id, why, history_method, *req, resp);
    return c.reactor();
  }
  const size_t limit =
      static_cast<size_t>(req->page_size() == 0 ? default_history_page : req->page_size());
  // The actor answers first (NOT_FOUND, or UNAVAILABLE while its partition
  // restores); the committed history is then read on the query pool.
  auto& store = backend_.store();
  auto& pool = pool_;
  auto partition = r->partition;
  runtime::aggregate_completion done{
      [c, resp, &store, &pool, partition, aid = *id, measures, start = req->start_ms(),
       end_ms = req->end_ms(), after, limit, selection](runtime::aggregate_reply reply) {
        if (auto no = refusal(c, aid, reply)) {
          c.finish(*no);
          return;
        }
        bool queued = pool.submit([=, &store] {
          std::string error;
          bool more = false;
          auto points = store.read_aggregate_history(partition, aid, measures, start, end_ms, after,
                                                     limit, more, error);
          if (!error.empty()) {
            c.finish({StatusCode::INTERNAL, error});
            return;
          }
          for (const auto& p : points) {
            auto* out = resp->add_points();
            out->set_time_ms(p.time_ms);
            out->set_version(p.version);
            for (const auto& [name, v] : p.measures) {
              auto* m = out->add_measures();
              m->set_name(name);
              m->set_value(v);
            }
          }
          if (more && !points.empty())
            resp->set_next_page_token(
                encode_page_token(selection, std::to_string(points.back().version)));
          c.finish(Status::OK);
        });
        if (!queued)
          c.finish(
              {StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
      },
      unanswered_aggregate()};
  caf::anon_send(r->actor, runtime::get_atom::value, *id, runtime::aggregate_query{},
                 std::move(done));
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::ListAggregates(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListAggregatesRequest* req,
    fleettwin::v1::ListAggregatesResponse* resp) {
  call c{ctx, list_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  auto listing = parse_listing(c, req->page_size(), req->filter(), req->page_token(), limits_);
  if (!listing)
    return c.reactor();
  // A caller of one tenant lists only aggregates whose member twins are all its tenant's.
  if (!scope_listing(c, req->filter(), *listing))
    return c.reactor();
  const size_t page_size = listing->page_size;
  auto f = std::move(listing->filter);
  auto start_after = std::move(listing->start_after);
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

::grpc::ServerWriteReactor<fleettwin::v1::AggregateChange>* aggregate_service::WatchAggregates(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::WatchAggregatesRequest* req) {
  auto started = std::chrono::steady_clock::now();
  auto fail = [&](Status s) {
    probe_.on_request(
        "WatchAggregates", code_name(s.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (s.error_code() == StatusCode::UNAVAILABLE)
      s = Status{s.error_code(),
                 s.error_message() + " (retry in " + std::to_string(retry_after_ms) + " ms)"};
    return new failed_stream<fleettwin::v1::AggregateChange>(std::move(s));
  };
  auto who = caller_of(*ctx);
  auto registry = kinds_ ? kinds_->get() : nullptr;
  std::string id;
  if (!req->name().empty()) {
    if (!req->kind().empty())
      return fail({StatusCode::INVALID_ARGUMENT,
                   "give either name (one aggregate) or kind (all of a kind), not both"});
    std::string error;
    auto parsed = parse_aggregate_name(req->name(), registry.get(), error);
    if (!parsed)
      return fail({StatusCode::INVALID_ARGUMENT, error});
    id = std::move(*parsed);
  } else if (!req->kind().empty()) {
    if (!registry || !registry->kinds().count(req->kind())) {
      std::string names;
      if (registry)
        for (const auto& [name, k] : registry->kinds())
          names += (names.empty() ? "" : ", ") + name;
      return fail({StatusCode::INVALID_ARGUMENT,
                   "no aggregate kind \"" + req->kind() + "\" (kinds: " + names + ")"});
    }
  }
  if (!watch_)
    return fail({StatusCode::UNAVAILABLE,
                 "this node follows no aggregate changes (start it with --aggregates <file>)"});
  if (!watch_->ready())
    return fail(
        {StatusCode::UNAVAILABLE, "this node is still positioning on the aggregates topic"});
  std::shared_ptr<void> slot;
  if (auto s = open_watch(backend_, *ctx, who, slot); !s.ok())
    return fail(std::move(s));
  probe_.on_request("WatchAggregates", "OK", 0);
  // A caller of one tenant watches only its tenant's aggregates, on every node.
  auto* stream =
      new aggregate_watch_stream(*watch_, std::move(id), req->kind(), limits_.max_watch_queue,
                                 who && who->scoped() ? &who->tenant : nullptr);
  stream->hold(std::move(slot));
  stream->on_overflow([&probe = probe_] { probe.on_watch_overflow("aggregates"); });
  watch_->add(stream);
  // Headers go out now so that clients know the watch is registered.
  stream->StartSendInitialMetadata();
  return stream;
}

::grpc::ServerUnaryReactor* aggregate_service::ListMembers(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListMembersRequest* req,
    fleettwin::v1::ListMembersResponse* resp) {
  call c{ctx, members_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
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
  privacy masks{c.who(), models_.get()};
  if (!req->filter().empty()) {
    auto f = parse_filter(c, req->filter());
    if (!f)
      return c.reactor();
    if (auto why = masks.refuses(*f)) {
      c.finish({StatusCode::PERMISSION_DENIED, *why});
      return c.reactor();
    }
    q.filter = std::make_shared<core::filter>(std::move(*f));
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
      [resp, selection, masks](const runtime::aggregate_view& v) {
        for (const auto& [mid, e] : v.members)
          to_proto(mid, e, masks, *resp->add_members());
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
  if (!c.admit(backend_))
    return c.reactor();
  auto id = entity_id(c, req->name(), "name");
  if (!id)
    return c.reactor();
  std::set<std::string> types(req->types().begin(), req->types().end());
  graph_lookup lookup{backend_, kinds_, !c.forwarded(), c.forward_metadata()};
  const bool twin = std::string_view{req->name()}.starts_with(twin_prefix);
  lookup.relations(
      *id, twin, [c, resp, types, name = req->name()](Status s, fleettwin::v1::Relations r) {
        if (auto no = lookup_refusal(c, name, s, r.tenant())) {
          c.finish(*no);
          return;
        }
        resp->set_name(r.name());
        resp->set_version(r.version());
        resp->set_tenant(r.tenant());
        for (auto* list : {r.mutable_parents(), r.mutable_children()})
          for (auto& rel : *list) {
            if (!types.empty() && !types.count(rel.type()))
              continue;
            auto* out = list == r.mutable_parents() ? resp->add_parents() : resp->add_children();
            out->Swap(&rel);
          }
        c.finish(Status::OK);
      });
  return c.reactor();
}

std::optional<std::string> aggregate_service::entity_id(const call& c, const std::string& name,
                                                        const char* field) const {
  std::string error;
  if (std::string_view{name}.starts_with(twin_prefix)) {
    auto id = parse_twin_name(name, error);
    if (!id)
      c.finish({StatusCode::INVALID_ARGUMENT, std::string{field} + ": " + error});
    return id;
  }
  auto registry = kinds_ ? kinds_->get() : nullptr;
  auto id = parse_aggregate_name(name, registry.get(), error);
  if (!id)
    c.finish({StatusCode::INVALID_ARGUMENT,
              std::string{field} + ": " + error + " (or twins/{asset_id} for a twin)"});
  return id;
}

template <class Request>
void aggregate_service::change_relations(const call& c, const std::string& child,
                                         core::relation_update update, const char* method,
                                         const Request& req, fleettwin::v1::Relations* resp,
                                         std::shared_ptr<const runtime::audit_entry> audit) {
  std::string why;
  auto r = backend_.route_asset(child, why);
  if (!r) {
    forward_if_remote(backend_, c, child, why, method, req, resp);
    return;
  }
  // The child's partition applies it like a desired update: refused at once
  // (a cycle, a type the parent does not take), or answered once committed.
  runtime::twin_completion done{[c, resp, name = req.child()](runtime::twin_reply reply) {
                                  c.committed_audit(reply);
                                  if (reply.error != query_error::none) {
                                    c.finish(to_status(reply));
                                    return;
                                  }
                                  resp->set_name(name);
                                  resp->set_tenant(reply.twin->tenant);
                                  add_parents(name, *reply.twin, {}, *resp);
                                  resp->set_version(reply.twin->version);
                                  c.finish(Status::OK);
                                },
                                unanswered()};
  done.audit = std::move(audit);
  caf::anon_send(r->actor, runtime::relate_atom::value, child, std::move(update), std::move(done));
}

::grpc::ServerUnaryReactor* aggregate_service::SetRelations(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::SetRelationsRequest* req,
    fleettwin::v1::Relations* resp) {
  call c{ctx, set_relations_};
  if (!c.admit(backend_))
    return c.reactor();
  auto audit = c.audit(backend_, set_relations_method, req->child(), true);
  auto child = entity_id(c, req->child(), "child");
  if (!child)
    return c.reactor();
  if (req->relations().empty() && !req->replace()) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "relations must list at least one relation (or set replace to drop every explicit "
              "relation)"});
    return c.reactor();
  }
  auto registry = kinds_ ? kinds_->get() : nullptr;
  core::relation_update update;
  update.origin = core::relation_origin::api;
  update.replace = req->replace();
  for (int i = 0; i < req->relations_size(); ++i) {
    const auto& rel = req->relations(i);
    const auto where = "relations[" + std::to_string(i) + "]: ";
    if (!rel.child().empty() && rel.child() != req->child()) {
      c.finish({StatusCode::INVALID_ARGUMENT, where + "child \"" + rel.child() + "\" is not \"" +
                                                  req->child() + "\" (leave it empty)"});
      return c.reactor();
    }
    if (rel.type().empty()) {
      c.finish({StatusCode::INVALID_ARGUMENT, where + "type is required, e.g. member_of"});
      return c.reactor();
    }
    std::string error;
    auto parent = parse_aggregate_name(rel.parent(), registry.get(), error);
    if (!parent) {
      c.finish({StatusCode::INVALID_ARGUMENT, where + "parent: " + error});
      return c.reactor();
    }
    update.set.push_back({rel.type(), std::move(*parent), core::relation_origin::api});
  }
  // A forwarded call was checked by the node that took it (its lookups may go anywhere;
  // here they could not travel further).
  if (!confined(c) || c.forwarded()) {
    change_relations(c, *child, std::move(update), set_relations_method, *req, resp,
                     std::move(audit));
    return c.reactor();
  }
  std::vector<std::string> parents;
  for (const auto& r : update.set)
    parents.push_back(r.parent);
  const bool child_twin = std::string_view{req->child()}.starts_with(twin_prefix);
  when_relatable(c, *child, child_twin, std::move(parents),
                 [this, c, child = *child, update = std::move(update), req = *req, resp,
                  audit = std::move(audit)]() mutable {
                   change_relations(c, child, std::move(update), set_relations_method, req, resp,
                                    std::move(audit));
                 });
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::DeleteRelations(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::DeleteRelationsRequest* req,
    fleettwin::v1::Relations* resp) {
  call c{ctx, delete_relations_};
  if (!c.admit(backend_))
    return c.reactor();
  auto audit = c.audit(backend_, delete_relations_method, req->child(), true);
  auto child = entity_id(c, req->child(), "child");
  if (!child)
    return c.reactor();
  if (req->parents().empty()) {
    c.finish({StatusCode::INVALID_ARGUMENT, "parents must name at least one aggregate"});
    return c.reactor();
  }
  auto registry = kinds_ ? kinds_->get() : nullptr;
  core::relation_update update;
  update.origin = core::relation_origin::api;
  for (int i = 0; i < req->parents_size(); ++i) {
    std::string error;
    auto parent = parse_aggregate_name(req->parents(i), registry.get(), error);
    if (!parent) {
      c.finish({StatusCode::INVALID_ARGUMENT, "parents[" + std::to_string(i) + "]: " + error});
      return c.reactor();
    }
    update.remove.push_back(std::move(*parent));
  }
  // A forwarded call was checked by the node that took it (its lookups may go anywhere;
  // here they could not travel further).
  if (!confined(c) || c.forwarded()) {
    change_relations(c, *child, std::move(update), delete_relations_method, *req, resp,
                     std::move(audit));
    return c.reactor();
  }
  const bool child_twin = std::string_view{req->child()}.starts_with(twin_prefix);
  when_relatable(c, *child, child_twin, {},
                 [this, c, child = *child, update = std::move(update), req = *req, resp,
                  audit = std::move(audit)]() mutable {
                   change_relations(c, child, std::move(update), delete_relations_method, req, resp,
                                    std::move(audit));
                 });
  return c.reactor();
}

void aggregate_service::when_relatable(const call& c, const std::string& child, bool child_twin,
                                       std::vector<std::string> parents,
                                       std::function<void()> then) {
  // The child as the caller sees it; the parents as they are (whom they count).
  auto lookup =
      std::make_shared<graph_lookup>(backend_, kinds_, !c.forwarded(), c.forward_metadata());
  auto as_node = std::make_shared<graph_lookup>(backend_, kinds_, !c.forwarded(), node_metadata(c));
  // Lookups wait for other nodes: on the query pool, never on a gRPC thread.
  bool queued = pool_.submit([c, lookup, as_node, child, child_twin, parents = std::move(parents),
                              then = std::move(then)] {
    const std::string child_name = std::string{child_twin ? twin_prefix : aggregate_prefix} + child;
    std::vector<fleettwin::v1::Relations> self;
    auto st = gather_lookups<fleettwin::v1::Relations>(
        1, self, [&](size_t, graph_lookup::answer<fleettwin::v1::Relations> a) {
          lookup->relations(child, child_twin, std::move(a));
        });
    if (auto no = lookup_refusal(c, child_name, st, self[0].tenant())) {
      c.finish(*no);
      return;
    }
    // A parent that does not exist yet is the caller's to start; one that counts twins
    // must count only the caller's tenant's.
    std::vector<fleettwin::v1::Aggregate> found;
    st = gather_lookups<fleettwin::v1::Aggregate>(
        parents.size(), found, [&](size_t i, graph_lookup::answer<fleettwin::v1::Aggregate> a) {
          as_node->aggregate(parents[i], [a](Status s, fleettwin::v1::Aggregate agg) {
            if (s.error_code() == StatusCode::NOT_FOUND)
              s = Status::OK;
            a(std::move(s), std::move(agg));
          });
        });
    if (!st.ok()) {
      c.finish(st);
      return;
    }
    for (size_t i = 0; i < parents.size(); ++i)
      if (found[i].member_twins() > 0 && !c.sees(found[i].tenant())) {
        c.finish({StatusCode::FAILED_PRECONDITION,
                  "aggregate \"" + parents[i] + "\" counts twins that are not tenant " +
                      c.who()->tenant +
                      "'s: a caller of one tenant may relate its twins and "
                      "aggregates only to aggregates of its own tenant"});
        return;
      }
    then();
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
}

::grpc::ServerUnaryReactor* aggregate_service::PutAggregateKind(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::PutAggregateKindRequest* req,
    fleettwin::v1::AggregateKind* resp) {
  call c{ctx, kinds_put_};
  if (!c.admit(backend_))
    return c.reactor();
  c.audit(backend_, "/fleettwin.v1.AggregateService/PutAggregateKind",
          "aggregate-kinds/" + req->kind().name(), false);
  if (confined(c)) {
    c.finish({StatusCode::PERMISSION_DENIED,
              "aggregate kinds are shared by every tenant: '" + c.who()->subject + "' (tenant " +
                  c.who()->tenant + ") may not change them; use a token without a tenant claim"});
    return c.reactor();
  }
  if (!kinds_ || !put_kind_) {
    c.finish({StatusCode::FAILED_PRECONDITION,
              "this node has no aggregate kinds (start it with --aggregates <file>)"});
    return c.reactor();
  }
  const auto& p = req->kind();
  if (p.name().empty() || p.collection().empty()) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "kind.name and kind.collection are required (e.g. name \"fleet\", collection "
              "\"fleets\")"});
    return c.reactor();
  }
  core::aggregate_kind kind;
  kind.name = p.name();
  kind.collection = p.collection();
  kind.member_relations.assign(p.member_relations().begin(), p.member_relations().end());
  for (const auto& m : p.measures())
    kind.measures.emplace_back(m.name(), m.expression());
  kind.description = p.description();
  auto put = put_kind_;
  bool queued = pool_.submit([c, resp, put, kind]() mutable {
    bool invalid = false;
    std::string error;
    if (!put(kind, invalid, error)) {
      c.finish({invalid ? StatusCode::INVALID_ARGUMENT : StatusCode::UNAVAILABLE, error});
      return;
    }
    kind_to_proto(kind, *resp);
    c.finish(Status::OK);
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

::grpc::ServerUnaryReactor* aggregate_service::ListAggregateKinds(
    ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListAggregateKindsRequest*,
    fleettwin::v1::ListAggregateKindsResponse* resp) {
  call c{ctx, kinds_list_};
  if (!c.admit(backend_))
    return c.reactor();
  auto registry = kinds_ ? kinds_->get() : nullptr;
  if (registry) {
    for (const auto& [name, k] : registry->kinds())
      kind_to_proto(k->def, *resp->add_kinds());
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
