#pragma once

// Labelled series as fleettwin-analytics reads and writes them: CSV files of
// `timestamp,value[,label]` (a header line is optional; timestamps are Unix
// ms or ISO 8601 such as "2014-07-01 00:00:00", with or without "T", a
// fraction and a zone).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fleettwin::analytics {

struct row {
  int64_t time_ms = 0;
  double value = 0;
  /// -1: no label column; 0 normal; 1 anomalous.
  int label = -1;
  /// What the anomaly is, when the label names it (e.g. "drift"; a label of
  /// 1 or true: "anomaly").
  std::string label_type;
};

struct series {
  /// The file it came from, relative to the input root.
  std::string name;
  /// The twin kind it belongs to: the name of the directory holding the
  /// file (used to pick its asset model), empty at the root.
  std::string kind;
  /// The property: the file's stem after its first '.'
  /// ("veh-000001.position.lat.csv" -> position.lat), else the whole stem.
  std::string property;
  std::vector<row> rows;
  /// Its values are true and false (read as 1 and 0): a state, which the
  /// twin applies but does not analyse.
  bool boolean = false;
};

/// Parses a timestamp; nullopt when it is neither Unix ms nor ISO 8601.
std::optional<int64_t> parse_timestamp(std::string_view text);

/// Reads one CSV; false with `error` (file, line and what is wrong).
bool read_series(const std::string& path, series& out, std::string& error);

/// Every .csv below `path` (or `path` itself), sorted by name.
std::vector<std::string> csv_files(const std::string& path, std::string& error);

}  // namespace fleettwin::analytics
