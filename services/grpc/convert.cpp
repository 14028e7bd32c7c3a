#include "services/grpc/convert.hpp"

#include <google/protobuf/io/coded_stream.h>

#include "actors/core/wire.hpp"
#include "fleettwin/v1/service.pb.h"

namespace fleettwin::grpc_api {

void to_proto(const core::value& v, fleettwin::v1::Value& out) {
  switch (v.index()) {
    case 0:
      out.set_double_value(std::get<double>(v));
      break;
    case 1:
      out.set_int_value(std::get<int64_t>(v));
      break;
    case 2:
      out.set_bool_value(std::get<bool>(v));
      break;
    default:
      out.set_string_value(std::get<std::string>(v));
  }
}

std::optional<core::value> from_proto(const fleettwin::v1::Value& v) {
  switch (v.kind_case()) {
    case fleettwin::v1::Value::kDoubleValue:
      return core::value{v.double_value()};
    case fleettwin::v1::Value::kIntValue:
      return core::value{static_cast<int64_t>(v.int_value())};
    case fleettwin::v1::Value::kBoolValue:
      return core::value{v.bool_value()};
    case fleettwin::v1::Value::kStringValue:
      return core::value{v.string_value()};
    default:
      return std::nullopt;
  }
}

namespace {

void reported_to_proto(const core::reported_property& rp, fleettwin::v1::ReportedProperty& out) {
  to_proto(rp.val, *out.mutable_value());
  out.set_source_time_ms(rp.source_time_ms);
  out.set_ingest_time_ms(rp.ingest_time_ms);
  out.set_sequence(rp.sequence);
}

}  // namespace

void to_proto(const core::twin_change& c, fleettwin::v1::TwinChange& out) {
  out.Clear();
  out.set_asset_id(c.asset_id);
  out.set_version(c.version);
  out.set_type(c.type == core::change_type::reported  ? fleettwin::v1::REPORTED
               : c.type == core::change_type::desired ? fleettwin::v1::DESIRED
                                                      : fleettwin::v1::ERASED);
  out.set_time_ms(c.time_ms);
  out.set_kind(c.kind);
  out.set_tenant(c.tenant);
  out.set_sequence(c.sequence);
  out.set_first_version(c.first());
  auto& reported = *out.mutable_reported();
  for (const auto& [name, rp] : c.reported)
    reported_to_proto(rp, reported[name]);
  auto& desired = *out.mutable_desired();
  for (const auto& [name, v] : c.desired)
    to_proto(v, desired[name]);
  for (const auto& name : c.removed)
    out.add_removed(name);
}

namespace {

// Protobuf's wire format: a field's key is (number << 3 | wire type).
constexpr uint32_t varint_type = 0;
constexpr uint32_t fixed64_type = 1;
constexpr uint32_t length_type = 2;

size_t varint_size(uint64_t x) {
  return google::protobuf::io::CodedOutputStream::VarintSize64(x);
}

void put_key(std::string& out, uint32_t field, uint32_t type) {
  core::wire::put_varint(out, field << 3 | type);
}

/// A varint field, left out when 0 (proto3); int64 as its two's complement.
void put_varint_field(std::string& out, uint32_t field, uint64_t x) {
  if (x == 0)
    return;
  put_key(out, field, varint_type);
  core::wire::put_varint(out, x);
}

size_t varint_field_size(uint64_t x) {
  return x == 0 ? 0 : 1 + varint_size(x);
}

void put_string_field(std::string& out, uint32_t field, std::string_view s) {
  if (s.empty())
    return;
  put_key(out, field, length_type);
  core::wire::put_string(out, s);
}

/// fleettwin.v1.Value: a oneof, so its one field is written even when 0.
size_t value_size(const core::value& v) {
  switch (v.index()) {
    case 0:
      return 1 + 8;
    case 1:
      return 1 + varint_size(static_cast<uint64_t>(std::get<int64_t>(v)));
    case 2:
      return 1 + 1;
    default: {
      const auto& s = std::get<std::string>(v);
      return 1 + varint_size(s.size()) + s.size();
    }
  }
}

void put_value(std::string& out, const core::value& v) {
  switch (v.index()) {
    case 0:
      put_key(out, 1, fixed64_type);
      core::wire::put_double(out, std::get<double>(v));
      break;
    case 1:
      put_key(out, 2, varint_type);
      core::wire::put_varint(out, static_cast<uint64_t>(std::get<int64_t>(v)));
      break;
    case 2:
      put_key(out, 3, varint_type);
      out.push_back(std::get<bool>(v) ? 1 : 0);
      break;
    default:
      put_key(out, 4, length_type);
      core::wire::put_string(out, std::get<std::string>(v));
  }
}

size_t reported_size(const core::reported_property& rp) {
  const size_t value = value_size(rp.val);
  return 1 + varint_size(value) + value +
         varint_field_size(static_cast<uint64_t>(rp.source_time_ms)) +
         varint_field_size(static_cast<uint64_t>(rp.ingest_time_ms)) +
         varint_field_size(rp.sequence);
}

/// A map entry: key = 1 and value = 2, both written (as protobuf does).
template <typename V, typename SizeOf, typename Put>
void put_map_entry(std::string& out, uint32_t field, std::string_view name, const V& v,
                   SizeOf size_of, Put put) {
  const size_t value = size_of(v);
  const size_t entry = 1 + varint_size(name.size()) + name.size() + 1 + varint_size(value) + value;
  put_key(out, field, length_type);
  core::wire::put_varint(out, entry);
  put_key(out, 1, length_type);
  core::wire::put_string(out, name);
  put_key(out, 2, length_type);
  core::wire::put_varint(out, value);
  put(out, v);
}

}  // namespace

void encode_change(const core::twin_change& c, std::string& out) {
  put_string_field(out, 1, c.asset_id);
  put_varint_field(out, 2, c.version);
  put_varint_field(out, 3,
                   c.type == core::change_type::reported  ? fleettwin::v1::REPORTED
                   : c.type == core::change_type::desired ? fleettwin::v1::DESIRED
                                                          : fleettwin::v1::ERASED);
  put_varint_field(out, 4, static_cast<uint64_t>(c.time_ms));
  put_string_field(out, 5, c.kind);
  put_string_field(out, 6, c.tenant);
  for (const auto& [name, rp] : c.reported)
    put_map_entry(out, 7, name, rp, reported_size,
                  [](std::string& o, const core::reported_property& p) {
                    const size_t value = value_size(p.val);
                    put_key(o, 1, length_type);
                    core::wire::put_varint(o, value);
                    put_value(o, p.val);
                    put_varint_field(o, 2, static_cast<uint64_t>(p.source_time_ms));
                    put_varint_field(o, 3, static_cast<uint64_t>(p.ingest_time_ms));
                    put_varint_field(o, 4, p.sequence);
                  });
  for (const auto& [name, v] : c.desired)
    put_map_entry(out, 8, name, v, value_size, put_value);
  for (const auto& name : c.removed) {
    put_key(out, 9, length_type);
    core::wire::put_string(out, name);
  }
  put_varint_field(out, 10, c.sequence);
  put_varint_field(out, 12, c.first());
}

void to_proto(const core::twin& tw, int64_t now_ms, int64_t stale_after_ms,
              fleettwin::v1::Twin& out) {
  out.Clear();
  out.set_name("twins/" + tw.asset_id);
  out.set_asset_id(tw.asset_id);
  out.set_kind(tw.kind);
  out.set_tenant(tw.tenant);
  auto& attrs = *out.mutable_attributes();
  for (const auto& [k, v] : tw.attributes)
    attrs[k] = v;
  auto& reported = *out.mutable_reported();
  for (const auto& [name, rp] : tw.reported)
    reported_to_proto(rp, reported[name]);
  auto& desired = *out.mutable_desired();
  for (const auto& [name, v] : tw.desired)
    to_proto(v, desired[name]);
  auto& delta = *out.mutable_delta();
  for (const auto& [name, v] : core::delta(tw))
    to_proto(v, delta[name]);
  auto& stats = *out.mutable_stats();
  for (const auto& [name, rp] : tw.reported) {
    const auto& st = rp.stats;
    auto& s = stats[name];
    s.set_count(st.count);
    s.set_min(st.min);
    s.set_max(st.max);
    s.set_mean(st.mean);
    s.set_last_change_ms(st.last_change_ms);
  }
  out.set_version(tw.version);
  out.set_etag(std::to_string(tw.version));
  out.set_last_seen_ms(tw.last_seen_ms);
  out.set_connectivity(core::connectivity_of(tw, now_ms, stale_after_ms) ==
                               core::connectivity::online
                           ? fleettwin::v1::ONLINE
                           : fleettwin::v1::STALE);
  out.set_applied_records(tw.applied_records);
  out.set_duplicates(tw.duplicates);
  out.set_out_of_order(tw.out_of_order);
  out.set_last_sequence(tw.window.highest());
  out.set_desired_updated_ms(tw.desired_updated_ms);
  auto& analysis = *out.mutable_analysis();
  for (const auto& [name, a] : tw.analysis) {
    auto& p = analysis[name];
    p.set_anomaly_score(a.score);
    if (a.kind != core::anomaly_kind::none)
      p.set_anomaly_kind(core::to_string(a.kind));
    p.set_alert_active(a.alert.active);
    if (a.alert.active) {
      p.set_alert_severity(core::to_string(a.alert.severity));
      p.set_alert_kind(core::to_string(static_cast<core::anomaly_kind>(a.alert.kind)));
      p.set_alert_raised_ms(a.alert.raised_ms);
      p.set_alert_acknowledged(a.alert.acknowledged);
    }
    p.set_alerts_raised(a.alert.raised_count);
    const auto& f = a.state.forecast;
    p.set_samples(f.samples);
    p.set_forecast_next(a.next);
    p.set_mean_interval_ms(f.interval_ms);
    if (auto m = core::mase(f))
      p.set_forecast_mase(*m);
    const auto& q = a.quality;
    const auto flags = core::quality_flags(q, core::last_report_ms(tw, name), now_ms);
    for (size_t bit = 0; bit < 4; ++bit)
      if (flags & (1u << bit))
        p.add_quality_flags(core::quality_flag_name(bit));
    p.set_bad_sample_rate(q.bad_rate);
    p.set_missing_rate(q.missing_rate);
    p.set_out_of_range_samples(q.out_of_range_samples);
    p.set_spikes(q.spikes);
    p.set_missing_reports(q.missing_reports);
    if (q.failure_eta_ms > 0)
      p.set_failure_expected_ms(q.failure_eta_ms);
    p.set_failed(q.failed);
    const auto& d = a.state.detector;
    p.set_paused(d.paused);
    if (!d.paused && d.settle_until_ms > d.last_time_ms)
      p.set_settling_until_ms(d.settle_until_ms);
  }
  out.set_quality_score(core::quality_score(tw, now_ms));
  out.set_health(core::health_score(tw, now_ms));
  const double records = static_cast<double>(tw.applied_records + tw.duplicates + tw.out_of_order);
  if (records > 0)
    out.set_duplicate_rate(static_cast<double>(tw.duplicates + tw.out_of_order) / records);
  if (auto eta = core::earliest_failure(tw))
    out.set_failure_expected_ms(eta);
}

core::twin from_proto(const fleettwin::v1::Twin& t) {
  core::twin tw;
  tw.asset_id = t.asset_id();
  tw.kind = t.kind();
  tw.tenant = t.tenant();
  for (const auto& [k, v] : t.attributes())
    tw.attributes[k] = v;
  for (const auto& [name, rp] : t.reported()) {
    auto v = from_proto(rp.value());
    if (!v)
      continue;
    auto& out = tw.reported[name];
    out.val = std::move(*v);
    out.source_time_ms = rp.source_time_ms();
    out.ingest_time_ms = rp.ingest_time_ms();
    out.sequence = rp.sequence();
  }
  for (const auto& [name, d] : t.desired())
    if (auto v = from_proto(d))
      tw.desired[name] = std::move(*v);
  tw.version = t.version();
  tw.last_seen_ms = t.last_seen_ms();
  tw.desired_updated_ms = t.desired_updated_ms();
  tw.applied_records = t.applied_records();
  tw.duplicates = t.duplicates();
  tw.out_of_order = t.out_of_order();
  return tw;
}

void to_proto(const core::history_point& p, fleettwin::v1::HistoryPoint& out) {
  to_proto(p.val, *out.mutable_value());
  out.set_source_time_ms(p.source_time_ms);
  out.set_sequence(p.sequence);
}

std::string alert_name(std::string_view asset_id, std::string_view property, uint32_t number) {
  std::string out = "twins/";
  out += asset_id;
  out += "/alerts/";
  out += property;
  out += '/';
  out += std::to_string(number);
  return out;
}

void alert_to_proto(std::string_view asset_id, std::string_view twin_kind, std::string_view tenant,
                    std::string_view property, const core::alert_state& a,
                    fleettwin::v1::Alert& out) {
  out.Clear();
  out.set_name(alert_name(asset_id, property, a.raised_count));
  out.set_asset_id(std::string{asset_id});
  out.set_property(std::string{property});
  out.set_number(a.raised_count);
  out.set_state(!a.active        ? fleettwin::v1::CLEARED
                : a.acknowledged ? fleettwin::v1::ACKNOWLEDGED
                                 : fleettwin::v1::OPEN);
  out.set_severity(a.severity == core::alert_severity::critical ? fleettwin::v1::CRITICAL
                                                                : fleettwin::v1::WARNING);
  out.set_kind(core::to_string(static_cast<core::anomaly_kind>(a.kind)));
  out.set_peak_score(a.peak);
  out.set_raised_ms(a.raised_ms);
  out.set_updated_ms(a.updated_ms);
  if (!a.active)
    out.set_cleared_ms(a.cleared_ms);
  out.set_twin_kind(std::string{twin_kind});
  out.set_tenant(std::string{tenant});
}

void to_proto(std::string_view asset_id, std::string_view twin_kind, std::string_view tenant,
              const core::alert_change& c, fleettwin::v1::AlertEvent& out) {
  out.set_event(core::to_string(c.event));
  alert_to_proto(asset_id, twin_kind, tenant, c.property, c.state, *out.mutable_alert());
  out.set_score(c.score);
  out.set_time_ms(c.time_ms);
}

std::optional<alert_name_parts> parse_alert_name(const std::string& name, std::string& error) {
  static constexpr std::string_view form = "\"twins/{asset_id}/alerts/{property}/{number}\"";
  static constexpr std::string_view marker = "/alerts/";
  const auto at = name.find(marker);
  const auto slash = name.rfind('/');
  if (name.empty() || at == std::string::npos || slash <= at + marker.size() - 1) {
    error = "alert name \"" + name.substr(0, 80) + "\" is not of the form " + std::string{form};
    return std::nullopt;
  }
  auto id = parse_twin_name(name.substr(0, at), error);
  if (!id) {
    error = "alert name: " + error;
    return std::nullopt;
  }
  alert_name_parts out;
  out.asset_id = std::move(*id);
  out.property = name.substr(at + marker.size(), slash - at - marker.size());
  const std::string digits = name.substr(slash + 1);
  uint64_t n = 0;
  bool ok = !digits.empty() && digits.size() <= 9 && !out.property.empty();
  for (char c : digits) {
    ok = ok && c >= '0' && c <= '9';
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!ok || n == 0) {
    error = "alert name \"" + name.substr(0, 80) + "\" is not of the form " + std::string{form} +
            " with a property and a number from 1";
    return std::nullopt;
  }
  out.number = static_cast<uint32_t>(n);
  return out;
}

std::optional<std::string> parse_twin_name(const std::string& name, std::string& error) {
  static constexpr std::string_view prefix = "twins/";
  if (name.empty()) {
    error = "name is required, in the form \"twins/{asset_id}\"";
    return std::nullopt;
  }
  if (name.compare(0, prefix.size(), prefix) != 0 || name.size() == prefix.size()) {
    error = "name \"" + name + "\" is not of the form \"twins/{asset_id}\"";
    return std::nullopt;
  }
  auto id = name.substr(prefix.size());
  if (id.size() > 256) {
    error = "asset id in \"" + name.substr(0, 40) + "...\" is longer than 256 bytes";
    return std::nullopt;
  }
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) {
      error = "asset id in name contains a control character";
      return std::nullopt;
    }
  }
  return id;
}

namespace {

template <class Message>
void add_measures(const core::aggregate_header& h, Message& out) {
  for (const auto& [name, v] : h.measures) {
    auto* m = out.add_measures();
    m->set_name(name);
    if (v)
      m->set_value(*v);
  }
}

}  // namespace

void to_proto(const core::aggregate_header& h, fleettwin::v1::AggregateChange& out) {
  out.Clear();
  out.set_aggregate_id(h.id);
  out.set_kind(h.kind);
  out.set_version(h.version);
  out.set_time_ms(h.updated_ms);
  out.set_member_twins(h.twins);
  out.set_members(h.members);
  out.set_tenant(h.tenant);
  add_measures(h, out);
}

void to_proto(const core::aggregate_header& h, const core::twin* self,
              fleettwin::v1::Aggregate& out) {
  out.Clear();
  out.set_name("aggregates/" + h.id);
  out.set_aggregate_id(h.id);
  out.set_kind(h.kind);
  out.set_member_twins(h.twins);
  out.set_members(h.members);
  out.set_in_transit(h.in_transit);
  out.set_version(h.version);
  out.set_updated_ms(h.updated_ms);
  out.set_etag(std::to_string(h.version));
  out.set_tenant(h.tenant);
  add_measures(h, out);
  if (!self)
    return;
  for (const auto& [k, v] : self->attributes)
    (*out.mutable_attributes())[k] = v;
  for (const auto& r : self->relations) {
    auto* rel = out.add_parents();
    rel->set_type(r.type);
    rel->set_child("aggregates/" + h.id);
    rel->set_parent("aggregates/" + r.parent);
    rel->set_origin(static_cast<fleettwin::v1::RelationOrigin>(r.origin));
  }
}

}  // namespace fleettwin::grpc_api
