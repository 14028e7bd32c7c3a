#include "actors/core/aggregate.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "actors/core/contributions.hpp"

using namespace fleettwin::core;

namespace {

constexpr int64_t stale_after_ms = 30'000;

using attr_map = std::map<std::string, std::string, std::less<>>;

/// A small cluster of twins and aggregates whose contributions travel over
/// channels that keep the order of one child to one parent (one Kafka
/// partition per parent) but interleave different children arbitrarily.
struct world {
  struct entity {
    std::string id;
    relation_list relations;
    twin tw;  // twins: the state; aggregates: the attributes
    std::unique_ptr<aggregate> agg;
  };

  kind_registry kinds;
  int64_t now = 1'000'000;
  std::map<std::string, entity> entities;
  std::map<std::pair<std::string, std::string>, std::deque<contribution>> channels;
  size_t delivered = 0;
  apply_counts counts;

  world() {
    EXPECT_FALSE(kinds.put({"group",
                            "groups",
                            {"member_of", "feeds"},
                            {{"n", "count()"},
                             {"power", "sum(power)"},
                             {"mean_power", "mean(power)"},
                             {"min_power", "min(power)"},
                             {"max_power", "max(power)"},
                             {"p50_v", "p50(voltage)"},
                             {"p95_v", "p95(voltage)"},
                             {"p99_v", "p99(voltage)"},
                             {"stale", "count(connectivity = stale)"},
                             {"online_power", "sum(power where connectivity = online)"},
                             {"low_v", "count(reported.voltage < 207)"},
                             {"b_max", "max(power where kind = \"b\")"},
                             {"utilisation", "power / attributes.capacity"}},
                            ""}));
    EXPECT_FALSE(kinds.put({"zone",
                            "zones",
                            {"member_of", "feeds"},
                            {{"n", "count()"},
                             {"p90_power", "percentile(power, 0.9)"},
                             {"a_mean_v", "mean(voltage where kind = \"a\")"}},
                            ""}));
  }

  bool is_aggregate(const std::string& id) const {
    return kinds.is_aggregate(id);
  }

  entity& add_aggregate(const std::string& id, double capacity = 0) {
    auto& e = entities[id];
    e.id = id;
    e.agg = std::make_unique<aggregate>(id, kinds.kinds().at(kinds.kind_of(id)->def.name),
                                        stale_after_ms);
    if (capacity != 0)
      e.tw.attributes["capacity"] = std::to_string(capacity);
    return e;
  }

  member_delta self_view(const entity& e) const {
    member_delta d;
    d.id = e.id;
    d.twin = !e.agg;
    if (!e.agg)
      d.values = project(e.tw, kinds.fields());
    return d;
  }

  void send(std::vector<contribution>& out) {
    coalesce(out);
    for (auto& c : out)
      if (!c.deltas.empty())
        channels[{c.child, c.parent}].push_back(std::move(c));
  }

  void set_values(const std::string& id, std::vector<std::pair<std::string, value>> metrics,
                  std::string kind = "a") {
    auto& e = entities[id];
    e.id = id;
    const auto before = project(e.tw, kinds.fields());
    e.tw.asset_id = id;
    e.tw.kind = std::move(kind);
    for (auto& [k, v] : metrics)
      e.tw.reported[k].val = v;
    ++e.tw.version;
    e.tw.last_seen_ms = now;
    const auto after = project(e.tw, kinds.fields());
    if (before.same_fields(after))
      return;
    std::vector<contribution> out;
    route(child_change{e.id, &e.relations, &e.relations, self_view(e), true, nullptr, nullptr},
          out);
    send(out);
  }

  void set_relations(const std::string& id, relation_list rel) {
    auto& e = entities[id];
    if (getenv("TRACE_ID")) {
      std::string s;
      for (auto& r : rel)
        s += r.parent + ",";
      fprintf(stderr, "SET %s -> %s\n", id.c_str(), s.c_str());
    }
    e.id = id;
    normalize(rel);
    if (!e.agg)
      ++e.tw.version;  // a relation change is a change of the twin
    auto before = e.relations;
    e.relations = rel;
    std::vector<contribution> out;
    route(child_change{e.id, &before, &e.relations, self_view(e), false, nullptr, e.agg.get()},
          out);
    send(out);
  }

  void process(const contribution& c) {
    auto& p = entities.at(c.parent);
    if (getenv("TRACE_ID"))
      for (const auto& d : c.deltas)
        if (d.id == getenv("TRACE_ID") || c.child == getenv("TRACE_ID")) {
          std::string hint;
          for (auto& h : d.moving_to)
            hint += h + ",";
          fprintf(stderr, "%s -> %s: %s %s depth %u hint %s\n", c.child.c_str(), c.parent.c_str(),
                  d.id.c_str(), d.present ? "present" : "gone", d.depth, hint.c_str());
        }
    std::vector<member_delta> outward;
    auto n = p.agg->apply(c, now, outward);
    counts.cycles += n.cycles;
    counts.too_deep += n.too_deep;
    counts.expired_holds += n.expired_holds;
    std::vector<contribution> out;
    route(child_change{p.id, &p.relations, &p.relations, self_view(p), false, &outward, nullptr},
          out);
    send(out);
  }

  /// Delivers the next contribution from `child` to `parent` (the test
  /// picks the order).
  void deliver(const std::string& child, const std::string& parent) {
    auto& q = channels.at({child, parent});
    auto c = std::move(q.front());
    q.pop_front();
    if (q.empty())
      channels.erase({child, parent});
    process(c);
  }

  /// Delivers the head of one channel; false when nothing is in flight.
  bool deliver_one(std::mt19937_64& rng) {
    if (channels.empty())
      return false;
    auto it = channels.begin();
    std::advance(it, std::uniform_int_distribution<size_t>(0, channels.size() - 1)(rng));
    auto c = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty())
      channels.erase(it);
    ++delivered;
    process(c);
    return true;
  }

  size_t in_transit() const {
    size_t n = 0;
    for (auto& [id, e] : entities)
      n += e.agg ? e.agg->in_transit() : 0;
    return n;
  }

  /// Lets every hold end (stale hints) and delivers what that releases,
  /// which may hold members further up for another round.
  void expire_holds(std::mt19937_64& rng) {
    for (int round = 0; round < 40 && in_transit() > 0; ++round)
      expire_round(rng);
  }

  void expire_round(std::mt19937_64& rng) {
    now += 10'001;
    for (auto& [id, e] : entities) {
      if (!e.agg)
        continue;
      std::vector<member_delta> outward;
      counts.expired_holds += e.agg->advance(now, &outward).expired_holds;
      std::vector<contribution> out;
      route(child_change{e.id, &e.relations, &e.relations, self_view(e), false, &outward, nullptr},
            out);
      send(out);
    }
    settle(rng);
  }

  void settle(std::mt19937_64& rng) {
    size_t guard = 0;
    while (deliver_one(rng))
      ASSERT_LT(++guard, 10'000'000u) << "contributions never settle";
  }

  /// Ground truth: every entity below `id` along relations.
  std::set<std::string> below(const std::string& id) const {
    std::set<std::string> out;
    for (const auto& [cid, e] : entities) {
      std::set<std::string> seen;
      std::function<bool(const std::string&)> reaches = [&](const std::string& x) -> bool {
        if (!seen.insert(x).second)
          return false;
        for (const auto& r : entities.at(x).relations)
          if (r.parent == id || reaches(r.parent))
            return true;
        return false;
      };
      if (cid != id && reaches(cid))
        out.insert(cid);
    }
    return out;
  }

  bool would_cycle(const std::string& child, const std::string& parent) const {
    return child == parent || below(child).count(parent) > 0;
  }
};

bool close(std::optional<double> a, std::optional<double> b) {
  if (a.has_value() != b.has_value())
    return false;
  if (!a)
    return true;
  return std::fabs(*a - *b) <= 1e-9 * std::max({1.0, std::fabs(*a), std::fabs(*b)});
}

std::string show(const std::vector<std::optional<double>>& v) {
  std::string s;
  for (const auto& x : v)
    s += (x ? std::to_string(*x) : std::string{"-"}) + " ";
  return s;
}

/// Every aggregate equals a recompute from the twins below it, holds exactly
/// the entities below it, and nothing is left in transit.
void expect_exact(world& w) {
  for (auto& [id, e] : w.entities) {
    if (!e.agg)
      continue;
    e.agg->advance(w.now);
    const auto truth = w.below(id);
    std::vector<member_view> twins;
    std::vector<member_values> projections;
    projections.reserve(truth.size());  // views point into it
    std::set<std::string> held;
    for (const auto& [mid, m] : e.agg->members())
      held.insert(mid);
    EXPECT_EQ(held, truth) << "members of " << id;
    EXPECT_EQ(e.agg->in_transit(), 0u) << id;
    std::set<std::string> tenants;
    for (const auto& t : truth) {
      const auto& te = w.entities.at(t);
      if (!te.agg) {
        projections.push_back(project(te.tw, w.kinds.fields()));
        twins.push_back(member_view{t, projections.back()});
        tenants.insert(te.tw.tenant);
      }
    }
    // The tenant is the one every member twin shares (none when they share none).
    EXPECT_EQ(e.agg->tenant(), tenants.size() == 1 ? *tenants.begin() : "") << id;
    EXPECT_EQ(e.agg->mixed_tenants(), tenants.size() > 1) << id;
    measure_inputs in{&e.tw.attributes};
    auto expected = recompute_measures(e.agg->kind(), twins, in, w.now, stale_after_ms);
    auto got = e.agg->measures(in);
    auto self = e.agg->recompute(in);
    ASSERT_EQ(got.size(), expected.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(close(got[i], expected[i]))
          << id << " measure " << e.agg->kind().measures[i].name << ": got " << show(got)
          << "\nexpected " << show(expected);
      EXPECT_TRUE(close(got[i], self[i])) << id << " incremental vs own recompute, measure " << i;
    }
    // Depths are the shortest path.
    for (const auto& [mid, m] : e.agg->members()) {
      ASSERT_FALSE(m.paths.empty());
      for (const auto& p : m.paths)
        EXPECT_TRUE(truth.count(p.via) || p.via == mid) << id << " " << mid << " via " << p.via;
    }
  }
}

// -- direct tests ---------------------------------------------------------------

TEST(Aggregate, EveryMeasureUnderAddChangeAndRemove) {
  world w;
  w.add_aggregate("groups/t1", 100);
  std::mt19937_64 rng{1};
  w.set_relations("m1", {{"feeds", "groups/t1"}});
  w.set_values("m1", {{"power", 10.0}, {"voltage", 230.0}});
  w.set_values("m2", {{"power", 30.0}, {"voltage", 200.0}}, "b");
  w.set_relations("m2", {{"feeds", "groups/t1"}});
  w.set_relations("m3", {{"feeds", "groups/t1"}});  // no values yet
  w.settle(rng);
  auto& agg = *w.entities.at("groups/t1").agg;
  measure_inputs in{&w.entities.at("groups/t1").tw.attributes};
  auto v = agg.measures(in);
  EXPECT_EQ(v[0], 3);    // n
  EXPECT_EQ(v[1], 40);   // power
  EXPECT_EQ(v[2], 20);   // mean
  EXPECT_EQ(v[3], 10);   // min
  EXPECT_EQ(v[4], 30);   // max
  EXPECT_EQ(v[5], 200);  // p50 of {200, 230}
  EXPECT_EQ(v[8], 1);    // m3 never seen: stale
  EXPECT_EQ(v[10], 1);   // low voltage
  EXPECT_EQ(v[11], 30);  // max power of kind b
  EXPECT_DOUBLE_EQ(*v[12], 0.4);
  expect_exact(w);

  // The maximum drops: max is exact after its holder changes.
  w.set_values("m2", {{"power", 5.0}});
  w.settle(rng);
  v = agg.measures(in);
  EXPECT_EQ(v[4], 10);
  EXPECT_EQ(v[3], 5);
  // The minimum leaves: min is exact after its holder leaves.
  w.set_relations("m2", {});
  w.settle(rng);
  v = agg.measures(in);
  EXPECT_EQ(v[0], 2);
  EXPECT_EQ(v[3], 10);
  EXPECT_FALSE(v[11]);
  expect_exact(w);
  // Time passes: everyone goes stale; the online sum empties.
  w.now += stale_after_ms + 1;
  agg.advance(w.now);
  v = agg.measures(in);
  EXPECT_EQ(v[8], 2);
  EXPECT_EQ(v[9], 0);
  expect_exact(w);
}

TEST(Aggregate, DiamondCountsATwinOnce) {
  world w;
  w.add_aggregate("groups/region");
  w.add_aggregate("groups/fleet");
  w.add_aggregate("groups/depot");
  std::mt19937_64 rng{2};
  w.set_relations("groups/fleet", {{"member_of", "groups/region"}});
  w.set_relations("groups/depot", {{"member_of", "groups/region"}});
  w.set_values("v1", {{"power", 7.0}});
  w.set_relations("v1", {{"member_of", "groups/fleet"}, {"member_of", "groups/depot"}});
  w.settle(rng);
  auto& region = *w.entities.at("groups/region").agg;
  EXPECT_EQ(region.twins(), 1u);
  EXPECT_EQ(region.member("v1")->paths.size(), 2u);
  EXPECT_EQ(region.measures({})[1], 7);
  expect_exact(w);
  // One path goes: still counted once through the other.
  w.set_relations("v1", {{"member_of", "groups/depot"}});
  w.settle(rng);
  EXPECT_EQ(region.twins(), 1u);
  EXPECT_EQ(region.member("v1")->paths.size(), 1u);
  expect_exact(w);
}

TEST(Aggregate, NewerVersionWinsWhenPathsDeliverOutOfOrder) {
  auto kind = std::make_shared<compiled_kind>();
  ASSERT_FALSE(compile_kind({"group", "groups", {"member_of"}, {{"s", "sum(power)"}}, ""}, *kind));
  aggregate agg{"groups/r", kind, stale_after_ms};
  auto delta = [](uint64_t version, double power) {
    member_delta d;
    d.id = "v1";
    d.twin = true;
    d.depth = 1;
    d.values.version = version;
    d.values.reported = {{"power", power}};
    return d;
  };
  std::vector<member_delta> out;
  agg.apply({"groups/a", "groups/r", "member_of", {delta(5, 50)}}, 0, out);
  agg.apply({"groups/b", "groups/r", "member_of", {delta(4, 40)}}, 0, out);
  EXPECT_EQ(agg.measures({})[0], 50);
  EXPECT_EQ(agg.member("v1")->paths.size(), 2u);
  agg.apply({"groups/b", "groups/r", "member_of", {delta(5, 50)}}, 0, out);
  agg.apply({"groups/b", "groups/r", "member_of", {delta(6, 60)}}, 0, out);
  EXPECT_EQ(agg.measures({})[0], 60);
  // Applying the same view again changes nothing and tells nobody.
  out.clear();
  agg.apply({"groups/b", "groups/r", "member_of", {delta(6, 60)}}, 0, out);
  EXPECT_TRUE(out.empty());
}

TEST(Aggregate, MoveBelowACommonAncestorNeverShowsTheMemberInNeitherPlace) {
  world w;
  w.add_aggregate("groups/region");
  w.add_aggregate("groups/a");
  w.add_aggregate("groups/b");
  std::mt19937_64 rng{3};
  w.set_relations("groups/a", {{"member_of", "groups/region"}});
  w.set_relations("groups/b", {{"member_of", "groups/region"}});
  w.set_values("v1", {{"power", 7.0}});
  w.set_relations("v1", {{"member_of", "groups/a"}});
  w.settle(rng);
  auto& region = *w.entities.at("groups/region").agg;
  ASSERT_EQ(region.twins(), 1u);

  w.set_relations("v1", {{"member_of", "groups/b"}});
  // Worst order: a's removal reaches the region before b's addition.
  w.deliver("v1", "groups/a");
  w.deliver("groups/a", "groups/region");
  EXPECT_EQ(region.twins(), 1u) << "in transit, still counted";
  EXPECT_EQ(region.in_transit(), 1u);
  EXPECT_EQ(region.measures({})[1], 7);
  w.deliver("v1", "groups/b");
  w.deliver("groups/b", "groups/region");
  EXPECT_EQ(region.twins(), 1u);
  EXPECT_EQ(region.in_transit(), 0u);
  EXPECT_TRUE(w.channels.empty());
  expect_exact(w);
}

TEST(Aggregate, AMemberInTransitLeavesWhenItsDestinationLeaves) {
  world w;
  w.add_aggregate("groups/region");
  w.add_aggregate("groups/a");
  w.add_aggregate("groups/b");
  std::mt19937_64 rng{4};
  w.set_relations("groups/a", {{"member_of", "groups/region"}});
  w.set_relations("groups/b", {{"member_of", "groups/region"}});
  w.set_values("v1", {{"power", 7.0}});
  w.set_relations("v1", {{"member_of", "groups/a"}});
  w.settle(rng);
  auto& region = *w.entities.at("groups/region").agg;
  w.set_relations("v1", {{"member_of", "groups/b"}});
  w.set_relations("groups/b", {});  // b leaves the region before v1 arrives in b
  // Deliver the region's inputs first, v1's arrival at b last.
  w.deliver("v1", "groups/a");
  w.deliver("groups/a", "groups/region");
  EXPECT_EQ(region.in_transit(), 1u);
  w.deliver("groups/b", "groups/region");
  EXPECT_EQ(region.in_transit(), 0u);
  EXPECT_EQ(region.twins(), 0u);
  w.settle(rng);
  expect_exact(w);
}

TEST(Aggregate, ARacedCycleDiesOutAndTheGraphRecovers) {
  world w;
  w.add_aggregate("groups/p");
  w.add_aggregate("groups/c");
  std::mt19937_64 rng{5};
  w.set_values("v1", {{"power", 1.0}});
  w.set_relations("v1", {{"member_of", "groups/p"}});
  w.settle(rng);
  // Both relations are set before either side could see the other: a cycle.
  w.set_relations("groups/c", {{"member_of", "groups/p"}});
  w.set_relations("groups/p", {{"member_of", "groups/c"}});
  w.settle(rng);
  EXPECT_GT(w.counts.cycles, 0u);
  // v1 leaves: its echo around the cycle ends at the depth limit.
  w.set_relations("v1", {});
  w.settle(rng);
  EXPECT_GT(w.counts.too_deep, 0u);
  EXPECT_EQ(w.entities.at("groups/p").agg->twins(), 0u);
  EXPECT_EQ(w.entities.at("groups/c").agg->twins(), 0u);
  // Breaking the cycle leaves exact state behind.
  w.set_relations("groups/p", {});
  w.settle(rng);
  expect_exact(w);
}

TEST(Aggregate, KindChangeAndRestoreRebuildTheSameMeasures) {
  world w;
  w.add_aggregate("groups/t");
  std::mt19937_64 rng{6};
  for (int i = 0; i < 50; ++i) {
    w.set_values("m" + std::to_string(i), {{"power", i * 1.25}, {"voltage", 190.0 + i}});
    w.set_relations("m" + std::to_string(i), {{"feeds", "groups/t"}});
  }
  w.settle(rng);
  auto& agg = *w.entities.at("groups/t").agg;
  const auto before = agg.measures({});
  aggregate copy{"groups/t", agg.kind_ptr(), stale_after_ms};
  copy.advance(agg.clock_ms());
  for (const auto& [id, e] : agg.members())
    copy.restore(id, e);
  auto restored = copy.measures({});
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_TRUE(close(before[i], restored[i])) << i;
  auto other = std::make_shared<compiled_kind>();
  ASSERT_FALSE(compile_kind({"group",
                             "groups",
                             {"feeds"},
                             {{"hi", "count(reported.voltage > 220)"}, {"p", "p50(power)"}},
                             ""},
                            *other));
  agg.set_kind(other);
  auto v = agg.measures({});
  EXPECT_EQ(v[0], 19);  // 221..239
  EXPECT_DOUBLE_EQ(*v[1], 24 * 1.25);
}

// -- property test ----------------------------------------------------------------

struct dag_params {
  uint64_t seed;
  int levels;
  int aggregates_per_level;
  int twins;
  int steps;
};

void run_random_dag(const dag_params& p) {
  world w;
  std::mt19937_64 rng{p.seed};
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  auto chance = [&](double x) { return std::uniform_real_distribution<double>(0, 1)(rng) < x; };
  std::vector<std::vector<std::string>> level(p.levels);
  std::vector<std::string> aggregates;
  for (int l = 0; l < p.levels; ++l)
    for (int i = 0; i < p.aggregates_per_level; ++i) {
      auto id = std::string{chance(0.5) ? "groups/" : "zones/"} + "l" + std::to_string(l) + "-" +
                std::to_string(i);
      w.add_aggregate(id, 1 + static_cast<double>(pick(1000)));
      level[l].push_back(id);
      aggregates.push_back(id);
    }
  // Aggregates of aggregates: each one level up, now and then two or more.
  auto aggregate_parents = [&](const std::string& id, int l) {
    relation_list rel;
    if (l + 1 >= p.levels)
      return rel;
    const int n = chance(0.2) ? 2 : chance(0.1) ? 0 : 1;
    for (int k = 0; k < n; ++k) {
      const int up = std::min<int>(p.levels - 1, l + 1 + (chance(0.2) ? 1 : 0));
      const auto& parent = level[up][pick(level[up].size())];
      if (!w.would_cycle(id, parent))
        rel.push_back({chance(0.5) ? "member_of" : "feeds", parent});
    }
    return rel;
  };
  for (int l = 0; l < p.levels; ++l)
    for (const auto& id : level[l])
      w.set_relations(id, aggregate_parents(id, l));
  auto twin_parents = [&]() {
    relation_list rel;
    const int n = static_cast<int>(pick(4));  // 0..3 parents
    for (int k = 0; k < n; ++k)
      rel.push_back({"member_of",
                     aggregates[pick(std::min<size_t>(aggregates.size(), level[0].size() * 2))]});
    return rel;
  };
  auto random_values = [&]() {
    std::vector<std::pair<std::string, value>> m;
    if (chance(0.9))
      m.emplace_back("power",
                     std::round(std::uniform_real_distribution<double>(-50, 500)(rng) * 100) / 100);
    if (chance(0.8))
      m.emplace_back("voltage", chance(0.1) ? value{std::string{"n/a"}}
                                            : value{static_cast<int64_t>(190 + pick(50))});
    return m;
  };
  size_t holds = 0;
  std::vector<std::string> twins;
  auto new_twin = [&]() {
    auto id = "t" + std::to_string(twins.size());
    twins.push_back(id);
    // Mostly one tenant, so that some aggregates have one and others several.
    w.entities[id].tw.tenant = chance(0.8) ? "acme" : chance(0.5) ? "beta" : "";
    w.set_values(id, random_values(), chance(0.5) ? "a" : "b");
    w.set_relations(id, twin_parents());
  };
  for (int i = 0; i < p.twins; ++i)
    new_twin();
  w.settle(rng);
  expect_exact(w);
  if (::testing::Test::HasFailure())
    return;

  for (int step = 1; step <= p.steps; ++step) {
    const double op = std::uniform_real_distribution<double>(0, 1)(rng);
    if (op < 0.45) {
      const auto& id = twins[pick(twins.size())];
      w.set_values(id, random_values(), w.entities.at(id).tw.kind);
    } else if (op < 0.62) {
      w.set_relations(twins[pick(twins.size())], twin_parents());  // re-parent
    } else if (op < 0.72) {
      const int l = static_cast<int>(pick(p.levels));
      const auto& id = level[l][pick(level[l].size())];
      w.set_relations(id, aggregate_parents(id, l));
    } else if (op < 0.77) {
      new_twin();
    } else if (op < 0.82) {
      w.set_relations(twins[pick(twins.size())], {});  // disappears from every aggregate
    } else if (op < 0.87) {
      w.now += static_cast<int64_t>(pick(stale_after_ms));
    } else if (op < 0.9) {
      // A new aggregate appears between levels.
      const int l = static_cast<int>(pick(p.levels));
      auto id = "groups/n" + std::to_string(step);
      w.add_aggregate(id, 10);
      level[l].push_back(id);
      aggregates.push_back(id);
      w.set_relations(id, aggregate_parents(id, l));
    }
    // Deliver some of what is in flight: later steps race earlier ones.
    const size_t n = pick(6);
    for (size_t i = 0; i < n && w.deliver_one(rng); ++i) {
    }
    if (step % 97 == 0 || step == p.steps) {
      w.settle(rng);
      holds += w.in_transit();
      if (getenv("TRACE_HOLDS"))
        for (auto& [id, e] : w.entities)
          if (e.agg)
            for (auto& [mid, m] : e.agg->members())
              if (m.in_transit())
                fprintf(stderr, "HOLD step %d at %s: %s -> %s\n", step, id.c_str(), mid.c_str(),
                        m.moving_to.front().c_str());
      w.expire_holds(rng);
      expect_exact(w);
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "seed " << p.seed << " step " << step;
        return;
      }
    }
  }
  EXPECT_EQ(w.counts.cycles, 0u);
  EXPECT_GT(w.delivered, static_cast<size_t>(p.steps));
  // Holds left at quiescent points come from stale hints (a member, or an
  // aggregate with its subtree, that arrived and left again before the hint
  // came); they end with the hold time, after which every check above holds.
  if (getenv("TRACE_HOLDS"))
    fprintf(stderr, "seed %llu holds %zu\n", static_cast<unsigned long long>(p.seed), holds);
}

/// More seeds for a longer search: AGGREGATE_SEEDS=500.
uint64_t seeds(uint64_t fallback) {
  const char* env = std::getenv("AGGREGATE_SEEDS");
  return env ? std::strtoull(env, nullptr, 10) : fallback;
}

TEST(AggregateProperty, RandomDagsEqualARecomputeAtEveryQuiescentPoint) {
  for (uint64_t seed = 1; seed <= seeds(12); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    run_random_dag({seed, 4, 4, 60, 1'500});
    if (HasFailure())
      return;
  }
}

TEST(AggregateProperty, TenLevelsDeep) {
  for (uint64_t seed = 100; seed < 100 + seeds(12) / 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    run_random_dag({seed, 12, 3, 80, 1'000});
    if (HasFailure())
      return;
  }
}

}  // namespace
