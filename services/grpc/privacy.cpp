#include "services/grpc/privacy.hpp"

namespace fleettwin::grpc_api {

namespace {

/// The model of `kind` (nullptr: the kind has none).
const core::asset_model* model_of(const core::model_set& models, std::string_view kind) {
  auto it = models.find(kind);
  return it == models.end() ? nullptr : &it->second;
}

/// Leaves the values of `m`'s sensitive properties out of a twin or a change (`msg`): a
/// reported entry keeps its times and sequence, a desired value goes, `drop(name)` removes
/// the property from the message's other maps; the names shown go to msg.redacted.
template <class Message, class Drop>
void redact_sensitive(const core::asset_model& m, Message& msg, Drop drop) {
  for (const auto& p : m.properties) {
    if (!p.sensitive)
      continue;
    bool present = false;
    if (auto it = msg.mutable_reported()->find(p.name); it != msg.mutable_reported()->end()) {
      it->second.clear_value();
      present = true;
    }
    present |= msg.mutable_desired()->erase(p.name) > 0;
    present |= drop(p.name);
    if (present)
      msg.add_redacted(p.name);
  }
}

}  // namespace

void redact_all(const core::model_set& models, fleettwin::v1::TwinChange& c) {
  if (const auto* m = model_of(models, c.kind()))
    redact_sensitive(*m, c, [](const std::string&) { return false; });
}

privacy::privacy(const std::optional<caller>& who, const runtime::models_holder* models) {
  if (!who || !models)
    return;
  auto set = models->get();
  if (!set)
    return;
  for (const auto& [kind, m] : *set)
    for (const auto& p : m.properties)
      if (p.sensitive) {
        (who->read_sensitive ? revealing_ : models_) = std::move(set);
        return;
      }
}

std::vector<std::string> privacy::revealed(const fleettwin::v1::Twin& t) const {
  std::vector<std::string> out;
  if (!revealing_)
    return out;
  const auto* m = model_of(*revealing_, t.kind());
  if (!m)
    return out;
  for (const auto& p : m->properties)
    if (p.sensitive && (t.reported().contains(p.name) || t.desired().contains(p.name)))
      out.push_back(p.name);
  return out;
}

std::vector<std::string> privacy::revealable() const {
  std::vector<std::string> out;
  if (!revealing_)
    return out;
  for (const auto& [kind, m] : *revealing_)
    for (const auto& p : m.properties)
      if (p.sensitive)
        out.push_back(kind + "." + p.name);
  return out;
}

bool privacy::reveals(std::string_view kind, std::string_view property) const {
  return revealing_ && core::is_sensitive(*revealing_, kind, property);
}

bool privacy::masked(std::string_view kind, std::string_view property) const {
  return models_ && core::is_sensitive(*models_, kind, property);
}

void privacy::redact(fleettwin::v1::Twin& t) const {
  const auto* m = models_ ? model_of(*models_, t.kind()) : nullptr;
  if (!m)
    return;
  redact_sensitive(*m, t, [&t](const std::string& name) {
    // Statistics and analytics (min, max, forecasts) would reveal the values too.
    bool present = t.mutable_delta()->erase(name) > 0;
    present |= t.mutable_stats()->erase(name) > 0;
    present |= t.mutable_analysis()->erase(name) > 0;
    return present;
  });
}

void privacy::redact(fleettwin::v1::TwinChange& c) const {
  if (models_)
    redact_all(*models_, c);
}

std::optional<std::string> privacy::refuses(const core::filter& f) const {
  if (!models_)
    return std::nullopt;
  std::set<std::string, std::less<>> compared;
  f.properties_compared(compared);
  if (compared.empty())
    return std::nullopt;
  if (auto p = core::any_sensitive(*models_, compared))
    return sensitive_refusal(*p, "a filter comparing it");
  return std::nullopt;
}

std::string sensitive_refusal(std::string_view property, std::string_view what) {
  return "property \"" + std::string{property} +
         "\" is sensitive (its asset model says so): " + std::string{what} +
         " needs the read_sensitive permission in the token's roles";
}

}  // namespace fleettwin::grpc_api
