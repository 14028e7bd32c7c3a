#pragma once

// Scores the detectors on labelled series: sample-level precision, recall
// and F1; event-level detection (an event is a run of labelled rows; it is
// detected when a row from its start to `tolerance` rows after its end is
// flagged) with the delay in rows; alarms (runs of flagged rows) that hit no
// event are false alarms; and the forecasts' MASE against the naive and the
// seasonal naive forecast. A row is flagged when its anomaly score is at
// least 0.5 or its data quality says out_of_range or gap.

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "tools/analytics/run.hpp"
#include "tools/analytics/series.hpp"

namespace fleettwin::analytics {

struct type_stats {
  size_t events = 0;
  size_t detected = 0;
  std::vector<double> delays;  // rows, per detected event
};

struct evaluation {
  size_t series_count = 0, rows = 0, labelled_rows = 0;
  size_t tp = 0, fp = 0, fn = 0;
  size_t alarms = 0, true_alarms = 0;
  /// Rows of series without any label (false alarms per 10,000 of them).
  size_t clean_rows = 0, clean_alarms = 0;
  std::map<std::string, type_stats> by_type;
  /// Per series with enough rows: MASE against naive, and against seasonal
  /// naive (series with a period only).
  std::vector<double> mase_naive, mase_seasonal;
  /// The same by property ("kind/property"; a trending battery and a
  /// mean-reverting speed are not forecast alike).
  struct mase_set {
    std::vector<double> naive, seasonal;
  };
  std::map<std::string, mase_set> mase_by_property;

  void add(const analytics::series& s, const run_result& r, size_t tolerance);
};

void print_table(std::ostream& out, const evaluation& e);
void print_json(std::ostream& out, const evaluation& e);

double median(std::vector<double> v);

}  // namespace fleettwin::analytics
