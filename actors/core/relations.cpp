#include "actors/core/relations.hpp"

#include <algorithm>

namespace fleettwin::core {

const char* to_string(relation_origin o) {
  switch (o) {
    case relation_origin::rule:
      return "rule";
    case relation_origin::api:
      return "api";
    case relation_origin::topic:
      return "topic";
  }
  return "?";
}

std::string_view collection_of(std::string_view id) {
  auto slash = id.find('/');
  return slash == std::string_view::npos ? std::string_view{} : id.substr(0, slash);
}

std::optional<std::string> kind_registry::put(const aggregate_kind& kind) {
  auto compiled = std::make_shared<compiled_kind>();
  if (auto err = compile_kind(kind, *compiled))
    return err;
  if (auto it = by_collection_.find(kind.collection);
      it != by_collection_.end() && it->second->def.name != kind.name)
    return "collection \"" + kind.collection + "\" already belongs to kind \"" +
           it->second->def.name + "\"";
  if (auto it = kinds_.find(kind.name); it != kinds_.end())
    by_collection_.erase(it->second->def.collection);
  std::shared_ptr<const compiled_kind> shared = std::move(compiled);
  kinds_[kind.name] = shared;
  by_collection_[kind.collection] = shared;
  refresh_fields();
  return std::nullopt;
}

std::optional<std::string> kind_registry::add_rule(const relation_rule& rule) {
  if (rule.attribute.empty())
    return std::string{"relation rule needs an attribute"};
  if (auto e = validate_kind_name(rule.type, "relation type of rule attributes." + rule.attribute))
    return e;
  if (auto e =
          validate_kind_name(rule.collection, "collection of rule attributes." + rule.attribute))
    return e;
  for (const auto& r : rules_)
    if (r.attribute == rule.attribute && r.collection == rule.collection)
      return "a rule for attributes." + rule.attribute + " -> " + rule.collection +
             " already exists";
  rules_.push_back(rule);
  return std::nullopt;
}

const compiled_kind* kind_registry::by_name(std::string_view name) const {
  auto it = kinds_.find(name);
  return it == kinds_.end() ? nullptr : it->second.get();
}

const compiled_kind* kind_registry::kind_of(std::string_view id) const {
  auto c = collection_of(id);
  if (c.empty() || c.size() + 1 >= id.size())
    return nullptr;
  auto it = by_collection_.find(c);
  return it == by_collection_.end() ? nullptr : it->second.get();
}

void kind_registry::refresh_fields() {
  fields_ = field_set{};
  for (const auto& [name, k] : kinds_)
    fields_.merge(k->fields);
}

std::optional<std::string> kind_registry::check(std::string_view child, const relation& r) const {
  if (auto e = validate_kind_name(r.type, "relation type"))
    return e;
  const compiled_kind* kind = kind_of(r.parent);
  if (!kind) {
    auto c = collection_of(r.parent);
    if (c.empty())
      return "parent \"" + r.parent +
             "\" is not an aggregate id: expected <collection>/<name>, e.g. fleets/north";
    return "parent \"" + r.parent + "\" is not an aggregate: no aggregate kind has collection \"" +
           std::string{c} + "\" (declare the kind first)";
  }
  if (r.parent == child)
    return "\"" + r.parent + "\" cannot be its own parent";
  const auto& types = kind->def.member_relations;
  if (std::find(types.begin(), types.end(), r.type) == types.end()) {
    std::string accepted;
    for (const auto& t : types)
      accepted += (accepted.empty() ? "" : ", ") + t;
    return "kind \"" + kind->def.name + "\" takes members by " + accepted + ", not by \"" + r.type +
           "\"";
  }
  return std::nullopt;
}

relation_list kind_registry::derive(
    std::string_view child,
    const std::map<std::string, std::string, std::less<>>& attributes) const {
  relation_list out;
  for (const auto& rule : rules_) {
    auto it = attributes.find(rule.attribute);
    if (it == attributes.end() || it->second.empty())
      continue;
    relation r{rule.type, rule.collection + "/" + it->second, relation_origin::rule};
    // A rule whose kind is not declared (yet), or a value that makes no valid
    // id, derives nothing: the attribute stays an attribute.
    if (check(child, r))
      continue;
    out.push_back(std::move(r));
  }
  normalize(out);
  return out;
}

void normalize(relation_list& relations) {
  std::stable_sort(relations.begin(), relations.end(),
                   [](const relation& a, const relation& b) { return a.parent < b.parent; });
  // Keep the last of equal parents.
  relation_list out;
  out.reserve(relations.size());
  for (auto& r : relations) {
    if (!out.empty() && out.back().parent == r.parent)
      out.back() = std::move(r);
    else
      out.push_back(std::move(r));
  }
  relations = std::move(out);
}

relation_list merge_relations(const relation_list& explicit_relations,
                              const relation_list& derived) {
  relation_list out;
  for (const auto& r : derived)
    out.push_back(r);
  for (const auto& r : explicit_relations)
    if (r.origin != relation_origin::rule)
      out.push_back(r);
  normalize(out);  // explicit ones come last, so they win
  return out;
}

relation_diff diff(const relation_list& before, const relation_list& after) {
  relation_diff d;
  size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    if (j == after.size() || (i < before.size() && before[i].parent < after[j].parent)) {
      d.removed.push_back(before[i++]);
    } else if (i == before.size() || after[j].parent < before[i].parent) {
      d.added.push_back(after[j++]);
    } else {
      if (before[i].type != after[j].type)
        d.retyped.push_back(after[j]);
      ++i;
      ++j;
    }
  }
  return d;
}

std::optional<std::string> apply_relation_update(std::string_view child,
                                                 const relation_list& current,
                                                 const relation_update& u,
                                                 const kind_registry& kinds,
                                                 const std::function<bool(std::string_view)>& below,
                                                 relation_list& out) {
  relation_list next;
  for (const auto& r : current)
    if (!u.replace || r.origin == relation_origin::rule)
      next.push_back(r);
  for (const auto& parent : u.remove) {
    auto it = std::find_if(next.begin(), next.end(),
                           [&](const relation& r) { return r.parent == parent; });
    if (it == next.end())
      continue;  // deleting what is not there is done already
    if (it->origin == relation_origin::rule)
      return "the relation of \"" + std::string{child} + "\" to \"" + parent +
             "\" is derived from its attributes by a rule: change the attribute instead";
    next.erase(it);
  }
  for (const auto& r : u.set) {
    if (auto e = kinds.check(child, r))
      return e;
    auto it = std::find_if(next.begin(), next.end(),
                           [&](const relation& x) { return x.parent == r.parent; });
    const bool known = it != next.end();
    if (!known && below && below(r.parent))
      return "relation " + std::string{child} + " " + r.type + " " + r.parent +
             " would close a cycle: \"" + r.parent + "\" is below \"" + std::string{child} + "\"";
    relation set{r.type, r.parent, u.origin};
    if (known)
      *it = std::move(set);
    else
      next.push_back(std::move(set));
  }
  normalize(next);
  if (next.size() > max_parents)
    return "\"" + std::string{child} + "\" would have " + std::to_string(next.size()) +
           " parents; at most " + std::to_string(max_parents) + " are allowed";
  out = std::move(next);
  return std::nullopt;
}

relation_list rederive(std::string_view child, const relation_list& current,
                       const std::map<std::string, std::string, std::less<>>& attributes,
                       const kind_registry& kinds) {
  auto derived = kinds.derive(child, attributes);
  if (derived.size() > max_parents)
    derived.resize(max_parents);
  return merge_relations(current, derived);
}

}  // namespace fleettwin::core
