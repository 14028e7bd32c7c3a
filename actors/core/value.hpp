#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

namespace fleettwin::core {

/// A typed property value. The index order is part of the storage format.
using value = std::variant<double, int64_t, bool, std::string>;

/// Index of each alternative in `value`.
enum class value_type : uint8_t { real = 0, integer = 1, boolean = 2, text = 3 };

inline value_type type_of(const value& v) {
  return static_cast<value_type>(v.index());
}

/// The numeric reading of a value for statistics and comparisons; nullopt for text.
inline std::optional<double> as_number(const value& v) {
  switch (v.index()) {
    case 0:
      return std::get<double>(v);
    case 1:
      return static_cast<double>(std::get<int64_t>(v));
    case 2:
      return std::get<bool>(v) ? 1.0 : 0.0;
    default:
      return std::nullopt;
  }
}

/// Human-readable rendering (used by logs, the CLI and error messages).
std::string to_string(const value& v);

}  // namespace fleettwin::core
