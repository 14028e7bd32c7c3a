#pragma once

// Aggregate kinds (fleet, depot, feeder, substation, grid, line, plant ...):
// which relation types make members and which measures an aggregate of the
// kind keeps, compiled from measure expressions such as
//
//   meters      = count()
//   power_kw    = sum(reported.power)
//   low_voltage = count(reported.voltage < 207)
//   stale       = count(connectivity = stale)
//   p95_voltage = p95(reported.voltage)
//   ev_power    = sum(reported.power where kind = "vehicle")
//   utilisation = power_kw / attributes.capacity_kw
//
// Grammar:
//   expr    := term { ("+" | "-") term }
//   term    := factor { ("*" | "/") factor }
//   factor  := "-" factor | number | "(" expr ")" | call | attributes.<key> | <measure>
//   call    := count "(" [ [where] filter ] ")"
//            | (sum | mean | avg | min | max | p50 | p90 | p95 | p99) "(" field [where filter] ")"
//            | percentile "(" field "," q [where filter] ")"        (0 < q <= 1)
//   field   := reported.<property> | <property>
//
// Functions read the member twins below the aggregate (each counted once,
// however many paths lead to it); filters use the ListTwins language.
// Percentiles are exact (nearest rank). An empty set gives count 0, sum 0
// and no value for the others; a missing attribute or a division by zero
// gives no value. Pure C++ (DESIGN.md, principle 4).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/core/filter.hpp"
#include "actors/core/member.hpp"

namespace fleettwin::core {

/// An aggregate kind as declared (configuration file or PutAggregateKind).
struct aggregate_kind {
  /// The kind's name, e.g. "fleet".
  std::string name;
  /// The id prefix of its aggregates: "fleets" makes "fleets/north" one.
  std::string collection;
  /// Relation types that make a twin or aggregate a member, e.g. member_of.
  std::vector<std::string> member_relations;
  /// Measures in declared order: name, expression.
  std::vector<std::pair<std::string, std::string>> measures;
  std::string description;
  /// Increments with every change of the kind (PutAggregateKind); 0 for a
  /// kind only the configuration file defines.
  uint64_t revision = 0;

  bool operator==(const aggregate_kind&) const = default;
};

enum class measure_fn : uint8_t { count, sum, mean, min, max, percentile };

const char* to_string(measure_fn f);

/// The members one or more calls read: member twins with a numeric `field`
/// (every member twin for a count) that match `where`.
struct series_spec {
  std::string field;  // reported property; empty: count only
  filter where;
  /// min, max or a percentile reads it: the values are kept ordered.
  bool ordered = false;
  /// `where` reads connectivity: membership changes with time alone.
  bool time_dependent = false;
};

/// One node of a compiled measure expression.
struct expr_node {
  enum class op : uint8_t { number, call, attribute, measure, neg, add, sub, mul, div };
  op type = op::number;
  double number = 0;
  /// call: index into compiled_kind::calls; measure: index into measures.
  uint32_t index = 0;
  std::string key;  // attribute key
  std::vector<expr_node> args;
};

struct call_spec {
  measure_fn fn = measure_fn::count;
  uint32_t series = 0;
  double quantile = 0;
};

struct compiled_measure {
  std::string name;
  std::string expression;
  expr_node root;
};

/// A kind ready to evaluate: its calls share series where they read the same
/// field under the same filter.
struct compiled_kind {
  aggregate_kind def;
  std::vector<series_spec> series;
  std::vector<call_spec> calls;
  /// In declared order.
  std::vector<compiled_measure> measures;
  /// Indexes into measures, each after the measures it refers to.
  std::vector<uint32_t> order;
  field_set fields;
  bool time_dependent = false;
};

/// Limits on a kind's definition.
constexpr size_t max_measures_per_kind = 64;
/// Names every aggregate reports beside its kind's measures (in filters and
/// history); no measure may take them.
inline constexpr std::string_view member_twins_measure = "member_twins";
inline constexpr std::string_view members_measure = "members";
constexpr size_t max_series_per_kind = 64;
constexpr size_t max_expression_bytes = 4096;

/// Checks and compiles a kind; returns what to fix when it is invalid.
std::optional<std::string> compile_kind(const aggregate_kind& kind, compiled_kind& out);

/// What a measure evaluation needs besides the series.
struct measure_inputs {
  /// The aggregate's own attributes (attributes.<key> in expressions).
  const std::map<std::string, std::string, std::less<>>* attributes = nullptr;
};

/// Reads the value of a call from its series; provided by the evaluator.
class series_reader {
public:
  virtual ~series_reader() = default;
  virtual uint64_t count(uint32_t series) const = 0;
  virtual double sum(uint32_t series) const = 0;
  virtual std::optional<double> min(uint32_t series) const = 0;
  virtual std::optional<double> max(uint32_t series) const = 0;
  /// Nearest-rank percentile: the ceil(q * n)-th smallest value.
  virtual std::optional<double> percentile(uint32_t series, double q) const = 0;
};

/// Evaluates every measure of the kind, in declared order.
std::vector<std::optional<double>> evaluate_measures(const compiled_kind& kind,
                                                     const series_reader& series,
                                                     const measure_inputs& in);

/// Evaluates the measures of `kind` from scratch over member twins: the
/// reference the incremental aggregate must always equal.
std::vector<std::optional<double>> recompute_measures(const compiled_kind& kind,
                                                      const std::vector<member_view>& twins,
                                                      const measure_inputs& in, int64_t now_ms,
                                                      int64_t stale_after_ms);

/// Checks a name of a kind, collection, relation type or measure.
std::optional<std::string> validate_kind_name(std::string_view name, std::string_view what);

}  // namespace fleettwin::core
