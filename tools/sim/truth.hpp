#pragma once

// The aggregates' ground truth of a simulator run (`--truth FILE`): replays
// the records the simulator produced the way the platform should apply them
// (the relation rules of deploy/aggregates.toml on every twin's and
// aggregate's attributes, set and removed relations of the relations topic,
// the last reported value of each property) and totals every aggregate over
// the twins below it, each counted once however many paths lead to it.
// Malformed records are ignored: the platform rejects them.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tools/sim/generator.hpp"

namespace fleettwin::sim {

class ground_truth {
public:
  /// For the fleet of `gen`, which must outlive this object.
  explicit ground_truth(const generator& gen);

  /// Takes in one record that was produced.
  void observe(const record& r);

  /// The document:
  /// {"generated_ms":W,"as_of_ms":T,"records":N,"twins":K,
  ///  "aggregates":{"feeders/fd-001":{"kind":"feeder","twins":37,
  ///    "sum":{"current":..,"power":..,"voltage":..},"min":{..},"max":{..}},..}}
  /// W is `generated_ms`, T the latest source time among the records, N the
  /// records observed (malformed included), K the twins that reported. Every
  /// aggregate the platform knows (with attributes or anything below it) is
  /// listed in id order; sum, min and max cover the numeric (double and
  /// integer) properties the twins below it last reported, by name.
  std::string json(int64_t generated_ms) const;

private:
  static constexpr size_t max_values = 8;
  static constexpr size_t max_rule_parents = sample::attribute_count;

  struct node {
    std::array<uint32_t, max_rule_parents> rule_parents{};
    std::vector<uint32_t> explicit_parents;
    uint64_t attribute_hash = 0;
    uint8_t rule_parent_count = 0;
    uint8_t value_count = 0;
    bool attributes_known = false;
    // Twin: reported a valid record; aggregate: reported its attributes.
    bool seen = false;
    std::array<uint8_t, max_values> properties{};
    std::array<double, max_values> values{};
  };

  struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const {
      return std::hash<std::string_view>{}(s);
    }
  };

  uint32_t intern(std::string_view aggregate_id);
  uint32_t node_of(std::string_view id);
  uint8_t property_of(std::string_view name);
  void set_attributes(uint32_t idx, const sample& s);
  void set_values(node& n, const sample& s);

  const generator& gen_;
  size_t assets_ = 0;
  std::vector<node> nodes_;  // assets first, then aggregates
  std::vector<std::string> aggregate_ids_;
  std::unordered_map<std::string, uint32_t, string_hash, std::equal_to<>> index_;
  std::vector<std::string> property_names_;
  // Metric names point into static tables: most lookups end at a pointer compare.
  std::vector<std::pair<std::string_view, uint8_t>> property_cache_;
  std::string scratch_;
  uint64_t records_ = 0;
  int64_t as_of_ms_ = 0;
};

}  // namespace fleettwin::sim
