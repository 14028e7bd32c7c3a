#include "actors/core/relations.hpp"

#include <gtest/gtest.h>

using namespace fleettwin::core;

namespace {

kind_registry grid() {
  kind_registry r;
  EXPECT_FALSE(r.put({"transformer", "transformers", {"feeds"}, {{"n", "count()"}}, ""}));
  EXPECT_FALSE(r.put({"fleet", "fleets", {"member_of"}, {{"soc", "mean(battery)"}}, ""}));
  EXPECT_FALSE(r.put({"depot",
                      "depots",
                      {"located_at", "charging_at"},
                      {{"stale", "count(connectivity = stale)"}},
                      ""}));
  EXPECT_FALSE(r.add_rule({"fleet", "member_of", "fleets"}));
  EXPECT_FALSE(r.add_rule({"transformer", "feeds", "transformers"}));
  return r;
}

TEST(Relations, KindsByIdPrefix) {
  auto r = grid();
  ASSERT_TRUE(r.kind_of("fleets/north"));
  EXPECT_EQ(r.kind_of("fleets/north")->def.name, "fleet");
  EXPECT_FALSE(r.kind_of("fleets/"));
  EXPECT_FALSE(r.kind_of("fleets"));
  EXPECT_FALSE(r.kind_of("veh-1"));
  EXPECT_FALSE(r.kind_of("sites/x"));
  EXPECT_TRUE(r.is_aggregate("depots/d1"));
  // The union of projected fields over every kind.
  EXPECT_TRUE(r.fields().connectivity);
  EXPECT_EQ(r.fields().reported, (std::set<std::string, std::less<>>{"battery"}));
}

TEST(Relations, ChecksSayWhatToFix) {
  auto r = grid();
  EXPECT_FALSE(r.check("veh-1", {"member_of", "fleets/north"}));
  EXPECT_NE(r.check("veh-1", {"feeds", "fleets/north"})->find("takes members by member_of"),
            std::string::npos);
  EXPECT_NE(r.check("veh-1", {"member_of", "sites/x"})->find("no aggregate kind has collection"),
            std::string::npos);
  EXPECT_NE(r.check("veh-1", {"member_of", "north"})->find("not an aggregate id"),
            std::string::npos);
  EXPECT_NE(r.check("fleets/a", {"member_of", "fleets/a"})->find("its own parent"),
            std::string::npos);
  EXPECT_NE(r.check("veh-1", {"Member", "fleets/a"})->find("lowercase"), std::string::npos);
  // A collection belongs to one kind.
  EXPECT_NE(r.put({"other", "fleets", {"x"}, {}, ""})->find("already belongs"), std::string::npos);
  // Replacing a kind keeps its collection usable, or moves it.
  EXPECT_FALSE(r.put({"fleet", "groups", {"member_of"}, {}, ""}));
  EXPECT_FALSE(r.kind_of("fleets/a"));
  EXPECT_TRUE(r.kind_of("groups/a"));
  EXPECT_TRUE(r.add_rule({"fleet", "member_of", "fleets"}));
}

TEST(Relations, RulesDeriveFromAttributes) {
  auto r = grid();
  std::map<std::string, std::string, std::less<>> attrs{
      {"fleet", "north"}, {"transformer", "T1"}, {"colour", "red"}};
  auto rel = r.derive("meter-1", attrs);
  ASSERT_EQ(rel.size(), 2u);
  EXPECT_EQ(rel[0], (relation{"member_of", "fleets/north", relation_origin::rule}));
  EXPECT_EQ(rel[1], (relation{"feeds", "transformers/T1", relation_origin::rule}));
  attrs["fleet"] = "";
  EXPECT_EQ(r.derive("meter-1", attrs).size(), 1u);
}

TEST(Relations, ExplicitRelationsWinOverDerivedOnes) {
  relation_list derived{{"member_of", "fleets/north", relation_origin::rule}};
  relation_list explicit_rel{{"member_of", "fleets/south", relation_origin::api},
                             {"located_at", "fleets/north", relation_origin::topic},
                             {"member_of", "fleets/old", relation_origin::rule}};
  auto merged = merge_relations(explicit_rel, derived);
  ASSERT_EQ(merged.size(), 2u);
  EXPECT_EQ(merged[0], (relation{"located_at", "fleets/north", relation_origin::topic}));
  EXPECT_EQ(merged[1], (relation{"member_of", "fleets/south", relation_origin::api}));
}

TEST(Relations, DiffTellsRemovedAddedAndRetyped) {
  relation_list a{{"x", "p/1"}, {"x", "p/2"}, {"x", "p/3"}};
  relation_list b{{"y", "p/2"}, {"x", "p/3"}, {"x", "p/4"}};
  auto d = diff(a, b);
  ASSERT_EQ(d.removed.size(), 1u);
  EXPECT_EQ(d.removed[0].parent, "p/1");
  ASSERT_EQ(d.added.size(), 1u);
  EXPECT_EQ(d.added[0].parent, "p/4");
  ASSERT_EQ(d.retyped.size(), 1u);
  EXPECT_EQ(d.retyped[0].parent, "p/2");
}

TEST(Relations, UpdatesValidateReplaceAndRefuseCycles) {
  auto r = grid();
  relation_list current{{"member_of", "fleets/north", relation_origin::rule},
                        {"located_at", "depots/d1", relation_origin::api}};
  relation_list out;
  auto nothing_below = [](std::string_view) { return false; };
  // Set another relation, retype one.
  relation_update u;
  u.set = {{"charging_at", "depots/d2"}, {"charging_at", "depots/d1"}};
  ASSERT_FALSE(apply_relation_update("veh-1", current, u, r, nothing_below, out));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], (relation{"charging_at", "depots/d1", relation_origin::api}));
  EXPECT_EQ(out[1], (relation{"charging_at", "depots/d2", relation_origin::api}));
  EXPECT_EQ(out[2].origin, relation_origin::rule);
  // Replace keeps derived relations.
  u = {};
  u.replace = true;
  u.origin = relation_origin::topic;
  u.set = {{"located_at", "depots/d3"}};
  ASSERT_FALSE(apply_relation_update("veh-1", current, u, r, nothing_below, out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (relation{"located_at", "depots/d3", relation_origin::topic}));
  EXPECT_EQ(out[1].parent, "fleets/north");
  // Delete: explicit ones go, derived ones are refused, absent ones are fine.
  u = {};
  u.remove = {"depots/d1", "depots/none"};
  ASSERT_FALSE(apply_relation_update("veh-1", current, u, r, nothing_below, out));
  EXPECT_EQ(out.size(), 1u);
  u.remove = {"fleets/north"};
  EXPECT_NE(apply_relation_update("veh-1", current, u, r, nothing_below, out)
                ->find("derived from its attributes"),
            std::string::npos);
  // Cycles and bad relations leave `out` alone and say why.
  u = {};
  u.set = {{"member_of", "fleets/south"}};
  auto all_below = [](std::string_view id) { return id == "fleets/south"; };
  EXPECT_NE(apply_relation_update("fleets/x", {}, u, r, all_below, out)->find("close a cycle"),
            std::string::npos);
  u.set = {{"feeds", "fleets/south"}};
  EXPECT_NE(apply_relation_update("veh-1", {}, u, r, nothing_below, out)->find("takes members"),
            std::string::npos);
  // Too many parents.
  u = {};
  for (int i = 0; i <= 64; ++i)
    u.set.push_back({"member_of", "fleets/f" + std::to_string(i)});
  EXPECT_NE(apply_relation_update("veh-1", {}, u, r, nothing_below, out)->find("at most 64"),
            std::string::npos);
}

TEST(Relations, RederiveKeepsExplicitRelations) {
  auto r = grid();
  relation_list current{{"member_of", "fleets/north", relation_origin::rule},
                        {"located_at", "depots/d1", relation_origin::api}};
  auto next = rederive("veh-1", current, {{"fleet", "south"}}, r);
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].parent, "depots/d1");
  EXPECT_EQ(next[1], (relation{"member_of", "fleets/south", relation_origin::rule}));
}

}  // namespace
