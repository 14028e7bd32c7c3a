#include "tools/sim/truth.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include <fmt/format.h>

#include "tools/sim/encoding.hpp"
#include "tools/sim/topology.hpp"

namespace fleettwin::sim {

namespace {

uint64_t attribute_hash(const sample& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::string_view bytes) {
    for (unsigned char c : bytes) {
      h = (h ^ c) * 0x100000001b3ULL;
    }
    h = (h ^ 0xff) * 0x100000001b3ULL;
  };
  for (size_t a = 0; a < s.attribute_size; ++a) {
    mix(s.attributes[a].first);
    mix(s.attributes[a].second);
  }
  return h;
}

// Neumaier-compensated sum with min and max: a total over a million twins
// stays exact to the last printed digit.
struct stat {
  double sum = 0;
  double compensation = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  uint64_t n = 0;

  void add(double v) {
    double t = sum + v;
    compensation += std::fabs(sum) >= std::fabs(v) ? (sum - t) + v : (v - t) + sum;
    sum = t;
    min = std::min(min, v);
    max = std::max(max, v);
    ++n;
  }
  double total() const {
    return sum + compensation;
  }
};

}  // namespace

ground_truth::ground_truth(const generator& gen) : gen_(gen), assets_(gen.asset_count()) {
  nodes_.resize(assets_);
}

uint32_t ground_truth::intern(std::string_view aggregate_id) {
  if (auto it = index_.find(aggregate_id); it != index_.end()) {
    return it->second;
  }
  const auto idx = static_cast<uint32_t>(nodes_.size());
  nodes_.emplace_back();
  aggregate_ids_.emplace_back(aggregate_id);
  index_.emplace(std::string{aggregate_id}, idx);
  return idx;
}

uint32_t ground_truth::node_of(std::string_view id) {
  if (auto asset = gen_.find_asset(id)) {
    return *asset;
  }
  return intern(id);
}

uint8_t ground_truth::property_of(std::string_view name) {
  for (const auto& [cached, id] : property_cache_) {
    if (cached.data() == name.data() && cached.size() == name.size()) {
      return id;
    }
  }
  uint8_t id = 0;
  auto it = std::find(property_names_.begin(), property_names_.end(), name);
  if (it != property_names_.end()) {
    id = static_cast<uint8_t>(it - property_names_.begin());
  } else {
    id = static_cast<uint8_t>(std::min<size_t>(property_names_.size(), 255));
    property_names_.emplace_back(name);
  }
  property_cache_.emplace_back(name, id);
  return id;
}

void ground_truth::set_attributes(uint32_t idx, const sample& s) {
  const uint64_t h = attribute_hash(s);
  if (nodes_[idx].attributes_known && nodes_[idx].attribute_hash == h) {
    return;  // the usual case: attributes do not change
  }
  std::array<uint32_t, max_rule_parents> parents{};
  uint8_t count = 0;
  for (size_t a = 0; a < s.attribute_size; ++a) {
    const auto& [key, value] = s.attributes[a];
    for (const auto& rule : relation_rules()) {
      if (rule.attribute == key && !value.empty()) {
        scratch_.assign(rule.collection);
        scratch_.push_back('/');
        scratch_.append(value);
        parents[count++] = intern(scratch_);  // may grow nodes_
        break;
      }
    }
  }
  node& n = nodes_[idx];
  n.attributes_known = true;
  n.attribute_hash = h;
  n.rule_parents = parents;
  n.rule_parent_count = count;
}

void ground_truth::set_values(node& n, const sample& s) {
  for (size_t m = 0; m < s.metric_size; ++m) {
    const auto& mv = s.metrics[m];
    double v = 0;
    if (const auto* d = std::get_if<double>(&mv.value)) {
      v = *d;
    } else if (const auto* i = std::get_if<int64_t>(&mv.value)) {
      v = static_cast<double>(*i);
    } else {
      continue;  // booleans have no sum
    }
    const uint8_t p = property_of(mv.name);
    size_t k = 0;
    while (k < n.value_count && n.properties[k] != p) {
      ++k;
    }
    if (k == n.value_count) {
      if (k == max_values) {
        continue;
      }
      ++n.value_count;
      n.properties[k] = p;
    }
    n.values[k] = v;
  }
}

void ground_truth::observe(const record& r) {
  ++records_;
  if (r.malformed) {
    return;
  }
  if (r.data != nullptr) {
    as_of_ms_ = std::max(as_of_ms_, r.data->source_time_ms);
  }
  switch (r.type) {
    case record_type::asset: {
      if (r.data == nullptr || r.asset_index >= assets_) {
        return;
      }
      set_attributes(r.asset_index, *r.data);
      node& n = nodes_[r.asset_index];
      n.seen = true;
      set_values(n, *r.data);
      break;
    }
    case record_type::aggregate: {
      if (r.data == nullptr) {
        return;
      }
      const uint32_t idx = intern(r.data->asset_id);
      set_attributes(idx, *r.data);
      nodes_[idx].seen = true;
      break;
    }
    case record_type::relation: {
      if (r.relation == nullptr) {
        return;
      }
      const uint32_t child = node_of(r.relation->child);
      const uint32_t parent = intern(r.relation->parent);
      auto& parents = nodes_[child].explicit_parents;
      auto it = std::find(parents.begin(), parents.end(), parent);
      if (r.relation->set && it == parents.end()) {
        parents.push_back(parent);
      } else if (!r.relation->set && it != parents.end()) {
        parents.erase(it);
      }
      break;
    }
  }
}

std::string ground_truth::json(int64_t generated_ms) const {
  const size_t aggregates = nodes_.size() - assets_;
  const size_t props = property_names_.size();
  std::vector<stat> stats(aggregates * props);
  std::vector<uint64_t> twins(aggregates, 0);
  std::vector<uint8_t> known(aggregates, 0);
  std::vector<uint32_t> stamp(nodes_.size(), 0);
  std::vector<uint32_t> stack;
  uint32_t mark = 0;
  // Calls visit(aggregate) once for every aggregate above `from`.
  auto walk = [&](uint32_t from, auto&& visit) {
    ++mark;
    stack.assign(1, from);
    while (!stack.empty()) {
      const node& n = nodes_[stack.back()];
      stack.pop_back();
      auto reach = [&](uint32_t p) {
        if (stamp[p] != mark && p >= assets_) {
          stamp[p] = mark;
          visit(p - static_cast<uint32_t>(assets_));
          stack.push_back(p);
        }
      };
      for (uint8_t k = 0; k < n.rule_parent_count; ++k) {
        reach(n.rule_parents[k]);
      }
      for (uint32_t p : n.explicit_parents) {
        reach(p);
      }
    }
  };
  uint64_t reported = 0;
  for (uint32_t i = 0; i < assets_; ++i) {
    const node& n = nodes_[i];
    if (!n.seen) {
      continue;
    }
    ++reported;
    walk(i, [&](size_t a) {
      ++twins[a];
      known[a] = 1;
      for (uint8_t k = 0; k < n.value_count; ++k) {
        stats[a * props + n.properties[k]].add(n.values[k]);
      }
    });
  }
  for (size_t a = 0; a < aggregates; ++a) {
    if (nodes_[assets_ + a].seen) {
      known[a] = 1;
      walk(static_cast<uint32_t>(assets_ + a), [&](size_t up) { known[up] = 1; });
    }
  }

  std::vector<uint32_t> order;
  for (size_t a = 0; a < aggregates; ++a) {
    if (known[a] != 0) {
      order.push_back(static_cast<uint32_t>(a));
    }
  }
  std::sort(order.begin(), order.end(),
            [&](uint32_t x, uint32_t y) { return aggregate_ids_[x] < aggregate_ids_[y]; });
  std::vector<uint8_t> prop_order(props);
  for (size_t p = 0; p < props; ++p) {
    prop_order[p] = static_cast<uint8_t>(p);
  }
  std::sort(prop_order.begin(), prop_order.end(),
            [&](uint8_t x, uint8_t y) { return property_names_[x] < property_names_[y]; });

  std::string out;
  out.reserve(256 + order.size() * (64 + 3 * 24 * props));
  fmt::format_to(std::back_inserter(out),
                 "{{\"generated_ms\":{},\"as_of_ms\":{},\"records\":{},\"twins\":{},"
                 "\"aggregates\":{{",
                 generated_ms, as_of_ms_, records_, reported);
  auto field = [&](std::string_view name, size_t a, auto&& value) {
    out.append(",\"");
    out.append(name);
    out.append("\":{");
    bool first = true;
    for (uint8_t p : prop_order) {
      const stat& st = stats[a * props + p];
      if (st.n == 0) {
        continue;
      }
      if (!first) {
        out.push_back(',');
      }
      first = false;
      append_json_string(out, property_names_[p]);
      out.push_back(':');
      append_json_double(out, value(st));
    }
    out.push_back('}');
  };
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t a = order[k];
    const std::string& id = aggregate_ids_[a];
    out.append(k == 0 ? "\n" : ",\n");
    append_json_string(out, id);
    out.append(":{\"kind\":");
    append_json_string(out, kind_of_collection(std::string_view{id}.substr(0, id.find('/'))));
    fmt::format_to(std::back_inserter(out), ",\"twins\":{}", twins[a]);
    field("sum", a, [](const stat& s) { return s.total(); });
    field("min", a, [](const stat& s) { return s.min; });
    field("max", a, [](const stat& s) { return s.max; });
    out.push_back('}');
  }
  out.append("}}\n");
  return out;
}

}  // namespace fleettwin::sim
