#pragma once

// Message types exchanged by FleetTwin actors. They are local-only (remoting
// between nodes will carry protobuf bytes), so they are allowed as unsafe
// message types instead of being given inspectors.

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include "actors/core/change.hpp"
#include "actors/core/filter.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/twin.hpp"
#include "actors/core/twin_analytics.hpp"
#include "actors/runtime/ports.hpp"

namespace fleettwin::runtime {

using apply_atom = caf::atom_constant<caf::atom("apply")>;
using get_atom = caf::atom_constant<caf::atom("get")>;
using desired_atom = caf::atom_constant<caf::atom("desired")>;
using erase_atom = caf::atom_constant<caf::atom("erase")>;
using batch_atom = caf::atom_constant<caf::atom("batch")>;
using passivate_atom = caf::atom_constant<caf::atom("passivate")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using delivered_atom = caf::atom_constant<caf::atom("delivered")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using forward_atom = caf::atom_constant<caf::atom("forward")>;
using answer_atom = caf::atom_constant<caf::atom("answer")>;
using watch_atom = caf::atom_constant<caf::atom("watch")>;
using watching_atom = caf::atom_constant<caf::atom("watching")>;
using changes_atom = caf::atom_constant<caf::atom("changes")>;
using endpoints_atom = caf::atom_constant<caf::atom("endpoints")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using gone_atom = caf::atom_constant<caf::atom("gone")>;
using hello_atom = caf::atom_constant<caf::atom("hello")>;
using self_atom = caf::atom_constant<caf::atom("self")>;
using drop_atom = caf::atom_constant<caf::atom("drop")>;
using contribute_atom = caf::atom_constant<caf::atom("contribute")>;
using advance_atom = caf::atom_constant<caf::atom("advance")>;
using relate_atom = caf::atom_constant<caf::atom("relate")>;
using check_atom = caf::atom_constant<caf::atom("check")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using refresh_atom = caf::atom_constant<caf::atom("refresh")>;
using ack_atom = caf::atom_constant<caf::atom("ack")>;
using linger_atom = caf::atom_constant<caf::atom("linger")>;
using load_atom = caf::atom_constant<caf::atom("load")>;

/// Entities to read for a partition, and what was read (the same object goes back).
using load_request_ptr = std::shared_ptr<load_request>;

/// Runs a callback exactly once: with the value given, or with the fallback if
/// every copy is dropped unanswered (e.g. the actor holding it went away), so
/// a waiting gRPC call always completes.
template <class T>
class completion {
public:
  using function_type = std::function<void(T)>;

  completion() = default;

  completion(function_type f, T fallback)
      : state_(std::make_shared<state>(std::move(f), std::move(fallback))) {}

  void operator()(T x) const {
    if (state_ && !state_->done.exchange(true))
      state_->fn(std::move(x));
  }

  explicit operator bool() const {
    return state_ != nullptr;
  }

  /// For a write: who asked for it, to be audited with its change (set by the gRPC edge).
  std::shared_ptr<const audit_entry> audit;

private:
  struct state {
    state(function_type f, T fb) : fn(std::move(f)), fallback(std::move(fb)) {}
    ~state() {
      if (!done.exchange(true))
        fn(std::move(fallback));
    }
    function_type fn;
    T fallback;
    std::atomic<bool> done{false};
  };
  std::shared_ptr<state> state_;
};

/// Why a query or command failed; mapped to gRPC status codes at the edge.
enum class query_error : uint8_t {
  none,
  not_found,
  invalid,
  aborted,
  /// The resource is not in a state that allows the call (FAILED_PRECONDITION).
  precondition,
  unavailable,
  internal
};

/// The answer to a twin lookup or desired update.
struct twin_reply {
  query_error error = query_error::none;
  std::string message;
  std::shared_ptr<const core::twin> twin;
  /// A write's audit entry went out in the transaction of its change.
  bool audited = false;
  /// A write that changed nothing (every value was so already): the twin as it is.
  bool unchanged = false;
};

using twin_completion = completion<twin_reply>;

/// What a lookup of an aggregate asks for besides its state.
struct aggregate_query {
  /// Members to return (ListMembers); 0: none.
  uint32_t page_size = 0;
  /// Members up to this many hops below (1: direct members).
  uint32_t depth = 1;
  bool twins_only = false;
  bool aggregates_only = false;
  /// Members with ids after this one.
  std::string start_after;
  /// Members must match (over what the aggregate holds of them).
  std::shared_ptr<const core::filter> filter;
  int64_t now_ms = 0;
  int64_t stale_after_ms = 0;
};

/// An aggregate as a query sees it.
struct aggregate_view {
  core::aggregate_header header;
  /// The entity's own state: attributes and relations to its parents.
  std::shared_ptr<const core::twin> self;
  /// Direct members: id and relation type.
  std::vector<std::pair<std::string, std::string>> children;
  /// The requested page of members.
  std::vector<std::pair<std::string, core::member_entry>> members;
  /// Members within the depth (before the filter and paging).
  uint64_t total = 0;
  /// The last member id of a full page (more may follow); empty otherwise.
  std::string next_after;
};

struct aggregate_reply {
  query_error error = query_error::none;
  std::string message;
  std::shared_ptr<const aggregate_view> view;
};

using aggregate_completion = completion<aggregate_reply>;

/// Decoded telemetry of one raw batch, shared by the asset actors it touches.
struct decoded_batch {
  std::vector<core::telemetry> records;
  int64_t ingest_ms = 0;
  bool want_snapshots = false;
};

/// The records of one asset within a decoded batch.
struct batch_slice {
  std::shared_ptr<const decoded_batch> batch;
  std::vector<uint32_t> indexes;
};

/// Decoded contributions of one work item, shared by the aggregates they
/// go to; each aggregate gets the indexes of its own.
struct contribution_slice {
  std::shared_ptr<const std::vector<core::contribution>> items;
  std::vector<uint32_t> indexes;
  int64_t now_ms = 0;
  /// Contributions applied before a restart whose outputs are committed but
  /// whose member records were not written yet: folded into the members
  /// only (nothing published, no new version).
  bool replay = false;
};

/// Relation updates of one child from one work item (records of the
/// relations topic, in offset order); `record` indexes the item's records.
struct relation_slice {
  std::vector<std::pair<uint32_t, core::relation_update>> updates;
  int64_t now_ms = 0;
  /// Reply with a snapshot of the entity after the change.
  bool want_snapshot = false;
};

/// What an asset actor did with its slice, ready to commit.
struct asset_update {
  std::string asset_id;
  /// encode_twin of the new state; empty when nothing changed.
  std::string state;
  std::vector<history_write> history;
  std::vector<core::twin_change> changes;
  std::shared_ptr<const core::twin> snapshot;
  /// The twin did not exist before this update.
  bool created = false;
  uint32_t applied = 0;
  uint32_t duplicates = 0;
  uint32_t too_old = 0;
  uint32_t out_of_order = 0;
  /// Fresh records that changed nothing (see core::apply_status::unchanged).
  uint32_t unchanged = 0;
  /// What the analytics found: alerts that changed, anomalous samples.
  core::analysis_output analysis;
  /// The twin's kind and tenant (set with alerts, which name them).
  std::string kind;
  std::string tenant;
  uint32_t stale_samples = 0;
  /// Records whose source restarted its sequence counter (applied).
  uint32_t sequence_restarts = 0;
  /// What the entity sends its parents.
  std::vector<core::contribution> contributions;
  /// Aggregates: encode_aggregate_header of the new state (empty when the
  /// aggregate did not change), the member records to write, the change.
  std::string aggregate_state;
  std::vector<member_write> members;
  std::optional<core::aggregate_header> aggregate_change;
  /// Member deltas applied; contributions to an id that is no aggregate.
  uint32_t deltas_applied = 0;
  uint32_t misdirected = 0;
  core::apply_counts aggregate_counts;
  /// The aggregate's measures change with time alone (filters that read
  /// connectivity, members held in transit): it stays resident and is
  /// advanced on every tick.
  bool timed = false;
  /// For an aggregate change: the ingest time of the oldest twin change it
  /// folds in, and the levels below it that change travelled (0: unknown).
  int64_t origin_ms = 0;
  uint32_t hops = 0;
  /// Relation updates refused (a cycle, a type the parent does not take):
  /// the record's index in its relation_slice, and what to fix.
  std::vector<std::pair<uint32_t, std::string>> relation_rejects;
  /// Telemetry records refused by the twin (a record naming another tenant): the
  /// record's index in the decoded batch, and why.
  std::vector<std::pair<uint32_t, std::string>> telemetry_rejects;
  /// Aggregates that checkpoint their members: member records changed but
  /// not written yet (the entity must be flushed before it passivates).
  uint32_t unwritten_members = 0;
};

struct desired_reply {
  core::desired_result result;
  asset_update update;
};

/// An acknowledgement of an alert: how it ended, and what to commit.
struct ack_reply {
  core::ack_status status = core::ack_status::not_found;
  asset_update update;
};

/// One partition as seen by status queries.
struct partition_info {
  int32_t partition = 0;
  int64_t next_offset = -1;
  uint64_t active_twins = 0;
  uint64_t records_applied = 0;
  /// Entities read from the store on the partition actor's own thread (a blocking
  /// read on the actor scheduler): every path reads through the committer first, so
  /// this stays 0.
  uint64_t synchronous_loads = 0;
  /// What the partition waits for, in words (a slow stop or a stuck partition
  /// is reported with it).
  std::string waiting_on;
};

using partition_info_completion = completion<partition_info>;

/// A partition's figures, published by its actor after every commit and
/// read by status queries without a message to the (possibly busy) actor.
struct partition_gauges {
  std::atomic<int64_t> next_offset{-1};
  std::atomic<uint64_t> active_twins{0};
  std::atomic<uint64_t> records_applied{0};
};

/// The outcome of a call forwarded to another node: a gRPC status code, its
/// message, and the serialized response.
struct forward_reply {
  int32_t code = 0;
  std::string message;
  std::string response;
};

using forward_completion = completion<forward_reply>;

}  // namespace fleettwin::runtime

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::twin_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::aggregate_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::aggregate_query)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::partition_info_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::raw_batch_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::batch_slice)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::contribution_slice)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::relation_slice)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::asset_update)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::desired_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::ack_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::commit_batch)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::load_request_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::publish_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::runtime::forward_completion)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::core::desired_update)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(fleettwin::core::relation_update)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::function<void()>)
