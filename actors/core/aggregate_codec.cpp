#include "actors/core/aggregate_codec.hpp"

#include "actors/core/wire.hpp"

namespace fleettwin::core {

using namespace wire;

namespace {

constexpr uint8_t header_format_v1 = 1;
/// v1 and the kind's revision at the end.
constexpr uint8_t header_format_v2 = 2;
/// v2 and the member twins' tenant at the end.
constexpr uint8_t header_format_v3 = 3;
constexpr uint8_t member_format_v1 = 1;
constexpr uint8_t contributions_format_v1 = 1;

void put_values(std::string& out, const member_values& v) {
  put_string(out, v.kind);
  put_string(out, v.tenant);
  put_varint(out, v.version);
  put_signed(out, v.last_seen_ms);
  put_varint(out, v.reported.size());
  for (const auto& [k, x] : v.reported) {
    put_string(out, k);
    put_value(out, x);
  }
  put_varint(out, v.attributes.size());
  for (const auto& [k, x] : v.attributes) {
    put_string(out, k);
    put_string(out, x);
  }
}

void get_values(reader& r, member_values& v) {
  v.kind = r.bytes();
  v.tenant = r.bytes();
  v.version = r.varint();
  v.last_seen_ms = r.signed_varint();
  v.reported.clear();
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    std::string k{r.bytes()};
    v.reported.emplace_back(std::move(k), r.val());
  }
  v.attributes.clear();
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    std::string k{r.bytes()};
    v.attributes.emplace_back(std::move(k), std::string{r.bytes()});
  }
}

void put_strings(std::string& out, const std::vector<std::string>& v) {
  put_varint(out, v.size());
  for (const auto& s : v)
    put_string(out, s);
}

void get_strings(reader& r, std::vector<std::string>& v) {
  v.clear();
  for (uint64_t n = r.count(); n > 0 && r.ok; --n)
    v.emplace_back(r.bytes());
}

std::optional<std::string> finish(const reader& r, const char* what) {
  if (!r.ok)
    return std::string{"truncated or corrupt "} + what;
  if (!r.in.empty())
    return std::string{"trailing bytes after "} + what;
  return std::nullopt;
}

}  // namespace

void encode_aggregate_header(const aggregate_header& h, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(header_format_v3));
  put_string(out, h.id);
  put_string(out, h.kind);
  put_varint(out, h.version);
  put_signed(out, h.updated_ms);
  put_varint(out, h.members);
  put_varint(out, h.twins);
  put_varint(out, h.in_transit);
  put_varint(out, h.measures.size());
  for (const auto& [name, v] : h.measures) {
    put_string(out, name);
    out.push_back(v ? 1 : 0);
    if (v)
      put_double(out, *v);
  }
  put_varint(out, h.kind_revision);
  put_string(out, h.tenant);
}

std::optional<std::string> decode_aggregate_header(std::string_view bytes, aggregate_header& out) {
  out = aggregate_header{};
  reader r{bytes};
  const auto fmt = r.byte();
  if (fmt != header_format_v1 && fmt != header_format_v2 && fmt != header_format_v3)
    return r.ok ? "unknown aggregate header format " + std::to_string(fmt)
                : std::string{"empty aggregate header"};
  out.id = r.bytes();
  out.kind = r.bytes();
  out.version = r.varint();
  out.updated_ms = r.signed_varint();
  out.members = r.varint();
  out.twins = r.varint();
  out.in_transit = r.varint();
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    std::string name{r.bytes()};
    std::optional<double> v;
    if (r.byte() != 0)
      v = r.real();
    out.measures.emplace_back(std::move(name), v);
  }
  if (fmt >= header_format_v2)
    out.kind_revision = r.varint();
  if (fmt >= header_format_v3)
    out.tenant = r.bytes();
  return finish(r, "aggregate header");
}

void encode_member_entry(const member_entry& e, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(member_format_v1));
  out.push_back(e.twin ? 1 : 0);
  put_varint(out, e.depth);
  put_signed(out, e.held_until);
  put_varint(out, e.paths.size());
  for (const auto& p : e.paths) {
    put_string(out, p.via);
    put_varint(out, p.depth);
    put_string(out, p.type);
  }
  put_strings(out, e.moving_to);
  if (e.twin)
    put_values(out, e.values);
}

std::optional<std::string> decode_member_entry(std::string_view bytes, member_entry& out) {
  out = member_entry{};
  reader r{bytes};
  if (auto fmt = r.byte(); fmt != member_format_v1)
    return r.ok ? "unknown member format " + std::to_string(fmt) : std::string{"empty member"};
  out.twin = r.byte() != 0;
  out.depth = static_cast<uint32_t>(r.varint());
  out.held_until = r.signed_varint();
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    member_path p;
    p.via = r.bytes();
    p.depth = static_cast<uint32_t>(r.varint());
    p.type = r.bytes();
    out.paths.push_back(std::move(p));
  }
  get_strings(r, out.moving_to);
  if (out.twin)
    get_values(r, out.values);
  return finish(r, "member record");
}

void encode_contributions(const std::vector<contribution>& items, std::string& out) {
  std::vector<const contribution*> refs;
  refs.reserve(items.size());
  for (const auto& c : items)
    refs.push_back(&c);
  encode_contributions(refs, out);
}

void encode_contributions(const std::vector<const contribution*>& items, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(contributions_format_v1));
  put_varint(out, items.size());
  for (const auto* item : items) {
    const auto& c = *item;
    put_string(out, c.child);
    put_string(out, c.type);
    put_signed(out, c.origin_ms);
    put_varint(out, c.hops);
    put_varint(out, c.deltas.size());
    for (const auto& d : c.deltas) {
      put_string(out, d.id);
      out.push_back(static_cast<char>((d.present ? 1 : 0) | (d.twin ? 2 : 0)));
      put_varint(out, d.depth);
      put_strings(out, d.moving_to);
      if (d.twin && d.present)
        put_values(out, d.values);
      else
        put_varint(out, d.values.version);
    }
  }
}

std::optional<std::string> decode_contributions(std::string_view bytes, std::string_view parent,
                                                std::vector<contribution>& out) {
  reader r{bytes};
  if (auto fmt = r.byte(); fmt != contributions_format_v1)
    return r.ok ? "unknown contributions format " + std::to_string(fmt)
                : std::string{"empty contributions record"};
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    contribution c;
    c.parent = std::string{parent};
    c.child = r.bytes();
    c.type = r.bytes();
    c.origin_ms = r.signed_varint();
    c.hops = static_cast<uint32_t>(r.varint());
    for (uint64_t k = r.count(); k > 0 && r.ok; --k) {
      member_delta d;
      d.id = r.bytes();
      const auto flags = r.byte();
      d.present = (flags & 1) != 0;
      d.twin = (flags & 2) != 0;
      d.depth = static_cast<uint32_t>(r.varint());
      get_strings(r, d.moving_to);
      if (d.twin && d.present)
        get_values(r, d.values);
      else
        d.values.version = r.varint();
      c.deltas.push_back(std::move(d));
    }
    out.push_back(std::move(c));
  }
  return finish(r, "contributions record");
}

}  // namespace fleettwin::core
