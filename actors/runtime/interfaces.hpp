#pragma once

// Every typed actor interface of FleetTwin, one line of documentation per
// handler (Tenzir style).

#include <caf/all.hpp>

#include "actors/runtime/messages.hpp"

namespace fleettwin::runtime {

/// One digital twin: the only writer of its state (DESIGN.md, principle 2).
using asset_actor = caf::typed_actor<
    // Applies the slice's telemetry in order; replies with what to commit.
    caf::replies_to<apply_atom, batch_slice>::with<asset_update>,
    // Folds member contributions into the aggregate; replies with what to commit.
    caf::replies_to<contribute_atom, contribution_slice>::with<asset_update>,
    // Applies relation updates to the entity's own relations (refusing what
    // would close a cycle); replies with what to commit and what it refused.
    caf::replies_to<relate_atom, relation_slice>::with<asset_update>,
    // Moves the aggregate's clock (members going stale, holds ending); replies
    // with what to commit.
    caf::replies_to<advance_atom, int64_t>::with<asset_update>,
    // Writes the member records changed since the last flush (checkpoint).
    caf::replies_to<flush_atom>::with<asset_update>,
    // Compares the aggregate's incremental measures with a full recompute
    // from its members; replies with the first difference (empty: none).
    caf::replies_to<check_atom>::with<std::string>,
    // Answers a query with an immutable snapshot of the state.
    caf::reacts_to<get_atom, twin_completion>,
    // The same for a state whose change awaits its commit (false): the
    // snapshot is not published to the cache the queries read.
    caf::reacts_to<get_atom, twin_completion, bool>,
    // Answers a query of the entity as an aggregate (with a page of members).
    caf::reacts_to<get_atom, aggregate_query, aggregate_completion>,
    // Applies a desired update (optimistic concurrency); replies with the outcome.
    caf::replies_to<desired_atom, core::desired_update>::with<desired_reply>,
    // An operator acknowledges alert N of a property; replies with the outcome.
    caf::replies_to<ack_atom, std::string, uint32_t>::with<ack_reply>,
    // Erases the twin (at the expected version, 0: any); replies with the outcome and
    // what to commit (a tombstone state, history tombstones, the withdrawal from its
    // parents).
    caf::replies_to<erase_atom, uint64_t>::with<desired_reply>,
    // Quits; the state is already committed.
    caf::reacts_to<passivate_atom>>;

/// Writes a partition's group commits to the store on its own thread, so that
/// blocking storage I/O never runs on the actor scheduler.
using committer_actor = caf::typed_actor<
    // Atomically writes the batch; replies with the error, empty on success.
    caf::replies_to<commit_atom, commit_batch>::with<std::string>,
    // Reads the entities asked for (after every commit asked for before) and replies
    // with the same request, filled in.
    caf::replies_to<load_atom, load_request_ptr>::with<load_request_ptr>>;

/// One assigned Kafka partition: decodes, fans telemetry out to asset actors,
/// group-commits state and offsets, owns passivation.
using partition_actor = caf::typed_actor<
    // Processes a consumed batch (queued behind work in flight).
    caf::reacts_to<batch_atom, raw_batch_ptr>,
    // Looks up a twin of this partition, loading it on demand.
    caf::reacts_to<get_atom, std::string, twin_completion>,
    // Looks up an aggregate of this partition, loading it on demand.
    caf::reacts_to<get_atom, std::string, aggregate_query, aggregate_completion>,
    // Applies and commits a desired update for a twin of this partition.
    caf::reacts_to<desired_atom, std::string, core::desired_update, twin_completion>,
    // Queues a change of an entity's relations (answered after its commit
    // with the entity, INVALID_ARGUMENT when refused).
    caf::reacts_to<relate_atom, std::string, core::relation_update, twin_completion>,
    // Queues the acknowledgement of alert N of a twin's property (answered
    // after its commit with the twin; NOT_FOUND, FAILED_PRECONDITION).
    caf::reacts_to<ack_atom, std::string, std::string, uint32_t, twin_completion>,
    // Queues the erasure of a twin at a version (0: any), answered after its commit with
    // what it was (kind, tenant, version, erased_ms); NOT_FOUND, ABORTED, INVALID_ARGUMENT.
    caf::reacts_to<erase_atom, std::string, uint64_t, twin_completion>,
    // Reports offsets and twin counts.
    caf::reacts_to<status_atom, partition_info_completion>,
    // Finishes queued work, passivates every twin, quits, then calls back.
    caf::reacts_to<stop_atom, std::function<void()>>,
    // The partition was lost (another node may own it now): abandons work
    // not committed yet, passivates every twin, quits, then calls back.
    caf::reacts_to<drop_atom, std::function<void()>>,
    // Passivates idle twins (self-scheduled).
    caf::reacts_to<tick_atom>,
    // The aggregate kinds changed: every resident aggregate recomputes its
    // measures (a new version where they change).
    caf::reacts_to<refresh_atom>,
    // Starts the next queued work item once it has lingered (internal,
    // self-scheduled).
    caf::reacts_to<linger_atom>,
    // The event sink made the outputs of work item N durable (internal).
    caf::reacts_to<delivered_atom, uint64_t, publish_result>,
    // Answers UNAVAILABLE to lookups and updates that waited longer than the
    // read wait for work item N to commit (internal, self-scheduled).
    caf::reacts_to<expire_atom, uint64_t>>;

/// A node's entry point for calls other nodes forward to it (published over
/// CAF remoting on the cluster port). Only builtin types cross the wire: the
/// gRPC method name, the request and metadata as bytes.
using gateway_actor = caf::typed_actor<
    // Runs a gRPC method of this node for another node; replies with the
    // status code, message and serialized response.
    caf::replies_to<forward_atom, std::string, std::string, std::string>::with<int32_t, std::string,
                                                                               std::string>,
    // Streams this node's changes that match (twin name, filter) to a watch
    // relay of another node until the relay goes down; the last string is
    // this node's endpoint as the relay knows it (echoed in `watching`).
    caf::reacts_to<watch_atom, std::string, std::string, caf::actor, std::string>,
    // A local call finished (internal).
    caf::reacts_to<answer_atom, uint64_t, int32_t, std::string, std::string>,
    // Another node connected: its endpoint and gateway, so that this node calls it over
    // the same connection instead of opening a second one.
    caf::reacts_to<hello_atom, std::string, caf::actor>>;

/// Sends calls to the gateways of other nodes, connecting on first use.
using forwarder_actor = caf::typed_actor<
    // Forwards (method, request, metadata) to the node at host:port.
    caf::reacts_to<forward_atom, std::string, std::string, std::string, std::string,
                   forward_completion>,
    // Subscribes a watch relay to the changes of the node at host:port.
    caf::reacts_to<watch_atom, std::string, std::string, std::string, caf::actor>,
    // The node at host:port left the group: its calls in flight fail now.
    caf::reacts_to<gone_atom, std::string>,
    // Time to send the reads waiting for a new connection to host:port again.
    caf::reacts_to<tick_atom, std::string>,
    // The live peers' host:port: connect to them and keep the connections.
    caf::reacts_to<endpoints_atom, std::vector<std::string>>,
    // Time to look at the connection to the kept peer at host:port again.
    caf::reacts_to<endpoints_atom, std::string>,
    // This node's own endpoint and gateway, introduced to every node it connects to.
    caf::reacts_to<self_atom, std::string, caf::actor>,
    // A node that connected to this one (relayed by the gateway): use its connection.
    caf::reacts_to<hello_atom, std::string, caf::actor>>;

}  // namespace fleettwin::runtime
