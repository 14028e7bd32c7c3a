#include "tools/sim/generator.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>

#include <fmt/format.h>

#include "tools/sim/model_state.hpp"
#include "tools/sim/random.hpp"

namespace fleettwin::sim {

namespace {

// Ornstein-Uhlenbeck step towards `mean`: mean-reverting random walk.
void ou(double& x, double mean, double theta, double sigma, double dt, double sqrt_dt,
        uint64_t& rng) {
  x += std::min(1.0, theta * dt) * (mean - x) + sigma * sqrt_dt * normal(rng);
}

/// Adds `delta` to a numeric reading (an integer one stays an integer).
void add(metric_value& v, double delta) {
  if (auto* d = std::get_if<double>(&v)) {
    *d += delta;
  } else if (auto* n = std::get_if<int64_t>(&v)) {
    *n = std::llround(static_cast<double>(*n) + delta);
  }
}

double round_to(double x, double scale) {
  return std::round(x * scale) / scale;
}

// Rough centres of each fleet's area (lat, lon).
constexpr double fleet_origin[][2] = {
    {59.33, 18.06}, {55.60, 13.00}, {60.17, 24.94}, {57.71, 11.97}};
constexpr std::string_view vehicle_sites[] = {"depot-1", "depot-2", "depot-3", "depot-4",
                                              "depot-5", "depot-6", "depot-7", "depot-8"};
constexpr std::string_view machine_sites[] = {"plant-1", "plant-2", "plant-3", "plant-4"};
constexpr std::string_view meter_sites[] = {"substation-1", "substation-2", "substation-3",
                                            "substation-4", "substation-5", "substation-6"};
constexpr std::string_view vehicle_makes[] = {"volvo", "scania", "man", "daf", "tesla"};
constexpr std::string_view machine_makes[] = {"siemens", "abb", "bosch", "fanuc"};
constexpr std::string_view meter_makes[] = {"landis-gyr", "itron", "kamstrup", "elster"};

constexpr std::string_view vehicle_metrics[] = {"speed", "battery", "position.lat", "position.lon",
                                                "odometer"};
constexpr std::string_view machine_metrics[] = {"temperature", "vibration", "rpm", "running"};
constexpr std::string_view meter_metrics[] = {"voltage", "current", "power"};

std::span<const std::string_view> sites_of(asset_kind k) {
  switch (k) {
    case asset_kind::vehicle:
      return vehicle_sites;
    case asset_kind::machine:
      return machine_sites;
    default:
      return meter_sites;
  }
}

std::span<const std::string_view> makes_of(asset_kind k) {
  switch (k) {
    case asset_kind::vehicle:
      return vehicle_makes;
    case asset_kind::machine:
      return machine_makes;
    default:
      return meter_makes;
  }
}

// With the topology, the share of vehicles that start out charging (about the
// steady state of the battery model).
constexpr double charging_at_start = 0.06;

[[noreturn]] void invalid(std::string msg) {
  throw std::invalid_argument(std::move(msg));
}

}  // namespace

std::string_view to_string(asset_kind k) {
  switch (k) {
    case asset_kind::vehicle:
      return "vehicle";
    case asset_kind::machine:
      return "machine";
    case asset_kind::meter:
      return "meter";
  }
  return "unknown";
}

std::optional<asset_kind> parse_asset_kind(std::string_view s) {
  for (auto k : {asset_kind::vehicle, asset_kind::machine, asset_kind::meter}) {
    if (to_string(k) == s) {
      return k;
    }
  }
  return std::nullopt;
}

std::string_view id_prefix(asset_kind k) {
  switch (k) {
    case asset_kind::vehicle:
      return "veh";
    case asset_kind::machine:
      return "mch";
    case asset_kind::meter:
      return "mtr";
  }
  return "unk";
}

std::string_view to_string(record_type t) {
  switch (t) {
    case record_type::asset:
      return "asset";
    case record_type::aggregate:
      return "aggregate";
    case record_type::relation:
      return "relation";
  }
  return "unknown";
}

std::string_view to_string(malformed_kind k) {
  switch (k) {
    case malformed_kind::undecodable_protobuf:
      return "undecodable_protobuf";
    case malformed_kind::invalid_json:
      return "invalid_json";
    case malformed_kind::wrong_shape_json:
      return "wrong_shape_json";
    case malformed_kind::empty_key:
      return "empty_key";
    case malformed_kind::key_mismatch:
      return "key_mismatch";
    case malformed_kind::non_finite_value:
      return "non_finite_value";
    case malformed_kind::oversized:
      return "oversized";
    case malformed_kind::unknown_content_type:
      return "unknown_content_type";
  }
  return "unknown";
}

std::span<const std::string_view> generator::metric_names(asset_kind kind) {
  switch (kind) {
    case asset_kind::vehicle:
      return vehicle_metrics;
    case asset_kind::machine:
      return machine_metrics;
    default:
      return meter_metrics;
  }
}

std::string generator::make_asset_id(asset_kind kind, uint64_t number) {
  return fmt::format("{}-{:06d}", id_prefix(kind), number);
}

uint64_t generator::records_for_duration(double seconds, double rate) {
  if (!(seconds > 0) || !(rate > 0)) {
    return 0;
  }
  return static_cast<uint64_t>(std::llround(seconds * rate));
}

encoding generator::encoding_for(payload_format f, uint32_t asset_index, uint64_t sequence) {
  switch (f) {
    case payload_format::protobuf:
      return encoding::protobuf;
    case payload_format::json:
      return encoding::json;
    default:
      // Alternate per asset and across assets, so every round and every
      // asset sees both encodings.
      return (asset_index + sequence) % 2 == 1 ? encoding::protobuf : encoding::json;
  }
}

generator::generator(config cfg) : cfg_(std::move(cfg)) {
  if (cfg_.assets == 0) {
    invalid("assets must be at least 1");
  }
  if (cfg_.kinds.empty()) {
    invalid("at least one asset kind is needed");
  }
  for (size_t i = 0; i < cfg_.kinds.size(); ++i) {
    for (size_t j = i + 1; j < cfg_.kinds.size(); ++j) {
      if (cfg_.kinds[i] == cfg_.kinds[j]) {
        invalid(fmt::format("asset kind '{}' listed twice", to_string(cfg_.kinds[i])));
      }
    }
  }
  if (!(cfg_.rate > 0) || !std::isfinite(cfg_.rate)) {
    invalid("the virtual rate must be a positive number of records per second");
  }
  if (cfg_.malformed > 0 && cfg_.count == 0) {
    invalid(
        "spreading malformed records evenly needs a known record count (--count, or --duration "
        "with --rate > 0); use --malformed-every for open-ended runs");
  }
  if (cfg_.malformed > cfg_.count && cfg_.count > 0) {
    invalid(
        fmt::format("{} malformed records do not fit in {} records", cfg_.malformed, cfg_.count));
  }
  if (cfg_.max_record_bytes < 256) {
    invalid("max_record_bytes must be at least 256");
  }
  if (cfg_.topology && !(cfg_.topology_interval_s > 0 && std::isfinite(cfg_.topology_interval_s))) {
    invalid("the topology interval must be a positive number of seconds");
  }
  assets_.resize(cfg_.assets);
  for (uint32_t i = 0; i < cfg_.assets; ++i) {
    init_asset(i);
  }
  if (cfg_.topology) {
    init_topology();
  }
  for (const auto& f : cfg_.faults) {
    auto idx = find_asset(f.asset_id);
    if (!idx) {
      invalid(fmt::format("fault {}: asset '{}' is not part of the simulated fleet", to_string(f),
                          f.asset_id));
    }
    auto kind = assets_[*idx].kind;
    if (f.property != "*") {
      auto names = metric_names(kind);
      if (std::find(names.begin(), names.end(), f.property) == names.end()) {
        invalid(fmt::format("fault {}: a {} has no property '{}' (one of: {})", to_string(f),
                            to_string(kind), f.property, fmt::join(names, ", ")));
      }
      if (f.type != fault_type::stuck && f.type != fault_type::dropout && f.property == "running") {
        invalid(
            fmt::format("fault {}: {} needs a numeric property", to_string(f), to_string(f.type)));
      }
    }
    assets_[*idx].faulted = true;
    fault_state st;
    st.asset = *idx;
    st.noise = cfg_.seed ^ (0x9e3779b97f4a7c15ULL * (fault_states_.size() + 1));
    fault_states_.push_back(st);
  }
  id_buf_.reserve(32);
  key_buf_.reserve(32);
  buf_.reserve(512);
}

std::string_view generator::write_id(std::string& buf, uint32_t i) const {
  buf.clear();
  size_t k = cfg_.kinds.size();
  fmt::format_to(std::back_inserter(buf), "{}-{:06d}", id_prefix(cfg_.kinds[i % k]), i / k + 1);
  return buf;
}

std::string generator::asset_id(size_t i) const {
  size_t k = cfg_.kinds.size();
  return make_asset_id(cfg_.kinds[i % k], i / k + 1);
}

asset_kind generator::kind_of(size_t i) const {
  return cfg_.kinds[i % cfg_.kinds.size()];
}

std::optional<uint32_t> generator::find_asset(std::string_view id) const {
  auto dash = id.find('-');
  if (dash == std::string_view::npos) {
    return std::nullopt;
  }
  auto prefix = id.substr(0, dash);
  auto digits = id.substr(dash + 1);
  uint64_t number = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (ec != std::errc{} || ptr != digits.data() + digits.size() || number == 0) {
    return std::nullopt;
  }
  for (size_t p = 0; p < cfg_.kinds.size(); ++p) {
    if (id_prefix(cfg_.kinds[p]) != prefix) {
      continue;
    }
    uint64_t index = (number - 1) * cfg_.kinds.size() + p;
    if (index >= assets_.size() || make_asset_id(cfg_.kinds[p], number) != id) {
      return std::nullopt;
    }
    return static_cast<uint32_t>(index);
  }
  return std::nullopt;
}

int64_t generator::slot_offset_ms(uint64_t s) const {
  return static_cast<int64_t>(std::floor(static_cast<double>(s) * 1000.0 / cfg_.rate));
}

bool generator::is_malformed_position(uint64_t n) const {
  if (cfg_.malformed_every > 0 && (n + 1) % cfg_.malformed_every == 0) {
    return true;
  }
  if (cfg_.malformed == 0 || cfg_.count == 0 || n >= cfg_.count) {
    return false;
  }
  // Positions floor((2k + 1) * count / (2 * malformed)), k < malformed: the
  // centres of `malformed` equal stretches of the run.
  using u128 = unsigned __int128;
  u128 c = cfg_.count;
  u128 m = cfg_.malformed;
  u128 lo = 2 * u128{n} * m;  // need (2k + 1) * c >= lo
  u128 k = lo <= c ? 0 : (lo - c + 2 * c - 1) / (2 * c);
  return k < m && (2 * k + 1) * c < 2 * (u128{n} + 1) * m;
}

void generator::init_asset(uint32_t i) {
  auto& a = assets_[i];
  a.kind = kind_of(i);
  uint64_t s = cfg_.seed;
  uint64_t base = next_u64(s);
  a.rng = base ^ (0xd1b54a32d192ed03ULL * (uint64_t{i} + 1));
  next_u64(a.rng);
  auto& r = a.rng;
  a.fleet = static_cast<uint8_t>(next_u64(r) % fleet_names.size());
  a.site = static_cast<uint8_t>(next_u64(r) % sites_of(a.kind).size());
  a.make = static_cast<uint8_t>(next_u64(r) % makes_of(a.kind).size());
  auto& x = a.x;
  switch (a.kind) {
    case asset_kind::vehicle: {
      x[veh::speed] = uniform(r, 0, 80);
      x[veh::battery] = uniform(r, 40, 100);
      x[veh::lat] = fleet_origin[a.fleet][0] + uniform(r, -0.2, 0.2);
      x[veh::lon] = fleet_origin[a.fleet][1] + uniform(r, -0.3, 0.3);
      x[veh::hx] = uniform(r, -1, 1);
      x[veh::hy] = uniform(r, -1, 1);
      x[veh::odometer] = std::floor(uniform(r, 1e6, 3e8));  // metres
      if (cfg_.topology) {
        // Spread over the charge cycle, so that chargers are busy from the start.
        a.flag = uniform(r) < charging_at_start;
        x[veh::battery] = a.flag ? uniform(r, 10, 95) : uniform(r, 10, 100);
        x[veh::speed] = a.flag ? 0 : x[veh::speed];
      }
      break;
    }
    case asset_kind::machine:
      x[mch::base_rpm] = std::round(uniform(r, 1000, 3000));
      x[mch::base_temperature] = uniform(r, 60, 80);
      a.flag = uniform(r) < 0.9;  // running
      x[mch::rpm] = a.flag ? x[mch::base_rpm] : 0;
      x[mch::temperature] = a.flag ? x[mch::base_temperature] : 25;
      x[mch::vibration] = a.flag ? 3.0 : 0.1;
      break;
    case asset_kind::meter:
      x[mtr::voltage] = 230 + uniform(r, -3, 3);
      x[mtr::base_current] = uniform(r, 5, 40);
      x[mtr::current] = x[mtr::base_current];
      if (cfg_.topology) {
        x[mtr::line_drop] = uniform(r, 0, 3);  // distance from the transformer
      }
      break;
  }
}

double daily_load(int64_t time_ms) {
  constexpr int64_t day_ms = 86'400'000;
  const double hour = static_cast<double>(((time_ms % day_ms) + day_ms) % day_ms) / 3'600'000.0;
  auto bump = [&](double centre, double width) {
    const double d = (hour - centre) / width;
    return std::exp(-d * d);
  };
  // Quiet nights, a morning bump, the evening peak; about 1 on average.
  return 0.78 + 0.45 * bump(8, 1.5) + 0.9 * bump(19, 2.5);
}

void generator::step(asset_state& a, double dt, int64_t offset_ms) {
  auto& x = a.x;
  auto& r = a.rng;
  double sqrt_dt = std::sqrt(dt);
  switch (a.kind) {
    case asset_kind::vehicle: {
      bool& charging = a.flag;
      if (charging) {
        x[veh::speed] = 0;
        x[veh::battery] = std::min(100.0, x[veh::battery] + 0.2 * dt);
        charging = x[veh::battery] < 95;
      } else {
        ou(x[veh::speed], 55, 0.05, 4, dt, sqrt_dt, r);
        x[veh::speed] = std::clamp(x[veh::speed], 0.0, 130.0);
        x[veh::battery] -= (0.001 + x[veh::speed] * 0.0002) * dt;
        charging = x[veh::battery] <= 10;
      }
      x[veh::hx] += 0.05 * sqrt_dt * normal(r);
      x[veh::hy] += 0.05 * sqrt_dt * normal(r);
      double norm = std::sqrt(x[veh::hx] * x[veh::hx] + x[veh::hy] * x[veh::hy]);
      if (norm < 1e-9) {
        x[veh::hx] = 1;
        x[veh::hy] = 0;
        norm = 1;
      }
      x[veh::hx] /= norm;
      x[veh::hy] /= norm;
      double km = x[veh::speed] * dt / 3600.0;
      x[veh::lat] += km / 111.0 * x[veh::hy];
      x[veh::lon] += km / (111.0 * 0.55) * x[veh::hx];
      x[veh::odometer] += x[veh::speed] / 3.6 * dt;
      break;
    }
    case asset_kind::machine: {
      bool& running = a.flag;
      double p = uniform(r);
      if (running ? p < 0.002 * dt : p < 0.05 * dt) {
        running = !running;
      }
      ou(x[mch::rpm], running ? x[mch::base_rpm] : 0, 0.5, running ? 15 : 0, dt, sqrt_dt, r);
      x[mch::rpm] = std::max(0.0, x[mch::rpm]);
      ou(x[mch::temperature], running ? x[mch::base_temperature] : 25, 0.01, 0.1, dt, sqrt_dt, r);
      ou(x[mch::vibration], running ? 2 + 2 * x[mch::rpm] / 3000 : 0.1, 0.3, running ? 0.2 : 0.01,
         dt, sqrt_dt, r);
      x[mch::vibration] = std::max(0.0, x[mch::vibration]);
      break;
    }
    case asset_kind::meter:
      ou(x[mtr::voltage], topo_ ? meter_voltage_target(a, offset_ms) : 230.0, 0.5, 1.0, dt, sqrt_dt,
         r);
      ou(x[mtr::current], x[mtr::base_current] * daily_load(cfg_.start_time_ms + offset_ms), 0.02,
         0.8, dt, sqrt_dt, r);
      x[mtr::current] = std::max(0.0, x[mtr::current]);
      break;
  }
}

void generator::fill_sample(uint32_t i, asset_state& a, int64_t offset_ms) {
  auto& s = sample_;
  s.asset_id = write_id(id_buf_, i);
  s.kind = to_string(a.kind);
  s.tenant = cfg_.tenant;
  s.sequence = ++a.sequence;
  s.source_time_ms = cfg_.start_time_ms + offset_ms;
  if (topo_) {
    fill_topology_attributes(a, makes_of(a.kind)[a.make]);
  } else {
    s.attributes[0] = {"fleet", fleet_names[a.fleet]};
    s.attributes[1] = {"site", sites_of(a.kind)[a.site]};
    s.attributes[2] = {"make", makes_of(a.kind)[a.make]};
    s.attribute_size = 3;
  }
  const auto& x = a.x;
  auto names = metric_names(a.kind);
  switch (a.kind) {
    case asset_kind::vehicle:
      s.metrics[0] = {names[0], round_to(x[veh::speed], 10)};
      s.metrics[1] = {names[1], round_to(x[veh::battery], 10)};
      s.metrics[2] = {names[2], round_to(x[veh::lat], 1e6)};
      s.metrics[3] = {names[3], round_to(x[veh::lon], 1e6)};
      s.metrics[4] = {names[4], static_cast<int64_t>(x[veh::odometer])};
      s.metric_size = 5;
      break;
    case asset_kind::machine:
      s.metrics[0] = {names[0], round_to(x[mch::temperature], 100)};
      s.metrics[1] = {names[1], round_to(x[mch::vibration], 100)};
      s.metrics[2] = {names[2], static_cast<int64_t>(std::llround(x[mch::rpm]))};
      s.metrics[3] = {names[3], a.flag};
      s.metric_size = 4;
      break;
    case asset_kind::meter: {
      double v = round_to(x[mtr::voltage], 10);
      double c = round_to(x[mtr::current], 100);
      s.metrics[0] = {names[0], v};
      s.metrics[1] = {names[1], c};
      s.metrics[2] = {names[2], round_to(v * c / 1000.0, 1000)};
      s.metric_size = 3;
      break;
    }
  }
}

bool generator::dropped_out(uint32_t i, int64_t offset_ms) const {
  for (size_t f = 0; f < fault_states_.size(); ++f) {
    const auto& spec = cfg_.faults[f];
    if (fault_states_[f].asset == i && spec.type == fault_type::dropout &&
        spec.in_window(offset_ms)) {
      return true;
    }
  }
  return false;
}

void generator::apply_faults(uint32_t i, int64_t offset_ms) {
  // f(metric, index) for every reading of the sample the fault concerns.
  auto each_metric = [this](const fault& spec, auto f) {
    for (size_t m = 0; m < sample_.metric_size; ++m) {
      if (spec.applies_to(sample_.metrics[m].name)) {
        f(sample_.metrics[m], m);
      }
    }
  };
  for (size_t f = 0; f < fault_states_.size(); ++f) {
    auto& st = fault_states_[f];
    const auto& spec = cfg_.faults[f];
    if (st.asset != i) {
      continue;
    }
    switch (spec.type) {
      case fault_type::drift:
        if (!spec.in_window(offset_ms)) {
          break;
        }
        each_metric(spec, [&](metric& mv, size_t) { add(mv.value, spec.drift_offset(offset_ms)); });
        break;
      case fault_type::spike:
        if (st.fired || offset_ms < spec.start_ms) {
          break;
        }
        st.fired = true;
        each_metric(spec, [&](metric& mv, size_t) {
          if (auto* d = std::get_if<double>(&mv.value)) {
            *d *= spec.magnitude;
          } else if (auto* n = std::get_if<int64_t>(&mv.value)) {
            *n = std::llround(static_cast<double>(*n) * spec.magnitude);
          }
        });
        break;
      case fault_type::stuck:
        if (!spec.in_window(offset_ms)) {
          break;
        }
        each_metric(spec, [&](metric& mv, size_t m) {
          if (st.captured) {
            mv.value = st.frozen[m];
          } else {
            st.frozen[m] = mv.value;
          }
        });
        st.captured = true;
        break;
      case fault_type::level_shift:
      case fault_type::variance:
        if (!spec.in_window(offset_ms)) {
          break;
        }
        each_metric(spec, [&](metric& mv, size_t) {
          add(mv.value, spec.type == fault_type::level_shift ? spec.magnitude
                                                             : spec.magnitude * normal(st.noise));
        });
        break;
      case fault_type::dropout:
        break;
    }
  }
}

void generator::make_valid(record& out) {
  const uint64_t n = assets_.size();
  for (;;) {
    uint64_t s = slot_++;
    auto i = static_cast<uint32_t>(s % n);
    auto& a = assets_[i];
    int64_t offset = slot_offset_ms(s);
    if (a.faulted && dropped_out(i, offset)) {
      ++dropped_;
      continue;
    }
    // The physical state keeps evolving through a dropout: dt spans the gap.
    uint64_t gap = a.last_slot == UINT64_MAX ? n : s - a.last_slot;
    a.last_slot = s;
    step(a, static_cast<double>(gap) / cfg_.rate, offset);
    if (topo_ && a.kind == asset_kind::vehicle && a.flag && a.charger == aggregate_info::none) {
      a.x[veh::speed] = 0;  // it has parked at its depot to charge
    }
    fill_sample(i, a, offset);
    if (a.faulted) {
      apply_faults(i, offset);
    }
    out.enc = encoding_for(cfg_.format, i, sample_.sequence);
    encode(out.enc, sample_, buf_);
    out.key = sample_.asset_id;
    out.value = buf_;
    out.content_type = content_type(out.enc);
    out.malformed.reset();
    out.type = record_type::asset;
    out.asset_index = i;
    out.data = &sample_;
    out.relation = nullptr;
    if (topo_ && a.kind == asset_kind::vehicle) {
      update_charging(i, a, out.enc);
    }
    return;
  }
}

void generator::make_malformed(record& out) {
  using namespace protowire;
  const uint64_t ordinal = malformed_emitted_++;
  const auto kind = malformed_kind_at(ordinal);
  const auto i = static_cast<uint32_t>(ordinal % assets_.size());
  const auto akind = kind_of(i);
  // A minimal, otherwise valid sample; sequence 0 so that a record wrongly
  // accepted cannot shadow the valid stream's sequences.
  auto& s = sample_;
  s.asset_id = write_id(id_buf_, i);
  s.kind = to_string(akind);
  s.tenant = cfg_.tenant;
  s.sequence = 0;
  s.source_time_ms = cfg_.start_time_ms + slot_offset_ms(slot_);
  s.attribute_size = 0;
  s.metrics[0] = {metric_names(akind)[0], 0.0};
  s.metric_size = 1;

  out.key = s.asset_id;
  out.enc = encoding::protobuf;
  switch (kind) {
    case malformed_kind::undecodable_protobuf:
      append_bytes_field(buf_, 1, s.asset_id);
      // A metrics entry that claims 127 bytes but ends after the name.
      append_tag(buf_, 7, 2);
      buf_.push_back(0x7f);
      append_bytes_field(buf_, 1, s.metrics[0].name);
      break;
    case malformed_kind::invalid_json:
      out.enc = encoding::json;
      buf_.append("{\"asset_id\":");
      append_json_string(buf_, s.asset_id);
      buf_.append(",\"kind\":");
      append_json_string(buf_, s.kind);
      buf_.append(",\"metrics\":{");
      append_json_string(buf_, s.metrics[0].name);
      buf_.append(":");
      break;
    case malformed_kind::wrong_shape_json:
      out.enc = encoding::json;
      s.metric_size = 0;
      encode_json(s, buf_);
      // Replace the (empty) metrics object by a string.
      buf_.resize(buf_.size() - 3);
      buf_.append("\"");
      buf_.append(s.metrics[0].name);
      buf_.append("=0.0\"}");
      break;
    case malformed_kind::empty_key:
      encode_protobuf(s, buf_);
      out.key = {};
      break;
    case malformed_kind::key_mismatch: {
      encode_protobuf(s, buf_);
      if (assets_.size() > 1) {
        out.key = write_id(key_buf_, static_cast<uint32_t>((i + 1) % assets_.size()));
      } else {
        key_buf_.assign(s.asset_id);
        key_buf_.append("-other");
        out.key = key_buf_;
      }
      break;
    }
    case malformed_kind::non_finite_value:
      s.metrics[0].value = std::numeric_limits<double>::quiet_NaN();
      encode_protobuf(s, buf_);
      break;
    case malformed_kind::oversized: {
      encode_protobuf(s, buf_);
      // One more attribute entry, "padding", that brings the record to the target size.
      constexpr std::string_view name = "padding";
      size_t target = oversized_bytes();
      size_t overhead = buf_.size() + 1 + 5 + bytes_field_size(name.size()) + 1 + 5;
      size_t pad = target > overhead ? target - overhead : 1;
      append_tag(buf_, 6, 2);
      append_varint(buf_, bytes_field_size(name.size()) + bytes_field_size(pad));
      append_bytes_field(buf_, 1, name);
      append_tag(buf_, 2, 2);
      append_varint(buf_, pad);
      size_t start = buf_.size();
      buf_.resize(start + pad);
      for (size_t p = 0; p < pad; ++p) {
        buf_[start + p] = static_cast<char>('a' + p % 26);
      }
      break;
    }
    case malformed_kind::unknown_content_type:
      buf_.append("asset_id,");
      buf_.append(s.metrics[0].name);
      buf_.append("\n");
      buf_.append(s.asset_id);
      buf_.append(",0.0\n");
      break;
  }
  out.value = buf_;
  switch (kind) {
    case malformed_kind::invalid_json:
    case malformed_kind::wrong_shape_json:
      out.content_type = content_type_json;
      break;
    case malformed_kind::unknown_content_type:
      out.content_type = unknown_content_type_value;
      break;
    default:
      out.content_type = content_type_protobuf;
      break;
  }
  out.malformed = kind;
  out.type = record_type::asset;
  out.asset_index = i;
  out.data = nullptr;
  out.relation = nullptr;
}

bool generator::next(record& out) {
  if (cfg_.count != 0 && emitted_ >= cfg_.count) {
    return false;
  }
  buf_.clear();
  if (is_malformed_position(emitted_)) {
    make_malformed(out);
  } else if (pending_) {
    make_relation(out);
  } else if (aggregate_due()) {
    make_aggregate(out);
  } else {
    make_valid(out);
  }
  out.index = emitted_++;
  return true;
}

}  // namespace fleettwin::sim
