#include "services/kafka/telemetry_decoder.hpp"
#include "actors/core/text.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <simdjson.h>

#include "fleettwin/v1/aggregate.pb.h"

namespace fleettwin::kafka {

namespace {

using core::trim;

namespace od = simdjson::ondemand;

using decode_error = std::pair<std::string, std::string>;
using decode_result = std::optional<decode_error>;

/// JSON buffers grown beyond this are released after the record that needed
/// them, so that one huge record does not pin megabytes in every partition.
constexpr size_t retained_json_bytes = 64 * 1024;
/// Payload text quoted in a reason is cut to this many bytes (DLQ headers).
constexpr size_t max_quoted_bytes = 128;
/// Up to this many names, duplicates are looked for pairwise; above, by sorting.
constexpr size_t pairwise_duplicate_check = 16;

decode_result fail(const char* code, std::string reason) {
  return decode_error{code, std::move(reason)};
}

decode_result malformed(std::string reason) {
  return fail("malformed", std::move(reason));
}

std::string quote_text(std::string_view s) {
  size_t cut = s.size();
  if (cut > max_quoted_bytes) {
    cut = max_quoted_bytes;
    while (cut > 0 && (static_cast<uint8_t>(s[cut]) & 0xc0) == 0x80)
      --cut;  // not inside a UTF-8 sequence
  }
  std::string q;
  q.reserve(cut + 5);
  q += '"';
  q.append(s.substr(0, cut));
  if (cut < s.size())
    q += "...";
  q += '"';
  return q;
}

// --- content type ------------------------------------------------------------

enum class payload_format : uint8_t { protobuf, json, unsupported };

char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// `lower` must be lower case.
bool iequals(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size())
    return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (ascii_lower(s[i]) != lower[i])
      return false;
  return true;
}

// Only the media type counts: parameters such as "; charset=utf-8" are
// ignored and type/subtype compare case-insensitively (RFC 9110, 8.3.1).
payload_format format_of(std::string_view content_type) {
  const auto media = trim(content_type.substr(0, content_type.find(';')));
  if (media.empty() || iequals(media, "application/x-protobuf") ||
      iequals(media, "application/protobuf") || iequals(media, "application/vnd.google.protobuf"))
    return payload_format::protobuf;
  if (iequals(media, "application/json"))
    return payload_format::json;
  return payload_format::unsupported;
}

// --- output ------------------------------------------------------------------

// The n-th element of `v`, reusing one (and its string capacity) left there
// by an earlier record; the caller shrinks `v` to the final count.
template <class T>
T& next_slot(std::vector<T>& v, size_t& n) {
  if (n == v.size())
    v.emplace_back();
  return v[n++];
}

void assign_text(core::value& v, std::string_view s) {
  if (auto* text = std::get_if<std::string>(&v))
    text->assign(s.data(), s.size());
  else
    v.emplace<std::string>(s);
}

decode_result apply_key(std::string_view key, std::string& asset_id) {
  if (key.empty())
    return std::nullopt;  // an empty id is rejected by core::validate
  if (asset_id.empty()) {
    asset_id.assign(key.data(), key.size());
    return std::nullopt;
  }
  if (asset_id != key)
    return fail("key_mismatch", "record key " + quote_text(key) +
                                    " differs from payload asset_id " + quote_text(asset_id));
  return std::nullopt;
}

// A JSON object may repeat a name and protobuf wire data a map key. The last
// value wins (as in a protobuf map and most JSON parsers); the entry keeps the
// position of the first. Otherwise entries keep the order of the payload.
template <class Pair>
bool has_duplicate_names(const std::vector<Pair>& v, size_t n,
                         std::vector<std::string_view>& scratch) {
  if (n <= pairwise_duplicate_check) {
    for (size_t i = 1; i < n; ++i)
      for (size_t j = 0; j < i; ++j)
        if (v[i].first == v[j].first)
          return true;
    return false;
  }
  scratch.clear();
  for (size_t i = 0; i < n; ++i)
    scratch.emplace_back(v[i].first);
  std::sort(scratch.begin(), scratch.end());
  return std::adjacent_find(scratch.begin(), scratch.end()) != scratch.end();
}

// Rare (a producer bug), so it may allocate; linear so that a payload full of
// one repeated name cannot make it quadratic. Returns the new count.
template <class Pair>
size_t merge_duplicate_names(std::vector<Pair>& v, size_t n) {
  std::unordered_map<std::string_view, size_t> first;
  std::vector<bool> dropped(n);
  for (size_t i = 0; i < n; ++i) {
    auto [it, inserted] = first.try_emplace(v[i].first, i);
    if (!inserted) {
      v[it->second].second = std::move(v[i].second);
      dropped[i] = true;
    }
  }
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i)
    if (!dropped[i]) {
      if (kept != i)
        std::swap(v[kept], v[i]);  // the dropped one's buffers stay for reuse
      ++kept;
    }
  return kept;
}

template <class Pair>
void finish(std::vector<Pair>& v, size_t n, std::vector<std::string_view>& scratch) {
  if (n > 1 && has_duplicate_names(v, n, scratch))
    n = merge_duplicate_names(v, n);
  v.resize(n);
}

// --- JSON --------------------------------------------------------------------

decode_result invalid_json(simdjson::error_code e) {
  return malformed(std::string{"invalid JSON: "} + simdjson::error_message(e));
}

std::string_view trim_right(std::string_view s) {
  const auto last = s.find_last_not_of(" \t\r\n");
  return last == std::string_view::npos ? std::string_view{} : s.substr(0, last + 1);
}

size_t skip_digits(std::string_view s, size_t i) {
  while (i < s.size() && s[i] >= '0' && s[i] <= '9')
    ++i;
  return i;
}

/// RFC 8259: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number(std::string_view s) {
  size_t i = s.starts_with('-') ? 1 : 0;
  if (i == s.size())
    return false;
  if (s[i] == '0')
    ++i;
  else if (auto end = skip_digits(s, i); end > i)
    i = end;
  else
    return false;
  if (i < s.size() && s[i] == '.') {
    auto end = skip_digits(s, i + 1);
    if (end == i + 1)
      return false;
    i = end;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-'))
      ++i;
    auto end = skip_digits(s, i);
    if (end == i)
      return false;
    i = end;
  }
  return i == s.size();
}

bool is_json_integer(std::string_view s) {
  return is_json_number(s) && s.find_first_of(".eE") == std::string_view::npos;
}

// The type of `v`. A null is consumed here (simdjson's type() only looks at
// the first letter, so "nul" would otherwise pass as null).
simdjson::error_code type_of(od::value& v, od::json_type& t) {
  if (auto e = v.type().get(t))
    return e;
  if (t == od::json_type::null) {
    bool is_null = false;
    if (auto e = v.is_null().get(is_null))
      return e;
    if (!is_null)
      return simdjson::N_ATOM_ERROR;
  }
  return simdjson::SUCCESS;
}

// Top-level fields set to null count as absent, as in protobuf's JSON mapping.
decode_result read_string_field(od::value& v, const char* name, std::string& out) {
  od::json_type t;
  if (auto e = type_of(v, t))
    return invalid_json(e);
  if (t == od::json_type::null) {
    out.clear();
    return std::nullopt;
  }
  if (t != od::json_type::string)
    return malformed(std::string{"field \""} + name + "\" must be a string");
  std::string_view s;
  if (auto e = v.get_string().get(s))
    return invalid_json(e);
  out.assign(s.data(), s.size());
  return std::nullopt;
}

// Reads `v` into `n` when it is a number simdjson can represent (not so a
// big integer). `t` receives the type. Fails when the text is not JSON.
simdjson::error_code read_number(od::value& v, od::json_type& t, std::optional<od::number>& n) {
  if (auto e = type_of(v, t))
    return e;
  if (t != od::json_type::number)
    return simdjson::SUCCESS;
  const auto text = trim_right(v.raw_json_token());
  od::number number;
  if (auto e = v.get_number().get(number))
    return is_json_integer(text) ? simdjson::SUCCESS : e;
  n = number;
  return simdjson::SUCCESS;
}

decode_result read_sequence(od::value& v, uint64_t& out) {
  od::json_type t;
  std::optional<od::number> n;
  if (auto e = read_number(v, t, n))
    return invalid_json(e);
  if (t == od::json_type::null) {
    out = 0;
    return std::nullopt;
  }
  if (n && n->is_int64() && n->get_int64() >= 0) {
    out = static_cast<uint64_t>(n->get_int64());
    return std::nullopt;
  }
  if (n && n->is_uint64()) {
    out = n->get_uint64();
    return std::nullopt;
  }
  return malformed("field \"sequence\" must be a non-negative integer");
}

decode_result read_source_time(od::value& v, int64_t& out) {
  od::json_type t;
  std::optional<od::number> n;
  if (auto e = read_number(v, t, n))
    return invalid_json(e);
  if (t == od::json_type::null) {
    out = 0;
    return std::nullopt;
  }
  if (n && n->is_int64()) {
    out = n->get_int64();
    return std::nullopt;
  }
  return malformed("field \"source_time_ms\" must be an integer");
}

decode_result beyond_int64(std::string_view name) {
  return malformed("metric " + quote_text(name) +
                   " is an integer outside the int64 range: add a decimal point to send it as a "
                   "double");
}

// Integers (no fraction, no exponent) become int64, other numbers double.
decode_result read_metric_number(od::value& v, std::string_view name, core::value& out) {
  const auto text = trim_right(v.raw_json_token());
  od::number n;
  if (auto e = v.get_number().get(n)) {
    if (is_json_integer(text))
      return beyond_int64(name);
    return malformed("metric " + quote_text(name) +
                     " is not a valid number: " + simdjson::error_message(e));
  }
  switch (n.get_number_type()) {
    case od::number_type::signed_integer:
      out.emplace<int64_t>(n.get_int64());
      return std::nullopt;
    case od::number_type::floating_point_number:
      out.emplace<double>(n.get_double());
      return std::nullopt;
    case od::number_type::unsigned_integer:
      break;
  }
  return beyond_int64(name);
}

/// Walks the object `field` ("metrics" or "attributes"), calling
/// `on_entry(name, value, type)` for each member. null counts as absent; a
/// repeated field replaces the earlier one (`n` restarts at 0).
template <class OnEntry>
decode_result for_each_member(od::value& v, const char* field, size_t& n, OnEntry on_entry) {
  od::json_type t;
  if (auto e = type_of(v, t))
    return invalid_json(e);
  n = 0;
  if (t == od::json_type::null)
    return std::nullopt;
  if (t != od::json_type::object)
    return malformed(std::string{"field \""} + field + "\" must be an object");
  od::object obj;
  if (auto e = v.get_object().get(obj))
    return invalid_json(e);
  for (auto member : obj) {
    std::string_view name;
    if (auto e = member.unescaped_key().get(name))
      return invalid_json(e);
    od::value mv;
    if (auto e = member.value().get(mv))
      return invalid_json(e);
    od::json_type mt;
    if (auto e = type_of(mv, mt))
      return invalid_json(e);
    if (auto err = on_entry(name, mv, mt))
      return err;
  }
  return std::nullopt;
}

decode_result read_metrics(od::value& v, core::telemetry& out, size_t& n) {
  return for_each_member(
      v, "metrics", n,
      [&](std::string_view name, od::value& mv, od::json_type mt) -> decode_result {
        auto& slot = next_slot(out.metrics, n);
        slot.first.assign(name.data(), name.size());
        switch (mt) {
          case od::json_type::number:
            return read_metric_number(mv, name, slot.second);
          case od::json_type::boolean: {
            bool b = false;
            if (mv.get_bool().get(b))  // simdjson says "wrong type" for e.g. "tru"
              return invalid_json(trim_right(mv.raw_json_token()).starts_with('t')
                                      ? simdjson::T_ATOM_ERROR
                                      : simdjson::F_ATOM_ERROR);
            slot.second.emplace<bool>(b);
            return std::nullopt;
          }
          case od::json_type::string: {
            std::string_view s;
            if (auto e = mv.get_string().get(s))
              return invalid_json(e);
            assign_text(slot.second, s);
            return std::nullopt;
          }
          default:
            return malformed("metric " + quote_text(name) + " must be a number, boolean or string");
        }
      });
}

// Attribute values are text. A number is kept exactly as written ("year":
// 2019 -> "2019", 1.50 -> "1.50"): numeric codes such as a model year or a
// site number are common in device metadata, and no precision is lost. Other
// types are rejected, since their text form would be a guess.
decode_result read_attributes(od::value& v, core::telemetry& out, size_t& n) {
  return for_each_member(
      v, "attributes", n,
      [&](std::string_view name, od::value& av, od::json_type at) -> decode_result {
        std::string_view text;
        if (at == od::json_type::string) {
          if (auto e = av.get_string().get(text))
            return invalid_json(e);
        } else if (at == od::json_type::number) {
          text = trim_right(av.raw_json_token());
          if (!is_json_number(text))
            return invalid_json(simdjson::NUMBER_ERROR);
        } else {
          return malformed("attribute " + quote_text(name) + " must be a string or a number");
        }
        auto& slot = next_slot(out.attributes, n);
        slot.first.assign(name.data(), name.size());
        slot.second.assign(text.data(), text.size());
        return std::nullopt;
      });
}

// The root must be an object; a scalar root is checked first so that text
// that is not JSON at all ("hello") is reported as invalid JSON.
decode_result root_not_object(od::document& doc, od::json_type t) {
  simdjson::error_code check = simdjson::SUCCESS;
  const char* what = "an array";
  switch (t) {
    case od::json_type::number: {
      od::number n;
      check = doc.get_number().get(n);
      what = "a number";
      break;
    }
    case od::json_type::string: {
      std::string_view s;
      check = doc.get_string().get(s);
      what = "a string";
      break;
    }
    case od::json_type::boolean: {
      bool b = false;
      check = doc.get_bool().get(b);
      what = "a boolean";
      break;
    }
    case od::json_type::null: {
      bool is_null = false;
      check = doc.is_null().get(is_null);
      if (!check && !is_null)
        check = simdjson::N_ATOM_ERROR;
      what = "null";
      break;
    }
    default:
      break;
  }
  if (check)
    return invalid_json(check);
  return malformed(std::string{"payload must be a JSON object, not "} + what);
}

// Unknown top-level fields belong to newer producers and are skipped. On
// Demand does not validate what it skips, so e.g. a bad literal inside an
// unknown field goes unnoticed; everything that is read is validated.
decode_result read_document(od::document& doc, core::telemetry& out, size_t& n_attributes,
                            size_t& n_metrics) {
  od::json_type t;
  if (auto e = doc.type().get(t))
    return invalid_json(e);
  if (t != od::json_type::object)
    return root_not_object(doc, t);
  od::object root;
  if (auto e = doc.get_object().get(root))
    return invalid_json(e);
  for (auto field : root) {
    std::string_view key;
    if (auto e = field.unescaped_key().get(key))
      return invalid_json(e);
    od::value v;
    if (auto e = field.value().get(v))
      return invalid_json(e);
    decode_result err;
    if (key == "asset_id")
      err = read_string_field(v, "asset_id", out.asset_id);
    else if (key == "kind")
      err = read_string_field(v, "kind", out.kind);
    else if (key == "tenant")
      err = read_string_field(v, "tenant", out.tenant);
    else if (key == "sequence")
      err = read_sequence(v, out.sequence);
    else if (key == "source_time_ms")
      err = read_source_time(v, out.source_time_ms);
    else if (key == "attributes")
      err = read_attributes(v, out, n_attributes);
    else if (key == "metrics")
      err = read_metrics(v, out, n_metrics);
    if (err)
      return err;
  }
  // On Demand stops after the root object: reject whatever follows it.
  if (!doc.current_location().error())
    return malformed("invalid JSON: unexpected content after the top-level object");
  return std::nullopt;
}

// --- protobuf ----------------------------------------------------------------
//
// fleettwin.v1.Telemetry is read straight from the wire format into
// core::telemetry. The generated parser builds two hash maps per record and
// costs several times more than the rest of decoding; this reader allocates
// nothing. It follows the generated parser's rules: the last value of a field
// wins, unknown fields (and known fields with an unexpected wire type) are
// skipped, strings must be UTF-8 (proto3), a repeated map key keeps the last
// entry. tests/services/decoder_test.cpp checks it against the generated
// parser on random and corrupted payloads.

enum wire_type : uint32_t {
  varint = 0,
  fixed64 = 1,
  length_delimited = 2,
  start_group = 3,
  end_group = 4,
  fixed32 = 5,
};

/// protobuf's default recursion limit, applied to (deprecated) groups.
constexpr int max_group_depth = 100;

class wire_reader {
public:
  explicit wire_reader(std::string_view bytes)
      : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}

  bool at_end() const {
    return p_ == end_;
  }

  /// At most `max_bytes` (10 for a value, 5 for a tag or a length); bits
  /// beyond 64 are dropped, as protobuf does.
  bool read_varint(uint64_t& v, int max_bytes = 10) {
    uint64_t result = 0;
    for (int i = 0; i < max_bytes; ++i) {
      if (p_ == end_)
        return false;
      const auto byte = static_cast<uint8_t>(*p_++);
      result |= uint64_t{byte & 0x7fu} << (7 * i);
      if (byte < 0x80) {
        v = result;
        return true;
      }
    }
    return false;
  }

  /// Tags are truncated to 32 bits, as protobuf does; field 0 is invalid.
  bool read_tag(uint32_t& field, uint32_t& type) {
    uint64_t raw = 0;
    if (!read_varint(raw, 5))
      return false;
    const auto tag = static_cast<uint32_t>(raw);
    field = tag >> 3;
    type = tag & 7;
    return field != 0;
  }

  bool read_fixed64(uint64_t& v) {
    if (end_ - p_ < 8)
      return false;
    v = 0;
    for (int i = 7; i >= 0; --i)
      v = v << 8 | static_cast<uint8_t>(p_[i]);
    p_ += 8;
    return true;
  }

  bool read_bytes(std::string_view& v) {
    uint64_t n = 0;
    if (!read_varint(n, 5) || n > static_cast<uint64_t>(end_ - p_))
      return false;
    v = std::string_view{p_, static_cast<size_t>(n)};
    p_ += n;
    return true;
  }

  bool skip(uint32_t field, uint32_t type, int depth = 0) {
    switch (type) {
      case varint: {
        uint64_t v = 0;
        return read_varint(v);
      }
      case fixed64:
        return skip_bytes(8);
      case length_delimited: {
        std::string_view v;
        return read_bytes(v);
      }
      case fixed32:
        return skip_bytes(4);
      case start_group:
        if (depth >= max_group_depth)
          return false;
        for (;;) {
          uint32_t f = 0;
          uint32_t t = 0;
          if (!read_tag(f, t))
            return false;
          if (t == end_group)
            return f == field;
          if (!skip(f, t, depth + 1))
            return false;
        }
      default:
        return false;  // a stray end-group, or wire types 6 and 7
    }
  }

private:
  bool skip_bytes(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n)
      return false;
    p_ += n;
    return true;
  }

  const char* p_;
  const char* end_;
};

bool valid_utf8(std::string_view s) {
  // Names and short values are nearly always ASCII: check that inline.
  if (s.size() < 64) {
    bool ascii = true;
    for (char c : s)
      ascii &= static_cast<uint8_t>(c) < 0x80;
    if (ascii)
      return true;
  }
  return simdjson::validate_utf8(s.data(), s.size());
}

bool read_string(wire_reader& in, std::string& out) {
  std::string_view s;
  if (!in.read_bytes(s) || !valid_utf8(s))
    return false;
  out.assign(s.data(), s.size());
  return true;
}

/// map<string, string> entry: key = 1, value = 2.
bool read_attribute_entry(std::string_view bytes, std::pair<std::string, std::string>& out) {
  out.first.clear();
  out.second.clear();
  wire_reader in{bytes};
  while (!in.at_end()) {
    uint32_t field = 0;
    uint32_t type = 0;
    if (!in.read_tag(field, type))
      return false;
    bool ok = false;
    if (field == 1 && type == length_delimited)
      ok = read_string(in, out.first);
    else if (field == 2 && type == length_delimited)
      ok = read_string(in, out.second);
    else
      ok = in.skip(field, type);
    if (!ok)
      return false;
  }
  return true;
}

/// fleettwin.v1.Value: a oneof of double = 1, int64 = 2, bool = 3, string = 4.
/// Occurrences merge, so `has_value` stays set once any kind was seen.
bool read_value(std::string_view bytes, core::value& out, bool& has_value) {
  wire_reader in{bytes};
  while (!in.at_end()) {
    uint32_t field = 0;
    uint32_t type = 0;
    if (!in.read_tag(field, type))
      return false;
    uint64_t raw = 0;
    std::string_view s;
    if (field == 1 && type == fixed64) {
      if (!in.read_fixed64(raw))
        return false;
      out.emplace<double>(std::bit_cast<double>(raw));
    } else if (field == 2 && type == varint) {
      if (!in.read_varint(raw))
        return false;
      out.emplace<int64_t>(static_cast<int64_t>(raw));
    } else if (field == 3 && type == varint) {
      if (!in.read_varint(raw))
        return false;
      out.emplace<bool>(raw != 0);
    } else if (field == 4 && type == length_delimited) {
      if (!in.read_bytes(s) || !valid_utf8(s))
        return false;
      assign_text(out, s);
    } else {
      if (!in.skip(field, type))
        return false;
      continue;
    }
    has_value = true;
  }
  return true;
}

/// map<string, Value> entry: key = 1, value = 2.
bool read_metric_entry(std::string_view bytes, std::pair<std::string, core::value>& out,
                       bool& has_value) {
  out.first.clear();
  has_value = false;
  wire_reader in{bytes};
  while (!in.at_end()) {
    uint32_t field = 0;
    uint32_t type = 0;
    if (!in.read_tag(field, type))
      return false;
    std::string_view value;
    bool ok = false;
    if (field == 1 && type == length_delimited)
      ok = read_string(in, out.first);
    else if (field == 2 && type == length_delimited)
      ok = in.read_bytes(value) && read_value(value, out.second, has_value);
    else
      ok = in.skip(field, type);
    if (!ok)
      return false;
  }
  return true;
}

decode_result not_protobuf() {
  return malformed("payload is not a valid fleettwin.v1.Telemetry protobuf");
}

}  // namespace

struct telemetry_codec::buffers {
  od::parser parser;
  std::unique_ptr<char[]> json;  // payload copy + SIMDJSON_PADDING
  size_t json_capacity = 0;
  std::vector<std::string_view> names;  // duplicate-name scratch

  decode_result decode_protobuf(std::string_view payload, core::telemetry& out) {
    out.asset_id.clear();
    out.kind.clear();
    out.tenant.clear();
    out.sequence = 0;
    out.source_time_ms = 0;
    size_t n_attributes = 0;
    size_t n_metrics = 0;
    // A metric entry without a value, reported once the whole payload parsed
    // (so a later, corrupt byte still reads as "not protobuf"). Checked per
    // entry: rejected even if a later entry of the same name has a value.
    constexpr size_t no_entry = SIZE_MAX;
    size_t valueless = no_entry;
    wire_reader in{payload};
    while (!in.at_end()) {
      uint32_t field = 0;
      uint32_t type = 0;
      if (!in.read_tag(field, type))
        return not_protobuf();
      uint64_t raw = 0;
      std::string_view entry;
      bool ok = false;
      if (type == length_delimited && field >= 1 && field <= 3) {
        ok = read_string(in, field == 1 ? out.asset_id : field == 2 ? out.kind : out.tenant);
      } else if (field == 4 && type == varint) {
        ok = in.read_varint(out.sequence);
      } else if (field == 5 && type == varint) {
        ok = in.read_varint(raw);
        out.source_time_ms = static_cast<int64_t>(raw);
      } else if (field == 6 && type == length_delimited) {
        ok = in.read_bytes(entry) &&
             read_attribute_entry(entry, next_slot(out.attributes, n_attributes));
      } else if (field == 7 && type == length_delimited) {
        bool has_value = false;
        ok = in.read_bytes(entry) &&
             read_metric_entry(entry, next_slot(out.metrics, n_metrics), has_value);
        if (ok && !has_value && valueless == no_entry)
          valueless = n_metrics - 1;
      } else {
        ok = in.skip(field, type);
      }
      if (!ok)
        return not_protobuf();
    }
    if (valueless != no_entry)
      return malformed("metric " + quote_text(out.metrics[valueless].first) + " has no value");
    finish(out.attributes, n_attributes, names);
    finish(out.metrics, n_metrics, names);
    return std::nullopt;
  }

  decode_result decode_json(std::string_view payload, core::telemetry& out) {
    const size_t needed = payload.size() + simdjson::SIMDJSON_PADDING;
    if (json_capacity < needed) {
      json_capacity = (needed + 4095) / 4096 * 4096;
      json.reset(new char[json_capacity]);
    }
    if (!payload.empty())
      std::memcpy(json.get(), payload.data(), payload.size());
    std::memset(json.get() + payload.size(), 0, simdjson::SIMDJSON_PADDING);

    out.asset_id.clear();
    out.kind.clear();
    out.tenant.clear();
    out.sequence = 0;
    out.source_time_ms = 0;
    size_t n_attributes = 0;
    size_t n_metrics = 0;
    decode_result err;
    od::document doc;
    if (auto e = parser.iterate(json.get(), payload.size(), json_capacity).get(doc))
      err = invalid_json(e);
    else
      err = read_document(doc, out, n_attributes, n_metrics);
    if (json_capacity > retained_json_bytes) {
      parser = od::parser{};
      json.reset();
      json_capacity = 0;
    }
    if (err)
      return err;
    finish(out.attributes, n_attributes, names);
    finish(out.metrics, n_metrics, names);
    return std::nullopt;
  }
};

telemetry_codec::telemetry_codec(size_t max_record_bytes)
    : max_record_bytes_(max_record_bytes), buf_(std::make_unique<buffers>()) {}

telemetry_codec::~telemetry_codec() = default;

std::optional<std::pair<std::string, std::string>> telemetry_codec::decode(
    const runtime::raw_record& r, core::telemetry& out) {
  if (r.payload.size() > max_record_bytes_)
    return fail("oversized", "record of " + std::to_string(r.payload.size()) +
                                 " bytes exceeds the limit of " +
                                 std::to_string(max_record_bytes_) + " bytes (--max-record-bytes)");
  decode_result err;
  switch (format_of(r.content_type)) {
    case payload_format::protobuf:
      err = buf_->decode_protobuf(r.payload, out);
      break;
    case payload_format::json:
      err = buf_->decode_json(r.payload, out);
      break;
    case payload_format::unsupported:
      return fail("unsupported_content_type",
                  "content-type " + quote_text(r.content_type) +
                      " is not supported: use application/x-protobuf or application/json");
  }
  if (err)
    return err;
  return apply_key(r.key, out.asset_id);
}

std::optional<std::pair<std::string, std::string>> telemetry_codec::decode_relations(
    const runtime::raw_record& r, std::string& child, core::relation_update& out) {
  if (r.payload.size() > max_record_bytes_)
    return fail("oversized", "record of " + std::to_string(r.payload.size()) +
                                 " bytes exceeds the limit of " +
                                 std::to_string(max_record_bytes_));
  // Relations change rarely: the generated message is simple and fast enough.
  fleettwin::v1::RelationRecord rec;
  switch (format_of(r.content_type)) {
    case payload_format::protobuf:
      if (!rec.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size())))
        return malformed("not a fleettwin.v1.RelationRecord");
      break;
    case payload_format::json: {
      google::protobuf::util::JsonParseOptions opts;
      auto st = google::protobuf::util::JsonStringToMessage(
          std::string_view{r.payload.data(), r.payload.size()}, &rec, opts);
      if (!st.ok())
        return malformed("not a RelationRecord in JSON: " + std::string{st.message()});
      break;
    }
    default:
      return fail("unsupported_content_type",
                  "content-type " + quote_text(r.content_type) +
                      " is not supported: use application/x-protobuf or application/json");
  }
  child = rec.child();
  if (child.empty())
    child = std::string{r.key};
  if (child != r.key)
    return fail("key_mismatch", "record key " + quote_text(r.key) + " is not the child " +
                                    quote_text(child) + ": key relation records by the child id");
  auto parent_id = [](const std::string& name) {
    constexpr std::string_view prefix = "aggregates/";
    return std::string_view{name}.starts_with(prefix) ? name.substr(prefix.size()) : name;
  };
  out = {};
  out.origin = core::relation_origin::topic;
  out.replace = rec.replace();
  for (const auto& rel : rec.set()) {
    if (rel.type().empty() || rel.parent().empty())
      return fail("invalid", "every relation in set needs a type and a parent");
    out.set.push_back({rel.type(), parent_id(rel.parent()), core::relation_origin::topic});
  }
  for (const auto& p : rec.remove())
    out.remove.push_back(parent_id(p));
  if (out.set.empty() && out.remove.empty() && !out.replace)
    return fail("invalid", "the record sets and removes nothing");
  return std::nullopt;
}

std::unique_ptr<runtime::telemetry_decoder> make_telemetry_decoder(size_t max_record_bytes) {
  return std::make_unique<telemetry_codec>(max_record_bytes);
}

}  // namespace fleettwin::kafka
