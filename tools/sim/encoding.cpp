#include "tools/sim/encoding.hpp"

#include <charconv>
#include <cmath>
#include <cstring>

namespace fleettwin::sim {

namespace protowire {

namespace {
constexpr uint32_t wire_varint = 0;
constexpr uint32_t wire_fixed64 = 1;
constexpr uint32_t wire_len = 2;
}  // namespace

void append_varint(std::string& out, uint64_t v) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out.append(buf, n);
}

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void append_tag(std::string& out, uint32_t field, uint32_t wire_type) {
  append_varint(out, (static_cast<uint64_t>(field) << 3) | wire_type);
}

void append_bytes_field(std::string& out, uint32_t field, std::string_view bytes) {
  append_tag(out, field, wire_len);
  append_varint(out, bytes.size());
  out.append(bytes);
}

size_t bytes_field_size(size_t len) {
  return 1 + varint_size(len) + len;
}

namespace {

void append_fixed64(std::string& out, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) {
    buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
  out.append(buf, 8);
}

size_t value_size(const metric_value& v) {
  switch (v.index()) {
    case 0:
      return 1 + 8;
    case 1:
      return 1 + varint_size(static_cast<uint64_t>(std::get<int64_t>(v)));
    default:
      return 2;
  }
}

// fleettwin.v1.Value: double_value = 1, int_value = 2, bool_value = 3.
void append_value(std::string& out, const metric_value& v) {
  switch (v.index()) {
    case 0: {
      uint64_t bits;
      double d = std::get<double>(v);
      std::memcpy(&bits, &d, sizeof bits);
      append_tag(out, 1, wire_fixed64);
      append_fixed64(out, bits);
      break;
    }
    case 1:
      append_tag(out, 2, wire_varint);
      append_varint(out, static_cast<uint64_t>(std::get<int64_t>(v)));
      break;
    default:
      append_tag(out, 3, wire_varint);
      out.push_back(std::get<bool>(v) ? 1 : 0);
      break;
  }
}

}  // namespace
}  // namespace protowire

std::string_view content_type(encoding e) {
  return e == encoding::json ? content_type_json : content_type_protobuf;
}

std::string_view to_string(payload_format f) {
  switch (f) {
    case payload_format::protobuf:
      return "protobuf";
    case payload_format::json:
      return "json";
    case payload_format::mixed:
      return "mixed";
  }
  return "unknown";
}

std::optional<payload_format> parse_payload_format(std::string_view s) {
  for (auto f : {payload_format::protobuf, payload_format::json, payload_format::mixed}) {
    if (to_string(f) == s) {
      return f;
    }
  }
  return std::nullopt;
}

void encode_protobuf(const sample& s, std::string& out) {
  using namespace protowire;
  if (!s.asset_id.empty()) {
    append_bytes_field(out, 1, s.asset_id);
  }
  if (!s.kind.empty()) {
    append_bytes_field(out, 2, s.kind);
  }
  if (!s.tenant.empty()) {
    append_bytes_field(out, 3, s.tenant);
  }
  if (s.sequence != 0) {
    append_tag(out, 4, wire_varint);
    append_varint(out, s.sequence);
  }
  if (s.source_time_ms != 0) {
    append_tag(out, 5, wire_varint);
    append_varint(out, static_cast<uint64_t>(s.source_time_ms));
  }
  for (size_t i = 0; i < s.attribute_size; ++i) {
    const auto& [key, val] = s.attributes[i];
    append_tag(out, 6, wire_len);
    append_varint(out, bytes_field_size(key.size()) + bytes_field_size(val.size()));
    append_bytes_field(out, 1, key);
    append_bytes_field(out, 2, val);
  }
  for (size_t i = 0; i < s.metric_size; ++i) {
    const auto& m = s.metrics[i];
    size_t vsize = value_size(m.value);
    append_tag(out, 7, wire_len);
    append_varint(out, bytes_field_size(m.name.size()) + bytes_field_size(vsize));
    append_bytes_field(out, 1, m.name);
    append_tag(out, 2, wire_len);
    append_varint(out, vsize);
    append_value(out, m.value);
  }
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      out.append("\\u00");
      out.push_back(hex[u >> 4]);
      out.push_back(hex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_json_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out.append("null");
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string_view text(buf, static_cast<size_t>(end - buf));
  out.append(text);
  if (text.find_first_of(".e") == std::string_view::npos) {
    out.append(".0");
  }
}

namespace {

void append_json_int(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(end - buf));
}

void append_json_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(end - buf));
}

}  // namespace

void encode_json(const sample& s, std::string& out) {
  out.append("{\"asset_id\":");
  append_json_string(out, s.asset_id);
  out.append(",\"kind\":");
  append_json_string(out, s.kind);
  out.append(",\"tenant\":");
  append_json_string(out, s.tenant);
  out.append(",\"sequence\":");
  append_json_uint(out, s.sequence);
  out.append(",\"source_time_ms\":");
  append_json_int(out, s.source_time_ms);
  out.append(",\"attributes\":{");
  for (size_t i = 0; i < s.attribute_size; ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    append_json_string(out, s.attributes[i].first);
    out.push_back(':');
    append_json_string(out, s.attributes[i].second);
  }
  out.append("},\"metrics\":{");
  for (size_t i = 0; i < s.metric_size; ++i) {
    const auto& m = s.metrics[i];
    if (i > 0) {
      out.push_back(',');
    }
    append_json_string(out, m.name);
    out.push_back(':');
    switch (m.value.index()) {
      case 0:
        append_json_double(out, std::get<double>(m.value));
        break;
      case 1:
        append_json_int(out, std::get<int64_t>(m.value));
        break;
      default:
        out.append(std::get<bool>(m.value) ? "true" : "false");
        break;
    }
  }
  out.append("}}");
}

void encode(encoding e, const sample& s, std::string& out) {
  if (e == encoding::json) {
    encode_json(s, out);
  } else {
    encode_protobuf(s, out);
  }
}

void encode_relation_protobuf(const relation_change& r, std::string& out) {
  using namespace protowire;
  append_bytes_field(out, 1, r.child);
  if (r.set) {
    // fleettwin.v1.Relation: type = 1, parent = 3.
    append_tag(out, 2, wire_len);
    append_varint(out, bytes_field_size(r.type.size()) + bytes_field_size(r.parent.size()));
    append_bytes_field(out, 1, r.type);
    append_bytes_field(out, 3, r.parent);
  } else {
    append_bytes_field(out, 3, r.parent);
  }
}

void encode_relation_json(const relation_change& r, std::string& out) {
  out.append("{\"child\":");
  append_json_string(out, r.child);
  if (r.set) {
    out.append(",\"set\":[{\"type\":");
    append_json_string(out, r.type);
    out.append(",\"parent\":");
    append_json_string(out, r.parent);
    out.append("}]}");
  } else {
    out.append(",\"remove\":[");
    append_json_string(out, r.parent);
    out.append("]}");
  }
}

void encode_relation(encoding e, const relation_change& r, std::string& out) {
  if (e == encoding::json) {
    encode_relation_json(r, out);
  } else {
    encode_relation_protobuf(r, out);
  }
}

}  // namespace fleettwin::sim
