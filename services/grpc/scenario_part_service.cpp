#include "services/grpc/scenario_part_service.hpp"

#include <chrono>
#include <future>

#include "services/grpc/scenario_service.hpp"
#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace v1 = fleettwin::v1;

namespace {

constexpr const char* part_service = "/fleettwin.v1.ScenarioPartService/";
/// Bytes of records per page (a forwarded answer travels as one message).
constexpr size_t page_budget = 512 * 1024;
/// How long a node waits for another's answer (the forwarding times out first).
constexpr auto answer_within = std::chrono::seconds{30};

scenario::outcome failed(scenario::failure code, std::string message) {
  return scenario::outcome{code, std::move(message)};
}

/// Only another node calls these (it forwards them); nothing a client sends.
bool refuse_unforwarded(const call& c) {
  if (c.forwarded())
    return false;
  c.finish({StatusCode::PERMISSION_DENIED,
            "ScenarioPartService is called by the nodes of a cluster, not by clients; use "
            "ScenarioService"});
  return true;
}

std::string tenant_of(const call& c) {
  return c.who() ? c.who()->tenant : std::string{};
}

scenario::failure failure_of(int32_t code) {
  switch (static_cast<StatusCode>(code)) {
    case StatusCode::NOT_FOUND:
      return scenario::failure::not_found;
    case StatusCode::RESOURCE_EXHAUSTED:
      return scenario::failure::exhausted;
    case StatusCode::INVALID_ARGUMENT:
    case StatusCode::FAILED_PRECONDITION:
      return scenario::failure::invalid;
    default:
      return scenario::failure::unavailable;
  }
}

/// Sends `req` to `method` of the node at `endpoint` and waits for the answer.
scenario::outcome call_node(twin_backend& backend, const std::string& endpoint,
                            const std::string& as, const char* method,
                            const google::protobuf::Message& req, google::protobuf::Message& resp) {
  auto answer = std::make_shared<std::promise<runtime::forward_reply>>();
  auto future = answer->get_future();
  runtime::forward_reply dropped;
  dropped.code = static_cast<int32_t>(StatusCode::UNAVAILABLE);
  dropped.message = "the call was dropped (a node stopping); retry";
  backend.forward(endpoint, std::string{part_service} + method, req.SerializeAsString(), as,
                  runtime::forward_completion{
                      [answer](runtime::forward_reply r) { answer->set_value(std::move(r)); },
                      std::move(dropped)});
  if (future.wait_for(answer_within) != std::future_status::ready)
    return failed(scenario::failure::unavailable,
                  std::string{"no answer to "} + method + " within 30 s");
  auto r = future.get();
  if (r.code != 0)
    return failed(failure_of(r.code), r.message);
  if (!resp.ParseFromString(r.response))
    return failed(scenario::failure::unavailable,
                  std::string{"the answer to "} + method + " does not parse");
  return {};
}

void records_to_proto(std::vector<scenario::part_record>& records,
                      v1::ListScenarioPartRecordsResponse& out) {
  out.mutable_records()->Reserve(static_cast<int>(records.size()));
  for (auto& r : records) {
    auto* p = out.add_records();
    p->set_twin(std::move(r.bytes));
    p->set_forked(r.forked);
  }
}

void records_from_proto(v1::ListScenarioPartRecordsResponse& in,
                        std::vector<scenario::part_record>& out) {
  out.reserve(out.size() + static_cast<size_t>(in.records_size()));
  for (auto& p : *in.mutable_records())
    out.push_back(scenario::part_record{std::move(*p.mutable_twin()), p.forked()});
}

}  // namespace

scenario_part_service::scenario_part_service(scenario::registry& scenarios, twin_backend& backend,
                                             query_pool& pool, metrics::grpc_probe& probe)
    : scenarios_(scenarios),
      backend_(backend),
      pool_(pool),
      pin_(probe.method("PinScenarioPart")),
      list_(probe.method("ListScenarioPartRecords")),
      release_(probe.method("ReleaseScenarioPart")) {}

::grpc::ServerUnaryReactor* scenario_part_service::PinScenarioPart(
    ::grpc::CallbackServerContext* ctx, const v1::PinScenarioPartRequest* req,
    v1::ScenarioPart* resp) {
  call c{ctx, pin_};
  if (refuse_unforwarded(c))
    return c.reactor();
  const auto tenant = tenant_of(c);
  if (!tenant.empty() && req->tenant() != tenant) {
    c.finish({StatusCode::PERMISSION_DENIED, "the part's tenant is not the caller's"});
    return c.reactor();
  }
  if (req->partition_count() <= 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "partition_count must be positive"});
    return c.reactor();
  }
  scenario::fork_spec spec;
  spec.names.assign(req->names().begin(), req->names().end());
  spec.below = req->below();
  if (auto err = core::filter::parse(req->filter(), spec.where)) {
    c.finish({StatusCode::INVALID_ARGUMENT, "filter: " + filter_error(*err)});
    return c.reactor();
  }
  auto& scenarios = scenarios_;
  const bool queued = pool_.submit([c, req, resp, &scenarios, spec = std::move(spec)] {
    scenario::fork_check check;
    int64_t taken_ms = 0;
    const auto o =
        scenarios.pin_part(req->part_id(), {req->partitions().begin(), req->partitions().end()},
                           req->partition_count(), spec, req->tenant(), check, taken_ms);
    if (o) {
      resp->set_taken_ms(taken_ms);
      for (auto& n : check.names_found)
        resp->add_names_found(std::move(n));
      resp->set_below_found(check.below_found);
      resp->set_below_twins(check.below_twins);
      resp->set_matched(check.matched);
    }
    c.finish(status_of(o));
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

::grpc::ServerUnaryReactor* scenario_part_service::ListScenarioPartRecords(
    ::grpc::CallbackServerContext* ctx, const v1::ListScenarioPartRecordsRequest* req,
    v1::ListScenarioPartRecordsResponse* resp) {
  call c{ctx, list_};
  if (refuse_unforwarded(c))
    return c.reactor();
  scenario::fork_selection sel;
  sel.tenant = req->tenant();
  sel.names.insert(req->names().begin(), req->names().end());
  sel.parents.insert(req->parents().begin(), req->parents().end());
  sel.at_ms = req->at_ms();
  sel.stale_after_ms = req->stale_after_ms();
  sel.rewind_to_ms = req->rewind_to_ms();
  if (auto err = core::filter::parse(req->filter(), sel.where)) {
    c.finish({StatusCode::INVALID_ARGUMENT, "filter: " + filter_error(*err)});
    return c.reactor();
  }
  auto& scenarios = scenarios_;
  const bool queued =
      pool_.submit([c, req, resp, &scenarios, sel = std::move(sel), tenant = tenant_of(c)] {
        std::vector<scenario::part_record> records;
        std::string next;
        const auto o = req->aggregates()
                           ? scenarios.part_entities(req->part_id(), tenant, req->after(),
                                                     page_budget, records, next)
                           : scenarios.part_twins(req->part_id(), tenant, sel, req->after(),
                                                  page_budget, records, next);
        if (o) {
          records_to_proto(records, *resp);
          resp->set_next_after(std::move(next));
        }
        c.finish(status_of(o));
      });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

::grpc::ServerUnaryReactor* scenario_part_service::ReleaseScenarioPart(
    ::grpc::CallbackServerContext* ctx, const v1::ReleaseScenarioPartRequest* req,
    v1::ReleaseScenarioPartResponse*) {
  call c{ctx, release_};
  if (refuse_unforwarded(c))
    return c.reactor();
  scenarios_.release_part(req->part_id());
  c.finish(Status::OK);
  return c.reactor();
}

scenario::outcome forwarded_part_client::pin(const std::string& endpoint, const std::string& as,
                                             const std::string& id,
                                             const std::vector<int32_t>& partitions,
                                             int32_t partition_count,
                                             const scenario::fork_spec& spec,
                                             const std::string& tenant, scenario::fork_check& check,
                                             int64_t& taken_ms) {
  v1::PinScenarioPartRequest req;
  req.set_part_id(id);
  for (auto p : partitions)
    req.add_partitions(p);
  req.set_partition_count(partition_count);
  for (const auto& n : spec.names)
    req.add_names(n);
  req.set_filter(spec.where.text());
  req.set_below(spec.below);
  req.set_tenant(tenant);
  v1::ScenarioPart resp;
  if (auto o = call_node(backend_, endpoint, as, "PinScenarioPart", req, resp); !o)
    return o;
  taken_ms = resp.taken_ms();
  check = scenario::fork_check{};
  check.names_found.assign(resp.names_found().begin(), resp.names_found().end());
  check.below_found = resp.below_found();
  check.below_twins = resp.below_twins();
  check.matched = resp.matched();
  return {};
}

scenario::outcome forwarded_part_client::entities(const std::string& endpoint,
                                                  const std::string& as, const std::string& id,
                                                  const std::string& after,
                                                  std::vector<scenario::part_record>& out,
                                                  std::string& next) {
  v1::ListScenarioPartRecordsRequest req;
  req.set_part_id(id);
  req.set_aggregates(true);
  req.set_after(after);
  v1::ListScenarioPartRecordsResponse resp;
  if (auto o = call_node(backend_, endpoint, as, "ListScenarioPartRecords", req, resp); !o)
    return o;
  records_from_proto(resp, out);
  next = resp.next_after();
  return {};
}

scenario::outcome forwarded_part_client::twins(const std::string& endpoint, const std::string& as,
                                               const std::string& id,
                                               const scenario::fork_selection& sel,
                                               const std::string& after,
                                               std::vector<scenario::part_record>& out,
                                               std::string& next) {
  v1::ListScenarioPartRecordsRequest req;
  req.set_part_id(id);
  req.set_after(after);
  for (const auto& n : sel.names)
    req.add_names(n);
  for (const auto& p : sel.parents)
    req.add_parents(p);
  req.set_filter(sel.where.text());
  req.set_tenant(sel.tenant);
  req.set_at_ms(sel.at_ms);
  req.set_stale_after_ms(sel.stale_after_ms);
  req.set_rewind_to_ms(sel.rewind_to_ms);
  v1::ListScenarioPartRecordsResponse resp;
  if (auto o = call_node(backend_, endpoint, as, "ListScenarioPartRecords", req, resp); !o)
    return o;
  records_from_proto(resp, out);
  next = resp.next_after();
  return {};
}

void forwarded_part_client::release(const std::string& endpoint, const std::string& as,
                                    const std::string& id) {
  v1::ReleaseScenarioPartRequest req;
  req.set_part_id(id);
  // Nobody waits: a part whose release is lost is released when idle too long.
  backend_.forward(
      endpoint, std::string{part_service} + "ReleaseScenarioPart", req.SerializeAsString(), as,
      runtime::forward_completion{[](runtime::forward_reply) {}, runtime::forward_reply{}});
}

}  // namespace fleettwin::grpc_api
