// AggregateService.Traverse: walks the relation graph from a twin or
// aggregate, up (parents) or down (members), along some relation types, and
// returns what it reached that passes a filter over the whole twin.

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "services/grpc/aggregate_service.hpp"
#include "services/grpc/convert.hpp"
#include "services/grpc/graph_lookup.hpp"
#include "services/grpc/privacy.hpp"
#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr std::string_view aggregate_prefix = "aggregates/";
constexpr std::string_view twin_prefix = "twins/";
/// Entities one traversal may reach before it is refused.
constexpr size_t max_reached = 200'000;
/// Lookups in flight at once while fetching the twins of a page.
constexpr size_t fetch_chunk = 256;
/// `a`, with NOT_FOUND answered as an empty value when `skip` (an entity reached that the
/// caller may not see, or that went away meanwhile).
template <class T>
graph_lookup::answer<T> skip_missing(bool skip, graph_lookup::answer<T> a) {
  if (!skip)
    return a;
  return [a](Status s, T value) {
    if (s.error_code() == StatusCode::NOT_FOUND)
      a(Status::OK, T{});
    else
      a(std::move(s), std::move(value));
  };
}

struct reached {
  uint32_t hops = 0;
  bool twin = false;
};

}  // namespace

::grpc::ServerUnaryReactor* aggregate_service::Traverse(::grpc::CallbackServerContext* ctx,
                                                        const fleettwin::v1::TraverseRequest* req,
                                                        fleettwin::v1::TraverseResponse* resp) {
  call c{ctx, traverse_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  auto start = entity_id(c, req->start(), "start");
  if (!start)
    return c.reactor();
  const bool start_twin = std::string_view{req->start()}.starts_with(twin_prefix);
  const bool down = req->direction() == fleettwin::v1::DOWN;
  if (req->direction() != fleettwin::v1::UP && !down) {
    c.finish({StatusCode::INVALID_ARGUMENT, "direction must be UP (parents) or DOWN (members)"});
    return c.reactor();
  }
  if (down && start_twin) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "a twin has no members: traverse DOWN from an aggregate, or UP from a twin"});
    return c.reactor();
  }
  const uint32_t max_hops = req->max_hops() == 0 ? 1 : req->max_hops();
  if (max_hops > core::max_relation_depth) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "max_hops must be 1 to " + std::to_string(core::max_relation_depth)});
    return c.reactor();
  }
  if (req->page_size() < 0 || req->page_size() > limits_.max_page_size) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "page_size must be 0 to " + std::to_string(limits_.max_page_size)});
    return c.reactor();
  }
  auto parsed = parse_filter(c, req->filter());
  if (!parsed)
    return c.reactor();
  // Twins reached show what the caller may read of them, and the filter may not probe a
  // value hidden from it.
  privacy masks{c.who(), models_.get()};
  if (auto why = masks.refuses(*parsed)) {
    c.finish({StatusCode::PERMISSION_DENIED, *why});
    return c.reactor();
  }
  auto f = std::make_shared<core::filter>(std::move(*parsed));
  // The token is bound to everything that selects what is returned.
  std::string selection = req->start() + "|" + std::to_string(req->direction()) + "|" +
                          std::to_string(max_hops) + "|" + req->filter() + "|" +
                          (req->include_aggregates() ? "a" : "");
  for (const auto& t : req->types())
    selection += "|" + t;
  std::string after;
  if (!req->page_token().empty()) {
    auto last = decode_page_token(req->page_token(), selection);
    if (!last) {
      c.finish({StatusCode::INVALID_ARGUMENT,
                "page_token was not issued for this traversal (start, direction, types, hops, "
                "filter); start again without it"});
      return c.reactor();
    }
    after = std::move(*last);
  }
  const size_t page_size =
      static_cast<size_t>(req->page_size() == 0 ? limits_.default_page_size : req->page_size());
  std::set<std::string> types(req->types().begin(), req->types().end());
  const bool include_aggregates = req->include_aggregates();
  // Lookups on other nodes go as the caller: what it may not see answers NOT_FOUND there,
  // and is skipped (beyond the start) like an entity gone meanwhile.
  auto lookup =
      std::make_shared<graph_lookup>(backend_, kinds_, !c.forwarded(), c.forward_metadata());
  const auto stale = backend_.stale_after_ms();
  // Lookups wait for other nodes: on the query pool, never on a gRPC thread.
  bool queued = pool_.submit([=, start_id = *start, req_start = req->start()] {
    // Breadth first: each hop asks every entity of the frontier at once.
    std::map<std::string, reached> seen;
    seen[start_id] = {0, start_twin};
    std::vector<std::pair<std::string, bool>> frontier{{start_id, start_twin}};
    for (uint32_t hop = 1; hop <= max_hops && !frontier.empty(); ++hop) {
      std::vector<fleettwin::v1::Relations> rels;
      auto st = gather_lookups<fleettwin::v1::Relations>(
          frontier.size(), rels, [&](size_t i, graph_lookup::answer<fleettwin::v1::Relations> a) {
            lookup->relations(frontier[i].first, frontier[i].second, skip_missing(hop > 1, a));
          });
      // The start must be the caller's to see (a caller of one tenant learns nothing of
      // another tenant's twins and aggregates, not even that they exist).
      if (auto no = hop == 1 ? lookup_refusal(c, req_start, st, rels[0].tenant()) : std::nullopt) {
        c.finish(*no);
        return;
      }
      if (!st.ok()) {
        c.finish(st);
        return;
      }
      std::vector<std::pair<std::string, bool>> next;
      for (const auto& r : rels) {
        const auto& edges = down ? r.children() : r.parents();
        for (const auto& e : edges) {
          if (!types.empty() && !types.count(e.type()))
            continue;
          const auto& name = down ? e.child() : e.parent();
          const bool twin = std::string_view{name}.starts_with(twin_prefix);
          auto id = name.substr(twin ? twin_prefix.size() : aggregate_prefix.size());
          if (!seen.emplace(id, reached{hop, twin}).second)
            continue;
          if (seen.size() > max_reached) {
            c.finish({StatusCode::RESOURCE_EXHAUSTED,
                      "the traversal reaches more than " + std::to_string(max_reached) +
                          " twins and aggregates; narrow it with types or max_hops"});
            return;
          }
          // Twins have no members; aggregates are walked on.
          if (!twin || !down)
            next.emplace_back(std::move(id), twin);
        }
      }
      frontier = std::move(next);
    }
    seen.erase(start_id);
    // In id order after the token: fetch a chunk at a time until the page
    // is full, judging each twin by the filter over all of its fields.
    auto it = seen.upper_bound(after);
    const auto now = wall_ms();
    std::string last;
    while (it != seen.end() && static_cast<size_t>(resp->hits_size()) < page_size) {
      std::vector<std::pair<std::string, reached>> chunk;
      for (; it != seen.end() && chunk.size() < fetch_chunk; ++it)
        if (it->second.twin || include_aggregates)
          chunk.emplace_back(*it);
      std::vector<core::twin> twins;
      std::vector<fleettwin::v1::Aggregate> aggs;
      auto st = gather_lookups<core::twin>(chunk.size(), twins,
                                           [&](size_t i, graph_lookup::answer<core::twin> a) {
                                             if (chunk[i].second.twin)
                                               lookup->twin(chunk[i].first, skip_missing(true, a));
                                             else
                                               a(Status::OK, {});
                                           });
      if (st.ok())
        st = gather_lookups<fleettwin::v1::Aggregate>(
            chunk.size(), aggs, [&](size_t i, graph_lookup::answer<fleettwin::v1::Aggregate> a) {
              if (!chunk[i].second.twin)
                lookup->aggregate(chunk[i].first, skip_missing(true, a));
              else
                a(Status::OK, {});
            });
      if (!st.ok()) {
        c.finish(st);
        return;
      }
      for (size_t i = 0; i < chunk.size(); ++i) {
        last = chunk[i].first;
        bool match = false;
        if (chunk[i].second.twin) {
          match = !twins[i].asset_id.empty() && c.sees(twins[i].tenant) &&
                  f->matches(twins[i], now, stale);
          if (match) {
            auto* hit = resp->add_hits();
            hit->set_hops(chunk[i].second.hops);
            to_proto(twins[i], now, stale, *hit->mutable_twin());
            masks.redact(*hit->mutable_twin());
          }
        } else {
          match = !aggs[i].aggregate_id().empty() && c.sees(aggs[i].tenant()) &&
                  f->matches(aggregate_as_twin(aggs[i]), now, stale);
          if (match) {
            auto* hit = resp->add_hits();
            hit->set_hops(chunk[i].second.hops);
            hit->mutable_aggregate()->Swap(&aggs[i]);
          }
        }
        if (match && static_cast<size_t>(resp->hits_size()) == page_size) {
          // Whatever follows in this chunk is looked at again next page.
          if (i + 1 < chunk.size() || it != seen.end())
            resp->set_next_page_token(encode_page_token(selection, last));
          c.finish(Status::OK);
          return;
        }
      }
    }
    c.finish(Status::OK);
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

}  // namespace fleettwin::grpc_api
