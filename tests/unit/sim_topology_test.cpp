#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fleettwin/v1/aggregate.pb.h"
#include "fleettwin/v1/telemetry.pb.h"
#include "tools/sim/encoding.hpp"
#include "tools/sim/generator.hpp"
#include "tools/sim/topology.hpp"
#include "tools/sim/truth.hpp"

using namespace fleettwin::sim;

namespace {

struct captured {
  std::string key;
  std::string value;
  std::string content_type;
  record_type type = record_type::asset;
  bool malformed = false;
  std::string kind;
  uint64_t sequence = 0;
  std::map<std::string, std::string> attributes;
  std::map<std::string, double> numbers;
  // Relation records.
  std::string parent;
  bool set = false;
};

config topo_config() {
  config cfg;
  cfg.assets = 3000;
  cfg.rate = 3000;  // each asset reports once per virtual second
  cfg.count = 200'000;
  cfg.topology = true;
  return cfg;
}

std::vector<captured> run(const config& cfg, generator* use = nullptr,
                          ground_truth* truth = nullptr) {
  std::optional<generator> own;
  if (use == nullptr) {
    own.emplace(cfg);
    use = &*own;
  }
  std::vector<captured> out;
  record r;
  while (use->next(r)) {
    if (truth != nullptr) {
      truth->observe(r);
    }
    captured c;
    c.key = r.key;
    c.value = r.value;
    c.content_type = r.content_type;
    c.type = r.type;
    c.malformed = r.malformed.has_value();
    if (r.data != nullptr) {
      c.kind = r.data->kind;
      c.sequence = r.data->sequence;
      for (size_t a = 0; a < r.data->attribute_size; ++a) {
        c.attributes.emplace(r.data->attributes[a].first, r.data->attributes[a].second);
      }
      for (size_t m = 0; m < r.data->metric_size; ++m) {
        const auto& v = r.data->metrics[m].value;
        if (const auto* d = std::get_if<double>(&v)) {
          c.numbers.emplace(r.data->metrics[m].name, *d);
        } else if (const auto* i = std::get_if<int64_t>(&v)) {
          c.numbers.emplace(r.data->metrics[m].name, static_cast<double>(*i));
        }
      }
    }
    if (r.relation != nullptr) {
      c.parent = r.relation->parent;
      c.set = r.relation->set;
    }
    out.push_back(std::move(c));
  }
  return out;
}

fleettwin::v1::RelationRecord parse_relation(const captured& c) {
  fleettwin::v1::RelationRecord rec;
  if (c.content_type == content_type_json) {
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(c.value, &rec).ok()) << c.value;
  } else {
    EXPECT_TRUE(rec.ParseFromString(c.value));
  }
  return rec;
}

}  // namespace

TEST(SimTopology, OffByDefaultAndDeterministic) {
  config plain;
  EXPECT_FALSE(plain.topology);
  EXPECT_EQ(generator{plain}.topo(), nullptr);

  config cfg = topo_config();
  cfg.count = 20'000;
  cfg.format = payload_format::mixed;
  auto a = run(cfg);
  auto b = run(cfg);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].key, b[i].key) << i;
    ASSERT_EQ(a[i].value, b[i].value) << i;
  }
  cfg.seed = 2;
  auto c = run(cfg);
  size_t differing = 0;
  for (size_t i = 0; i < std::min(a.size(), c.size()); ++i) {
    differing += a[i].value != c[i].value ? 1 : 0;
  }
  EXPECT_GT(differing, a.size() / 2);
}

TEST(SimTopology, GridFanOuts) {
  config cfg = topo_config();
  generator gen(cfg);
  const topology& t = *gen.topo();
  std::map<uint32_t, int> per_transformer;
  std::map<uint32_t, int> per_feeder;
  std::map<uint32_t, int> per_substation;
  for (size_t i = 0; i < gen.asset_count(); ++i) {
    if (gen.kind_of(i) == asset_kind::meter) {
      ASSERT_NE(t.parent[i], aggregate_info::none);
      EXPECT_EQ(t.aggregates[t.parent[i]].kind, "transformer");
      ++per_transformer[t.parent[i]];
    }
  }
  for (const auto& a : t.aggregates) {
    if (a.kind == "transformer") {
      ++per_feeder[a.parent];
    } else if (a.kind == "feeder") {
      ++per_substation[a.parent];
    } else if (a.kind == "substation") {
      EXPECT_EQ(a.attributes[0].first, "grid");
      EXPECT_EQ(a.attributes[0].second, "main");
    }
  }
  EXPECT_EQ(per_transformer.size(), t.transformers);
  for (auto [tr, n] : per_transformer) {
    EXPECT_GE(n, 15) << t.aggregates[tr].id;
    EXPECT_LE(n, 50) << t.aggregates[tr].id;
  }
  for (auto [fd, n] : per_feeder) {
    EXPECT_GE(n, 3) << t.aggregates[fd].id;
    EXPECT_LE(n, 9) << t.aggregates[fd].id;
  }
  for (auto [ss, n] : per_substation) {
    EXPECT_GE(n, 1) << t.aggregates[ss].id;
    EXPECT_LE(n, 4) << t.aggregates[ss].id;
  }
}

TEST(SimTopology, FirstRoundComesFirstParentsBeforeChildren) {
  config cfg = topo_config();
  cfg.count = 5000;
  cfg.format = payload_format::mixed;
  generator gen(cfg);
  const auto recs = run(cfg, &gen);
  const auto& aggs = gen.topo()->aggregates;
  ASSERT_GT(recs.size(), aggs.size());
  std::set<std::string> emitted;
  for (size_t k = 0; k < aggs.size(); ++k) {
    const auto& c = recs[k];
    ASSERT_EQ(c.type, record_type::aggregate) << k;
    EXPECT_EQ(c.key, aggs[k].id);
    EXPECT_EQ(c.sequence, 1u);
    fleettwin::v1::Telemetry tel;
    if (c.content_type == content_type_json) {
      ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(c.value, &tel).ok()) << c.value;
    } else {
      ASSERT_TRUE(tel.ParseFromString(c.value));
    }
    EXPECT_EQ(tel.asset_id(), c.key);
    EXPECT_EQ(tel.kind(), aggs[k].kind);
    EXPECT_EQ(tel.metrics_size(), 0);
    EXPECT_EQ(static_cast<size_t>(tel.attributes_size()), aggs[k].attribute_size);
    for (const auto& [key, value] : tel.attributes()) {
      for (const auto& rule : relation_rules()) {
        if (rule.attribute != key) {
          continue;
        }
        // Parents without records of their own: grids, regions, plants.
        auto parent = std::string{rule.collection} + "/" + value;
        if (rule.collection != "grids" && rule.collection != "regions" &&
            rule.collection != "plants") {
          EXPECT_TRUE(emitted.count(parent)) << c.key << " -> " << parent;
        }
      }
    }
    emitted.insert(c.key);
  }
  // Every asset names a parent that has a record.
  for (size_t k = aggs.size(); k < recs.size(); ++k) {
    const auto& c = recs[k];
    if (c.type != record_type::asset) {
      continue;
    }
    EXPECT_FALSE(c.attributes.count("fleet") && c.kind != "vehicle") << c.key;
    if (c.kind == "vehicle") {
      EXPECT_TRUE(emitted.count("fleets/" + c.attributes.at("fleet")));
      EXPECT_TRUE(emitted.count("depots/" + c.attributes.at("depot")));
      EXPECT_EQ(c.attributes.at("site"), c.attributes.at("depot"));
    } else if (c.kind == "machine") {
      EXPECT_TRUE(emitted.count("lines/" + c.attributes.at("line")));
    } else {
      EXPECT_TRUE(emitted.count("transformers/" + c.attributes.at("transformer")));
      EXPECT_EQ(c.attributes.at("site").rfind("ss-", 0), 0u);
    }
  }
}

TEST(SimTopology, RoundsRepeat) {
  config cfg = topo_config();
  cfg.topology_interval_s = 10;  // 30000 slots at 3000 records/s
  cfg.count = 100'000;
  generator gen(cfg);
  const auto recs = run(cfg, &gen);
  const size_t n = gen.topo()->aggregates.size();
  std::map<uint64_t, size_t> per_round;
  for (const auto& c : recs) {
    if (c.type == record_type::aggregate) {
      ++per_round[c.sequence];
    }
  }
  ASSERT_EQ(per_round.size(), 4u);  // before slots 0, 30000, 60000, 90000
  for (auto [round, count] : per_round) {
    EXPECT_EQ(count, n) << round;
  }
  EXPECT_EQ(gen.aggregate_records_emitted(), 4 * n);
}

TEST(SimTopology, ChargingRelationsFollowTheVehicle) {
  config cfg = topo_config();
  cfg.format = payload_format::mixed;
  generator gen(cfg);
  const auto recs = run(cfg, &gen);
  std::map<std::string, std::string> charging;  // vehicle -> charger
  size_t sets = 0;
  size_t removes = 0;
  for (size_t k = 0; k < recs.size(); ++k) {
    const auto& c = recs[k];
    if (c.type != record_type::relation) {
      continue;
    }
    auto rec = parse_relation(c);
    EXPECT_EQ(rec.child(), c.key);
    // Right after the reading that caused it.
    ASSERT_GT(k, 0u);
    const auto& reading = recs[k - 1];
    ASSERT_EQ(reading.key, c.key);
    ASSERT_EQ(reading.type, record_type::asset);
    const auto depot = reading.attributes.at("depot");
    if (rec.set_size() == 1) {
      ++sets;
      EXPECT_EQ(rec.remove_size(), 0);
      EXPECT_EQ(rec.set(0).type(), "charging_at");
      EXPECT_EQ(rec.set(0).parent(), c.parent);
      EXPECT_EQ(c.parent.rfind("chargers/" + depot + "-c", 0), 0u) << c.parent;
      EXPECT_EQ(reading.numbers.at("speed"), 0.0);
      EXPECT_FALSE(charging.count(c.key)) << c.key << " plugged in twice";
      charging[c.key] = c.parent;
    } else {
      ++removes;
      ASSERT_EQ(rec.remove_size(), 1);
      EXPECT_EQ(rec.remove(0), charging[c.key]);
      EXPECT_GT(reading.numbers.at("battery"), 90.0);
      charging.erase(c.key);
    }
  }
  EXPECT_GT(sets, 20u);
  EXPECT_GT(removes, 0u);
  EXPECT_EQ(gen.relation_records_emitted(), sets + removes);
}

TEST(SimTopology, MeterVoltageSagsNowAndThen) {
  config cfg = topo_config();
  cfg.assets = 300;
  cfg.rate = 300;
  cfg.count = 300 * 600;  // ten virtual minutes
  std::vector<double> voltages;
  for (const auto& c : run(cfg)) {
    if (c.kind == "meter" && c.type == record_type::asset) {
      voltages.push_back(c.numbers.at("voltage"));
      EXPECT_GT(c.numbers.at("power"), -1e-9);
    }
  }
  auto low = std::count_if(voltages.begin(), voltages.end(), [](double v) { return v < 207; });
  EXPECT_GT(low, 0);
  EXPECT_LT(static_cast<size_t>(low), voltages.size() / 10);
  std::sort(voltages.begin(), voltages.end());
  EXPECT_NEAR(voltages[voltages.size() / 2], 224, 6);
}

TEST(SimTopology, MalformedRecordsDoNotDisturbTheValidStream) {
  config cfg = topo_config();
  cfg.count = 10'000;
  auto plain = run(cfg);
  cfg.malformed = 40;
  cfg.malformed_every = 97;
  cfg.max_record_bytes = 1024;
  generator gen(cfg);
  auto mixed = run(cfg, &gen);
  ASSERT_EQ(mixed.size(), cfg.count);
  std::vector<const captured*> valid;
  for (size_t n = 0; n < mixed.size(); ++n) {
    EXPECT_EQ(mixed[n].malformed, gen.is_malformed_position(n)) << n;
    if (!mixed[n].malformed) {
      valid.push_back(&mixed[n]);
    }
  }
  for (size_t i = 0; i < valid.size(); ++i) {
    ASSERT_EQ(valid[i]->value, plain[i].value) << i;
  }
}

TEST(SimTruth, MatchesTheStream) {
  config cfg = topo_config();
  cfg.format = payload_format::mixed;
  cfg.malformed = 200;
  cfg.max_record_bytes = 1024;
  cfg.faults.push_back([] {
    std::string error;
    return *parse_fault("dropout:mtr-000001:*:0:1000", error);
  }());
  generator gen(cfg);
  ground_truth truth(gen);
  const auto recs = run(cfg, &gen, &truth);

  // What the platform should hold, recomputed from the records for a few kinds.
  std::map<std::string, const captured*> last;  // twin -> last valid reading
  std::map<std::string, std::string> charging;  // vehicle -> charger
  for (const auto& c : recs) {
    if (c.malformed) {
      continue;
    }
    if (c.type == record_type::asset) {
      last[c.key] = &c;
    } else if (c.type == record_type::relation) {
      if (c.set) {
        charging[c.key] = c.parent;
      } else {
        charging.erase(c.key);
      }
    }
  }
  struct expect {
    uint64_t twins = 0;
    double power = 0;
    double battery = 0;
  };
  std::map<std::string, expect> want;
  for (const auto& [id, c] : last) {
    if (c->kind == "meter") {
      for (auto agg :
           {"transformers/" + c->attributes.at("transformer"), std::string{"grids/main"}}) {
        ++want[agg].twins;
        want[agg].power += c->numbers.at("power");
      }
    } else if (c->kind == "vehicle") {
      for (auto agg :
           {"fleets/" + c->attributes.at("fleet"), "depots/" + c->attributes.at("depot")}) {
        ++want[agg].twins;
        want[agg].battery += c->numbers.at("battery");
      }
    }
  }
  for (const auto& [vehicle, charger] : charging) {
    ++want[charger].twins;
    want[charger].battery += last.at(vehicle)->numbers.at("battery");
  }
  EXPECT_EQ(last.count("mtr-000001"), 0u);  // dropped out for the whole run

  google::protobuf::Struct doc;
  const auto text = truth.json(0);
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text, &doc).ok());
  EXPECT_EQ(doc.fields().at("twins").number_value(), static_cast<double>(last.size()));
  EXPECT_EQ(doc.fields().at("records").number_value(), static_cast<double>(recs.size()));
  const auto& aggs = doc.fields().at("aggregates").struct_value().fields();
  for (const auto& [id, w] : want) {
    ASSERT_TRUE(aggs.count(id)) << id;
    const auto& got = aggs.at(id).struct_value().fields();
    EXPECT_EQ(got.at("twins").number_value(), static_cast<double>(w.twins)) << id;
    const auto& sum = got.at("sum").struct_value().fields();
    const auto property = w.power != 0 ? "power" : "battery";
    const double expected = w.power != 0 ? w.power : w.battery;
    EXPECT_NEAR(sum.at(property).number_value(), expected, 1e-6 * std::max(1.0, expected)) << id;
  }
  // Chargers nobody uses at the end are still there (they have attributes), with no twins.
  for (const auto& a : gen.topo()->aggregates) {
    ASSERT_TRUE(aggs.count(a.id)) << a.id;
    if (a.kind == "charger" && !want.count(a.id)) {
      EXPECT_EQ(aggs.at(a.id).struct_value().fields().at("twins").number_value(), 0) << a.id;
    }
  }
  // Twins below a region come through fleets and depots, each counted once.
  double region_twins = 0;
  for (auto region : {"regions/nordics-east", "regions/nordics-west"}) {
    region_twins += aggs.at(region).struct_value().fields().at("twins").number_value();
  }
  size_t vehicles = 0;
  for (const auto& [id, c] : last) {
    vehicles += c->kind == "vehicle" ? 1 : 0;
  }
  EXPECT_EQ(region_twins, static_cast<double>(vehicles));
}
