#include "tools/sim/generator.hpp"

// The topology half of the generator: wiring the fleet, the parents in the
// assets' attributes, meters' voltage by their transformer, vehicles'
// chargers, and the aggregate and relation records (see generator.hpp).

#include <algorithm>
#include <cmath>

#include "tools/sim/model_state.hpp"
#include "tools/sim/random.hpp"

namespace fleettwin::sim {

namespace {

// Transformer overloads: in each minute of virtual time a transformer sags
// with this probability (percent) for 15-45 s, by this many volts.
constexpr uint64_t sag_percent = 8;
constexpr double sag_volts = 22;

}  // namespace

void generator::init_topology() {
  std::vector<topology_asset> in(assets_.size());
  for (size_t i = 0; i < assets_.size(); ++i) {
    const auto& a = assets_[i];
    in[i].kind = a.kind;
    in[i].fleet = a.fleet;
    in[i].load_kw = a.kind == asset_kind::meter ? a.x[mtr::base_current] * 230.0 / 1000.0 : 0.0;
  }
  topo_ = build_topology(cfg_.seed, in);
  for (size_t i = 0; i < assets_.size(); ++i) {
    assets_[i].group = topo_->parent[i];
  }
  charger_load_.assign(topo_->aggregates.size(), 0);
  uint64_t s = cfg_.seed ^ 0x2545f4914f6cdd1dULL;
  topology_seed_ = next_u64(s);
  // Rounds take at most a tenth of the stream, however many aggregates there are.
  round_slots_ = std::max<uint64_t>(
      {1, static_cast<uint64_t>(std::llround(cfg_.topology_interval_s * cfg_.rate)),
       10 * static_cast<uint64_t>(topo_->aggregates.size())});
  round_pos_ = topo_->aggregates.size();  // no round under way
}

double generator::meter_voltage_target(const asset_state& a, int64_t offset_ms) const {
  const auto& tr = topo_->aggregates[a.group];
  double target = 230.0 - tr.voltage_drop - a.x[mtr::line_drop];
  // Whether the transformer sags now: a stateless draw per transformer and
  // minute, so it does not matter which of its meters asks first.
  const auto minute = static_cast<uint64_t>(std::max<int64_t>(0, offset_ms) / 60'000);
  const uint64_t h = mix64(topology_seed_ ^ (uint64_t{a.group} * 0x9e3779b97f4a7c15ULL) ^
                           ((minute + 1) * 0xc2b2ae3d27d4eb4fULL));
  if (h % 100 < sag_percent) {
    const auto within = static_cast<uint64_t>(std::max<int64_t>(0, offset_ms) % 60'000);
    const uint64_t start = (h >> 8) % 30'000;
    const uint64_t length = 15'000 + (h >> 24) % 30'000;
    if (within >= start && within < start + length) {
      target -= sag_volts;
    }
  }
  return target;
}

void generator::fill_topology_attributes(const asset_state& a, std::string_view make_name) {
  auto& s = sample_;
  const auto& aggs = topo_->aggregates;
  const auto& group = aggs[a.group];
  const auto make = std::pair<std::string_view, std::string_view>{"make", make_name};
  switch (a.kind) {
    case asset_kind::vehicle:
      s.attributes[0] = {"fleet", fleet_names[a.fleet]};
      s.attributes[1] = {"site", group.name()};
      s.attributes[2] = make;
      s.attributes[3] = {"depot", group.name()};
      s.attribute_size = 4;
      break;
    case asset_kind::machine:
      s.attributes[0] = {"site", group.attributes[0].second};  // the line's plant
      s.attributes[1] = make;
      s.attributes[2] = {"line", group.name()};
      s.attribute_size = 3;
      break;
    case asset_kind::meter:
      s.attributes[0] = {"site", aggs[aggs[group.parent].parent].name()};  // substation
      s.attributes[1] = make;
      s.attributes[2] = {"transformer", group.name()};
      s.attribute_size = 3;
      break;
  }
}

void generator::update_charging(uint32_t i, asset_state& a, encoding enc) {
  const bool plugged = a.charger != aggregate_info::none;
  if (a.flag == plugged) {
    return;
  }
  if (a.flag) {
    // Parked at the depot with a low battery: the least busy charger.
    const auto& depot = topo_->aggregates[a.group];
    uint32_t best = depot.first_charger;
    for (uint32_t c = depot.first_charger; c < depot.first_charger + depot.chargers; ++c) {
      if (charger_load_[c] < charger_load_[best]) {
        best = c;
      }
    }
    ++charger_load_[best];
    a.charger = best;
    pending_ = pending_relation{i, best, true, enc};
  } else {
    --charger_load_[a.charger];
    pending_ = pending_relation{i, a.charger, false, enc};
    a.charger = aggregate_info::none;
  }
}

bool generator::aggregate_due() {
  if (!topo_ || topo_->aggregates.empty()) {
    return false;
  }
  if (round_pos_ < topo_->aggregates.size()) {
    return true;
  }
  if (slot_ < next_round_slot_) {
    return false;
  }
  ++rounds_;
  round_pos_ = 0;
  next_round_slot_ += round_slots_;
  return true;
}

void generator::make_aggregate(record& out) {
  const auto k = static_cast<uint32_t>(round_pos_++);
  const auto& ag = topo_->aggregates[k];
  auto& s = sample_;
  s.asset_id = ag.id;
  s.kind = ag.kind;
  s.tenant = cfg_.tenant;
  s.sequence = rounds_;
  s.source_time_ms = cfg_.start_time_ms + slot_offset_ms(slot_);
  for (size_t a = 0; a < ag.attribute_size; ++a) {
    s.attributes[a] = {ag.attributes[a].first, ag.attributes[a].second};
  }
  s.attribute_size = ag.attribute_size;
  s.metric_size = 0;
  out.enc = encoding_for(cfg_.format, k, rounds_);
  encode(out.enc, s, buf_);
  out.key = ag.id;
  out.value = buf_;
  out.content_type = content_type(out.enc);
  out.malformed.reset();
  out.type = record_type::aggregate;
  out.asset_index = k;
  out.data = &sample_;
  out.relation = nullptr;
  ++aggregate_emitted_;
}

void generator::make_relation(record& out) {
  const auto p = *pending_;
  pending_.reset();
  relation_.child = write_id(id_buf_, p.asset);
  relation_.type = charging_relation;
  relation_.parent = topo_->aggregates[p.charger].id;
  relation_.set = p.set;
  out.enc = p.enc;
  encode_relation(out.enc, relation_, buf_);
  out.key = relation_.child;
  out.value = buf_;
  out.content_type = content_type(out.enc);
  out.malformed.reset();
  out.type = record_type::relation;
  out.asset_index = p.asset;
  out.data = nullptr;
  out.relation = &relation_;
  ++relation_emitted_;
}

}  // namespace fleettwin::sim
