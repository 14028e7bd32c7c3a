// fleettwin-analytics: runs exactly the twins' forecasters, detectors and
// data-quality checks offline, so that data teams can backtest them and tune
// models before they deploy them (README, "Analytics").
//
//   fleettwin-analytics replay IN OUT [--models FILE] [--kind K] [--period 24h]
//   fleettwin-analytics evaluate IN [--models FILE] [--json] [--tolerance N]
//   fleettwin-analytics corpus DIR [--seed N] [--assets N] [--hours H]

#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "actors/core/asset_model.hpp"
#include "services/node/model_config.hpp"
#include "tools/analytics/corpus.hpp"
#include "tools/analytics/evaluate.hpp"
#include "tools/analytics/run.hpp"
#include "tools/analytics/series.hpp"

using namespace fleettwin;
using namespace fleettwin::analytics;

namespace {

struct common {
  std::string input;
  std::string models_file;
  std::string kind;
  std::string period;
};

/// The models of --models by kind (empty without one).
core::model_set load_models(const std::string& file) {
  core::model_set out;
  if (file.empty())
    return out;
  std::string error;
  auto models = node::load_model_config(file, error);
  if (!error.empty())
    throw std::runtime_error(error);
  for (auto& m : models) {
    auto kind = m.kind;
    out.emplace(std::move(kind), std::move(m));
  }
  return out;
}

/// The model of a series' kind: the --kind given, else its directory's
/// (null: none).
const core::asset_model* model_of(const core::model_set& models, const series& s,
                                  const std::string& kind) {
  auto it = models.find(kind.empty() ? s.kind : kind);
  return it == models.end() ? nullptr : &it->second;
}

int64_t parse_period(const std::string& text) {
  if (text.empty())
    return 0;
  auto ms = core::parse_duration_ms(text);
  if (!ms)
    throw std::runtime_error("--period: \"" + text + "\" is not a duration (e.g. 24h, 7d)");
  return *ms;
}

/// Reads every series below `c.input`, naming each relative to it, and
/// hands them to `f` asset by asset: the files of one directory whose
/// names start with the same asset id before the first '.'
/// ("veh-1.speed.csv", "veh-1.battery.csv") are one twin's properties.
template <class F>
void each_asset(const common& c, F f) {
  namespace fs = std::filesystem;
  std::string error;
  auto files = csv_files(c.input, error);
  if (!error.empty())
    throw std::runtime_error(error);
  const bool dir = fs::is_directory(c.input);
  std::vector<series> group;
  std::string group_key;
  for (const auto& file : files) {
    series s;
    if (!read_series(file, s, error))
      throw std::runtime_error(error);
    const fs::path rel = dir ? fs::relative(file, c.input) : fs::path{file}.filename();
    s.name = rel.string();
    s.kind = rel.has_parent_path() ? rel.parent_path().filename().string() : "";
    const auto stem = rel.stem().string();
    const auto dot = stem.find('.');
    s.property = dot == std::string::npos ? stem : stem.substr(dot + 1);
    // Files sorted by name keep an asset's together.
    const auto key = dot == std::string::npos
                         ? rel.string()
                         : (rel.parent_path() / stem.substr(0, dot)).string() + "\n";
    if (!group.empty() && key != group_key) {
      f(group);
      group.clear();
    }
    group_key = key;
    group.push_back(std::move(s));
  }
  if (!group.empty())
    f(group);
}

/// The analytics of one asset's series (one result per series).
std::vector<run_result> run_group(const std::vector<series>& group, const core::model_set& models,
                                  const std::string& kind, int64_t period) {
  const auto* model = model_of(models, group.front(), kind);
  if (group.size() == 1)
    return {run(group.front(), model ? model->find(group.front().property) : nullptr, period)};
  std::vector<const series*> parts;
  for (const auto& s : group)
    parts.push_back(&s);
  return run_asset(parts, model, period);
}

int replay(const common& c, const std::string& output) {
  namespace fs = std::filesystem;
  const auto models = load_models(c.models_file);
  const auto period = parse_period(c.period);
  const bool dir = fs::is_directory(c.input);
  size_t files = 0, rows = 0;
  each_asset(c, [&](const std::vector<series>& group) {
    const auto results = run_group(group, models, c.kind, period);
    for (size_t g = 0; g < group.size(); ++g) {
      const auto& s = group[g];
      const auto& r = results[g];
      const fs::path out_path = dir ? fs::path{output} / s.name : fs::path{output};
      if (out_path.has_parent_path())
        fs::create_directories(out_path.parent_path());
      std::ofstream out{out_path};
      if (!out)
        throw std::runtime_error("cannot write " + out_path.string());
      out << "timestamp,value,anomaly_score,anomaly_kind,label,forecast,lower95,upper95,alert,"
             "quality_flags\n";
      for (size_t i = 0; i < s.rows.size(); ++i) {
        const auto& in = s.rows[i];
        const auto& o = r.rows[i];
        std::string flags;
        for (size_t b = 0; b < 4; ++b)
          if (o.quality & (1u << b))
            flags += std::string{flags.empty() ? "" : "|"} + core::quality_flag_name(b);
        out << fmt::format(
            "{},{},{:.4f},{},{},{},{},{},{},{}\n", in.time_ms,
            s.boolean ? std::string{in.value != 0 ? "true" : "false"} : fmt::format("{}", in.value),
            o.score, o.kind == core::anomaly_kind::none ? "" : core::to_string(o.kind),
            in.label < 0 ? "" : (in.label ? in.label_type : "0"),
            o.has_forecast ? fmt::format("{:.6g}", o.forecast) : "",
            o.has_forecast ? fmt::format("{:.6g}", o.lower95) : "",
            o.has_forecast ? fmt::format("{:.6g}", o.upper95) : "",
            o.alert != core::alert_event::none ? core::to_string(o.alert)
            : o.alert_active                   ? "active"
                                               : "",
            flags);
      }
      ++files;
      rows += s.rows.size();
    }
  });
  std::cerr << fmt::format("replayed {} rows of {} series into {}\n", rows, files, output);
  return 0;
}

int evaluate(const common& c, bool json, size_t tolerance) {
  const auto models = load_models(c.models_file);
  const auto period = parse_period(c.period);
  evaluation e;
  each_asset(c, [&](const std::vector<series>& group) {
    const auto results = run_group(group, models, c.kind, period);
    for (size_t g = 0; g < group.size(); ++g)
      if (!group[g].boolean)  // states are applied, not scored
        e.add(group[g], results[g], tolerance);
  });
  if (e.labelled_rows == 0 && e.by_type.empty())
    std::cerr << "note: no labelled rows (a third column `label`); only false alarms and "
                 "forecasts are scored\n";
  if (json)
    print_json(std::cout, e);
  else
    print_table(std::cout, e);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fleettwin-analytics: the twins' analytics, offline, on CSV series"};
  app.require_subcommand(1);
  common c;
  std::string output;
  bool json = false;
  size_t tolerance = 10;
  corpus_options co;
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("--models", c.models_file, "Asset models (TOML, as the node's --models)");
    sub->add_option("--kind", c.kind,
                    "The kind whose model applies (default: each file's directory name)");
    sub->add_option("--period", c.period,
                    "Seasonal period for the seasonal-naive comparison (default: the model's)");
  };
  auto* rep =
      app.add_subcommand("replay", "Score every row; write timestamp,value,anomaly_score,...");
  rep->add_option("input", c.input, "A CSV (timestamp,value[,label]) or a directory of them")
      ->required();
  rep->add_option("output", output, "A CSV, or a directory mirroring the input's tree")->required();
  add_common(rep);
  auto* ev = app.add_subcommand("evaluate", "Score the detectors and forecasts on labelled series");
  ev->add_option("input", c.input, "A CSV or a directory of them")->required();
  ev->add_flag("--json", json, "One JSON document");
  ev->add_option("--tolerance", tolerance, "Rows after an event in which a detection still counts")
      ->capture_default_str();
  add_common(ev);
  auto* corp = app.add_subcommand("corpus", "Write a labelled corpus from the fleet simulator");
  corp->add_option("dir", co.dir, "Output directory")->required();
  corp->add_option("--seed", co.seed)->capture_default_str();
  corp->add_option("--assets", co.assets)->capture_default_str();
  corp->add_option("--hours", co.hours, "Virtual hours of data")->capture_default_str();
  corp->add_option("--interval", co.interval_s, "Seconds between an asset's samples")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    if (rep->parsed())
      return replay(c, output);
    if (ev->parsed())
      return evaluate(c, json, tolerance);
    std::string summary, error;
    if (!write_corpus(co, summary, error)) {
      std::cerr << "error: " << error << "\n";
      return 1;
    }
    std::cerr << summary << "\n";
    return 0;
  } catch (const std::exception& ex) {
    std::cerr << "error: " << ex.what() << "\n";
    return 1;
  }
}
