#include "services/scenario/scenario_registry.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <future>
#include <random>
#include <set>

#include <spdlog/spdlog.h>

#include "actors/core/codec.hpp"
#include "services/scenario/scenario_codec.hpp"

namespace fleettwin::scenario {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

uint64_t result_bytes(const core::run_result& r) {
  uint64_t n = sizeof r + r.times.size() * sizeof(int64_t);
  for (const auto& k : r.kpis)
    n += sizeof k + k.ref.aggregate.size() + k.ref.measure.size() +
         k.values.size() * sizeof(std::optional<double>);
  for (const auto& a : r.alerts)
    n += sizeof a + a.twin.size() + a.property.size();
  for (const auto& f : r.failures)
    n += sizeof f + f.twin.size() + f.property.size();
  return n;
}

outcome fail(failure code, std::string message) {
  return outcome{code, std::move(message)};
}

}  // namespace

const char* to_string(run_state s) {
  switch (s) {
    case run_state::created:
      return "created";
    case run_state::running:
      return "running";
    case run_state::done:
      return "done";
    case run_state::failed:
      return "failed";
  }
  return "created";
}

uint64_t scenario::memory_bytes() const {
  uint64_t n = sizeof *this + id.size() + description.size() + owner.size() + tenant.size() +
               fork.below.size() + fork.where.text().size() + error.size() +
               partitions.size() * sizeof(int32_t);
  for (const auto& name : fork.names)
    n += sizeof name + name.size();
  for (const auto& raw : raw_inputs)
    n += sizeof raw + 2 * raw.size();  // the raw bytes, and the parsed input about as much
  if (last)
    n += sizeof *last + result_bytes(last->baseline) + result_bytes(last->scenario);
  if (last_sweep)
    for (const auto& p : last_sweep->result.points)
      n += sizeof p + (p.values.size() + p.constraint_values.size()) * sizeof(double) * 2;
  return n;
}

std::optional<std::string> validate_id(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return "a scenario id has 1 to 64 characters";
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return "a scenario id has only lowercase letters, digits and '-' (\"" + std::string{id} +
             "\")";
  if (id.front() == '-')
    return std::string{"a scenario id starts with a letter or digit"};
  return std::nullopt;
}

registry::registry(world_sources sources, registry_limits limits)
    : src_(std::move(sources)), limits_(limits) {}

registry::~registry() {
  decltype(threads_) threads;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    for (auto& [id, stop] : stops_)
      stop->store(true);
    threads.swap(threads_);
  }
  for (auto& [finished, t] : threads)
    t.join();
}

outcome registry::take_fork(scenario& s) const {
  // The cluster's partitions: a snapshot of this node's, a part pinned on
  // every other node for theirs (all taken within this call).
  std::string why;
  std::vector<int32_t> local;
  const auto remote = src_.plan(local, why);
  if (!remote)
    return fail(failure::unavailable,
                "not every partition is served right now (" + why + "); retry shortly");
  if (!remote->empty() && !src_.parts)
    return fail(failure::unavailable, "this node cannot reach the other nodes' twins");
  s.partition_count = static_cast<int32_t>(local.size());
  for (const auto& [endpoint, ps] : *remote)
    s.partition_count += static_cast<int32_t>(ps.size());
  s.snapshot = src_.store->pin();
  if (s.fork.at_ms < 0 || s.fork.at_ms >= s.snapshot->taken_ms)
    return fail(failure::invalid, "a fork's point in time (at_ms " + std::to_string(s.fork.at_ms) +
                                      ") is in the past; 0 forks the live state");
  s.partitions = local;
  {
    static std::atomic<uint64_t> creations{0};
    std::random_device entropy;
    char suffix[24];
    std::snprintf(suffix, sizeof suffix, "%08x%llx", entropy(),
                  static_cast<unsigned long long>(creations.fetch_add(1)));
    s.part_id = s.id + "." + suffix;
  }
  s.created_ms = s.snapshot->taken_ms;
  const auto kinds = src_.kinds ? src_.kinds() : nullptr;
  // The other nodes pin their parts while this one checks its own.
  struct pinning {
    std::string endpoint;
    std::vector<int32_t> partitions;
    fork_check check;
    int64_t taken_ms = 0;
    std::future<outcome> done;
  };
  std::vector<pinning> pins;
  for (const auto& [endpoint, ps] : *remote)
    pins.push_back(pinning{endpoint, ps, {}, 0, {}});
  for (auto& p : pins)
    p.done = std::async(std::launch::async, [&s, &p, this] {
      return src_.parts->pin(p.endpoint, s.forward_as, s.part_id, p.partitions, s.partition_count,
                             s.fork, s.tenant, p.check, p.taken_ms);
    });
  fork_check total;
  outcome failed;
  {
    const snapshot_part here{*src_.store, s.snapshot, local, s.partition_count, kinds};
    failed = here.check(s.fork, s.tenant, src_.stale_after_ms, limits_.max_twins, total);
  }
  for (auto& p : pins) {
    auto o = p.done.get();
    if (!o) {
      if (failed)
        failed = outcome{o.code, "the node at " + p.endpoint + ": " + o.message};
      continue;
    }
    s.parts.push_back(remote_part{p.endpoint, p.partitions, p.taken_ms});
    total.names_found.insert(total.names_found.end(), p.check.names_found.begin(),
                             p.check.names_found.end());
    total.below_found |= p.check.below_found;
    total.below_twins += p.check.below_twins;
    total.matched += p.check.matched;
  }
  if (!failed) {
    release_remote(s);
    return failed;
  }
  // What the fork selects exists, and is not too much.
  auto refuse = [&](failure code, std::string message) {
    release_remote(s);
    return fail(code, std::move(message));
  };
  {
    const std::set<std::string> found(total.names_found.begin(), total.names_found.end());
    for (const auto& name : s.fork.names)
      if (!found.count(name))
        return refuse(failure::not_found, "twin \"twins/" + name + "\" does not exist");
  }
  if (!s.fork.below.empty()) {
    if (!total.below_found)
      return refuse(failure::not_found, "aggregate \"" + s.fork.below + "\" does not exist");
    if (total.below_twins > limits_.max_twins)
      return refuse(failure::exhausted, "\"" + s.fork.below + "\" has " +
                                            std::to_string(total.below_twins) +
                                            " twins below it; a scenario forks at most " +
                                            std::to_string(limits_.max_twins));
  }
  if (!s.fork.where.matches_all()) {
    if (total.matched == 0)
      return refuse(failure::invalid, "the filter matches no twin");
    if (total.matched > limits_.max_twins)
      return refuse(failure::exhausted, "the filter matches more than " +
                                            std::to_string(limits_.max_twins) +
                                            " twins, the most a scenario forks");
  }
  return {};
}

outcome registry::create(scenario s, std::shared_ptr<const scenario>& out) {
  if (auto why = validate_id(s.id))
    return fail(failure::invalid, *why);
  const int given = (s.fork.names.empty() ? 0 : 1) + (s.fork.where.matches_all() ? 0 : 1) +
                    (s.fork.below.empty() ? 0 : 1);
  if (given != 1)
    return fail(failure::invalid,
                "fork exactly one of: names (twins/{asset_id}), a filter, or below (an aggregate)");
  if (s.fork.names.size() > limits_.max_twins)
    return fail(failure::exhausted, "a scenario forks at most " +
                                        std::to_string(limits_.max_twins) + " twins (" +
                                        std::to_string(s.fork.names.size()) + " named)");
  {
    std::lock_guard<std::mutex> guard{mutex_};
    if (scenarios_.count(s.id))
      return fail(failure::exists, "scenario \"scenarios/" + s.id + "\" exists already");
    if (scenarios_.size() >= limits_.max_scenarios)
      return fail(failure::exhausted, "this node holds " + std::to_string(scenarios_.size()) +
                                          " scenarios, its limit (--scenario-max); delete one");
  }
  if (auto o = take_fork(s); !o)
    return o;
  auto made = std::make_shared<const scenario>(std::move(s));
  outcome refused;
  bool kept = false;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    if (!scenarios_.emplace(made->id, made).second) {
      refused = fail(failure::exists, "scenario \"scenarios/" + made->id + "\" exists already");
    } else if (scenarios_.size() > limits_.max_scenarios) {
      scenarios_.erase(made->id);
      refused = fail(failure::exhausted, "this node holds its limit of scenarios (--scenario-max)");
    } else {
      kept = true;
    }
  }
  if (!kept) {
    release_remote(*made);
    return refused;
  }
  persist(*made);
  out = made;
  return {};
}

std::shared_ptr<const scenario> registry::get(const std::string& id,
                                              const std::string& tenant) const {
  std::lock_guard<std::mutex> guard{mutex_};
  const auto it = scenarios_.find(id);
  if (it == scenarios_.end() || (!tenant.empty() && it->second->tenant != tenant))
    return nullptr;
  return it->second;
}

std::vector<std::shared_ptr<const scenario>> registry::list(const std::string& after, size_t n,
                                                            const std::string& tenant) const {
  std::vector<std::shared_ptr<const scenario>> out;
  std::lock_guard<std::mutex> guard{mutex_};
  for (auto it = scenarios_.upper_bound(after); it != scenarios_.end() && out.size() < n; ++it)
    if (tenant.empty() || it->second->tenant == tenant)
      out.push_back(it->second);
  return out;
}

outcome registry::remove(const std::string& id, const std::string& tenant) {
  std::shared_ptr<const scenario> gone;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    const auto it = scenarios_.find(id);
    if (it == scenarios_.end() || (!tenant.empty() && it->second->tenant != tenant))
      return fail(failure::not_found, "scenario \"scenarios/" + id + "\" does not exist");
    gone = std::move(it->second);
    scenarios_.erase(it);
    if (const auto s = stops_.find(id); s != stops_.end())
      s->second->store(true);
  }
  // The snapshot is released with the last reference (a run in progress
  // holds one until it stops); the other nodes release their parts now (a
  // run in progress fails on its next page).
  release_remote(*gone);
  std::string error;
  if (src_.store && !src_.store->delete_record(record_key(id), error))
    spdlog::warn("scenario {}: {}", id, error);
  return {};
}

outcome registry::add_inputs(const std::string& id, const std::string& tenant,
                             std::vector<core::scenario_input> inputs, std::vector<std::string> raw,
                             bool replace, std::shared_ptr<const scenario>& out) {
  std::unique_lock<std::mutex> guard{mutex_};
  const auto it = scenarios_.find(id);
  if (it == scenarios_.end() || (!tenant.empty() && it->second->tenant != tenant))
    return fail(failure::not_found, "scenario \"scenarios/" + id + "\" does not exist");
  if (it->second->state == run_state::running)
    return fail(failure::busy,
                "scenario \"scenarios/" + id + "\" is running; add inputs when the run ends");
  auto next = std::make_shared<scenario>(*it->second);
  if (replace) {
    next->inputs.clear();
    next->raw_inputs.clear();
  }
  if (next->inputs.size() + inputs.size() > limits_.max_inputs)
    return fail(failure::exhausted,
                "a scenario has at most " + std::to_string(limits_.max_inputs) + " inputs");
  for (size_t i = 0; i < inputs.size(); ++i) {
    next->inputs.push_back(std::move(inputs[i]));
    next->raw_inputs.push_back(i < raw.size() ? std::move(raw[i]) : std::string{});
  }
  it->second = next;
  out = next;
  guard.unlock();
  persist(*next);
  return {};
}

outcome registry::check_run(const core::run_options& opts, uint64_t runs) const {
  const uint64_t steps =
      static_cast<uint64_t>(opts.horizon_ms / std::max<int64_t>(1, opts.step_ms));
  if (steps == 0)
    return fail(failure::invalid, "the horizon must be at least one step");
  if (runs * steps > limits_.max_steps)
    return fail(failure::invalid,
                "the work takes " + std::to_string(runs) + " run(s) of " + std::to_string(steps) +
                    " steps; at most " + std::to_string(limits_.max_steps) +
                    " steps in all (a longer step, a shorter horizon or fewer runs)");
  return {};
}

outcome registry::start_run(const std::string& id, const std::string& tenant,
                            core::run_options opts, run_progress progress, run_done done,
                            std::function<bool()> cancelled) {
  if (auto o = check_run(opts, 2); !o)
    return o;
  const uint64_t steps = static_cast<uint64_t>(opts.horizon_ms / opts.step_ms);
  job j = [this, opts, steps, progress = std::move(progress)](
              const scenario& s, const std::function<bool()>& stopped, job_result& out) {
    const auto began = std::chrono::steady_clock::now();
    auto report = [&](uint64_t offset) {
      return [&, offset](uint64_t step, uint64_t) {
        const double elapsed = std::max(1e-6, seconds_since(began));
        const double virtual_s = static_cast<double>((offset + step) * opts.step_ms) / 1000.0;
        if (progress)
          progress(offset + step, 2 * steps, virtual_s / elapsed);
        return !stopped();
      };
    };
    auto result = std::make_shared<run_outcome>();
    result->options = opts;
    {
      core::scenario_world w;
      if (auto o = load_world(s, w); !o)
        return o;
      const auto t = std::chrono::steady_clock::now();
      result->baseline = core::run(w, {}, opts, report(0));
      result->base_wall_s = seconds_since(t);
    }
    if (stopped())
      return outcome{};
    core::scenario_world w;
    if (auto o = load_world(s, w); !o)
      return o;
    if (auto o = prepare_inputs(s, s.inputs, w); !o)
      return o;
    const auto t = std::chrono::steady_clock::now();
    result->scenario = core::run(w, s.inputs, opts, report(steps));
    result->wall_s = seconds_since(t);
    result->finished_ms = wall_ms();
    const double total_s = result->base_wall_s + result->wall_s;
    out.speed = total_s > 0 ? 2.0 * static_cast<double>(opts.horizon_ms) / 1000.0 / total_s : 0;
    out.run = std::move(result);
    return outcome{};
  };
  return launch(id, tenant, std::move(j), std::move(done), std::move(cancelled));
}

outcome registry::start_sweep(const std::string& id, const std::string& tenant,
                              core::run_options opts, core::sweep_options sweep,
                              run_progress progress, run_done done,
                              std::function<bool()> cancelled) {
  if (auto o = check_run(opts, sweep.max_runs); !o)
    return o;
  {
    auto s = get(id, tenant);
    if (!s)
      return fail(failure::not_found, "scenario \"scenarios/" + id + "\" does not exist");
    if (auto err = core::check_sweep(s->inputs, sweep))
      return fail(failure::invalid, *err);
  }
  job j = [this, opts, sweep, progress = std::move(progress)](
              const scenario& s, const std::function<bool()>& stopped, job_result& out) {
    // The inputs as of the start (checked again: they may have changed since).
    if (auto err = core::check_sweep(s.inputs, sweep))
      return fail(failure::invalid, *err);
    core::scenario_world w;
    if (auto o = load_world(s, w); !o)
      return o;
    const auto began = std::chrono::steady_clock::now();
    auto result = std::make_shared<sweep_outcome>();
    result->options = opts;
    result->sweep = sweep;
    result->result = core::sweep(w, s.inputs, opts, sweep, [&](size_t done, size_t total) {
      if (progress)
        progress(done, total,
                 static_cast<double>(done) * static_cast<double>(opts.horizon_ms) / 1000.0 /
                     std::max(1e-6, seconds_since(began)));
      return !stopped();
    });
    result->wall_s = seconds_since(began);
    result->finished_ms = wall_ms();
    out.speed = result->wall_s > 0
                    ? static_cast<double>(result->result.points.size()) *
                          static_cast<double>(opts.horizon_ms) / 1000.0 / result->wall_s
                    : 0;
    out.sweep = std::move(result);
    return outcome{};
  };
  return launch(id, tenant, std::move(j), std::move(done), std::move(cancelled));
}

outcome registry::prepare_inputs(const scenario& s, const std::vector<core::scenario_input>& inputs,
                                 core::scenario_world& w) const {
  if (auto err = core::prepare(w, inputs))
    return fail(failure::invalid, "input " + std::to_string(err->index + 1) + " (" +
                                      core::describe(inputs[err->index]) + "): " + err->message);
  if (w.twins.size() > limits_.max_twins)
    return fail(failure::exhausted, "with its inputs the scenario holds " +
                                        std::to_string(w.twins.size()) + " twins; at most " +
                                        std::to_string(limits_.max_twins));
  return {};
}

outcome registry::launch(const std::string& id, const std::string& tenant, job j, run_done done,
                         std::function<bool()> cancelled) {
  std::lock_guard<std::mutex> guard{mutex_};
  const auto it = scenarios_.find(id);
  if (it == scenarios_.end() || (!tenant.empty() && it->second->tenant != tenant))
    return fail(failure::not_found, "scenario \"scenarios/" + id + "\" does not exist");
  if (it->second->state == run_state::running)
    return fail(failure::busy, "scenario \"scenarios/" + id + "\" is running already");
  if (stops_.size() >= limits_.max_running)
    return fail(failure::exhausted, std::to_string(stops_.size()) +
                                        " scenario run(s) in progress, this node's limit "
                                        "(--scenario-max-running); try again when one ends");
  auto running = std::make_shared<scenario>(*it->second);
  running->state = run_state::running;
  running->error.clear();
  it->second = running;
  auto stop = std::make_shared<std::atomic<bool>>(false);
  stops_.emplace(id, stop);
  // Threads of runs that ended are joined here (they are done or nearly).
  std::erase_if(threads_, [](auto& t) {
    if (!t.first->load())
      return false;
    t.second.join();
    return true;
  });
  auto finished = std::make_shared<std::atomic<bool>>(false);
  threads_.emplace_back(finished,
                        std::thread{[this, running, stop, j = std::move(j), done = std::move(done),
                                     cancelled = std::move(cancelled), finished]() mutable {
                          execute(running, stop, j, done, cancelled);
                          finished->store(true);
                        }});
  return {};
}

void registry::execute(const std::shared_ptr<const scenario>& s,
                       const std::shared_ptr<std::atomic<bool>>& stop, const job& j,
                       const run_done& done, const std::function<bool()>& cancelled) {
  auto stopped = [&] { return stop->load() || (cancelled && cancelled()); };
  job_result result;
  std::shared_ptr<const scenario> forked = s;
  outcome o;
  if (!s->snapshot)
    o = refork(*s, forked);
  if (o)
    o = j(*forked, stopped, result);
  const bool was_stopped = o && stopped();
  if (was_stopped)
    o = fail(failure::unavailable, stop->load() ? "the scenario was deleted or the node stopped"
                                                : "the client cancelled the run");
  std::shared_ptr<const scenario> after;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stops_.erase(s->id);
    const auto it = scenarios_.find(s->id);
    if (it != scenarios_.end()) {
      auto next = std::make_shared<scenario>(*it->second);
      next->state = o ? run_state::done : run_state::failed;
      next->error = o ? std::string{} : o.message;
      if (o && result.run)
        next->last = result.run;
      if (o && result.sweep)
        next->last_sweep = result.sweep;
      it->second = next;
      after = next;
    }
    runs_[o ? 0 : was_stopped ? 2 : 1].fetch_add(1);
    if (o)
      last_speed_bits_.store(std::bit_cast<uint64_t>(result.speed));
  }
  if (after)
    persist(*after);
  if (!o)
    spdlog::info("scenario {}: run failed: {}", s->id, o.message);
  if (done)
    done(o, after);
}

outcome registry::load_world(const scenario& s, core::scenario_world& w) const {
  auto kinds = src_.kinds ? src_.kinds() : nullptr;
  w.kinds = kinds ? kinds : std::make_shared<const core::kind_registry>();
  const auto models = src_.models ? src_.models() : nullptr;
  if (models)
    w.models = *models;
  // A fork from a past point starts then.
  w.start_ms = s.fork.at_ms > 0 ? s.fork.at_ms : s.snapshot->taken_ms;
  w.stale_after_ms = src_.stale_after_ms;
  const auto& fields = w.kinds->fields();
  const snapshot_part here{*src_.store,       s.snapshot, s.partitions,
                           s.partition_count, w.kinds,    models};
  // Every page of another node's part, decoded (a part released or gone fails the run).
  auto read_remote = [&](const remote_part& part, auto list, auto each) -> outcome {
    std::string after;
    std::vector<part_record> page;
    core::twin tw;
    do {
      page.clear();
      std::string next;
      if (auto o = list(part, after, page, next); !o) {
        o.message = "the part of the fork on the node at " + part.endpoint + ": " + o.message;
        return o;
      }
      for (auto& r : page) {
        tw = core::twin{};
        if (auto err = core::decode_twin(r.bytes, tw))
          return fail(failure::unavailable,
                      "a record from the node at " + part.endpoint + " does not decode: " + *err);
        each(tw, r.forked);
      }
      after = std::move(next);
    } while (!after.empty());
    return {};
  };

  // The aggregates' own records (attributes, relations to their parents).
  std::map<std::string, core::twin, std::less<>> entities;
  auto keep_entity = [&](const core::twin& e, bool) { entities.emplace(e.asset_id, e); };
  if (auto o = here.each_entity([&](core::twin&& e) {
        auto id = e.asset_id;
        entities.emplace(std::move(id), std::move(e));
      });
      !o)
    return o;
  for (const auto& part : s.parts)
    if (auto o = read_remote(
            part,
            [&](const remote_part& p, const std::string& after, std::vector<part_record>& out,
                std::string& next) {
              return src_.parts->entities(p.endpoint, s.forward_as, s.part_id, after, out, next);
            },
            keep_entity);
        !o)
      return o;
  // Whether an aggregate is `target` or lies below it (memoised).
  std::map<std::string, bool, std::less<>> memo;
  std::function<bool(const std::string&, const std::set<std::string, std::less<>>&, int)> reaches =
      [&](const std::string& id, const std::set<std::string, std::less<>>& targets, int depth) {
        if (targets.count(id))
          return true;
        if (depth > 32)
          return false;  // deeper than any relation graph may be
        if (auto m = memo.find(id); m != memo.end())
          return m->second;
        bool r = false;
        if (auto e = entities.find(id); e != entities.end())
          for (const auto& rel : e->second.relations)
            if (reaches(rel.parent, targets, depth + 1)) {
              r = true;
              break;
            }
        memo[id] = r;
        return r;
      };
  const std::set<std::string, std::less<>> below =
      s.fork.below.empty() ? std::set<std::string, std::less<>>{}
                           : std::set<std::string, std::less<>>{s.fork.below};

  // What the fork takes whole: named twins, those a filter matches, or those
  // with a relation to `below` or an aggregate below it.
  fork_selection sel;
  sel.tenant = s.tenant;
  sel.names.insert(s.fork.names.begin(), s.fork.names.end());
  sel.where = s.fork.where;
  sel.at_ms = w.start_ms;
  sel.stale_after_ms = src_.stale_after_ms;
  sel.rewind_to_ms = s.fork.at_ms;
  if (!below.empty()) {
    sel.parents = below;
    for (const auto& [id, e] : entities)
      if (reaches(id, below, 0))
        sel.parents.insert(id);
  }

  // One scan of every part's twins as its snapshot saw them: the forked ones
  // whole, every other one as its relations and view (a frozen member, if a
  // forked aggregate counts it).
  std::vector<core::frozen_member> others;
  bool too_many = false;
  auto take = [&](const core::twin& tw, bool forked) {
    if (too_many)
      return;
    if (forked) {
      if (w.twins.size() >= limits_.max_twins) {
        too_many = true;
        return;
      }
      auto [it, fresh] = w.twins.emplace(tw.asset_id, tw);
      if (fresh)
        strip_for_run(it->second);
    } else if (!tw.relations.empty()) {
      others.push_back(core::frozen_member{tw.asset_id, tw.relations, core::project(tw, fields)});
    }
  };
  if (auto o = here.each_twin(sel, take); !o)
    return o;
  for (const auto& part : s.parts)
    if (auto o = read_remote(
            part,
            [&](const remote_part& p, const std::string& after, std::vector<part_record>& out,
                std::string& next) {
              return src_.parts->twins(p.endpoint, s.forward_as, s.part_id, sel, after, out, next);
            },
            take);
        !o)
      return o;
  if (too_many)
    return fail(failure::exhausted,
                "the fork holds more than " + std::to_string(limits_.max_twins) + " twins");
  for (const auto& name : s.fork.names)
    if (!w.twins.count(name))
      return fail(failure::not_found,
                  "twin \"twins/" + name + "\" " +
                      (s.fork.at_ms > 0 ? "has no retained history before the fork's point in time"
                                        : "no longer exists"));
  if (w.twins.empty() && s.fork.at_ms > 0)
    return fail(failure::invalid,
                "no twin the fork selects has retained history before its point in time (at_ms " +
                    std::to_string(s.fork.at_ms) + ")");
  // The same order whichever node holds which twin.
  std::sort(others.begin(), others.end(), [](const auto& a, const auto& b) { return a.id < b.id; });

  // The aggregates of the fork: those above its twins (and `below`), and
  // every aggregate below one of them, so that each counts all its members.
  std::set<std::string, std::less<>> above = below;
  std::vector<std::string> todo;
  for (const auto& [id, tw] : w.twins)
    for (const auto& r : tw.relations)
      todo.push_back(r.parent);
  while (!todo.empty()) {
    auto id = std::move(todo.back());
    todo.pop_back();
    if (!above.insert(id).second)
      continue;
    if (auto e = entities.find(id); e != entities.end())
      for (const auto& r : e->second.relations)
        todo.push_back(r.parent);
  }
  memo.clear();
  std::set<std::string, std::less<>> in_fork;
  for (const auto& [id, e] : entities)
    if (reaches(id, above, 0))
      in_fork.insert(id);
  for (const auto& id : above)
    if (w.kinds->kind_of(id))
      in_fork.insert(id);
  for (const auto& id : in_fork) {
    const auto* kind = w.kinds->kind_of(id);
    if (!kind)
      continue;
    core::scenario_aggregate a{
        core::twin{},
        core::aggregate{id, w.kinds->kinds().at(kind->def.name), src_.stale_after_ms}};
    if (auto e = entities.find(id); e != entities.end())
      a.entity = std::move(e->second);
    a.entity.asset_id = id;
    w.aggregates.emplace(id, std::move(a));
  }
  for (auto& o : others)
    if (std::any_of(o.relations.begin(), o.relations.end(),
                    [&](const core::relation& r) { return in_fork.count(r.parent) > 0; }))
      w.frozen.push_back(std::move(o));
  core::connect(w);
  // A tenant's scenario keeps only aggregates of its own tenant's twins.
  if (!s.tenant.empty())
    std::erase_if(w.aggregates, [&](const auto& kv) {
      return kv.second.agg.twins() > 0 && kv.second.agg.tenant() != s.tenant;
    });
  return {};
}

std::string registry::record_key(std::string_view id) {
  return "scenario/" + std::string{id};
}

void registry::persist(const scenario& s) const {
  if (!src_.store)
    return;
  std::string bytes, error;
  encode_scenario(s, bytes);
  // Not synced: a process killed keeps it (the WAL is in the page cache); a
  // machine that loses power may lose the last change.
  if (!src_.store->put_record(record_key(s.id), bytes, error))
    spdlog::warn("scenario {} is not kept across restarts: {}", s.id, error);
}

size_t registry::restore(const input_parser& parse) {
  std::vector<std::shared_ptr<const scenario>> found;
  std::string error;
  src_.store->scan_records(
      "scenario/",
      [&](std::string_view key, std::string_view value) {
        auto s = std::make_shared<scenario>();
        if (auto why = decode_scenario(value, parse, *s)) {
          spdlog::warn("{} is not restored: {}", key, *why);
          return;
        }
        found.push_back(std::move(s));
      },
      error);
  if (!error.empty())
    spdlog::warn("scenarios are not restored: {}", error);
  std::lock_guard<std::mutex> guard{mutex_};
  for (auto& s : found)
    scenarios_.emplace(s->id, std::move(s));
  return found.size();
}

outcome registry::refork(const scenario& s, std::shared_ptr<const scenario>& out) {
  auto again = std::make_shared<scenario>(s);
  // The snapshot went with the process that took it: the same point in time,
  // from the twins' retained history.
  if (again->fork.at_ms == 0)
    again->fork.at_ms = s.created_ms;
  again->parts.clear();
  if (auto o = take_fork(*again); !o) {
    o.message = "forking again after a restart of this node: " + o.message;
    return o;
  }
  again->created_ms = s.created_ms;
  release_remote(s);
  {
    std::lock_guard<std::mutex> guard{mutex_};
    const auto it = scenarios_.find(s.id);
    if (it == scenarios_.end() || it->second->part_id != s.part_id) {
      release_remote(*again);
      return fail(failure::not_found, "scenario \"scenarios/" + s.id + "\" was deleted");
    }
    auto kept = std::make_shared<scenario>(*it->second);
    kept->snapshot = again->snapshot;
    kept->fork.at_ms = again->fork.at_ms;
    kept->partitions = again->partitions;
    kept->partition_count = again->partition_count;
    kept->parts = again->parts;
    kept->part_id = again->part_id;
    it->second = kept;
  }
  persist(*again);
  out = again;
  return {};
}

void registry::release_remote(const scenario& s) const {
  if (src_.parts)
    for (const auto& part : s.parts)
      src_.parts->release(part.endpoint, s.forward_as, s.part_id);
}

void registry::expire_parts(int64_t now_ms) {
  std::erase_if(parts_, [&](const auto& kv) {
    if (now_ms - kv.second.used_ms <= limits_.part_idle_ms)
      return false;
    spdlog::info("scenario part {} released: not read for {} s", kv.first,
                 (now_ms - kv.second.used_ms) / 1000);
    return true;
  });
}

outcome registry::pin_part(const std::string& id, std::vector<int32_t> partitions,
                           int32_t partition_count, const fork_spec& spec,
                           const std::string& tenant, fork_check& check, int64_t& taken_ms) {
  const auto local = src_.local_partitions ? src_.local_partitions() : std::vector<int32_t>{};
  for (auto p : partitions)
    if (std::find(local.begin(), local.end(), p) == local.end())
      return fail(failure::unavailable, "partition " + std::to_string(p) +
                                            " is not served by this node now (a rebalance in "
                                            "progress); retry shortly");
  const std::string& key = id;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    expire_parts(wall_ms());
    if (!parts_.count(key) && parts_.size() >= limits_.max_parts)
      return fail(failure::exhausted,
                  "this node holds " + std::to_string(parts_.size()) +
                      " parts of other nodes' scenarios, its limit; delete a scenario");
  }
  auto part = std::make_shared<const snapshot_part>(
      *src_.store, src_.store->pin(), std::move(partitions), partition_count,
      src_.kinds ? src_.kinds() : nullptr, src_.models ? src_.models() : nullptr);
  if (auto o = part->check(spec, tenant, src_.stale_after_ms, limits_.max_twins, check); !o)
    return o;
  taken_ms = part->snapshot().taken_ms;
  std::lock_guard<std::mutex> guard{mutex_};
  parts_[key] = held_part{std::move(part), tenant, wall_ms()};
  return {};
}

std::shared_ptr<const snapshot_part> registry::use_part(const std::string& id,
                                                        const std::string& tenant) {
  std::lock_guard<std::mutex> guard{mutex_};
  const auto now = wall_ms();
  expire_parts(now);
  const auto it = parts_.find(id);
  if (it == parts_.end() || (!tenant.empty() && it->second.tenant != tenant))
    return nullptr;
  it->second.used_ms = now;
  return it->second.part;
}

outcome registry::part_entities(const std::string& id, const std::string& tenant,
                                const std::string& after, size_t budget,
                                std::vector<part_record>& out, std::string& next) {
  const auto part = use_part(id, tenant);
  if (!part)
    return fail(failure::not_found, "this node holds no part \"" + id +
                                        "\" (released, expired, or this node restarted)");
  return part->entities(after, budget, out, next);
}

outcome registry::part_twins(const std::string& id, const std::string& tenant,
                             const fork_selection& sel, const std::string& after, size_t budget,
                             std::vector<part_record>& out, std::string& next) {
  const auto part = use_part(id, tenant);
  if (!part)
    return fail(failure::not_found, "this node holds no part \"" + id +
                                        "\" (released, expired, or this node restarted)");
  return part->twins(sel, after, budget, out, next);
}

void registry::release_part(const std::string& id) {
  std::lock_guard<std::mutex> guard{mutex_};
  parts_.erase(id);
}

size_t registry::parts() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return parts_.size();
}

size_t registry::size() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return scenarios_.size();
}

size_t registry::running() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return stops_.size();
}

uint64_t registry::memory_bytes() const {
  std::lock_guard<std::mutex> guard{mutex_};
  uint64_t n = 0;
  for (const auto& [id, s] : scenarios_)
    n += s->memory_bytes();
  return n;
}

int64_t registry::oldest_snapshot_ms() const {
  std::lock_guard<std::mutex> guard{mutex_};
  int64_t oldest = 0;
  for (const auto& [id, s] : scenarios_)
    if (s->snapshot && (oldest == 0 || s->snapshot->taken_ms < oldest))
      oldest = s->snapshot->taken_ms;
  for (const auto& [key, p] : parts_)
    if (oldest == 0 || p.part->snapshot().taken_ms < oldest)
      oldest = p.part->snapshot().taken_ms;
  return oldest;
}

double registry::last_speed() const {
  return std::bit_cast<double>(last_speed_bits_.load());
}

std::array<uint64_t, 3> registry::runs() const {
  return {runs_[0].load(), runs_[1].load(), runs_[2].load()};
}

}  // namespace fleettwin::scenario
