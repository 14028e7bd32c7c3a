#include "services/node/aggregate_config.hpp"
#include "actors/core/text.hpp"

#include <fstream>
#include <sstream>

#include <toml++/toml.h>

namespace fleettwin::node {

namespace {

std::string where(const std::string& origin, const toml::node& n) {
  const auto& src = n.source();
  return origin + ":" + std::to_string(src.begin.line);
}

/// A required string field of a table.
bool text(const toml::table& t, std::string_view key, const std::string& origin,
          std::string_view what, std::string& out, std::string& error) {
  const auto* v = t.get(key);
  if (!v) {
    error = where(origin, t) + ": " + std::string{what} + " needs " + std::string{key};
    return false;
  }
  auto s = v->value<std::string>();
  if (!s) {
    error = where(origin, *v) + ": " + std::string{key} + " must be a string";
    return false;
  }
  out = *s;
  return true;
}

bool strings(const toml::table& t, std::string_view key, const std::string& origin,
             std::vector<std::string>& out, std::string& error) {
  const auto* v = t.get(key);
  if (!v)
    return true;
  const auto* arr = v->as_array();
  if (!arr) {
    error = where(origin, *v) + ": " + std::string{key} + " must be an array of strings";
    return false;
  }
  for (const auto& e : *arr) {
    auto s = e.value<std::string>();
    if (!s) {
      error = where(origin, e) + ": " + std::string{key} + " must hold strings only";
      return false;
    }
    out.push_back(*s);
  }
  return true;
}

}  // namespace

std::shared_ptr<core::kind_registry> parse_aggregate_config(std::string_view text_in,
                                                            const std::string& origin,
                                                            std::string& error) {
  toml::table doc;
  try {
    doc = toml::parse(text_in, origin);
  } catch (const toml::parse_error& e) {
    error =
        origin + ":" + std::to_string(e.source().begin.line) + ": " + std::string{e.description()};
    return nullptr;
  }
  for (const auto& [key, node] : doc)
    if (key != "kind" && key != "rule") {
      error = where(origin, node) + ": unknown key \"" + std::string{key.str()} +
              "\": expected [[kind]] or [[rule]] tables";
      return nullptr;
    }
  auto registry = std::make_shared<core::kind_registry>();
  if (const auto* kinds = doc.get("kind")) {
    const auto* arr = kinds->as_array();
    if (!arr) {
      error = where(origin, *kinds) + ": kinds are [[kind]] tables";
      return nullptr;
    }
    for (const auto& entry : *arr) {
      const auto* t = entry.as_table();
      if (!t) {
        error = where(origin, entry) + ": kinds are [[kind]] tables";
        return nullptr;
      }
      core::aggregate_kind k;
      std::vector<std::string> measures;
      if (!text(*t, "name", origin, "a kind", k.name, error) ||
          !text(*t, "collection", origin, "kind " + k.name, k.collection, error) ||
          !strings(*t, "members", origin, k.member_relations, error) ||
          !strings(*t, "measures", origin, measures, error))
        return nullptr;
      if (const auto* d = t->get("description"))
        k.description = d->value<std::string>().value_or("");
      for (const auto& [key, node] : *t)
        if (key != "name" && key != "collection" && key != "members" && key != "measures" &&
            key != "description") {
          error = where(origin, node) + ": kind \"" + k.name + "\": unknown key \"" +
                  std::string{key.str()} +
                  "\" (expected name, collection, members, measures, description)";
          return nullptr;
        }
      for (const auto& m : measures) {
        auto eq = m.find('=');
        if (eq == std::string::npos) {
          error = where(origin, *t) + ": kind \"" + k.name + "\": measure \"" + m +
                  "\" must read \"name = expression\"";
          return nullptr;
        }
        k.measures.emplace_back(std::string{core::trim(std::string_view{m}.substr(0, eq))},
                                std::string{core::trim(std::string_view{m}.substr(eq + 1))});
      }
      if (registry->by_name(k.name)) {
        error = where(origin, *t) + ": kind \"" + k.name + "\" is declared twice";
        return nullptr;
      }
      if (auto err = registry->put(k)) {
        error = where(origin, *t) + ": " + *err;
        return nullptr;
      }
    }
  }
  if (const auto* rules = doc.get("rule")) {
    const auto* arr = rules->as_array();
    if (!arr) {
      error = where(origin, *rules) + ": rules are [[rule]] tables";
      return nullptr;
    }
    for (const auto& entry : *arr) {
      const auto* t = entry.as_table();
      if (!t) {
        error = where(origin, entry) + ": rules are [[rule]] tables";
        return nullptr;
      }
      core::relation_rule r;
      if (!text(*t, "attribute", origin, "a rule", r.attribute, error) ||
          !text(*t, "relation", origin, "rule attributes." + r.attribute, r.type, error) ||
          !text(*t, "collection", origin, "rule attributes." + r.attribute, r.collection, error))
        return nullptr;
      if (auto err = registry->add_rule(r)) {
        error = where(origin, *t) + ": " + *err;
        return nullptr;
      }
      // A rule must lead to a kind that takes members by its relation.
      core::relation probe{r.type, r.collection + "/x", core::relation_origin::rule};
      if (auto err = registry->check("", probe)) {
        error = where(origin, *t) + ": rule attributes." + r.attribute + " -> " + r.type + " " +
                r.collection + "/<value>: " + *err;
        return nullptr;
      }
    }
  }
  return registry;
}

std::shared_ptr<core::kind_registry> load_aggregate_config(const std::string& path,
                                                           std::string& error) {
  std::ifstream in{path};
  if (!in) {
    error = "cannot read aggregate kinds file " + path;
    return nullptr;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_aggregate_config(buf.str(), path, error);
}

}  // namespace fleettwin::node
