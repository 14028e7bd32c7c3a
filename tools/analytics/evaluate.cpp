#include "tools/analytics/evaluate.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace fleettwin::analytics {

namespace {

bool flagged(const scored_row& r) {
  return r.score >= 0.5 || (r.quality & (core::quality_out_of_range | core::quality_gap)) != 0;
}

double ratio(double a, double b) {
  return b > 0 ? a / b : 0;
}

double f1(double p, double r) {
  return p + r > 0 ? 2 * p * r / (p + r) : 0;
}

}  // namespace

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void evaluation::add(const series& s, const run_result& r, size_t tolerance) {
  ++series_count;
  rows += s.rows.size();
  const size_t n = s.rows.size();
  // Events: runs of labelled rows.
  struct event {
    size_t start, end;  // [start, end]
    std::string type;
  };
  std::vector<event> events;
  for (size_t i = 0; i < n; ++i) {
    const auto& row = s.rows[i];
    if (row.label == 1) {
      ++labelled_rows;
      if (!events.empty() && events.back().end + 1 == i && events.back().type == row.label_type)
        events.back().end = i;
      else
        events.push_back({i, i, row.label_type});
    }
    const bool f = flagged(r.rows[i]);
    tp += f && row.label == 1;
    fp += f && row.label == 0;
    fn += !f && row.label == 1;
  }
  // Which rows lie in an event's window (its rows and `tolerance` after).
  std::vector<char> window(n, 0);
  for (const auto& e : events)
    for (size_t i = e.start; i <= std::min(n - 1, e.end + tolerance); ++i)
      window[i] = 1;
  for (const auto& e : events) {
    auto& st = by_type[e.type];
    ++st.events;
    for (size_t i = e.start; i <= std::min(n - 1, e.end + tolerance); ++i)
      if (flagged(r.rows[i])) {
        ++st.detected;
        st.delays.push_back(static_cast<double>(i - e.start));
        break;
      }
  }
  // Alarms: runs of flagged rows.
  const bool clean = events.empty();
  if (clean)
    clean_rows += n;
  for (size_t i = 0; i < n;) {
    if (!flagged(r.rows[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    bool hit = false;
    while (j < n && flagged(r.rows[j])) {
      hit |= window[j] != 0;
      ++j;
    }
    ++alarms;
    true_alarms += hit;
    clean_alarms += clean;
    i = j;
  }
  auto& by_property = mase_by_property[s.kind.empty() ? s.property : s.kind + "/" + s.property];
  if (r.scored >= 10 && r.naive_error > 0) {
    mase_naive.push_back(r.abs_error / r.naive_error);
    by_property.naive.push_back(mase_naive.back());
  }
  if (r.seasonal_scored >= 10 && r.seasonal_error > 0) {
    mase_seasonal.push_back(r.seasonal_own_error / r.seasonal_error);
    by_property.seasonal.push_back(mase_seasonal.back());
  }
}

void print_table(std::ostream& out, const evaluation& e) {
  out << fmt::format("{:<14}{:>8}{:>10}{:>9}{:>14}\n", "anomaly", "events", "detected", "recall",
                     "median delay");
  size_t events = 0, detected = 0;
  std::vector<double> delays;
  for (const auto& [type, st] : e.by_type) {
    out << fmt::format("{:<14}{:>8}{:>10}{:>9.2f}{:>14.1f}\n", type, st.events, st.detected,
                       ratio(static_cast<double>(st.detected), static_cast<double>(st.events)),
                       median(st.delays));
    events += st.events;
    detected += st.detected;
    delays.insert(delays.end(), st.delays.begin(), st.delays.end());
  }
  const double p = ratio(static_cast<double>(e.true_alarms), static_cast<double>(e.alarms));
  const double r = ratio(static_cast<double>(detected), static_cast<double>(events));
  out << fmt::format("{:<14}{:>8}{:>10}{:>9.2f}{:>14.1f}\n\n", "all", events, detected, r,
                     median(delays));
  out << fmt::format(
      "events: precision {:.3f} ({} of {} alarms hit an event), recall {:.3f}, "
      "F1 {:.3f}; median detection delay {:.1f} rows\n",
      p, e.true_alarms, e.alarms, r, f1(p, r), median(delays));
  const double sp = ratio(static_cast<double>(e.tp), static_cast<double>(e.tp + e.fp));
  const double sr = ratio(static_cast<double>(e.tp), static_cast<double>(e.tp + e.fn));
  out << fmt::format("samples: precision {:.3f}, recall {:.3f}, F1 {:.3f} ({} labelled of {})\n",
                     sp, sr, f1(sp, sr), e.labelled_rows, e.rows);
  out << fmt::format(
      "series without anomalies: {} alarms in {} rows ({:.2f} per 10,000)\n", e.clean_alarms,
      e.clean_rows,
      ratio(1e4 * static_cast<double>(e.clean_alarms), static_cast<double>(e.clean_rows)));
  out << fmt::format("forecasts: median MASE {:.3f} against naive ({} series)",
                     median(e.mase_naive), e.mase_naive.size());
  if (!e.mase_seasonal.empty())
    out << fmt::format(", {:.3f} against seasonal naive ({} series)", median(e.mase_seasonal),
                       e.mase_seasonal.size());
  out << "\n";
  if (e.mase_by_property.size() > 1) {
    out << fmt::format("\n{:<28}{:>8}{:>14}{:>18}\n", "forecasts by property", "series",
                       "MASE naive", "MASE seasonal");
    for (const auto& [name, m] : e.mase_by_property)
      if (!m.naive.empty())
        out << fmt::format(
            "{:<28}{:>8}{:>14.3f}{:>18}\n", name, m.naive.size(), median(m.naive),
            m.seasonal.empty() ? std::string{"-"} : fmt::format("{:.3f}", median(m.seasonal)));
  }
}

void print_json(std::ostream& out, const evaluation& e) {
  size_t events = 0, detected = 0;
  std::vector<double> delays;
  std::string types;
  for (const auto& [type, st] : e.by_type) {
    events += st.events;
    detected += st.detected;
    delays.insert(delays.end(), st.delays.begin(), st.delays.end());
    types += fmt::format("{}\"{}\":{{\"events\":{},\"detected\":{},\"median_delay\":{}}}",
                         types.empty() ? "" : ",", type, st.events, st.detected, median(st.delays));
  }
  std::string by_property;
  for (const auto& [name, m] : e.mase_by_property)
    if (!m.naive.empty())
      by_property +=
          fmt::format("{}\"{}\":{{\"series\":{},\"naive\":{},\"seasonal\":{}}}",
                      by_property.empty() ? "" : ",", name, m.naive.size(), median(m.naive),
                      m.seasonal.empty() ? "null" : fmt::format("{}", median(m.seasonal)));
  const double p = ratio(static_cast<double>(e.true_alarms), static_cast<double>(e.alarms));
  const double r = ratio(static_cast<double>(detected), static_cast<double>(events));
  const double sp = ratio(static_cast<double>(e.tp), static_cast<double>(e.tp + e.fp));
  const double sr = ratio(static_cast<double>(e.tp), static_cast<double>(e.tp + e.fn));
  out << fmt::format(
      "{{\"series\":{},\"rows\":{},\"events\":{},\"detected\":{},\"alarms\":{},\"true_alarms\":{},"
      "\"event_precision\":{},\"event_recall\":{},\"event_f1\":{},\"median_delay\":{},"
      "\"sample_precision\":{},\"sample_recall\":{},\"sample_f1\":{},\"clean_rows\":{},"
      "\"clean_alarms\":{},\"mase_naive\":{},\"mase_seasonal\":{},\"by_type\":{{{}}},"
      "\"mase_by_property\":{{{}}}}}\n",
      e.series_count, e.rows, events, detected, e.alarms, e.true_alarms, p, r, f1(p, r),
      median(delays), sp, sr, f1(sp, sr), e.clean_rows, e.clean_alarms, median(e.mase_naive),
      median(e.mase_seasonal), types, by_property);
}

}  // namespace fleettwin::analytics
