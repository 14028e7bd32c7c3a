#include "actors/core/codec.hpp"

#include <bit>
#include <cstring>

#include "actors/core/wire.hpp"

namespace fleettwin::core {

using namespace wire;

namespace {

constexpr uint8_t twin_format_v1 = 1;
/// v2 appends the relations.
constexpr uint8_t twin_format_v2 = 3;
/// v3 appends the analytics of the numeric properties.
constexpr uint8_t twin_format_v3 = 4;
/// v4 adds each analysed property's data quality.
constexpr uint8_t twin_format_v4 = 5;
/// v5 appends the newest source time of any record (twin::newest_source_ms).
constexpr uint8_t twin_format_v5 = 6;
/// v6 appends when the twin was erased (twin::erased_ms).
constexpr uint8_t twin_format_v6 = 7;
/// v7 appends the open history segment (twin::open_history).
constexpr uint8_t twin_format_v7 = 8;
/// v8 writes reported and desired doubles as decimals where they are (put_compact_value)
/// and the statistics' and analytics' doubles with put_real (the simulated fleet's state
/// record 15% smaller).
constexpr uint8_t twin_format_v8 = 9;
constexpr uint8_t history_format_v1 = 1;
constexpr uint8_t history_segment_v1 = 2;
/// v2: a sample's value as put_compact_value writes it, and a flag instead of the time
/// and sequence when they are the previous sample's (the metrics of one record).
constexpr uint8_t history_segment_v2 = 3;
constexpr uint8_t sample_same_record = 0x80;

}  // namespace

void encode_twin(const twin& tw, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(twin_format_v8));
  put_string(out, tw.asset_id);
  put_string(out, tw.kind);
  put_string(out, tw.tenant);
  put_varint(out, tw.version);
  put_signed(out, tw.last_seen_ms);
  put_signed(out, tw.desired_updated_ms);
  put_varint(out, tw.applied_records);
  put_varint(out, tw.duplicates);
  put_varint(out, tw.out_of_order);
  put_varint(out, tw.window.highest());
  put_fixed64(out, tw.window.bits());
  put_varint(out, tw.history_segments);
  put_varint(out, tw.attributes.size());
  for (const auto& [k, v] : tw.attributes) {
    put_string(out, k);
    put_string(out, v);
  }
  put_varint(out, tw.reported.size());
  for (const auto& [name, rp] : tw.reported) {
    put_string(out, name);
    put_compact_value(out, rp.val);
    put_signed(out, rp.source_time_ms);
    put_signed(out, rp.ingest_time_ms);
    put_varint(out, rp.sequence);
    const auto& st = rp.stats;
    put_varint(out, st.count);
    put_varint(out, st.numeric_count);
    put_real(out, st.min);
    put_real(out, st.max);
    put_real(out, st.mean);
    put_signed(out, st.last_change_ms);
  }
  put_varint(out, tw.desired.size());
  for (const auto& [name, v] : tw.desired) {
    put_string(out, name);
    put_compact_value(out, v);
  }
  put_varint(out, tw.relations.size());
  for (const auto& r : tw.relations) {
    put_string(out, r.type);
    put_string(out, r.parent);
    out.push_back(static_cast<char>(r.origin));
  }
  put_varint(out, tw.analysis.size());
  for (const auto& [name, a] : tw.analysis) {
    put_string(out, name);
    encode_property_analytics(a.state, out);
    put_real(out, a.score);
    put_real(out, a.next);
    out.push_back(static_cast<char>(a.kind));
    encode_alert(a.alert, out);
    const auto& q = a.quality;
    out.push_back(static_cast<char>(q.flags | (q.failed ? 0x80 : 0)));
    put_real(out, q.bad_rate);
    put_real(out, q.missing_rate);
    put_varint(out, q.out_of_range_samples);
    put_varint(out, q.spikes);
    put_varint(out, q.missing_reports);
    put_signed(out, q.expected_interval_ms);
    put_signed(out, q.failure_eta_ms);
  }
  put_signed(out, tw.newest_source_ms);
  put_signed(out, tw.erased_ms);
  put_string(out, tw.open_history);
}

std::optional<std::string> decode_twin(std::string_view bytes, twin& out) {
  out = twin{};
  reader r{bytes};
  const auto fmt = r.byte();
  if (fmt != twin_format_v1 && fmt != twin_format_v2 && fmt != twin_format_v3 &&
      fmt != twin_format_v4 && fmt != twin_format_v5 && fmt != twin_format_v6 &&
      fmt != twin_format_v7 && fmt != twin_format_v8)
    return r.ok ? "unknown twin format " + std::to_string(fmt) : "empty twin record";
  out.asset_id = r.bytes();
  out.kind = r.bytes();
  out.tenant = r.bytes();
  out.version = r.varint();
  out.last_seen_ms = r.signed_varint();
  out.desired_updated_ms = r.signed_varint();
  out.applied_records = r.varint();
  out.duplicates = r.varint();
  out.out_of_order = r.varint();
  uint64_t highest = r.varint();
  uint64_t bits = r.fixed64();
  out.window.restore(highest, bits);
  out.history_segments = r.varint();
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    std::string k{r.bytes()};
    std::string v{r.bytes()};
    out.attributes.emplace(std::move(k), std::move(v));
  }
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    std::string name{r.bytes()};
    reported_property rp;
    rp.val = r.val();
    rp.source_time_ms = r.signed_varint();
    rp.ingest_time_ms = r.signed_varint();
    rp.sequence = r.varint();
    auto& st = rp.stats;
    st.count = r.varint();
    st.numeric_count = r.varint();
    const bool compact = fmt >= twin_format_v8;
    st.min = compact ? r.compact_real() : r.real();
    st.max = compact ? r.compact_real() : r.real();
    st.mean = compact ? r.compact_real() : r.real();
    st.last_change_ms = r.signed_varint();
    out.reported.emplace(std::move(name), std::move(rp));
  }
  for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
    std::string name{r.bytes()};
    out.desired.emplace(std::move(name), r.val());
  }
  if (fmt != twin_format_v1)
    for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
      relation rel;
      rel.type = r.bytes();
      rel.parent = r.bytes();
      rel.origin = static_cast<relation_origin>(r.byte());
      out.relations.push_back(std::move(rel));
    }
  if (fmt >= twin_format_v3)
    for (uint64_t n = r.count(); n > 0 && r.ok; --n) {
      std::string name{r.bytes()};
      property_analysis a;
      if (!decode_property_analytics(r.in, a.state))
        return std::string{"corrupt analytics of property \""} + name + "\" in twin record";
      a.score = fmt >= twin_format_v8 ? r.compact_real() : r.real();
      a.next = fmt >= twin_format_v8 ? r.compact_real() : r.real();
      const auto kind = r.byte();
      if (!r.ok || kind > static_cast<uint8_t>(anomaly_kind::stuck) || !decode_alert(r.in, a.alert))
        return std::string{"corrupt analytics of property \""} + name + "\" in twin record";
      a.kind = static_cast<anomaly_kind>(kind);
      if (fmt >= twin_format_v4) {
        auto& q = a.quality;
        const auto flags = r.byte();
        q.flags = flags & 0x7f;
        q.failed = (flags & 0x80) != 0;
        q.bad_rate = fmt >= twin_format_v8 ? r.compact_real() : r.real();
        q.missing_rate = fmt >= twin_format_v8 ? r.compact_real() : r.real();
        q.out_of_range_samples = r.varint();
        q.spikes = r.varint();
        q.missing_reports = r.varint();
        q.expected_interval_ms = r.signed_varint();
        q.failure_eta_ms = r.signed_varint();
      }
      out.analysis.emplace(std::move(name), std::move(a));
    }
  if (fmt >= twin_format_v5) {
    out.newest_source_ms = r.signed_varint();
    if (fmt >= twin_format_v6)
      out.erased_ms = r.signed_varint();
    if (fmt >= twin_format_v7)
      out.open_history = r.bytes();
  } else {
    // Older records: the newest stored sample is the best estimate there is.
    for (const auto& [name, rp] : out.reported)
      out.newest_source_ms = std::max(out.newest_source_ms, rp.source_time_ms);
  }
  if (!r.ok)
    return std::string{"truncated or corrupt twin record"};
  if (!r.in.empty())
    return std::string{"trailing bytes after twin record"};
  return std::nullopt;
}

void encode_history_point(const history_point& p, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(history_format_v1));
  put_value(out, p.val);
  put_signed(out, p.source_time_ms);
  put_varint(out, p.sequence);
}

std::optional<std::string> decode_history_point(std::string_view bytes, history_point& out) {
  reader r{bytes};
  if (r.byte() != history_format_v1)
    return std::string{"unknown history point format"};
  out.val = r.val();
  out.source_time_ms = r.signed_varint();
  out.sequence = r.varint();
  if (!r.ok || !r.in.empty())
    return std::string{"corrupt history point"};
  return std::nullopt;
}

void begin_history_segment(std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(history_segment_v2));
}

void append_history_sample(std::string& out, std::string_view property, const value& v,
                           int64_t source_time_ms, uint64_t sequence, bool same_record) {
  if (!out.empty() && static_cast<uint8_t>(out.front()) == history_segment_v1) {
    // A segment begun by an earlier version stays in its format until it closes.
    put_string(out, property);
    put_value(out, v);
    put_signed(out, source_time_ms);
    put_varint(out, sequence);
    return;
  }
  put_string(out, property);
  const size_t tag_at = out.size();
  put_compact_value(out, v);
  if (same_record) {
    out[tag_at] = static_cast<char>(static_cast<uint8_t>(out[tag_at]) | sample_same_record);
  } else {
    put_signed(out, source_time_ms);
    put_varint(out, sequence);
  }
}

std::optional<std::string> decode_history_segment(
    std::string_view bytes, const std::function<void(std::string_view, history_point&)>& fn) {
  reader r{bytes};
  const auto format = r.byte();
  if (format != history_segment_v1 && format != history_segment_v2)
    return std::string{"unknown history segment format"};
  history_point p;
  bool first = true;
  while (r.ok && !r.in.empty()) {
    auto property = r.bytes();
    if (format == history_segment_v1) {
      p.val = r.val();
    } else {
      const auto tag = r.byte();
      p.val = r.val(tag & ~sample_same_record);
      if ((tag & sample_same_record) != 0) {
        if (first || !r.ok)
          return std::string{"corrupt history segment"};  // no sample to share a time with
        fn(property, p);
        continue;
      }
    }
    p.source_time_ms = r.signed_varint();
    p.sequence = r.varint();
    if (!r.ok)
      break;
    first = false;
    fn(property, p);
  }
  if (!r.ok)
    return std::string{"corrupt history segment"};
  return std::nullopt;
}

}  // namespace fleettwin::core
