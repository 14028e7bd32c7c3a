#include "tools/sim/topology.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tools/sim/random.hpp"

namespace fleettwin::sim {

namespace {

constexpr relation_rule rules[] = {
    {"fleet", "member_of", "fleets", "fleet"},
    {"region", "member_of", "regions", "region"},
    {"depot", "located_at", "depots", "depot"},
    {"charger", "charging_at", "chargers", "charger"},
    {"transformer", "feeds", "transformers", "transformer"},
    {"feeder", "feeds", "feeders", "feeder"},
    {"substation", "feeds", "substations", "substation"},
    {"grid", "feeds", "grids", "grid"},
    {"line", "member_of", "lines", "line"},
    {"plant", "member_of", "plants", "plant"},
};

uint32_t ceil_div(uint64_t a, uint64_t b) {
  return static_cast<uint32_t>((a + b - 1) / b);
}

uint32_t clamp_u32(uint64_t v, uint32_t lo, uint32_t hi) {
  return static_cast<uint32_t>(std::clamp<uint64_t>(v, lo, hi));
}

// Boundaries of `groups` consecutive groups over `n` items (n >= groups >= 1):
// each group gets one item plus a share of the rest weighted by a uniform
// draw in [0.7, 1.3), so sizes vary by about 30% around the mean. Group g
// holds [b[g], b[g + 1]).
std::vector<uint32_t> split(uint32_t n, uint32_t groups, uint64_t& rng) {
  std::vector<double> w(groups);
  double total = 0;
  for (auto& x : w) {
    x = uniform(rng, 0.7, 1.3);
    total += x;
  }
  const double rest = static_cast<double>(n - groups);
  std::vector<uint32_t> b(groups + 1);
  double cum = 0;
  for (uint32_t g = 0; g < groups; ++g) {
    b[g] = g + static_cast<uint32_t>(std::llround(rest * cum / total));
    cum += w[g];
  }
  b[groups] = n;
  return b;
}

// The smallest standard distribution transformer rating (kVA, taken as kW)
// that carries `kw`; beyond the table, the next multiple of 500.
int64_t transformer_rating(double kw) {
  constexpr int64_t ratings[] = {25,  50,  100,  160,  250,  315,  400, 500,
                                 630, 800, 1000, 1250, 1600, 2000, 2500};
  for (auto r : ratings) {
    if (kw <= static_cast<double>(r)) {
      return r;
    }
  }
  return static_cast<int64_t>(std::ceil(kw / 500.0)) * 500;
}

int64_t round_up(double kw, int64_t step) {
  return std::max<int64_t>(step,
                           static_cast<int64_t>(std::ceil(kw / static_cast<double>(step))) * step);
}

aggregate_info& add(topology& t, std::string id, std::string_view kind) {
  auto& a = t.aggregates.emplace_back();
  a.id = std::move(id);
  a.kind = kind;
  return a;
}

void set_attribute(aggregate_info& a, std::string_view key, std::string value) {
  a.attributes[a.attribute_size++] = {key, std::move(value)};
}

void build_grid(topology& t, std::span<const topology_asset> assets, uint64_t& rng) {
  std::vector<uint32_t> meters;
  for (uint32_t i = 0; i < assets.size(); ++i) {
    if (assets[i].kind == asset_kind::meter) {
      meters.push_back(i);
    }
  }
  const auto m = static_cast<uint32_t>(meters.size());
  if (m == 0) {
    return;
  }
  // Larger grids have larger fan-outs: about 25 meters per transformer, up to
  // 40 in grids of 15000 meters or more (+-30% each), 5-7 transformers per
  // feeder, 2-4 feeders per substation.
  const uint32_t tr = ceil_div(m, clamp_u32(25 + m / 1000, 25, 40));
  const uint32_t fd = ceil_div(tr, clamp_u32(5 + tr / 200, 5, 7));
  const uint32_t ss = ceil_div(fd, clamp_u32(2 + fd / 50, 2, 4));
  const auto meter_groups = split(m, tr, rng);
  const auto tr_groups = split(tr, fd, rng);
  const auto fd_groups = split(fd, ss, rng);

  std::vector<double> tr_load(tr, 0.0);
  std::vector<double> fd_load(fd, 0.0);
  std::vector<double> ss_load(ss, 0.0);
  std::vector<uint32_t> tr_feeder(tr);
  std::vector<uint32_t> fd_substation(fd);
  for (uint32_t g = 0; g < tr; ++g) {
    for (uint32_t j = meter_groups[g]; j < meter_groups[g + 1]; ++j) {
      tr_load[g] += assets[meters[j]].load_kw;
    }
  }
  for (uint32_t f = 0; f < fd; ++f) {
    for (uint32_t g = tr_groups[f]; g < tr_groups[f + 1]; ++g) {
      tr_feeder[g] = f;
      fd_load[f] += tr_load[g];
    }
  }
  for (uint32_t s = 0; s < ss; ++s) {
    for (uint32_t f = fd_groups[s]; f < fd_groups[s + 1]; ++f) {
      fd_substation[f] = s;
      ss_load[s] += fd_load[f];
    }
  }

  const auto ss_base = static_cast<uint32_t>(t.aggregates.size());
  for (uint32_t s = 0; s < ss; ++s) {
    auto& a = add(t, fmt::format("substations/ss-{:02d}", s + 1), "substation");
    set_attribute(a, "grid", std::string{grid_name});
    set_attribute(a, "capacity_kw",
                  std::to_string(round_up(ss_load[s] * uniform(rng, 1.3, 1.8), 500)));
  }
  const auto fd_base = static_cast<uint32_t>(t.aggregates.size());
  for (uint32_t f = 0; f < fd; ++f) {
    auto& a = add(t, fmt::format("feeders/fd-{:03d}", f + 1), "feeder");
    a.parent = ss_base + fd_substation[f];
    set_attribute(a, "substation", std::string{t.aggregates[a.parent].name()});
    set_attribute(a, "capacity_kw",
                  std::to_string(round_up(fd_load[f] * uniform(rng, 1.2, 1.8), 100)));
  }
  const auto tr_base = static_cast<uint32_t>(t.aggregates.size());
  for (uint32_t g = 0; g < tr; ++g) {
    auto& a = add(t, fmt::format("transformers/tr-{:04d}", g + 1), "transformer");
    a.parent = fd_base + tr_feeder[g];
    set_attribute(a, "feeder", std::string{t.aggregates[a.parent].name()});
    // Some transformers are sized tightly and run close to (or over) capacity.
    int64_t capacity = transformer_rating(tr_load[g] * uniform(rng, 0.9, 1.8));
    set_attribute(a, "capacity_kw", std::to_string(capacity));
    a.voltage_drop = 8.0 * tr_load[g] / static_cast<double>(capacity);
    for (uint32_t j = meter_groups[g]; j < meter_groups[g + 1]; ++j) {
      t.parent[meters[j]] = tr_base + g;
    }
  }
  t.transformers = tr;
  t.feeders = fd;
  t.substations = ss;
}

void build_fleets(topology& t, std::span<const topology_asset> assets, uint64_t& rng) {
  std::array<std::vector<uint32_t>, fleet_names.size()> vehicles;
  for (uint32_t i = 0; i < assets.size(); ++i) {
    if (assets[i].kind == asset_kind::vehicle) {
      vehicles[assets[i].fleet % fleet_names.size()].push_back(i);
    }
  }
  for (size_t f = 0; f < fleet_names.size(); ++f) {
    if (!vehicles[f].empty()) {
      auto& a = add(t, fmt::format("fleets/{}", fleet_names[f]), "fleet");
      set_attribute(a, "region", std::string{fleet_regions[f]});
    }
  }
  // Depots first, their chargers after all of them (parents before children).
  std::vector<uint32_t> depot_vehicles;
  for (size_t f = 0; f < fleet_names.size(); ++f) {
    const auto n = static_cast<uint32_t>(vehicles[f].size());
    if (n == 0) {
      continue;
    }
    const uint32_t depots = std::max(std::min(2u, n), ceil_div(n, 250));
    const auto base = static_cast<uint32_t>(t.aggregates.size());
    for (uint32_t d = 0; d < depots; ++d) {
      auto& a = add(t, fmt::format("depots/depot-{}", t.depots + d + 1), "depot");
      set_attribute(a, "region", std::string{fleet_regions[f]});
      depot_vehicles.push_back(0);
    }
    for (uint32_t k = 0; k < n; ++k) {
      t.parent[vehicles[f][k]] = base + k % depots;
      ++depot_vehicles[t.depots + k % depots];
    }
    t.depots += depots;
  }
  const auto depot_base = static_cast<uint32_t>(t.aggregates.size()) - t.depots;
  constexpr int64_t charger_kw[] = {50, 150, 350};
  for (uint32_t d = 0; d < t.depots; ++d) {
    const uint32_t chargers = clamp_u32(ceil_div(depot_vehicles[d], 10), 1, 32);
    const auto kw = charger_kw[next_u64(rng) % std::size(charger_kw)];
    const auto first = static_cast<uint32_t>(t.aggregates.size());
    for (uint32_t c = 0; c < chargers; ++c) {
      auto id = fmt::format("chargers/{}-c{}", t.aggregates[depot_base + d].name(), c + 1);
      auto& a = add(t, std::move(id), "charger");
      a.parent = depot_base + d;
      set_attribute(a, "depot", std::string{t.aggregates[depot_base + d].name()});
      set_attribute(a, "capacity_kw", std::to_string(kw));
    }
    t.aggregates[depot_base + d].first_charger = first;
    t.aggregates[depot_base + d].chargers = chargers;
    t.chargers += chargers;
  }
}

void build_lines(topology& t, std::span<const topology_asset> assets) {
  std::vector<uint32_t> machines;
  for (uint32_t i = 0; i < assets.size(); ++i) {
    if (assets[i].kind == asset_kind::machine) {
      machines.push_back(i);
    }
  }
  const auto n = static_cast<uint64_t>(machines.size());
  if (n == 0) {
    return;
  }
  const uint32_t lines = ceil_div(n, 10);
  const uint32_t plants = ceil_div(lines, 8);
  const auto base = static_cast<uint32_t>(t.aggregates.size());
  for (uint32_t l = 0; l < lines; ++l) {
    auto& a = add(t, fmt::format("lines/line-{}", l + 1), "line");
    set_attribute(a, "plant", fmt::format("plant-{}", uint64_t{l} * plants / lines + 1));
  }
  for (uint64_t k = 0; k < n; ++k) {
    t.parent[machines[k]] = base + static_cast<uint32_t>(k * lines / n);
  }
  t.lines = lines;
  t.plants = plants;
}

}  // namespace

std::span<const relation_rule> relation_rules() {
  return rules;
}

std::string_view kind_of_collection(std::string_view collection) {
  for (const auto& r : rules) {
    if (r.collection == collection) {
      return r.kind;
    }
  }
  return {};
}

topology build_topology(uint64_t seed, std::span<const topology_asset> assets) {
  topology t;
  t.parent.assign(assets.size(), aggregate_info::none);
  uint64_t rng = seed ^ 0x7f4a7c159e3779b9ULL;
  next_u64(rng);
  build_grid(t, assets, rng);
  build_fleets(t, assets, rng);
  build_lines(t, assets);
  return t;
}

}  // namespace fleettwin::sim
