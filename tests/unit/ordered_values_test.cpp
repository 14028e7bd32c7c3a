#include "actors/core/ordered_values.hpp"

#include <gtest/gtest.h>

#include <iterator>
#include <random>
#include <set>

using fleettwin::core::ordered_values;

TEST(OrderedValues, AgreesWithAMultisetUnderRandomInsertsAndErases) {
  std::mt19937_64 rng{42};
  for (int round = 0; round < 4; ++round) {
    ordered_values o;
    std::multiset<double> ref;
    // Few distinct values in some rounds: duplicates across block borders.
    std::uniform_int_distribution<int> value(0, round % 2 == 0 ? 50 : 1'000'000);
    for (int step = 0; step < 60'000; ++step) {
      const bool grow = ref.size() < 500 || rng() % 100 < (step < 30'000 ? 60 : 40);
      if (grow) {
        const double x = value(rng) * 0.5 - 100;
        o.insert(x);
        ref.insert(x);
      } else {
        auto it = ref.begin();
        std::advance(it, rng() % ref.size());
        ASSERT_TRUE(o.erase(*it));
        ref.erase(it);
      }
      ASSERT_EQ(o.size(), ref.size());
      if (step % 997 == 0 && !ref.empty()) {
        ASSERT_EQ(o.values(), std::vector<double>(ref.begin(), ref.end()));
        ASSERT_EQ(o.min(), *ref.begin());
        ASSERT_EQ(o.max(), *ref.rbegin());
        for (size_t k : {size_t{0}, ref.size() / 3, ref.size() / 2, ref.size() - 1}) {
          auto it = ref.begin();
          std::advance(it, k);
          ASSERT_EQ(o.nth(k), *it) << k;
        }
      }
    }
    EXPECT_FALSE(o.erase(1e18));
  }
}

TEST(OrderedValues, EmptiesAndRefills) {
  ordered_values o;
  EXPECT_TRUE(o.empty());
  EXPECT_FALSE(o.erase(1));
  for (int i = 0; i < 5000; ++i)
    o.insert(i % 7);
  for (int i = 0; i < 5000; ++i)
    ASSERT_TRUE(o.erase(i % 7));
  EXPECT_TRUE(o.empty());
  o.insert(-0.0);
  EXPECT_TRUE(o.erase(0.0));
  EXPECT_TRUE(o.empty());
}
