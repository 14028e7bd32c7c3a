#include "services/node/model_config.hpp"

#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

namespace fleettwin::node {

namespace {

std::string where(const std::string& origin, const toml::node& n) {
  return origin + ":" + std::to_string(n.source().begin.line);
}

/// Reads one property table into `p`; false with `error` set.
bool read_property(const toml::table& t, const std::string& origin, core::property_model& p,
                   std::string& error) {
  static const std::set<std::string_view> known{"type",
                                                "unit",
                                                "range",
                                                "expected_interval",
                                                "max_rate",
                                                "stuck_after",
                                                "warning",
                                                "critical",
                                                "failure",
                                                "period",
                                                "sensitive",
                                                "sensitivity",
                                                "alert_after_samples",
                                                "alert_after",
                                                "clear_after_samples",
                                                "clear_after",
                                                "analyse_in",
                                                "settle"};
  for (const auto& [key, node] : t)
    if (!known.contains(key.str())) {
      error = where(origin, node) + ": property \"" + p.name + "\" has no setting \"" +
              std::string{key.str()} + "\"";
      return false;
    }
  auto fail = [&](const toml::node& n, const std::string& what) {
    error = where(origin, n) + ": property \"" + p.name + "\": " + what;
    return false;
  };
  auto text = [&](std::string_view key, std::string& out) {
    const auto* n = t.get(key);
    if (!n)
      return true;
    auto s = n->value<std::string>();
    if (!s)
      return fail(*n, std::string{key} + " must be a string");
    out = *s;
    return true;
  };
  auto real = [&](const toml::node& n, std::string_view key, double& out) {
    if (auto d = n.value<double>()) {
      out = *d;
      return true;
    }
    return fail(n, std::string{key} + " must be a number");
  };
  auto duration = [&](std::string_view key, int64_t& out) {
    const auto* n = t.get(key);
    if (!n)
      return true;
    if (auto i = n->value_exact<int64_t>()) {
      out = *i;
      return true;
    }
    auto s = n->value<std::string>();
    auto ms = s ? core::parse_duration_ms(*s) : std::nullopt;
    if (!ms)
      return fail(*n, std::string{key} +
                          " must be a duration such as \"500ms\", \"10s\", \"5m\", \"24h\", "
                          "\"7d\" (or milliseconds)");
    out = *ms;
    return true;
  };
  auto limit = [&](std::string_view key, std::optional<core::threshold>& out) {
    const auto* n = t.get(key);
    if (!n)
      return true;
    auto s = n->value<std::string>();
    if (!s)
      return fail(*n, std::string{key} + " must be a string such as \"< 20\" or \"> 7.1\"");
    std::string why;
    out = core::parse_threshold(*s, why);
    return out ? true : fail(*n, std::string{key} + ": " + why);
  };
  std::string type = "number";
  if (!text("type", type))
    return false;
  if (auto pt = core::parse_property_type(type))
    p.type = *pt;
  else
    return fail(*t.get("type"),
                "type must be number, integer, boolean or text, not \"" + type + "\"");
  if (!text("unit", p.unit))
    return false;
  if (const auto* n = t.get("range")) {
    const auto* arr = n->as_array();
    double lo = 0;
    double hi = 0;
    if (!arr || arr->size() != 2 || !real(*arr->get(0), "range", lo) ||
        !real(*arr->get(1), "range", hi))
      return error.empty() ? fail(*n, "range must be [minimum, maximum]") : false;
    p.min = lo;
    p.max = hi;
  }
  if (const auto* n = t.get("max_rate"); n && !real(*n, "max_rate", p.max_rate_per_s))
    return false;
  if (const auto* n = t.get("sensitivity"); n && !real(*n, "sensitivity", p.sensitivity))
    return false;
  for (auto [key, out] : {std::pair{"alert_after_samples", &p.alert_after_samples},
                          std::pair{"clear_after_samples", &p.clear_after_samples}}) {
    if (const auto* n = t.get(key)) {
      auto i = n->value_exact<int64_t>();
      if (!i || *i < 1 || *i > core::max_alert_samples)
        return fail(*n, std::string{key} + " must be a whole number from 1 to " +
                            std::to_string(core::max_alert_samples));
      *out = static_cast<uint32_t>(*i);
    }
  }
  if (const auto* n = t.get("analyse_in")) {
    const auto* arr = n->as_array();
    if (!arr)
      return fail(*n, "analyse_in must be a list of the model's states, e.g. [\"running\"]");
    for (const auto& e : *arr) {
      auto name = e.value<std::string>();
      if (!name)
        return fail(e, "analyse_in must be a list of the model's states, e.g. [\"running\"]");
      p.analyse_in.push_back(*name);
    }
  }
  if (const auto* n = t.get("sensitive")) {
    auto b = n->value<bool>();
    if (!b)
      return fail(*n, "sensitive must be true or false");
    p.sensitive = *b;
  }
  return duration("expected_interval", p.expected_interval_ms) &&
         duration("stuck_after", p.stuck_after_ms) && duration("period", p.period_ms) &&
         duration("alert_after", p.alert_after_ms) && duration("clear_after", p.clear_after_ms) &&
         duration("settle", p.settle_ms) && limit("warning", p.warning) &&
         limit("critical", p.critical) && limit("failure", p.failure);
}

}  // namespace

std::vector<core::asset_model> parse_model_config(std::string_view text, const std::string& origin,
                                                  std::string& error) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    error =
        origin + ":" + std::to_string(e.source().begin.line) + ": " + std::string{e.description()};
    return {};
  }
  std::vector<core::asset_model> out;
  for (const auto& [key, node] : root)
    if (key.str() != "model") {
      error = where(origin, node) + ": unknown section \"" + std::string{key.str()} +
              "\" (models are [[model]] tables)";
      return {};
    }
  const auto* models = root.get_as<toml::array>("model");
  if (!models)
    return out;
  std::set<std::string> kinds;
  for (const auto& node : *models) {
    const auto* t = node.as_table();
    if (!t) {
      error = where(origin, node) + ": [[model]] must be a table";
      return {};
    }
    core::asset_model m;
    for (const auto& [key, value] : *t) {
      if (key.str() == "kind" || key.str() == "description") {
        auto s = value.value<std::string>();
        if (!s) {
          error = where(origin, value) + ": " + std::string{key.str()} + " must be a string";
          return {};
        }
        (key.str() == "kind" ? m.kind : m.description) = *s;
      } else if (key.str() == "properties") {
        const auto* props = value.as_table();
        if (!props) {
          error = where(origin, value) + ": properties must be a table of property tables";
          return {};
        }
        for (const auto& [name, pnode] : *props) {
          core::property_model p;
          p.name = std::string{name.str()};
          const auto* pt = pnode.as_table();
          if (!pt) {
            error = where(origin, pnode) + ": property \"" + p.name + "\" must be a table";
            return {};
          }
          if (!read_property(*pt, origin, p, error))
            return {};
          m.properties.push_back(std::move(p));
        }
      } else if (key.str() == "states") {
        const auto* states = value.as_table();
        if (!states) {
          error = where(origin, value) +
                  ": states must be a table of conditions, e.g. running = \"reported.running = "
                  "true\"";
          return {};
        }
        for (const auto& [name, cnode] : *states) {
          auto when = cnode.value<std::string>();
          if (!when) {
            error = where(origin, cnode) + ": state \"" + std::string{name.str()} +
                    "\" must be a condition in quotes, e.g. \"reported.running = true\"";
            return {};
          }
          core::operating_state st;
          st.name = std::string{name.str()};
          st.when = *when;
          m.states.push_back(std::move(st));
        }
      } else {
        error = where(origin, value) + ": a model has no setting \"" + std::string{key.str()} +
                "\" (kind, description, states, properties)";
        return {};
      }
    }
    if (auto why = core::validate(m)) {
      error = where(origin, node) + ": " + *why;
      return {};
    }
    if (!kinds.insert(m.kind).second) {
      error = where(origin, node) + ": model \"" + m.kind + "\" is declared twice";
      return {};
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<core::asset_model> load_model_config(const std::string& path, std::string& error) {
  std::ifstream in{path};
  if (!in) {
    error = "cannot read the models file " + path;
    return {};
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_model_config(buf.str(), path, error);
}

}  // namespace fleettwin::node
