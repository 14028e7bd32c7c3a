#include "tools/cli/parse.hpp"

#include <cctype>
#include <charconv>
#include <chrono>
#include <optional>

#include <fmt/format.h>

namespace fleettwin::cli {

namespace {

constexpr std::string_view name_prefix = "twins/";

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/// Consumes one or more digits from the front of `s`.
std::optional<std::string_view> take_digits(std::string_view& s) {
  size_t n = 0;
  while (n < s.size() && is_digit(s[n])) {
    ++n;
  }
  if (n == 0) {
    return std::nullopt;
  }
  auto digits = s.substr(0, n);
  s.remove_prefix(n);
  return digits;
}

bool is_integer_literal(std::string_view s) {
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    s.remove_prefix(1);
  }
  return take_digits(s) && s.empty();
}

/// [+-] (digits [. digits*] | . digits) [(e|E) [+-] digits]
bool is_decimal_literal(std::string_view s) {
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    s.remove_prefix(1);
  }
  bool mantissa = take_digits(s).has_value();
  if (!s.empty() && s.front() == '.') {
    s.remove_prefix(1);
    mantissa = take_digits(s).has_value() || mantissa;
  }
  if (!mantissa) {
    return false;
  }
  if (!s.empty() && (s.front() == 'e' || s.front() == 'E')) {
    s.remove_prefix(1);
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
      s.remove_prefix(1);
    }
    if (!take_digits(s)) {
      return false;
    }
  }
  return s.empty();
}

template <class T>
std::optional<T> to_number(std::string_view s) {
  if (!s.empty() && s.front() == '+') {
    s.remove_prefix(1);
  }
  T value{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return value;
}

/// Reads exactly `width` digits as a number.
std::optional<int> take_fixed(std::string_view& s, size_t width) {
  if (s.size() < width) {
    return std::nullopt;
  }
  int value = 0;
  for (size_t i = 0; i < width; ++i) {
    if (!is_digit(s[i])) {
      return std::nullopt;
    }
    value = value * 10 + (s[i] - '0');
  }
  s.remove_prefix(width);
  return value;
}

bool take_char(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) {
    return false;
  }
  s.remove_prefix(1);
  return true;
}

std::optional<int64_t> parse_relative(std::string_view s, int64_t now_ms) {
  int sign = s.front() == '-' ? -1 : 1;
  s.remove_prefix(1);
  if (s.empty()) {
    return std::nullopt;
  }
  int64_t total_ms = 0;
  while (!s.empty()) {
    auto digits = take_digits(s);
    if (!digits) {
      return std::nullopt;
    }
    auto amount = to_number<int64_t>(*digits);
    int64_t unit_ms = 0;
    if (s.starts_with("ms")) {
      unit_ms = 1;
      s.remove_prefix(2);
    } else if (!s.empty()) {
      switch (s.front()) {
        case 's':
          unit_ms = 1'000;
          break;
        case 'm':
          unit_ms = 60'000;
          break;
        case 'h':
          unit_ms = 3'600'000;
          break;
        case 'd':
          unit_ms = 86'400'000;
          break;
        case 'w':
          unit_ms = 7 * 86'400'000LL;
          break;
        default:
          return std::nullopt;
      }
      s.remove_prefix(1);
    }
    if (!amount || unit_ms == 0 || *amount > INT64_MAX / unit_ms / 2) {
      return std::nullopt;
    }
    total_ms += *amount * unit_ms;
  }
  return now_ms + sign * total_ms;
}

/// YYYY-MM-DD[(T|t| )HH:MM[:SS[.fraction]]][Z|z|(+|-)HH[:]MM]; UTC when no zone is given.
std::optional<int64_t> parse_iso8601(std::string_view s) {
  using namespace std::chrono;
  auto y = take_fixed(s, 4);
  if (!y || !take_char(s, '-')) {
    return std::nullopt;
  }
  auto mo = take_fixed(s, 2);
  if (!mo || !take_char(s, '-')) {
    return std::nullopt;
  }
  auto d = take_fixed(s, 2);
  if (!d) {
    return std::nullopt;
  }
  year_month_day date{year{*y}, month{static_cast<unsigned>(*mo)}, day{static_cast<unsigned>(*d)}};
  if (!date.ok()) {
    return std::nullopt;
  }
  int64_t ms = duration_cast<milliseconds>(sys_days{date}.time_since_epoch()).count();
  if (s.empty()) {
    return ms;
  }
  if (!take_char(s, 'T') && !take_char(s, 't') && !take_char(s, ' ')) {
    return std::nullopt;
  }
  auto hh = take_fixed(s, 2);
  if (!hh || *hh > 23 || !take_char(s, ':')) {
    return std::nullopt;
  }
  auto mm = take_fixed(s, 2);
  if (!mm || *mm > 59) {
    return std::nullopt;
  }
  int sec = 0;
  int64_t frac_ms = 0;
  if (take_char(s, ':')) {
    auto ss = take_fixed(s, 2);
    if (!ss || *ss > 59) {
      return std::nullopt;
    }
    sec = *ss;
    if (take_char(s, '.') || take_char(s, ',')) {
      auto digits = take_digits(s);
      if (!digits) {
        return std::nullopt;
      }
      // Milliseconds: the first three digits, padded; finer digits are truncated.
      std::string padded = fmt::format("{:0<3}", digits->substr(0, 3));
      frac_ms = *to_number<int64_t>(padded);
    }
  }
  ms += ((*hh * 60LL + *mm) * 60 + sec) * 1000 + frac_ms;
  if (s.empty() || take_char(s, 'Z') || take_char(s, 'z')) {
    return s.empty() ? std::optional{ms} : std::nullopt;
  }
  int sign = 0;
  if (take_char(s, '+')) {
    sign = 1;
  } else if (take_char(s, '-')) {
    sign = -1;
  } else {
    return std::nullopt;
  }
  auto oh = take_fixed(s, 2);
  take_char(s, ':');
  auto om = take_fixed(s, 2);
  if (!oh || !om || *oh > 23 || *om > 59 || !s.empty()) {
    return std::nullopt;
  }
  // 10:00+02:00 is 08:00 UTC.
  return ms - sign * (*oh * 60LL + *om) * 60'000;
}

}  // namespace

std::string aggregate_name(std::string_view id) {
  if (id.starts_with("aggregates/"))
    return std::string{id};
  return "aggregates/" + std::string{id};
}

std::string node_name(std::string_view id) {
  if (id.starts_with("twins/") || id.starts_with("aggregates/"))
    return std::string{id};
  if (id.find('/') != std::string_view::npos)
    return aggregate_name(id);
  return twin_name(id);
}

std::string twin_name(std::string_view asset) {
  if (asset.starts_with(name_prefix)) {
    asset.remove_prefix(name_prefix.size());
  }
  if (asset.empty()) {
    throw usage_error("an asset id must not be empty");
  }
  return fmt::format("{}{}", name_prefix, asset);
}

v1::Value infer_value(std::string_view text) {
  v1::Value value;
  if (text == "true" || text == "false") {
    value.set_bool_value(text == "true");
  } else if (auto i = is_integer_literal(text) ? to_number<int64_t>(text) : std::nullopt) {
    value.set_int_value(*i);
  } else if (auto d = is_decimal_literal(text) ? to_number<double>(text) : std::nullopt) {
    // Also integers too large for int64.
    value.set_double_value(*d);
  } else if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
    value.set_string_value(std::string{text.substr(1, text.size() - 2)});
  } else {
    value.set_string_value(std::string{text});
  }
  return value;
}

std::pair<std::string, v1::Value> parse_assignment(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    throw usage_error(fmt::format("expected key=value, got \"{}\"", text));
  }
  return {std::string{text.substr(0, eq)}, infer_value(text.substr(eq + 1))};
}

int64_t parse_time(std::string_view text, int64_t now_ms) {
  std::optional<int64_t> ms;
  if (text == "now") {
    ms = now_ms;
  } else if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    ms = parse_relative(text, now_ms);
  } else if (!text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos) {
    ms = to_number<int64_t>(text);
  } else {
    ms = parse_iso8601(text);
  }
  if (!ms) {
    throw usage_error(
        fmt::format("invalid time \"{}\": expected Unix ms (1795000000000), ISO-8601 "
                    "(2026-11-24T10:00:00Z), \"now\" or relative to now (-15m, -2h, -30s, -1d)",
                    text));
  }
  return *ms;
}

int64_t parse_span(const std::string& text) {
  if (text.empty() || text[0] == '-' || text[0] == '+')
    throw usage_error("a duration such as 1h, 90m or 2d is expected, got \"" + text + "\"");
  return parse_time("+" + text, 0);
}

}  // namespace fleettwin::cli
