#pragma once

// The building blocks of FleetTwin's compact binary records (varints,
// fixed-width numbers, strings, values) and a bounds-checked reader. Shared
// by the twin and aggregate codecs.

#include <bit>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include "actors/core/value.hpp"

namespace fleettwin::core::wire {

inline void put_varint(std::string& out, uint64_t x) {
  if (x < 0x80) {
    out.push_back(static_cast<char>(x));
    return;
  }
  // One append, not a push_back (capacity check and terminator) per byte: times in
  // ms take six bytes, and a twin's state has many.
  char buf[10];
  size_t n = 0;
  while (x >= 0x80) {
    buf[n++] = static_cast<char>(x | 0x80);
    x >>= 7;
  }
  buf[n++] = static_cast<char>(x);
  out.append(buf, n);
}

inline void put_signed(std::string& out, int64_t x) {
  put_varint(out, (static_cast<uint64_t>(x) << 1) ^ static_cast<uint64_t>(x >> 63));
}

inline void put_fixed64(std::string& out, uint64_t x) {
  char buf[8];
  for (int i = 0; i < 8; ++i)
    buf[i] = static_cast<char>(x >> (8 * i));
  out.append(buf, 8);
}

inline void put_double(std::string& out, double d) {
  put_fixed64(out, std::bit_cast<uint64_t>(d));
}

/// A double in as few bytes as it allows, exactly: 1 byte for +0.0, a tag and a
/// varint for a whole number (below 2^53), else a tag and its 8 bytes. Analytics
/// state is mostly zeros and whole numbers besides its running means.
inline constexpr char real_zero = 0, real_whole = 1, real_raw = 2;

inline bool whole_number(double d, int64_t& n) {
  // NaN fails both comparisons; -0.0 keeps its sign only as raw bits.
  if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || (std::signbit(d) && d == 0))
    return false;
  n = static_cast<int64_t>(d);
  return static_cast<double>(n) == d;
}

inline void put_real(std::string& out, double d) {
  int64_t n;
  if (std::bit_cast<uint64_t>(d) == 0) {
    out.push_back(real_zero);
  } else if (whole_number(d, n)) {
    out.push_back(real_whole);
    put_signed(out, n);
  } else {
    out.push_back(real_raw);
    put_double(out, d);
  }
}

/// Powers of ten a decimal value may be scaled by (value tags 4..10).
inline constexpr double decimal_scales[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
inline constexpr uint8_t value_decimal_tag = 4;

/// Tag `value_decimal_tag + k` and the zigzag varint of `d * 10^k` when that is a whole
/// number that divides back to exactly `d` (sensor readings: 12.3, 52.520008); false
/// for other doubles.
inline bool put_decimal(std::string& out, double d) {
  if (!(d > -1e12 && d < 1e12) || (d == 0 && std::signbit(d)))
    return false;
  for (size_t k = 0; k < std::size(decimal_scales); ++k) {
    const double scaled = d * decimal_scales[k];  // below 1e18: fits an int64
    const auto m = static_cast<int64_t>(scaled);
    if (static_cast<double>(m) != scaled)
      continue;
    if (static_cast<double>(m) / decimal_scales[k] != d)
      continue;  // the product rounded to a whole number: not this decimal
    out.push_back(static_cast<char>(value_decimal_tag + k));
    put_signed(out, m);
    return true;
  }
  return false;
}

inline void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

inline void put_value(std::string& out, const value& v) {
  out.push_back(static_cast<char>(v.index()));
  switch (v.index()) {
    case 0:
      put_double(out, std::get<double>(v));
      break;
    case 1:
      put_signed(out, std::get<int64_t>(v));
      break;
    case 2:
      out.push_back(std::get<bool>(v) ? 1 : 0);
      break;
    default:
      put_string(out, std::get<std::string>(v));
  }
}

/// put_value, with a double that is a short decimal written as one (reader::val reads
/// both): twin states and history segments, where sensor readings are most of the bytes.
inline void put_compact_value(std::string& out, const value& v) {
  if (auto d = std::get_if<double>(&v); d && put_decimal(out, *d))
    return;
  put_value(out, v);
}

/// Bounds-checked reader; every getter fails soft and sets `ok = false`.
struct reader {
  std::string_view in;
  bool ok = true;

  uint64_t varint() {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (in.empty())
        return fail();
      auto b = static_cast<uint8_t>(in.front());
      in.remove_prefix(1);
      x |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0)
        return x;
    }
    return fail();
  }
  int64_t signed_varint() {
    uint64_t z = varint();
    return static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  uint64_t fixed64() {
    if (in.size() < 8)
      return fail();
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i)
      x |= static_cast<uint64_t>(static_cast<uint8_t>(in[i])) << (8 * i);
    in.remove_prefix(8);
    return x;
  }
  double real() {
    return std::bit_cast<double>(fixed64());
  }
  /// What put_real wrote.
  double compact_real() {
    switch (byte()) {
      case real_zero:
        return 0.0;
      case real_whole:
        return static_cast<double>(signed_varint());
      case real_raw:
        return real();
      default:
        fail();
        return 0.0;
    }
  }
  uint8_t byte() {
    if (in.empty())
      return static_cast<uint8_t>(fail());
    auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    return b;
  }
  std::string_view bytes() {
    uint64_t n = varint();
    if (!ok || n > in.size()) {
      fail();
      return {};
    }
    auto s = in.substr(0, n);
    in.remove_prefix(n);
    return s;
  }
  value val() {
    return val(byte());
  }
  /// The value after its tag (read already).
  value val(uint8_t tag) {
    switch (tag) {
      case 0:
        return real();
      case 1:
        return signed_varint();
      case 2:
        return byte() != 0;
      case 3:
        return std::string{bytes()};
      default:
        if (tag >= value_decimal_tag && tag < value_decimal_tag + std::size(decimal_scales))
          return static_cast<double>(signed_varint()) / decimal_scales[tag - value_decimal_tag];
        fail();
        return value{};
    }
  }
  /// A count of following entries, bounded by the bytes left (each >= 1 byte).
  uint64_t count() {
    uint64_t n = varint();
    if (n > in.size())
      return fail();
    return n;
  }
  uint64_t fail() {
    ok = false;
    in = {};
    return 0;
  }
};

}  // namespace fleettwin::core::wire
