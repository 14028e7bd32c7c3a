// Exactly-once under crashes: three nodes ingest a steady stream of numbered
// telemetry while random nodes are killed with -9 and restarted (same node id,
// same data dir). In the end every acknowledged record is applied exactly once
// to its twin, and the committed twin-changes topic covers each of a twin's
// versions exactly once, in order (an event covers first_version..version: a
// work item's changes of the twin, merged). A quarter of the assets send records without
// sequences, so that no duplicate window could hide a replay.
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
  // A quarter of the assets send no sequences: only exactly-once delivery
  // keeps their records from being applied twice.
  src.leave_unsequenced(4);
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
  ASSERT_EQ(src.sent(), src.acked()) << "every record sent must be acknowledged";

  // Every twin has applied exactly the records produced for it, once each,
  // and the committed change events cover each change once.
  for (size_t i = 0; i < c.size(); ++i)
    ASSERT_TRUE(c.node(i).running()) << c.node(i).id() << " exited on its own";
  ASSERT_TRUE(c.wait_until_all_partitions_served(60s, &why)) << why;
  auto settle = clock::now();
  std::string figures;
  auto problems = check_exactly_once(c, src, c.node(1), 180s, &figures);
  const double caught_up_after = seconds_since(settle);
  EXPECT_EQ(problems, "");

  double max_recovery = recovery.empty() ? 0 : *std::max_element(recovery.begin(), recovery.end());
  std::cout << "chaos summary: kills=" << kills << " victims=" << victims.str()
            << " assets=" << assets << " rate=" << rate << "/s produced_for=" << produced_for
            << "s caught_up_after=" << caught_up_after << "s " << figures
            << " max_recovery=" << max_recovery << "s seed=" << seed << "\n";
}

}  // namespace
}  // namespace fleettwin::test
