// TwinService.BatchUpdateDesired and BulkUpdateDesired: one desired-state change for many
// twins. A batch names up to 1000 twins and answers with an outcome per twin; a bulk call
// selects its twins across the cluster (by filter, or names), then changes them batch by
// batch, streaming its progress. Each twin's change goes where UpdateDesired's goes: to
// the actor of its partition on the node that owns it (updates queued together there
// commit in one transaction), else to that node as one batch per node.

#include <algorithm>
#include <array>
#include <deque>
#include <mutex>
#include <unordered_set>

#include <grpcpp/alarm.h>

#include "actors/core/filter.hpp"
#include "services/cluster/remoting.hpp"
#include "services/grpc/convert.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/grpc/unary_call.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::grpc_api {

namespace {

namespace v1 = fleettwin::v1;

constexpr const char* batch_method = "/fleettwin.v1.TwinService/BatchUpdateDesired";
constexpr const char* bulk_method = "/fleettwin.v1.TwinService/BulkUpdateDesired";
constexpr const char* list_method = "/fleettwin.v1.TwinService/ListTwins";
constexpr size_t max_batch_names = 1000;
constexpr int64_t default_max_twins = 10'000;
constexpr int64_t max_max_twins = 1'000'000;
/// A bulk call changes its twins this many at a time, with this many batches in flight.
constexpr size_t bulk_batch = 500;
constexpr size_t bulk_window = 4;
/// Twins a bulk call's selection reads per page.
constexpr int32_t selection_page = 1000;
/// Twins answered UNAVAILABLE (their partition moving) are tried again this many times,
/// after 0.5, 1, 2, 4, 4 and 4 s (a move takes a few seconds).
constexpr uint32_t max_retry_rounds = 6;
std::chrono::milliseconds retry_delay(uint32_t round) {
  return std::chrono::milliseconds{std::min(retry_after_ms << std::min(round, 3u), 4'000)};
}
/// Outcomes per progress message at most.
constexpr size_t outcomes_per_message = 1000;

using outcome = v1::TwinUpdateOutcome;

/// The change every twin of a batch gets, checked; `proto` carries it to other nodes
/// (a batch request without names).
struct change_spec {
  core::desired_update update;
  v1::BatchUpdateDesiredRequest proto;
};

/// Reads the change (desired, remove) of a request; the error text when it is invalid.
template <class Request>
std::optional<std::string> parse_change(const Request& req, bool validate_only, change_spec& out) {
  for (const auto& [name, v] : req.desired()) {
    auto value = from_proto(v);
    if (!value)
      return "desired[\"" + name +
             "\"] has no value: set one of double_value, int_value, bool_value or string_value";
    out.update.set.emplace_back(name, std::move(*value));
  }
  out.update.remove.assign(req.remove().begin(), req.remove().end());
  if (out.update.set.empty() && out.update.remove.empty())
    return "nothing to change: set at least one entry of desired or remove";
  out.update.validate_only = validate_only;
  *out.proto.mutable_desired() = req.desired();
  *out.proto.mutable_remove() = req.remove();
  out.proto.set_validate_only(validate_only);
  return std::nullopt;
}

/// Who a batch is run for: a unary call, or a bulk stream.
struct asker {
  std::optional<caller> who;
  /// Another node forwarded the call: twins not served here are not forwarded again.
  bool forwarded = false;
  /// Metadata of the calls forwarded on its behalf (the caller).
  std::string metadata;
  /// The audit entry of each twin's change (target set per twin); null: not audited.
  std::shared_ptr<const runtime::audit_entry> audit;
};

void set_failure(outcome& o, StatusCode code, const std::string& message) {
  o.set_code(code_name(code));
  o.set_message(message);
  o.set_version(0);
  o.set_changed(false);
}

/// The outcomes of a batch, filled from any thread; the last one hands them over.
struct batch_state {
  std::vector<outcome> outcomes;
  std::atomic<size_t> remaining{0};
  std::function<void(std::vector<outcome>)> done;
  void settle(size_t n = 1) {
    if (remaining.fetch_sub(n) == n)
      done(std::move(outcomes));
  }
};

/// Changes twins `ids` (`expected[i]`: the version twin i must be at, if any) and calls
/// `done` once with an outcome per id, in order (from any thread).
void run_batch(twin_backend& backend, const asker& a, const change_spec& spec,
               const std::vector<std::string>& ids,
               const std::vector<std::optional<uint64_t>>& expected,
               std::function<void(std::vector<outcome>)> done) {
  auto g = std::make_shared<batch_state>();
  g->outcomes.resize(ids.size());
  g->remaining = ids.size() + 1;  // + 1: held while the batch is sent
  g->done = std::move(done);
  std::map<std::string, std::vector<size_t>> remote;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto& o = g->outcomes[i];
    o.set_name("twins/" + ids[i]);
    std::string why;
    auto r = backend.route_asset(ids[i], why);
    if (!r) {
      std::optional<std::string> endpoint;
      if (!a.forwarded)
        endpoint = backend.remote_owner(ids[i], why);
      if (endpoint) {
        remote[*endpoint].push_back(i);
      } else {
        set_failure(o, StatusCode::UNAVAILABLE, why);
        g->settle();
      }
      continue;
    }
    core::desired_update u = spec.update;
    u.expected_version = expected[i];
    if (a.who && a.who->scoped())
      u.only_tenant = a.who->tenant;
    std::shared_ptr<runtime::audit_entry> entry;
    if (a.audit && !u.validate_only) {
      entry = std::make_shared<runtime::audit_entry>(*a.audit);
      entry->target = o.name();
    }
    runtime::twin_completion reply{[g, i, entry, &backend](runtime::twin_reply r) {
                                     auto& o = g->outcomes[i];
                                     if (r.error == query_error::none) {
                                       o.set_code("OK");
                                       o.set_version(r.twin->version);
                                       o.set_changed(!r.unchanged);
                                     } else {
                                       auto s = to_status(r);
                                       set_failure(o, s.error_code(), s.error_message());
                                     }
                                     if (entry && !r.audited) {
                                       // Not carried by a transaction: a refusal, or a
                                       // change of nothing.
                                       auto e = *entry;
                                       e.time_ms = wall_ms();
                                       e.code = o.code();
                                       e.message = o.message();
                                       backend.audit(std::move(e));
                                     }
                                     g->settle();
                                   },
                                   unanswered()};
    reply.audit = entry;
    caf::anon_send(r->actor, runtime::desired_atom::value, ids[i], std::move(u), std::move(reply));
  }
  // The twins of other nodes go there as one batch per node, which audits them.
  for (auto& [endpoint, idx] : remote) {
    auto part = spec.proto;
    for (auto i : idx) {
      part.add_names(g->outcomes[i].name());
      if (expected[i])
        (*part.mutable_expected_versions())[g->outcomes[i].name()] = *expected[i];
    }
    runtime::forward_completion reply{
        [g, idx, endpoint](runtime::forward_reply r) {
          v1::BatchUpdateDesiredResponse resp;
          if (r.code == 0 && (!resp.ParseFromString(r.response) ||
                              static_cast<size_t>(resp.outcomes_size()) != idx.size())) {
            r.code = static_cast<int32_t>(StatusCode::INTERNAL);
            r.message = "node " + endpoint + " sent an unreadable batch answer";
          }
          for (size_t j = 0; j < idx.size(); ++j) {
            auto& o = g->outcomes[idx[j]];
            if (r.code != 0)
              set_failure(o, static_cast<StatusCode>(r.code), r.message);
            else
              o.Swap(resp.mutable_outcomes(static_cast<int>(j)));
          }
          g->settle(idx.size());
        },
        runtime::forward_reply{static_cast<int32_t>(StatusCode::UNAVAILABLE),
                               "the forwarded call was dropped (node stopping); retry",
                               {}}};
    backend.forward(endpoint, batch_method, part.SerializeAsString(), a.metadata, std::move(reply));
  }
  g->settle();
}

/// Outcomes counted in the order of metrics::grpc_probe::bulk_outcome_names.
enum outcome_kind : size_t { changed, unchanged, conflict, not_found, failed };
std::array<int64_t, 5> count_outcomes(const std::vector<outcome>& outcomes) {
  std::array<int64_t, 5> n{};
  for (const auto& o : outcomes) {
    if (o.code() == "OK")
      ++n[o.changed() ? changed : unchanged];
    else if (o.code() == "ABORTED")
      ++n[conflict];
    else if (o.code() == "NOT_FOUND")
      ++n[not_found];
    else
      ++n[failed];
  }
  return n;
}

/// Checks the names of a request (no twin twice); the ids, or the error text.
std::optional<std::string> parse_names(const google::protobuf::RepeatedPtrField<std::string>& names,
                                       std::vector<std::string>& ids,
                                       std::unordered_set<std::string>& seen) {
  ids.reserve(static_cast<size_t>(names.size()));
  for (int i = 0; i < names.size(); ++i) {
    std::string error;
    auto id = parse_twin_name(names[i], error);
    if (!id)
      return "names[" + std::to_string(i) + "]: " + error;
    if (!seen.insert(names[i]).second)
      return "names[" + std::to_string(i) + "]: \"" + names[i] + "\" is named twice";
    ids.push_back(std::move(*id));
  }
  return std::nullopt;
}

/// Checks expected_versions: its keys must be twin names (`names`: the names of the
/// request, when every key must be one of them).
std::optional<std::string> check_expected(const google::protobuf::Map<std::string, uint64_t>& m,
                                          const std::unordered_set<std::string>* names) {
  for (const auto& [name, version] : m) {
    std::string error;
    if (!parse_twin_name(name, error))
      return "expected_versions[\"" + name + "\"]: " + error;
    if (names && !names->contains(name))
      return "expected_versions names \"" + name + "\", which is not in names";
  }
  return std::nullopt;
}

/// A BulkUpdateDesired call: selects its twins, then changes them a batch at a time and
/// streams the progress. It ends once every task it started has reported back (selection
/// pages, batches); each task holds a reference, gRPC holds one until OnDone.
class bulk_stream final : public ::grpc::ServerWriteReactor<v1::BulkUpdateDesiredProgress>,
                          public std::enable_shared_from_this<bulk_stream> {
public:
  struct setup {
    twin_backend* backend = nullptr;
    query_pool* pool = nullptr;
    metrics::grpc_probe* probe = nullptr;
    asker who;
    change_spec change;
    bool dry_run = false;
    bool if_unchanged = false;
    size_t max_twins = 0;
    google::protobuf::Map<std::string, uint64_t> expected;
    /// Names mode: the twins.
    std::vector<std::string> names;
    /// Filter mode: the filter (confined to the caller's tenant) and its text.
    std::optional<core::filter> filter;
    std::string filter_text;
    size_t max_scanned = 0;
    std::shared_ptr<void> bulk_slot;
  };

  explicit bulk_stream(setup s) : s_(std::move(s)), started_(std::chrono::steady_clock::now()) {}

  void start() {
    if (!s_.filter) {
      std::lock_guard<std::mutex> guard{mutex_};
      ids_ = std::move(s_.names);
      selection_complete_ = true;
    } else {
      std::vector<int32_t> local;
      std::string why;
      auto remote = s_.backend->list_plan(local, why);
      if (!remote) {
        end({StatusCode::UNAVAILABLE, why});
        return;
      }
      std::lock_guard<std::mutex> guard{mutex_};
      outstanding_ = 1 + remote->size();
      local_ = std::move(local);
      remote_ = std::move(*remote);
    }
    if (s_.filter) {
      select_local({});
      for (const auto& [endpoint, partitions] : remote_) {
        std::string list;
        for (auto p : partitions)
          list += (list.empty() ? "" : ",") + std::to_string(p);
        select_remote(endpoint, list, {});
      }
    } else {
      apply_more();
    }
    pump();
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      writing_ = false;
      if (!ok)
        cancelled_ = true;  // the client is gone
    }
    pump();
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      cancelled_ = true;
    }
    pump();
  }

  void OnDone() override {
    self_.reset();  // the last task's reference, or this one, destroys the stream
  }

  /// gRPC's reference (until OnDone).
  std::shared_ptr<bulk_stream> self_;

private:
  bool stopping() const {
    return cancelled_ || error_.has_value();
  }

  /// Ends the call with `s` once every task has reported back.
  void end(Status s) {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (!error_)
        error_ = std::move(s);
    }
    pump();
  }

  /// Selected twins (id, version at selection).
  void selected(std::vector<std::pair<std::string, uint64_t>> found) {
    std::lock_guard<std::mutex> guard{mutex_};
    for (auto& [id, version] : found) {
      ids_.push_back(std::move(id));
      versions_.push_back(version);
    }
    if (ids_.size() > s_.max_twins && !error_)
      error_ = Status{StatusCode::FAILED_PRECONDITION,
                      "the filter selects more than max_twins (" + std::to_string(s_.max_twins) +
                          ") twins; nothing was changed: narrow the filter or raise max_twins"};
  }

  /// A part of the selection is done; the last one starts the changes.
  void part_done() {
    bool apply = false;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (--outstanding_ == 0) {
        selection_complete_ = true;
        apply = !stopping();
      }
    }
    if (apply)
      apply_more();
    pump();
  }

  void select_local(std::string start_after) {
    if (local_.empty()) {
      part_done();
      return;
    }
    bool queued = s_.pool->submit([this, self = shared_from_this(), start_after] {
      if ([&] {
            std::lock_guard<std::mutex> guard{mutex_};
            return stopping();
          }()) {
        part_done();
        return;
      }
      auto now = wall_ms();
      auto stale = s_.backend->stale_after_ms();
      std::string error;
      auto page = s_.backend->store().list_twins(
          local_, start_after,
          [&](const core::twin& tw) { return s_.filter->matches(tw, now, stale); }, selection_page,
          s_.max_scanned, error);
      if (!error.empty()) {
        end({StatusCode::INTERNAL, "reading twins: " + error});
        part_done();
        return;
      }
      std::vector<std::pair<std::string, uint64_t>> found;
      found.reserve(page.twins.size());
      for (auto& tw : page.twins)
        found.emplace_back(std::move(tw.asset_id), tw.version);
      selected(std::move(found));
      if (page.next_page_token.empty())
        part_done();
      else
        select_local(std::move(page.next_page_token));
      pump();
    });
    if (!queued) {
      end({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
      part_done();
    }
  }

  void select_remote(const std::string& endpoint, const std::string& partitions,
                     const std::string& token) {
    v1::ListTwinsRequest q;
    q.set_filter(s_.filter_text);
    q.set_page_size(selection_page);
    q.set_page_token(token);
    runtime::forward_completion reply{
        [this, self = shared_from_this(), endpoint, partitions](runtime::forward_reply r) {
          v1::ListTwinsResponse page;
          if (r.code != 0) {
            end({static_cast<StatusCode>(r.code),
                 "selecting the twins of node " + endpoint + ": " + r.message});
            part_done();
            return;
          }
          if (!page.ParseFromString(r.response)) {
            end({StatusCode::INTERNAL, "node " + endpoint + " sent an unreadable page of twins"});
            part_done();
            return;
          }
          std::vector<std::pair<std::string, uint64_t>> found;
          for (auto& tw : *page.mutable_twins())
            found.emplace_back(std::move(*tw.mutable_asset_id()), tw.version());
          selected(std::move(found));
          bool more = !page.next_page_token().empty() && [&] {
            std::lock_guard<std::mutex> guard{mutex_};
            return !stopping();
          }();
          if (more)
            select_remote(endpoint, partitions, page.next_page_token());
          else
            part_done();
        },
        runtime::forward_reply{static_cast<int32_t>(StatusCode::UNAVAILABLE),
                               "the forwarded call was dropped (node stopping); retry",
                               {}}};
    s_.backend->forward(endpoint, list_method, q.SerializeAsString(),
                        forward_metadata_of(s_.who.who, {{cluster::partitions_header, partitions}}),
                        std::move(reply));
  }

  /// Whether every twin has had its batch (retries included) and none waits for another.
  bool all_started() const {
    return next_ >= ids_.size() && again_next_ >= again_.size() && retry_.empty();
  }

  /// Starts batches until the window is full or every twin has one: the twins to retry
  /// first, then the next of the selection.
  void apply_more() {
    for (;;) {
      std::vector<size_t> batch;
      std::vector<std::string> ids;
      std::vector<std::optional<uint64_t>> expected;
      uint32_t round = 0;
      {
        std::lock_guard<std::mutex> guard{mutex_};
        if (stopping() || in_flight_ >= bulk_window)
          return;
        if (again_next_ < again_.size()) {
          const size_t end = std::min(again_.size(), again_next_ + bulk_batch);
          batch.assign(again_.begin() + static_cast<ptrdiff_t>(again_next_),
                       again_.begin() + static_cast<ptrdiff_t>(end));
          again_next_ = end;
          round = round_;
        } else if (next_ < ids_.size()) {
          const size_t end = std::min(ids_.size(), next_ + bulk_batch);
          for (size_t i = next_; i < end; ++i)
            batch.push_back(i);
          next_ = end;
        } else {
          if (in_flight_ == 0 && !retry_.empty() && !alarm_armed_)
            arm_retry();
          return;
        }
        for (auto i : batch) {
          ids.push_back(ids_[i]);
          auto it = s_.expected.empty() ? s_.expected.end() : s_.expected.find("twins/" + ids_[i]);
          if (it != s_.expected.end())
            expected.emplace_back(it->second);
          else if (s_.if_unchanged && s_.filter)
            expected.emplace_back(versions_[i]);
          else
            expected.emplace_back(std::nullopt);
        }
        ++in_flight_;
        ++outstanding_;
      }
      run_batch(*s_.backend, s_.who, s_.change, ids, expected,
                [this, self = shared_from_this(), batch = std::move(batch), round](
                    std::vector<outcome> outcomes) { settled(batch, round, std::move(outcomes)); });
    }
  }

  /// The twins whose partition was moving (UNAVAILABLE) go again after the time the node
  /// says to wait, up to max_retry_rounds times (under the lock).
  void arm_retry() {
    alarm_armed_ = true;
    ++outstanding_;  // the alarm reports back like a task
    alarm_ = std::make_unique<::grpc::Alarm>();
    alarm_->Set(std::chrono::system_clock::now() + retry_delay(round_),
                // Weak: the alarm keeps its callback as long as the stream keeps the alarm.
                // The stream cannot end while the alarm is counted in outstanding_.
                [weak = weak_from_this()](bool) {
                  auto self = weak.lock();
                  if (!self)
                    return;
                  self->retry_now();
                });
  }

  void retry_now() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      alarm_armed_ = false;
      --outstanding_;
      again_ = std::move(retry_);
      retry_.clear();
      again_next_ = 0;
      ++round_;
    }
    apply_more();
    pump();
  }

  void settled(const std::vector<size_t>& batch, uint32_t round, std::vector<outcome> outcomes) {
    std::vector<outcome> final;
    final.reserve(outcomes.size());
    {
      std::lock_guard<std::mutex> guard{mutex_};
      for (size_t j = 0; j < outcomes.size(); ++j) {
        auto& o = outcomes[j];
        if (o.code() == "UNAVAILABLE" && round < max_retry_rounds && !stopping()) {
          retry_.push_back(batch[j]);
          continue;
        }
        final.push_back(o);
        waiting_.push_back(std::move(o));
      }
      const auto n = count_outcomes(final);
      for (size_t k = 0; k < n.size(); ++k)
        counts_[k] += n[k];
      --in_flight_;
      --outstanding_;
      s_.probe->on_bulk_outcomes(s_.dry_run, n);
    }
    apply_more();
    pump();
  }

  /// Writes what is new, or finishes the call when everything is said.
  void pump() {
    std::unique_lock<std::mutex> lock{mutex_};
    if (writing_ || finished_)
      return;
    const bool all_in = selection_complete_ && outstanding_ == 0 && all_started();
    if (stopping()) {
      if (outstanding_ > 0)
        return;  // tasks still report back here
      finished_ = true;
      auto s = error_ ? *error_ : Status{StatusCode::CANCELLED, "the call was cancelled"};
      lock.unlock();
      finish(std::move(s));
      return;
    }
    const bool news = !waiting_.empty() || sent_selected_ != ids_.size() ||
                      sent_complete_ != selection_complete_ || (all_in && !done_sent_);
    if (!news) {
      if (all_in && done_sent_) {
        finished_ = true;
        lock.unlock();
        finish(Status::OK);
      }
      return;
    }
    message_.Clear();
    message_.set_selected(static_cast<int64_t>(ids_.size()));
    message_.set_selection_complete(selection_complete_);
    message_.set_changed(counts_[changed]);
    message_.set_unchanged(counts_[unchanged]);
    message_.set_conflicts(counts_[conflict]);
    message_.set_not_found(counts_[not_found]);
    message_.set_failed(counts_[failed]);
    message_.set_dry_run(s_.dry_run);
    for (size_t n = 0; n < outcomes_per_message && !waiting_.empty(); ++n) {
      message_.add_outcomes()->Swap(&waiting_.front());
      waiting_.pop_front();
    }
    sent_selected_ = ids_.size();
    sent_complete_ = selection_complete_;
    if (all_in && waiting_.empty()) {
      message_.set_done(true);
      done_sent_ = true;
    }
    writing_ = true;
    lock.unlock();
    StartWrite(&message_);
  }

  void finish(Status s) {
    if (s_.who.audit) {
      // The call itself, with what it did (each changed twin is audited on its own).
      auto e = *s_.who.audit;
      e.target = "twins";
      e.time_ms = wall_ms();
      e.code = code_name(s.error_code());
      std::lock_guard<std::mutex> guard{mutex_};
      e.message = (s.ok() ? std::string{} : s.error_message() + "; ") +
                  (s_.filter ? "filter: " + s_.filter_text : "by names") + "; selected " +
                  std::to_string(ids_.size()) + ", changed " + std::to_string(counts_[changed]) +
                  ", unchanged " + std::to_string(counts_[unchanged]) + ", conflicts " +
                  std::to_string(counts_[conflict]) + ", not found " +
                  std::to_string(counts_[not_found]) + ", failed " +
                  std::to_string(counts_[failed]) + (s_.dry_run ? " (dry run)" : "");
      s_.backend->audit(std::move(e));
    }
    s_.probe->on_request(
        "BulkUpdateDesired", code_name(s.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
    Finish(std::move(s));
  }

  setup s_;
  std::chrono::steady_clock::time_point started_;
  std::vector<int32_t> local_;
  std::map<std::string, std::vector<int32_t>> remote_;
  std::mutex mutex_;
  std::vector<std::string> ids_;
  std::vector<uint64_t> versions_;
  bool selection_complete_ = false;
  /// Selection parts and batches that have not reported back.
  size_t outstanding_ = 0;
  size_t in_flight_ = 0;
  /// The next twin of the selection to start.
  size_t next_ = 0;
  /// Twins (indexes of ids_) to try again in the next round, and those of this round.
  std::vector<size_t> retry_, again_;
  size_t again_next_ = 0;
  uint32_t round_ = 0;
  bool alarm_armed_ = false;
  std::unique_ptr<::grpc::Alarm> alarm_;
  /// Twins with an outcome, by outcome (count_outcomes' order).
  std::array<int64_t, 5> counts_{};
  std::deque<outcome> waiting_;
  v1::BulkUpdateDesiredProgress message_;
  bool writing_ = false;
  size_t sent_selected_ = static_cast<size_t>(-1);
  bool sent_complete_ = false;
  bool done_sent_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  std::optional<Status> error_;
};

}  // namespace

::grpc::ServerUnaryReactor* twin_service::BatchUpdateDesired(
    ::grpc::CallbackServerContext* ctx, const v1::BatchUpdateDesiredRequest* req,
    v1::BatchUpdateDesiredResponse* resp) {
  call c{ctx, batch_update_};
  if (!c.admit_bulk(backend_))
    return c.reactor();
  const auto n = static_cast<size_t>(req->names_size());
  if (n == 0 || n > max_batch_names) {
    c.finish({StatusCode::INVALID_ARGUMENT, "names must list 1 to " +
                                                std::to_string(max_batch_names) + " twins, got " +
                                                std::to_string(n)});
    return c.reactor();
  }
  std::vector<std::string> ids;
  std::unordered_set<std::string> names;
  if (auto err = parse_names(req->names(), ids, names)) {
    c.finish({StatusCode::INVALID_ARGUMENT, *err});
    return c.reactor();
  }
  if (auto err = check_expected(req->expected_versions(), &names)) {
    c.finish({StatusCode::INVALID_ARGUMENT, *err});
    return c.reactor();
  }
  change_spec spec;
  if (auto err = parse_change(*req, req->validate_only(), spec)) {
    c.finish({StatusCode::INVALID_ARGUMENT, *err});
    return c.reactor();
  }
  std::vector<std::optional<uint64_t>> expected(n);
  for (size_t i = 0; i < n; ++i)
    if (auto it = req->expected_versions().find(req->names(static_cast<int>(i)));
        it != req->expected_versions().end())
      expected[i] = it->second;
  asker a{c.who(), c.forwarded(), c.forward_metadata(),
          std::make_shared<runtime::audit_entry>(c.entry(batch_method, {}))};
  run_batch(backend_, a, spec, ids, expected,
            [c, resp, &probe = probe_, dry = req->validate_only()](std::vector<outcome> outcomes) {
              if (!c.forwarded())  // the node the call came to counts its twins
                probe.on_bulk_outcomes(dry, count_outcomes(outcomes));
              for (auto& o : outcomes)
                resp->add_outcomes()->Swap(&o);
              c.finish(Status::OK);
            });
  return c.reactor();
}

::grpc::ServerWriteReactor<v1::BulkUpdateDesiredProgress>* twin_service::BulkUpdateDesired(
    ::grpc::CallbackServerContext* ctx, const v1::BulkUpdateDesiredRequest* req) {
  auto started = std::chrono::steady_clock::now();
  auto fail = [&](Status s) {
    probe_.on_request(
        "BulkUpdateDesired", code_name(s.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return new failed_stream<v1::BulkUpdateDesiredProgress>(std::move(s));
  };
  bulk_stream::setup s;
  s.backend = &backend_;
  s.pool = &pool_;
  s.probe = &probe_;
  auto who = caller_of(*ctx);
  // Admission: the caller's request rate, and a slot of the node's bulk calls for the
  // whole call.
  if (auto st = open_bulk_stream(backend_, *ctx, who, s.bulk_slot); !st.ok())
    return fail(std::move(st));
  if (req->max_twins() < 0 || req->max_twins() > max_max_twins)
    return fail({StatusCode::INVALID_ARGUMENT,
                 "max_twins must be 0 (10,000) to " + std::to_string(max_max_twins)});
  s.max_twins = static_cast<size_t>(req->max_twins() == 0 ? default_max_twins : req->max_twins());
  const bool by_names = req->names_size() > 0;
  if (by_names == !req->filter().empty())
    return fail({StatusCode::INVALID_ARGUMENT,
                 by_names ? "give names or a filter, not both"
                          : "select the twins with names or a filter (to change every twin, "
                            "say so with a filter such as `version > 0`)"});
  std::unordered_set<std::string> names;
  if (by_names) {
    if (static_cast<size_t>(req->names_size()) > s.max_twins)
      return fail({StatusCode::FAILED_PRECONDITION,
                   std::to_string(req->names_size()) + " names, more than max_twins (" +
                       std::to_string(s.max_twins) + "); nothing was changed"});
    if (auto err = parse_names(req->names(), s.names, names))
      return fail({StatusCode::INVALID_ARGUMENT, *err});
  } else {
    core::filter f;
    if (auto err = core::filter::parse(req->filter(), f))
      return fail({StatusCode::INVALID_ARGUMENT, filter_error(*err)});
    if (auto why = privacy{who, models_.get()}.refuses(f))
      return fail({StatusCode::PERMISSION_DENIED, *why});
    s.filter_text = scoped_filter(who, req->filter());
    if (auto err = core::filter::parse(s.filter_text, f))
      return fail({StatusCode::INTERNAL, filter_error(*err)});
    s.filter = std::move(f);
    s.max_scanned = limits_.max_scanned_per_page;
  }
  if (auto err = check_expected(req->expected_versions(), by_names ? &names : nullptr))
    return fail({StatusCode::INVALID_ARGUMENT, *err});
  if (req->if_unchanged() && by_names)
    return fail({StatusCode::INVALID_ARGUMENT,
                 "if_unchanged applies to twins selected by a filter; with names, give "
                 "expected_versions"});
  if (auto err = parse_change(*req, req->dry_run(), s.change))
    return fail({StatusCode::INVALID_ARGUMENT, *err});
  s.dry_run = req->dry_run();
  s.if_unchanged = req->if_unchanged();
  s.expected = req->expected_versions();
  s.who.who = who;
  s.who.metadata = forward_metadata_of(who);
  s.who.audit = std::make_shared<runtime::audit_entry>(audit_entry_of(who, bulk_method, {}));
  auto stream = std::make_shared<bulk_stream>(std::move(s));
  stream->self_ = stream;
  stream->start();
  return stream.get();
}

}  // namespace fleettwin::grpc_api
