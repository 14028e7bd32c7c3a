#pragma once

// The building blocks of FleetTwin's compact binary records (varints,
// fixed-width numbers, strings, values) and a bounds-checked reader. Shared
// by the twin and aggregate codecs.

#include <bit>
#include <cstdint>
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
    switch (byte()) {
      case 0:
        return real();
      case 1:
        return signed_varint();
      case 2:
        return byte() != 0;
      case 3:
        return std::string{bytes()};
      default:
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
