// Exactly-once under crashes: three nodes ingest a steady stream of numbered
// telemetry while random nodes are killed with -9 and restarted (same node id,
// same data dir). In the end every acknowledged record is applied exactly once
// to its twin, and the committed twin-changes topic holds exactly one change
// per record, in order.
//
// Fast by default (for `make test`); `make chaos-soak` runs it long:
//   FLEETTWIN_CHAOS_KILLS    kills (default 3)
//   FLEETTWIN_CHAOS_SECONDS  seconds of production (default 45)
//   FLEETTWIN_CHAOS_RATE     records/s in total (default 2000)
//   FLEETTWIN_CHAOS_ASSETS   assets (default 200)
//   FLEETTWIN_CHAOS_SEED     seed of the victim and restart-delay choice (default: random)

#include <algorithm>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "cluster_harness.hpp"

namespace fleettwin::test {
namespace {

using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}

struct ChaosTest : cluster_fixture {};

TEST_F(ChaosTest, KillNineUnderLoadAppliesEveryRecordExactlyOnce) {
  const long kills = env_or("FLEETTWIN_CHAOS_KILLS", 3);
  const long seconds = env_or("FLEETTWIN_CHAOS_SECONDS", 45);
  const long rate = env_or("FLEETTWIN_CHAOS_RATE", 2000);
  const long assets = env_or("FLEETTWIN_CHAOS_ASSETS", 200);
  const auto seed = static_cast<unsigned>(env_or("FLEETTWIN_CHAOS_SEED", std::random_device{}()));
  ASSERT_GT(seconds, 0);
  ASSERT_GT(rate, 0);
  ASSERT_GT(assets, 0);
  std::cout << "chaos: seed=" << seed << " (FLEETTWIN_CHAOS_SEED reproduces the choices)\n";
  std::mt19937 rng{seed};

  c_ = std::make_unique<cluster>();
  auto& c = *c_;
  c.start_nodes(3);
  std::string why;
  ASSERT_TRUE(c.wait_until_all_partitions_served(60s, &why)) << why;

  telemetry_source src{c.bootstrap(), c.topics().telemetry, static_cast<size_t>(assets)};
  auto began = clock::now();
  src.start(static_cast<double>(rate));

  std::vector<double> recovery;  // seconds from a kill until all partitions were served again
  std::ostringstream victims;
  for (long k = 0; k < kills; ++k) {
    // Kills spread evenly over the production time.
    auto at = began + std::chrono::milliseconds{seconds * 1000 * (k + 1) / (kills + 1)};
    std::this_thread::sleep_until(at);  // pacing, not synchronisation
    for (size_t i = 0; i < c.size(); ++i)
      ASSERT_TRUE(c.node(i).running()) << c.node(i).id() << " exited on its own";
    size_t victim = rng() % c.size();
    // Sometimes back before the session times out, sometimes after the
    // partitions moved to the survivors.
    auto restart_after = std::chrono::milliseconds{rng() % 5000};
    victims << (k ? "," : "") << c.node(victim).id();
    const double killed_at = seconds_since(began);
    c.node(victim).kill9();
    auto killed = clock::now();
    std::this_thread::sleep_for(restart_after);  // a crashed node comes back a little later
    c.node(victim).start();
    // Served again, the restarted node included.
    bool served = c.wait_until_balanced(90s, &why);
    recovery.push_back(seconds_since(killed));
    ASSERT_TRUE(served) << "after kill " << k + 1 << " of " << c.node(victim).id() << ": " << why;
    std::cout << "chaos: kill " << k + 1 << "/" << kills << " of " << c.node(victim).id() << " at "
              << killed_at << " s, restarted after " << restart_after.count()
              << " ms, all partitions served (by all three) again after " << recovery.back()
              << " s\n";
  }
  std::this_thread::sleep_until(began + std::chrono::seconds{seconds});  // pacing
  ASSERT_TRUE(src.stop(120s)) << src.failed() << " deliveries failed: " << src.first_error();
  const double produced_for = seconds_since(began);
  const auto acked = src.acked();
  const uint64_t total = src.acked_total();
  ASSERT_EQ(src.sent(), acked) << "every record sent must be acknowledged";

  // Every twin has applied exactly the records produced for it, once each.
  for (size_t i = 0; i < c.size(); ++i)
    ASSERT_TRUE(c.node(i).running()) << c.node(i).id() << " exited on its own";
  ASSERT_TRUE(c.wait_until_all_partitions_served(60s, &why)) << why;
  auto settle = clock::now();
  EXPECT_TRUE(wait_until_applied(c.node(0), acked, 180s, &why)) << why;
  const double caught_up_after = seconds_since(settle);
  std::vector<v1::Twin> twins;
  auto s = list_all(c.node(1).twins(), "", 1000, twins);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(twins.size(), acked.size());
  size_t bad = 0;
  for (const auto& t : twins) {
    auto n = acked.at(t.asset_id());
    bool ok = t.applied_records() == n && t.duplicates() == 0 && t.out_of_order() == 0 &&
              t.last_sequence() == n && t.version() == n;
    if (!ok && bad++ < 5)
      ADD_FAILURE() << t.asset_id() << ": produced " << n << ", applied " << t.applied_records()
                    << ", duplicates " << t.duplicates() << ", out of order " << t.out_of_order()
                    << ", last sequence " << t.last_sequence() << ", version " << t.version()
                    << "\n"
                    << explain_missing(c, t.asset_id(), n);
  }
  EXPECT_EQ(bad, 0u) << "twins that differ from what was produced";

  // The committed change events: one per record, sequences 1..n in order,
  // versions 1..n in order.
  auto changes = read_changes(c.bootstrap(), c.topics().changes, total, 180s);
  EXPECT_EQ(changes.size(), total) << "change events (read_committed) vs records produced";
  std::stable_sort(changes.begin(), changes.end(), [](const auto& a, const auto& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  std::map<std::string, std::vector<const change_record*>> by_asset;
  for (const auto& ch : changes)
    by_asset[ch.asset_id].push_back(&ch);
  size_t wrong = 0;
  auto report = [&](const std::string& text) {
    if (wrong++ < 10)
      ADD_FAILURE() << text;
  };
  for (const auto& [id, list] : by_asset)
    if (!acked.contains(id))
      report("change events for an unknown asset \"" + id + "\"");
  for (const auto& [id, n] : acked) {
    const auto& list = by_asset[id];
    std::map<uint64_t, int> seen;
    for (const auto* ch : list)
      ++seen[ch->sequence];
    for (const auto& [seq, times] : seen)
      if (times > 1 || seq == 0 || seq > n)
        report(id + ": sequence " + std::to_string(seq) + " appears " + std::to_string(times) +
               " times (produced 1.." + std::to_string(n) + ")");
    if (seen.size() != n)
      report(id + ": " + std::to_string(seen.size()) + " distinct sequences of " +
             std::to_string(n) + " produced");
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& ch = *list[i];
      if (ch.version != i + 1 || ch.sequence != i + 1) {
        report(id + ": change " + std::to_string(i + 1) + " at offset " +
               std::to_string(ch.offset) + " has version " + std::to_string(ch.version) +
               " and sequence " + std::to_string(ch.sequence) + " (expected " +
               std::to_string(i + 1) + " for both)");
        break;
      }
      if (ch.ce_id != id + "/" + std::to_string(ch.version)) {
        report(id + ": ce_id \"" + ch.ce_id + "\" at version " + std::to_string(ch.version));
        break;
      }
    }
  }
  EXPECT_EQ(wrong, 0u) << "problems in the twin-changes topic";

  double max_recovery = recovery.empty() ? 0 : *std::max_element(recovery.begin(), recovery.end());
  std::cout << "chaos summary: kills=" << kills << " victims=" << victims.str()
            << " records=" << total << " assets=" << assets << " rate=" << rate
            << "/s produced_for=" << produced_for << "s caught_up_after=" << caught_up_after
            << "s change_events=" << changes.size() << " max_recovery=" << max_recovery
            << "s seed=" << seed << "\n";
}

}  // namespace
}  // namespace fleettwin::test
