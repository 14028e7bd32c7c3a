#pragma once

// The ListTwins / WatchTwins filter language: a subset of AIP-160.
//
//   expr     := or_expr
//   or_expr  := and_expr { "OR" and_expr }
//   and_expr := unary { ["AND"] unary }        (juxtaposition means AND)
//   unary    := ["NOT" | "-"] primary
//   primary  := "(" expr ")" | comparison
//   comparison := field op literal | field ":" "*"  (presence) | field ":" literal
//   op       := "=" | "!=" | "<" | "<=" | ">" | ">="
//   field    := asset_id | kind | tenant | version | connectivity | applied_records
//             | attributes.<key> | reported.<property> | desired.<property>
//             | anomaly.<property>  (the last anomaly score; `anomaly.<p>:*`,
//               `anomaly:<p>` and `anomaly:*` hold while a property is anomalous:
//               its alert is raised or its last score is at least 0.5)
//             | quality.score (the twin's data quality) | quality.<property> (the
//               number of its quality flags; `quality:<p>`, `quality:*`: flagged)
//             | health (the twin's health score)
//             | state | severity | property | detector  (alerts, see alert_view)
//             (for aggregates also aggregate_id = asset_id and measures.<name> =
//             reported.<name>: ListAggregates filters an aggregate as a twin whose
//             reported properties are its measures)
//   literal  := "quoted string" | 'quoted' | number | true | false | bare_word
//
// Comparisons follow the stored type: numbers compare numerically (int, double
// and bool as 0/1), strings lexicographically; a field that is absent matches
// nothing except "!=" and NOT. `kind = "veh*"` with a trailing `*` is a prefix
// match for string equality. Keywords AND, OR, NOT are case-sensitive (AIP-160).

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "actors/core/member.hpp"
#include "actors/core/twin.hpp"

namespace fleettwin::core {

/// Why a filter string did not parse: the 0-based byte offset and what to fix.
struct filter_error {
  size_t position = 0;
  std::string message;
};

struct filter_node;

/// One alert of a twin as ListAlerts filters it: the twin's fields, and the
/// alert's own (state open/acknowledged/cleared, severity, property,
/// detector).
struct alert_view {
  const twin* tw = nullptr;
  std::string_view property;
  const alert_state* alert = nullptr;
};

/// The state of an alert as the API names it: open, acknowledged, cleared.
const char* alert_state_name(const alert_state& a);

/// A property is anomalous while its alert is raised or its last score is
/// at least 0.5.
bool anomalous(const property_analysis& a);

/// A parsed filter. Cheap to copy (shared, immutable tree).
class filter {
public:
  /// The filter that matches every twin (the empty string).
  filter() = default;

  /// Parses `text`; an empty or all-blank string matches everything.
  static std::optional<filter_error> parse(std::string_view text, filter& out);

  /// True if `tw` satisfies the filter; connectivity is judged at `now_ms`.
  bool matches(const twin& tw, int64_t now_ms, int64_t stale_after_ms) const;

  /// True if the alert satisfies the filter.
  bool matches(const alert_view& a, int64_t now_ms, int64_t stale_after_ms) const;

  /// True if the member an aggregate holds satisfies the filter. Fields the
  /// member did not project are absent; desired and applied_records always are.
  bool matches(const member_view& m, int64_t now_ms, int64_t stale_after_ms) const;

  /// Adds the twin fields the filter reads to `out`.
  void collect_fields(field_set& out) const;

  /// Adds the properties whose values (reported, desired, anomaly score, quality flags)
  /// the filter compares to `out` (a presence test, `reported:p`, compares none).
  void properties_compared(std::set<std::string, std::less<>>& out) const;

  /// True if the filter reads connectivity (its outcome changes with time).
  bool reads_connectivity() const;

  /// True for the empty filter.
  bool matches_all() const {
    return root_ == nullptr;
  }

  /// The filter text it was parsed from.
  const std::string& text() const {
    return text_;
  }

private:
  std::shared_ptr<const filter_node> root_;
  std::string text_;
};

}  // namespace fleettwin::core
