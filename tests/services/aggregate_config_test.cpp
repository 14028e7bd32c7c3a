#include "services/node/aggregate_config.hpp"

#include <gtest/gtest.h>

using fleettwin::node::load_aggregate_config;
using fleettwin::node::parse_aggregate_config;

namespace {

std::string error_of(std::string_view text) {
  std::string error;
  auto r = parse_aggregate_config(text, "kinds.toml", error);
  EXPECT_FALSE(r);
  return error;
}

TEST(AggregateConfig, TheShippedFileLoads) {
  std::string error;
  auto r = load_aggregate_config(FLEETTWIN_SOURCE_DIR "/deploy/aggregates.toml", error);
  ASSERT_TRUE(r) << error;
  EXPECT_GE(r->kinds().size(), 10u);
  EXPECT_GE(r->rules().size(), 10u);
  const auto* fleet = r->kind_of("fleets/north");
  ASSERT_TRUE(fleet);
  // Measures keep their order in the file.
  EXPECT_EQ(fleet->measures.front().name, "vehicles");
  EXPECT_EQ(fleet->measures.front().expression, "count(kind = \"vehicle\")");
}

TEST(AggregateConfig, KindsAndRulesFromText) {
  std::string error;
  auto r = parse_aggregate_config(R"toml(
[[kind]]
name = "fleet"
collection = "fleets"
members = ["member_of"]
measures = ["n = count()", "soc=mean(reported.soc)"]

[[rule]]
attribute = "fleet"
relation = "member_of"
collection = "fleets"
)toml",
                                  "kinds.toml", error);
  ASSERT_TRUE(r) << error;
  ASSERT_EQ(r->kinds().size(), 1u);
  const auto* k = r->by_name("fleet");
  ASSERT_EQ(k->measures.size(), 2u);
  EXPECT_EQ(k->measures[1].name, "soc");
  EXPECT_EQ(k->measures[1].expression, "mean(reported.soc)");
  EXPECT_EQ(r->rules().size(), 1u);
}

TEST(AggregateConfig, ErrorsNameTheFileLineAndWhatToFix) {
  EXPECT_NE(error_of("[[kind]\nname = 1").find("kinds.toml:1"), std::string::npos);
  EXPECT_NE(error_of("[[kind]]\nname = \"fleet\"\n").find("needs collection"), std::string::npos);
  EXPECT_NE(error_of("[[kind]]\nname = \"fleet\"\ncollection = \"fleets\"\nmembers = "
                     "[\"member_of\"]\nmeasures = [\"n count()\"]\n")
                .find("must read \"name = expression\""),
            std::string::npos);
  EXPECT_NE(error_of("[[kind]]\nname = \"fleet\"\ncollection = \"fleets\"\nmembers = "
                     "[\"member_of\"]\nmeasures = [\"n = total()\"]\n")
                .find("unknown function \"total\""),
            std::string::npos);
  EXPECT_NE(error_of("[[kind]]\nname = \"fleet\"\ncollection = \"fleets\"\nmembers = "
                     "[\"member_of\"]\ncolour = \"red\"\n")
                .find("unknown key \"colour\""),
            std::string::npos);
  EXPECT_NE(error_of("[[rule]]\nattribute = \"fleet\"\nrelation = \"member_of\"\ncollection = "
                     "\"fleets\"\n")
                .find("no aggregate kind has collection \"fleets\""),
            std::string::npos);
  EXPECT_NE(error_of("kinds = 1").find("unknown key \"kinds\""), std::string::npos);
  std::string error;
  EXPECT_FALSE(load_aggregate_config("/nonexistent/kinds.toml", error));
  EXPECT_NE(error.find("cannot read"), std::string::npos);
}

}  // namespace
