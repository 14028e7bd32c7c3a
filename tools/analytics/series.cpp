#include "tools/analytics/series.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>

namespace fleettwin::analytics {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '"'))
    s.remove_suffix(1);
  return s;
}

bool digits(std::string_view s, size_t n, int& out) {
  if (s.size() < n)
    return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

std::optional<int64_t> parse_timestamp(std::string_view text) {
  text = trim(text);
  if (text.empty())
    return std::nullopt;
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return (c >= '0' && c <= '9') || c == '-'; }) &&
      text.find('-', 1) == std::string_view::npos) {
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc{} && p == text.data() + text.size())
      return v;
    return std::nullopt;
  }
  // YYYY-MM-DD[( |T)hh:mm[:ss[.fff]]][Z|(+|-)hh[:]mm]
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!digits(text, 4, y) || text.size() < 10 || text[4] != '-' || !digits(text.substr(5), 2, mo) ||
      text[7] != '-' || !digits(text.substr(8), 2, d) || mo < 1 || mo > 12 || d < 1 || d > 31)
    return std::nullopt;
  text.remove_prefix(10);
  int64_t ms = 0;
  if (!text.empty() && (text[0] == 'T' || text[0] == ' ' || text[0] == 't')) {
    text.remove_prefix(1);
    if (!digits(text, 2, h) || text.size() < 5 || text[2] != ':' || !digits(text.substr(3), 2, mi))
      return std::nullopt;
    text.remove_prefix(5);
    if (!text.empty() && text[0] == ':') {
      if (!digits(text.substr(1), 2, s))
        return std::nullopt;
      text.remove_prefix(3);
      if (!text.empty() && (text[0] == '.' || text[0] == ',')) {
        text.remove_prefix(1);
        int64_t scale = 100;
        while (!text.empty() && text[0] >= '0' && text[0] <= '9') {
          ms += (text[0] - '0') * scale;
          scale /= 10;
          text.remove_prefix(1);
        }
      }
    }
  }
  int64_t zone_ms = 0;
  text = trim(text);
  if (!text.empty()) {
    if (text == "Z" || text == "z" || text == "UTC") {
    } else if (text[0] == '+' || text[0] == '-') {
      int zh = 0, zm = 0;
      std::string_view z = text.substr(1);
      if (!digits(z, 2, zh))
        return std::nullopt;
      z.remove_prefix(2);
      if (!z.empty() && z[0] == ':')
        z.remove_prefix(1);
      if (!z.empty() && (!digits(z, 2, zm) || z.size() != 2))
        return std::nullopt;
      zone_ms = (zh * 3600 + zm * 60) * 1000LL * (text[0] == '-' ? -1 : 1);
    } else {
      return std::nullopt;
    }
  }
  if (h > 23 || mi > 59 || s > 60)
    return std::nullopt;
  const int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return ((days * 24 + h) * 60 + mi) * 60'000 + s * 1000LL + ms - zone_ms;
}

bool read_series(const std::string& path, series& out, std::string& error) {
  std::ifstream in{path};
  if (!in) {
    error = path + ": cannot read";
    return false;
  }
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string_view l = trim(line);
    if (l.empty() || l[0] == '#')
      continue;
    std::vector<std::string_view> cells;
    for (size_t start = 0;;) {
      auto comma = l.find(',', start);
      cells.push_back(
          trim(l.substr(start, comma == std::string_view::npos ? l.npos : comma - start)));
      if (comma == std::string_view::npos)
        break;
      start = comma + 1;
    }
    auto where = [&] { return path + ":" + std::to_string(number) + ": "; };
    auto t = parse_timestamp(cells[0]);
    if (!t) {
      if (number == 1 || out.rows.empty())
        continue;  // a header
      error = where() + "\"" + std::string{cells[0]} +
              "\" is not a timestamp (Unix ms, or ISO 8601 such as 2014-07-01 00:00:00)";
      return false;
    }
    if (cells.size() < 2) {
      error = where() + "expected timestamp,value[,label]";
      return false;
    }
    row r;
    r.time_ms = *t;
    auto v = cells[1];
    if (v == "true" || v == "false") {
      if (!out.rows.empty() && !out.boolean) {
        error = where() + "\"" + std::string{v} + "\" in a series of numbers";
        return false;
      }
      out.boolean = true;
      r.value = v == "true" ? 1 : 0;
    } else if (out.boolean) {
      error = where() + "\"" + std::string{v} + "\" in a series of true and false";
      return false;
    } else if (auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), r.value);
               ec != std::errc{} || p != v.data() + v.size()) {
      if (v.empty() || v == "nan" || v == "NaN")
        continue;  // a missing reading
      error = where() + "\"" + std::string{v} + "\" is not a number";
      return false;
    }
    if (cells.size() >= 3 && !cells[2].empty()) {
      const auto lab = cells[2];
      const bool normal = lab == "0" || lab == "false" || lab == "0.0" || lab == "normal";
      r.label = normal ? 0 : 1;
      if (!normal)
        r.label_type = lab == "1" || lab == "true" || lab == "1.0" ? "anomaly" : std::string{lab};
    }
    out.rows.push_back(r);
  }
  std::stable_sort(out.rows.begin(), out.rows.end(),
                   [](const row& a, const row& b) { return a.time_ms < b.time_ms; });
  return true;
}

std::vector<std::string> csv_files(const std::string& path, std::string& error) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    out.push_back(path);
    return out;
  }
  if (!fs::is_directory(path, ec)) {
    error = path + ": no such file or directory";
    return out;
  }
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
       it.increment(ec))
    if (it->is_regular_file() && it->path().extension() == ".csv")
      out.push_back(it->path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace fleettwin::analytics
