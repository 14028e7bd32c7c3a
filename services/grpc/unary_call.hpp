#pragma once

// What every unary gRPC method of a node shares: a measured call that says
// when to retry an UNAVAILABLE answer, the mapping of query errors to status
// codes, and forwarding of a call to the node that owns its twin or
// aggregate.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "actors/runtime/messages.hpp"
#include "services/cluster/remoting.hpp"
#include "services/grpc/caller_scope.hpp"
#include "services/grpc/query_pool.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/metrics/metrics.hpp"

namespace fleettwin::grpc_api {

using ::grpc::Status;
using ::grpc::StatusCode;
using runtime::query_error;

/// Unary calls started and not finished (see calls_in_flight()).
std::atomic<int64_t>& calls_in_flight_counter();

/// Trailing metadata of an UNAVAILABLE answer: when to retry, in ms.
constexpr const char* retry_after_header = "retry-after-ms";
constexpr int retry_after_ms = 500;

inline int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline const char* code_name(StatusCode c) {
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
    case StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    default:
      return "UNKNOWN";
  }
}

/// RESOURCE_EXHAUSTED for a principal over its request rate.
inline Status rate_refusal(std::string_view principal, const admission_limits& limits,
                           std::chrono::milliseconds wait) {
  std::ostringstream rate;  // "4", "0.5"
  rate << limits.requests_per_second;
  return {StatusCode::RESOURCE_EXHAUSTED, "'" + std::string{principal} + "' exceeds its limit of " +
                                              rate.str() +
                                              " requests per second on this node; retry after " +
                                              std::to_string(wait.count()) + " ms"};
}

/// How long a bulk call refused for the node's bound of bulk calls is told to wait.
constexpr int bulk_retry_after_ms = 100;

/// RESOURCE_EXHAUSTED for a bulk call over the node's bound of bulk calls in progress.
inline Status bulk_refusal(const admission_limits& limits) {
  return {StatusCode::RESOURCE_EXHAUSTED,
          "the node has " + std::to_string(limits.bulk_calls) +
              " batch, list and history calls in progress (its limit); retry after " +
              std::to_string(bulk_retry_after_ms) + " ms"};
}

/// Admits a stream's call under its caller's (`principal`'s) request rate, else
/// RESOURCE_EXHAUSTED with the time to wait in `retry-after-ms`.
inline Status admit_stream(admission& gate, ::grpc::CallbackServerContext& ctx,
                           const std::string& principal) {
  if (auto wait = gate.admit(principal, admission::clock::now())) {
    ctx.AddTrailingMetadata(retry_after_header, std::to_string(wait->count()));
    return rate_refusal(principal, gate.limits(), *wait);
  }
  return Status::OK;
}

/// A bulk stream's slot of the node's bound of bulk calls (`slot`; null when the node has
/// no limits), or RESOURCE_EXHAUSTED when the caller is over its request rate or the node
/// has its limit of bulk calls in progress.
inline Status open_bulk_stream(twin_backend& backend, ::grpc::CallbackServerContext& ctx,
                               const std::optional<caller>& who, std::shared_ptr<void>& slot) {
  auto* gate = backend.gate();
  if (!gate)
    return Status::OK;
  if (auto s = admit_stream(*gate, ctx, who ? who->subject : principal_for({}, ctx.peer()));
      !s.ok())
    return s;
  slot = gate->begin_bulk();
  if (slot)
    return Status::OK;
  ctx.AddTrailingMetadata(retry_after_header, std::to_string(bulk_retry_after_ms));
  return bulk_refusal(gate->limits());
}

/// A watch stream's slot for its caller (`slot`; null when streams are not limited), or
/// RESOURCE_EXHAUSTED when the caller is over its request rate or holds its limit of
/// streams already.
inline Status open_watch(twin_backend& backend, ::grpc::CallbackServerContext& ctx,
                         const std::optional<caller>& who, std::shared_ptr<void>& slot) {
  auto* gate = backend.gate();
  if (!gate)
    return Status::OK;
  std::string principal = who ? who->subject : principal_for({}, ctx.peer());
  if (auto s = admit_stream(*gate, ctx, principal); !s.ok())
    return s;
  if (gate->limits().watch_streams == 0)
    return Status::OK;
  slot = gate->open_stream(principal);
  if (!slot)
    return {StatusCode::RESOURCE_EXHAUSTED, "'" + principal + "' holds its limit of " +
                                                std::to_string(gate->limits().watch_streams) +
                                                " watch streams on this node; close one first"};
  return Status::OK;
}

/// The metadata of a call forwarded on behalf of `who`: the caller, and `extra`.
inline std::string forward_metadata_of(
    const std::optional<caller>& who, std::vector<std::pair<std::string, std::string>> extra = {}) {
  if (who)
    extra.emplace_back(security::caller_header, security::encode_caller(*who));
  return extra.empty() ? std::string{} : cluster::encode_metadata(extra);
}

/// An audit entry of `method` on `target` by `who` (time and outcome not set).
inline runtime::audit_entry audit_entry_of(const std::optional<caller>& who, std::string method,
                                           std::string target) {
  runtime::audit_entry e;
  e.method = std::move(method);
  e.target = std::move(target);
  if (who) {
    e.subject = who->subject;
    e.tenant = who->tenant;
    e.role = security::role_name(who->granted);
  }
  return e;
}

/// The audit of one call (see call::audit).
struct audit_state {
  twin_backend* backend = nullptr;
  std::shared_ptr<runtime::audit_entry> entry;
  /// A success is audited by the partition, in the transaction of the change.
  bool transactional = false;
  /// The transaction carried it (set from the partition's answer).
  std::atomic<bool> committed{false};
  /// The call went to another node, which audits it.
  std::atomic<bool> forwarded{false};
};

/// Finishes a unary call and measures it.
class call {
public:
  call(::grpc::CallbackServerContext* ctx, metrics::method_probe& probe)
      : ctx_(ctx),
        reactor_(ctx->DefaultReactor()),
        probe_(&probe),
        start_(std::chrono::steady_clock::now()),
        who_(caller_of(*ctx)) {
    calls_in_flight_counter().fetch_add(1);
  }

  void finish(Status s) const {
    if (audit_ && !audit_->forwarded && !(s.ok() && audit_->transactional && audit_->committed)) {
      auto e = *audit_->entry;
      e.time_ms = wall_ms();
      e.code = code_name(s.error_code());
      if (!s.ok())
        e.message = s.error_message();
      audit_->backend->audit(std::move(e));
    }
    calls_in_flight_counter().fetch_sub(1);
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    probe_->on_request(s.error_code(), code_name(s.error_code()), secs);
    // UNAVAILABLE is transient here (a partition moving or restoring): say
    // when to retry.
    if (s.error_code() == StatusCode::UNAVAILABLE)
      ctx_->AddTrailingMetadata(retry_after_header, std::to_string(retry_after_ms));
    reactor_->Finish(std::move(s));
  }

  /// Admits the call under its principal's request rate (the node's gate; none: no
  /// limits), else finishes it RESOURCE_EXHAUSTED with the time to wait in `retry-after-ms`.
  /// A call another node forwarded was admitted there.
  bool admit(admission* gate) const {
    if (!gate || !gate->limits_rate() || forwarded())
      return true;
    const auto now = admission::clock::now();
    // An authenticated caller's subject is looked up as it is (no copy per call).
    std::string address = who_ ? std::string{} : principal_for({}, ctx_->peer());
    std::string_view principal = who_ ? std::string_view{who_->subject} : address;
    auto wait = gate->admit(principal, now);
    if (!wait)
      return true;
    ctx_->AddTrailingMetadata(retry_after_header, std::to_string(wait->count()));
    finish(rate_refusal(principal, gate->limits(), *wait));
    return false;
  }
  bool admit(twin_backend& backend) const {
    return admit(backend.gate());
  }
  /// Admits a bulk call (one that may answer up to 1,000 entries) under its principal's
  /// rate and the node's bound of bulk calls in progress, else finishes it
  /// RESOURCE_EXHAUSTED with a time to retry. The slot is held until the call's last copy
  /// is gone (shortly after it finishes).
  bool admit_bulk(twin_backend& backend) {
    auto* gate = backend.gate();
    if (!admit(gate))
      return false;
    if (!gate)
      return true;
    bulk_slot_ = gate->begin_bulk();
    if (bulk_slot_)
      return true;
    ctx_->AddTrailingMetadata(retry_after_header, std::to_string(bulk_retry_after_ms));
    finish(bulk_refusal(gate->limits()));
    return false;
  }

  /// Whether another node forwarded this call (it must not travel further).
  bool forwarded() const {
    return ctx_->client_metadata().count(cluster::forwarded_header) > 0;
  }

  ::grpc::CallbackServerContext* context() const {
    return ctx_;
  }

  /// Who the call speaks for (nullopt: the node does not authenticate).
  const std::optional<caller>& who() const {
    return who_;
  }

  /// Whether the caller may see an entity of `tenant`.
  bool sees(std::string_view tenant) const {
    return !who_ || who_->sees(tenant);
  }

  /// Audits the call (a write or an admin call) of `method` on `target`: its outcome goes
  /// to the audit topic when it finishes, unless it is a write (`transactional`) whose
  /// success the partition audited in the transaction of its change (committed_audit()).
  /// A call forwarded to another node is audited there. Returns the entry a write's
  /// completion carries to the partition.
  std::shared_ptr<const runtime::audit_entry> audit(twin_backend& backend, std::string method,
                                                    std::string target, bool transactional) {
    auto state = std::make_shared<audit_state>();
    state->backend = &backend;
    state->transactional = transactional;
    state->entry =
        std::make_shared<runtime::audit_entry>(entry(std::move(method), std::move(target)));
    audit_ = std::move(state);
    return audit_->entry;
  }
  /// An audit entry of this call's caller (time and outcome not set).
  runtime::audit_entry entry(std::string method, std::string target) const {
    return audit_entry_of(who_, std::move(method), std::move(target));
  }
  /// The partition's answer says the transaction carried the audit entry.
  void committed_audit(const runtime::twin_reply& r) const {
    if (audit_ && r.audited)
      audit_->committed = true;
  }
  /// The call goes to another node (which audits it).
  void forwarding() const {
    if (audit_)
      audit_->forwarded = true;
  }

  /// The metadata a call forwarded on this one's behalf carries: the caller, and `extra`.
  std::string forward_metadata(std::vector<std::pair<std::string, std::string>> extra = {}) const {
    return forward_metadata_of(who_, std::move(extra));
  }

  ::grpc::ServerUnaryReactor* reactor() const {
    return reactor_;
  }

private:
  ::grpc::CallbackServerContext* ctx_;
  ::grpc::ServerUnaryReactor* reactor_;
  metrics::method_probe* probe_;
  std::chrono::steady_clock::time_point start_;
  std::optional<caller> who_;
  std::shared_ptr<audit_state> audit_;
  /// A bulk call's slot of the node's bound (see admit_bulk).
  std::shared_ptr<void> bulk_slot_;
};

inline Status to_status(query_error e, const std::string& message) {
  switch (e) {
    case query_error::none:
      return Status::OK;
    case query_error::not_found:
      return {StatusCode::NOT_FOUND, message};
    case query_error::invalid:
      return {StatusCode::INVALID_ARGUMENT, message};
    case query_error::aborted:
      return {StatusCode::ABORTED, message};
    case query_error::precondition:
      return {StatusCode::FAILED_PRECONDITION, message};
    case query_error::unavailable:
      return {StatusCode::UNAVAILABLE, message};
    default:
      return {StatusCode::INTERNAL, message};
  }
}

inline Status to_status(const runtime::twin_reply& r) {
  return to_status(r.error, r.message);
}

/// Audits a read that showed the sensitive properties `shown` (of `target`) to a caller
/// allowed to read them; nothing when it showed none.
inline void audit_revealed(twin_backend& backend, const call& c, const char* method,
                           std::string target, const std::vector<std::string>& shown) {
  if (shown.empty())
    return;
  auto e = c.entry(method, std::move(target));
  e.time_ms = wall_ms();
  e.message = "read sensitive properties:";
  for (const auto& p : shown)
    e.message += " " + p;
  backend.audit(std::move(e));
}

/// The answer for a twin the caller may not see: the one for a twin that does not exist
/// (another tenant's twins never show, not even that they exist).
inline Status twin_not_found(const std::string& id) {
  return {StatusCode::NOT_FOUND, "twin \"" + id + "\" not found"};
}

inline runtime::twin_reply unanswered() {
  return {runtime::query_error::unavailable,
          "the twin's partition stopped before answering (rebalance or shutdown); retry",
          {}};
}

/// Whether the caller of `c` is confined to one tenant.
inline bool confined(const call& c) {
  return c.who() && c.who()->scoped();
}

/// The answer for an aggregate the caller may not see (none of its member twins, or not
/// all, are the caller's tenant's): the one for an aggregate that does not exist.
inline Status aggregate_not_found(const std::string& id) {
  return {StatusCode::NOT_FOUND, "aggregate \"" + id + "\" not found"};
}

/// Runs `then` once the caller is known to see twin `id` (served here, at `r`): at once for
/// a caller not confined to a tenant, else after a look at the twin; a twin the caller may
/// not see is answered NOT_FOUND. Writes check first: a twin's tenant, once set, never
/// changes, so what was checked still holds when the write applies.
/// `then` must hold no completion (a completion dropped unrun answers the call again).
template <class Then>
void when_visible(twin_backend& backend, const call& c, const route& r, const std::string& id,
                  Then then) {
  if (!c.who() || !c.who()->scoped()) {
    then();
    return;
  }
  if (auto tw = backend.cached_twin(id)) {
    if (c.sees(tw->tenant))
      then();
    else
      c.finish(twin_not_found(id));
    return;
  }
  runtime::twin_completion seen{[c, id, then](runtime::twin_reply reply) mutable {
                                  if (reply.error != query_error::none)
                                    c.finish(to_status(reply));
                                  else if (!c.sees(reply.twin->tenant))
                                    c.finish(twin_not_found(id));
                                  else
                                    then();
                                },
                                unanswered()};
  caf::anon_send(r.actor, runtime::get_atom::value, id, std::move(seen));
}

/// Sends a unary call to the node that serves its twin and finishes with
/// that node's answer. When that node could not answer (it died or left the
/// group meanwhile) and the group already knows another owner, the call goes
/// there once more instead of failing.
template <class Request, class Response>
void forward_unary(twin_backend& backend, const call& c, const std::string& asset_id,
                   const std::string& endpoint, const char* method, const Request& req,
                   Response* resp, bool retry = true) {
  runtime::forward_completion done{
      [&backend, c, asset_id, endpoint, method, req, resp, retry](runtime::forward_reply r) {
        if (r.code == static_cast<int32_t>(StatusCode::UNAVAILABLE) && retry) {
          std::string why;
          auto now = backend.remote_owner(asset_id, why);
          if (now && *now != endpoint) {
            forward_unary(backend, c, asset_id, *now, method, req, resp, false);
            return;
          }
        }
        if (r.code != 0) {
          c.finish({static_cast<StatusCode>(r.code), r.message});
        } else if (!resp->ParseFromString(r.response)) {
          c.finish({StatusCode::INTERNAL, "the owning node sent an unreadable response"});
        } else {
          c.finish(Status::OK);
        }
      },
      runtime::forward_reply{static_cast<int32_t>(StatusCode::UNAVAILABLE),
                             "the forwarded call was dropped (node stopping); retry",
                             {}}};
  c.forwarding();
  backend.forward(endpoint, method, req.SerializeAsString(), c.forward_metadata(), std::move(done));
}

/// Routes a call for one twin: false when the caller must answer locally.
/// Otherwise the call was forwarded or finished as UNAVAILABLE.
template <class Request, class Response>
bool forward_if_remote(twin_backend& backend, const call& c, const std::string& asset_id,
                       const std::string& local_why, const char* method, const Request& req,
                       Response* resp) {
  std::string why = local_why;
  if (!c.forwarded()) {
    if (auto endpoint = backend.remote_owner(asset_id, why)) {
      forward_unary(backend, c, asset_id, *endpoint, method, req, resp);
      return true;
    }
  }
  c.finish({StatusCode::UNAVAILABLE, why});
  return true;
}

/// A filter parsed for a request; nullopt after finishing `c` with
/// INVALID_ARGUMENT saying where the text is wrong.
inline std::string filter_error(const core::filter_error& err) {
  return "filter: " + err.message + " (at offset " + std::to_string(err.position) + ")";
}

inline std::optional<core::filter> parse_filter(const call& c, const std::string& text) {
  core::filter f;
  if (auto err = core::filter::parse(text, f)) {
    c.finish({StatusCode::INVALID_ARGUMENT, filter_error(*err)});
    return std::nullopt;
  }
  return f;
}

/// What a listing request (ListTwins, ListAggregates) selects, checked.
struct listing_request {
  size_t page_size = 0;
  core::filter filter;
  /// List ids after this one (from the page token).
  std::string start_after;
};

/// Checks page size, filter and page token (bound to the filter); nullopt
/// after finishing `c` with INVALID_ARGUMENT.
inline std::optional<listing_request> parse_listing(const call& c, int32_t page_size,
                                                    const std::string& filter,
                                                    const std::string& page_token,
                                                    const service_limits& limits) {
  if (page_size < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "page_size must not be negative"});
    return std::nullopt;
  }
  listing_request r;
  r.page_size = page_size == 0 ? static_cast<size_t>(limits.default_page_size)
                               : static_cast<size_t>(std::min(page_size, limits.max_page_size));
  auto f = parse_filter(c, filter);
  if (!f)
    return std::nullopt;
  r.filter = std::move(*f);
  if (!page_token.empty()) {
    auto last = decode_page_token(page_token, filter);
    if (!last) {
      c.finish({StatusCode::INVALID_ARGUMENT,
                "page_token is invalid or was issued for a different filter; start again "
                "without a page_token"});
      return std::nullopt;
    }
    r.start_after = std::move(*last);
  }
  return r;
}

/// Confines a listing's filter to the caller's tenant (`filter`: the request's text,
/// valid); false after finishing `c`.
inline bool scope_listing(const call& c, const std::string& filter, listing_request& listing) {
  if (!c.who() || !c.who()->scoped())
    return true;
  auto f = parse_filter(c, scoped_filter(c.who(), filter));
  if (!f)
    return false;
  listing.filter = std::move(*f);
  return true;
}

/// The answers of a batch of single reads, in request order; the first
/// failure fails the whole call.
template <class Item>
struct batch_gather {
  explicit batch_gather(size_t n) : items(n), remaining(n) {}

  void fail(Status s) {
    std::lock_guard<std::mutex> guard{mutex};
    if (!error)
      error = std::move(s);
  }
  /// One read is done; the last one finishes `c`, handing the items to `out`.
  template <class Out>
  void settle(const call& c, Out out) {
    if (remaining.fetch_sub(1) != 1)
      return;
    if (error) {
      c.finish(*error);
      return;
    }
    out(items);
    c.finish(Status::OK);
  }

  std::mutex mutex;
  std::vector<Item> items;
  std::optional<Status> error;
  std::atomic<size_t> remaining;
};

/// Where each read of a batch goes: a local partition actor, or the node
/// that serves it. False after finishing `c` (a bad name, no owner).
struct batch_target {
  std::string id;
  std::optional<route> local;
  std::string endpoint;
};

/// Sends read `i` of a batch (`one`, a single-entity request of `method`, with the
/// call's `metadata`) to the node at `endpoint`, parsing its answer into the gather's item.
template <class Item, class Request, class Settle>
void forward_batch_item(twin_backend& backend, const std::shared_ptr<batch_gather<Item>>& g,
                        size_t i, const std::string& endpoint, const char* method,
                        std::string metadata, const Request& one, Settle settle) {
  runtime::forward_completion done{
      [g, i, settle](runtime::forward_reply r) {
        if (r.code != 0)
          g->fail({static_cast<StatusCode>(r.code), r.message});
        else if (!g->items[i].ParseFromString(r.response))
          g->fail({StatusCode::INTERNAL, "the owning node sent an unreadable answer"});
        settle();
      },
      runtime::forward_reply{static_cast<int32_t>(StatusCode::UNAVAILABLE),
                             "the forwarded call was dropped (node stopping); retry",
                             {}}};
  backend.forward(endpoint, method, one.SerializeAsString(), std::move(metadata), std::move(done));
}

/// The owner of every id of a batch; nullopt after finishing `c` with
/// UNAVAILABLE when one has none.
inline std::optional<std::vector<batch_target>> plan_batch(twin_backend& backend, const call& c,
                                                           std::vector<std::string> ids) {
  std::vector<batch_target> targets;
  targets.reserve(ids.size());
  for (auto& id : ids) {
    std::string error;
    auto r = backend.route_asset(id, error);
    std::optional<std::string> endpoint;
    if (!r && !c.forwarded())
      endpoint = backend.remote_owner(id, error);
    if (!r && !endpoint) {
      c.finish({StatusCode::UNAVAILABLE, error});
      return std::nullopt;
    }
    targets.push_back({std::move(id), std::move(r), endpoint.value_or("")});
  }
  return targets;
}

/// The partitions a forwarded listing must list ("1,2,3").
inline std::vector<int32_t> forwarded_partitions(::grpc::CallbackServerContext* ctx) {
  std::vector<int32_t> out;
  auto it = ctx->client_metadata().find(cluster::partitions_header);
  if (it == ctx->client_metadata().end())
    return out;
  std::string_view text{it->second.data(), it->second.size()};
  int32_t x = 0;
  bool digits = false;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      x = x * 10 + (text[i] - '0');
      digits = true;
    } else {
      if (digits)
        out.push_back(x);
      x = 0;
      digits = false;
    }
  }
  return out;
}

/// Which partitions a listing reads on this node, and which other nodes
/// read the rest (by endpoint).
struct listing_plan {
  std::vector<int32_t> local;
  std::map<std::string, std::vector<int32_t>> remote;
};

/// The plan of a listing call: a forwarded call lists the partitions its
/// caller named (all must still be here); any other lists this node's and
/// asks the others for theirs. nullopt after finishing the call UNAVAILABLE.
inline std::optional<listing_plan> plan_listing(twin_backend& backend, const call& c) {
  listing_plan plan;
  if (c.forwarded()) {
    auto wanted = forwarded_partitions(c.context());
    auto mine = backend.local_partitions();
    for (auto p : wanted)
      if (std::find(mine.begin(), mine.end(), p) == mine.end()) {
        c.finish({StatusCode::UNAVAILABLE,
                  "partition " + std::to_string(p) + " moved away from this node; retry shortly"});
        return std::nullopt;
      }
    plan.local = std::move(wanted);
    return plan;
  }
  std::string why;
  auto remote = backend.list_plan(plan.local, why);
  if (!remote) {
    c.finish({StatusCode::UNAVAILABLE, why});
    return std::nullopt;
  }
  plan.remote = std::move(*remote);
  return plan;
}

/// Lists this node's part with `list_local` on the query pool, forwards the
/// call (`method`, serialized `request`) to every other node of the plan
/// with its partitions, merges the pages with `merge` and finishes the call.
template <class Response>
void gather_listing(twin_backend& backend, query_pool& pool, const call& c, const char* method,
                    std::string request, const listing_plan& plan, Response* resp,
                    std::function<Status(Response*)> list_local,
                    std::function<Status(std::vector<Response>&, Response&)> merge) {
  if (plan.remote.empty()) {
    if (!pool.submit([c, resp, list_local]() mutable {
          // Under overload a query may wait past its caller's deadline: it is not read then.
          if (c.context()->IsCancelled()) {
            c.finish({StatusCode::CANCELLED, "the caller gave up before the query ran"});
            return;
          }
          c.finish(list_local(resp));
        }))
      c.finish(
          {StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
    return;
  }
  struct gather {
    std::mutex mutex;
    std::vector<Response> parts;
    std::optional<Status> error;
    std::atomic<size_t> remaining;
    void fail(Status s) {
      std::lock_guard<std::mutex> guard{mutex};
      if (!error)
        error = std::move(s);
    }
  };
  auto g = std::make_shared<gather>();
  g->parts.resize(plan.remote.size() + 1);
  g->remaining = plan.remote.size() + 1;
  auto settle = [c, g, resp, merge] {
    if (g->remaining.fetch_sub(1) != 1)
      return;
    if (g->error) {
      c.finish(*g->error);
      return;
    }
    c.finish(merge(g->parts, *resp));
  };
  if (!pool.submit([c, g, list_local, settle]() mutable {
        if (c.context()->IsCancelled())
          g->fail({StatusCode::CANCELLED, "the caller gave up before the query ran"});
        else if (auto st = list_local(&g->parts[0]); !st.ok())
          g->fail(st);
        settle();
      })) {
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
    return;
  }
  size_t slot = 1;
  for (const auto& [endpoint, parts] : plan.remote) {
    std::string list;
    for (auto p : parts)
      list += (list.empty() ? "" : ",") + std::to_string(p);
    runtime::forward_completion done{
        [g, slot, settle, method](runtime::forward_reply r) {
          if (r.code != 0)
            g->fail({static_cast<StatusCode>(r.code), r.message});
          else if (!g->parts[slot].ParseFromString(r.response))
            g->fail(
                {StatusCode::INTERNAL, std::string{"a node sent an unreadable page of "} + method});
          settle();
        },
        runtime::forward_reply{static_cast<int32_t>(StatusCode::UNAVAILABLE),
                               "the forwarded call was dropped (node stopping); retry",
                               {}}};
    backend.forward(endpoint, method, request,
                    c.forward_metadata({{cluster::partitions_header, list}}), std::move(done));
    ++slot;
  }
}

/// Merges the pages several nodes listed (each over its partitions) into
/// one page of `page_size` in id order. A part with a token stopped at that
/// id: beyond it, items of other parts cannot be returned yet, since that
/// part may have smaller ones. `items(response)` is the mutable repeated
/// field, `id(item)` its sort key.
/// Where the merge of several nodes' pages must stop: the smallest id a
/// part stopped at (nullopt: every part is complete); false when a part's
/// token is not for `filter`.
template <class Response>
bool listing_cut(const std::vector<Response>& parts, const std::string& filter,
                 std::optional<std::string>& cut) {
  for (const auto& p : parts) {
    if (p.next_page_token().empty())
      continue;
    auto last = decode_page_token(p.next_page_token(), filter);
    if (!last)
      return false;
    if (!cut || *last < *cut)
      cut = std::move(*last);
  }
  return true;
}

template <class Response, class Items, class Id>
Status merge_listing_pages(std::vector<Response>& parts, const std::string& filter,
                           size_t page_size, Response& out, Items items, Id id) {
  std::optional<std::string> cut;
  if (!listing_cut(parts, filter, cut))
    return {StatusCode::INTERNAL, "a node returned a page token for another filter"};
  using item_type = std::remove_pointer_t<decltype(items(&out)->Mutable(0))>;
  std::vector<item_type*> all;
  for (auto& p : parts)
    for (auto& x : *items(&p))
      if (!cut || id(x) <= *cut)
        all.push_back(&x);
  std::sort(all.begin(), all.end(), [&](const auto* a, const auto* b) { return id(*a) < id(*b); });
  const bool more = all.size() > page_size;
  if (more)
    all.resize(page_size);
  for (auto* x : all)
    items(&out)->Add()->Swap(x);
  if (more)
    out.set_next_page_token(encode_page_token(filter, id(*items(&out)->rbegin())));
  else if (cut)
    out.set_next_page_token(encode_page_token(filter, *cut));
  return Status::OK;
}

}  // namespace fleettwin::grpc_api
