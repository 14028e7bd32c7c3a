#include "tools/analytics/corpus.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "tools/sim/generator.hpp"
#include "tools/sim/random.hpp"

namespace fleettwin::analytics {

namespace {

using sim::fault_type;

/// The series a generator run produced: (asset, property) -> rows of
/// (offset ms, value); and each asset's kind.
struct recording {
  std::map<std::pair<std::string, std::string>, std::vector<std::pair<int64_t, double>>> series;
  std::map<std::string, std::string> kinds;
  /// The series of booleans (states such as a machine's `running`).
  std::set<std::pair<std::string, std::string>> booleans;
};

recording record(const sim::config& cfg, uint64_t count) {
  recording out;
  sim::generator g{cfg};
  sim::record r;
  for (uint64_t i = 0; i < count && g.next(r); ++i) {
    if (r.type != sim::record_type::asset || r.malformed || !r.data)
      continue;
    const auto& s = *r.data;
    const std::string asset{s.asset_id};
    out.kinds.emplace(asset, std::string{s.kind});
    for (size_t m = 0; m < s.metric_size; ++m) {
      const auto& mv = s.metrics[m];
      double v = 0;
      if (auto* d = std::get_if<double>(&mv.value))
        v = *d;
      else if (auto* n = std::get_if<int64_t>(&mv.value))
        v = static_cast<double>(*n);
      else if (auto* b = std::get_if<bool>(&mv.value)) {
        // A state: written beside the series, which the replay judges by.
        v = *b ? 1 : 0;
        out.booleans.emplace(asset, std::string{mv.name});
      } else
        continue;
      out.series[{asset, std::string{mv.name}}].emplace_back(s.source_time_ms - cfg.start_time_ms,
                                                             v);
    }
  }
  return out;
}

/// Spread of a series' steps (the scale its forecast errors live on).
double step_spread(const std::vector<std::pair<int64_t, double>>& rows) {
  double sum = 0;
  size_t n = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    sum += std::abs(rows[i].second - rows[i - 1].second);
    ++n;
  }
  return n ? 1.2533 * sum / static_cast<double>(n) : 0;  // mean |step| to sigma
}

}  // namespace

bool write_corpus(const corpus_options& o, std::string& summary, std::string& error) {
  namespace fs = std::filesystem;
  sim::config cfg;
  cfg.seed = o.seed;
  cfg.assets = o.assets;
  cfg.rate = static_cast<double>(o.assets) / o.interval_s;
  cfg.start_time_ms = 1'767'225'600'000;  // 2026-01-01
  const auto count = static_cast<uint64_t>(o.hours * 3600 * cfg.rate);
  // A clean run first: each series' noise sets its faults' magnitudes.
  const auto clean = record(cfg, count);
  static constexpr fault_type types[] = {fault_type::drift,       fault_type::spike,
                                         fault_type::stuck,       fault_type::dropout,
                                         fault_type::level_shift, fault_type::variance};
  std::vector<std::string> assets;
  for (const auto& [asset, kind] : clean.kinds)
    assets.push_back(asset);
  uint64_t rng = o.seed * 0x9e3779b97f4a7c15ULL + 1;
  const double span_s = o.hours * 3600;
  size_t i = 0;
  for (const auto& asset : assets) {
    std::vector<std::string> props;
    for (const auto& [key, rows] : clean.series)
      if (key.first == asset && !clean.booleans.contains(key) && step_spread(rows) > 0)
        props.push_back(key.second);
    if (props.empty())
      continue;
    const auto type = types[i % std::size(types)];
    const auto& prop = props[(i / std::size(types)) % props.size()];
    ++i;
    const auto& rows = clean.series.at({asset, prop});
    const double sigma = step_spread(rows);
    double mean = 0;
    for (const auto& [t, v] : rows)
      mean += v / static_cast<double>(rows.size());
    sim::fault f;
    f.type = type;
    f.asset_id = asset;
    f.property = prop;
    // After a quarter of the span (the detectors have learnt), before the end.
    f.start_ms = static_cast<int64_t>(sim::uniform(rng, 0.25, 0.75) * span_s) * 1000;
    switch (type) {
      case fault_type::drift:
        f.duration_ms = 3'600'000;
        f.magnitude = 12 * sigma;
        break;
      case fault_type::spike:
        f.duration_ms = 0;
        f.magnitude = std::abs(mean) > 1e-9 ? 1 + 10 * sigma / std::abs(mean) : 10;
        break;
      case fault_type::stuck:
      case fault_type::level_shift:
      case fault_type::variance:
        f.duration_ms = 1'800'000;
        f.magnitude = type == fault_type::level_shift ? 6 * sigma : 3 * sigma;
        break;
      case fault_type::dropout:
        f.duration_ms = 600'000;
        f.property = "*";  // the asset falls silent: every series of it
        break;
    }
    cfg.faults.push_back(f);
  }
  const auto faulty = record(cfg, count);
  std::error_code ec;
  fs::create_directories(o.dir, ec);
  size_t files = 0, labelled = 0;
  for (const auto& [key, rows] : faulty.series) {
    const auto& [asset, prop] = key;
    const auto dir = fs::path{o.dir} / faulty.kinds.at(asset);
    fs::create_directories(dir, ec);
    std::ofstream out{dir / (asset + "." + prop + ".csv")};
    if (!out) {
      error = "cannot write " + (dir / (asset + "." + prop + ".csv")).string();
      return false;
    }
    out << "timestamp,value,label\n";
    const sim::fault* fault = nullptr;
    for (const auto& f : cfg.faults)
      if (f.asset_id == asset && f.applies_to(prop) && !faulty.booleans.contains(key))
        fault = &f;
    bool spike_labelled = false, dropout_labelled = false;
    for (const auto& [t, v] : rows) {
      std::string label = "0";
      if (fault) {
        const auto name = std::string{sim::to_string(fault->type)};
        switch (fault->type) {
          case fault_type::spike:
            if (!spike_labelled && t >= fault->start_ms) {
              label = name;
              spike_labelled = true;
            }
            break;
          case fault_type::dropout:
            if (!dropout_labelled && t >= fault->start_ms + fault->duration_ms) {
              label = name;
              dropout_labelled = true;
            }
            break;
          default:
            if (fault->in_window(t))
              label = name;
        }
      }
      labelled += label != "0";
      out << cfg.start_time_ms + t << ','
          << (faulty.booleans.contains(key) ? (v != 0 ? "true" : "false") : fmt::format("{}", v))
          << ',' << label << '\n';
    }
    ++files;
  }
  summary = fmt::format("{} series ({} assets, {} faults, {} labelled rows) in {}", files,
                        assets.size(), cfg.faults.size(), labelled, o.dir);
  return true;
}

}  // namespace fleettwin::analytics
