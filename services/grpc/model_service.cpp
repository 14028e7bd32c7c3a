#include "services/grpc/model_service.hpp"

#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr std::string_view model_prefix = "models/";

std::string threshold_text(const std::optional<core::threshold>& t) {
  return t ? core::to_string(*t) : std::string{};
}

}  // namespace

void model_to_proto(const core::asset_model& m, fleettwin::v1::AssetModel& out) {
  out.Clear();
  out.set_name(std::string{model_prefix} + m.kind);
  out.set_kind(m.kind);
  out.set_description(m.description);
  out.set_revision(m.revision);
  for (const auto& p : m.properties) {
    auto* o = out.add_properties();
    o->set_name(p.name);
    o->set_type(core::to_string(p.type));
    o->set_unit(p.unit);
    if (p.min)
      o->set_min(*p.min);
    if (p.max)
      o->set_max(*p.max);
    o->set_expected_interval_ms(p.expected_interval_ms);
    o->set_max_rate_per_s(p.max_rate_per_s);
    o->set_stuck_after_ms(p.stuck_after_ms);
    o->set_warning(threshold_text(p.warning));
    o->set_critical(threshold_text(p.critical));
    o->set_failure(threshold_text(p.failure));
    o->set_period_ms(p.period_ms);
    o->set_sensitive(p.sensitive);
    o->set_sensitivity(p.sensitivity);
    o->set_alert_after_samples(p.alert_after_samples);
    o->set_alert_after_ms(p.alert_after_ms);
    o->set_clear_after_samples(p.clear_after_samples);
    o->set_clear_after_ms(p.clear_after_ms);
    for (const auto& st : p.analyse_in)
      o->add_analyse_in(st);
    o->set_settle_ms(p.settle_ms);
  }
  for (const auto& st : m.states) {
    auto* o = out.add_states();
    o->set_name(st.name);
    o->set_when(st.when);
  }
}

std::optional<core::asset_model> model_from_proto(const fleettwin::v1::AssetModel& p,
                                                  std::string& error) {
  core::asset_model m;
  m.kind = p.kind();
  m.description = p.description();
  m.revision = p.revision();
  for (int i = 0; i < p.properties_size(); ++i) {
    const auto& q = p.properties(i);
    const std::string where = "properties[" + std::to_string(i) + "] (\"" + q.name() + "\"): ";
    core::property_model pm;
    pm.name = q.name();
    if (!q.type().empty()) {
      auto t = core::parse_property_type(q.type());
      if (!t) {
        error = where + "type \"" + q.type() + "\" is not number, integer, boolean or text";
        return std::nullopt;
      }
      pm.type = *t;
    }
    pm.unit = q.unit();
    if (q.has_min())
      pm.min = q.min();
    if (q.has_max())
      pm.max = q.max();
    pm.expected_interval_ms = q.expected_interval_ms();
    pm.max_rate_per_s = q.max_rate_per_s();
    pm.stuck_after_ms = q.stuck_after_ms();
    for (auto [text, field, slot] : {std::tuple{&q.warning(), "warning", &pm.warning},
                                     std::tuple{&q.critical(), "critical", &pm.critical},
                                     std::tuple{&q.failure(), "failure", &pm.failure}}) {
      if (text->empty())
        continue;
      std::string why;
      auto t = core::parse_threshold(*text, why);
      if (!t) {
        error = where + field + ": " + why;
        return std::nullopt;
      }
      *slot = *t;
    }
    pm.period_ms = q.period_ms();
    pm.sensitive = q.sensitive();
    pm.sensitivity = q.sensitivity() == 0 ? 1 : q.sensitivity();
    // 0: not set, the default.
    if (q.alert_after_samples() != 0)
      pm.alert_after_samples = q.alert_after_samples();
    pm.alert_after_ms = q.alert_after_ms();
    if (q.clear_after_samples() != 0)
      pm.clear_after_samples = q.clear_after_samples();
    pm.clear_after_ms = q.clear_after_ms();
    pm.analyse_in.assign(q.analyse_in().begin(), q.analyse_in().end());
    pm.settle_ms = q.settle_ms();
    m.properties.push_back(std::move(pm));
  }
  for (const auto& st : p.states())
    m.states.push_back({st.name(), st.when(), {}});
  return m;
}

model_service::model_service(std::shared_ptr<runtime::models_holder> models, query_pool& pool,
                             model_writer put, metrics::grpc_probe& probe, twin_backend* audit_to)
    : models_(std::move(models)),
      pool_(pool),
      put_(std::move(put)),
      put_probe_(probe.method("PutModel")),
      get_probe_(probe.method("GetModel")),
      list_probe_(probe.method("ListModels")),
      audit_to_(audit_to) {}

::grpc::ServerUnaryReactor* model_service::PutModel(::grpc::CallbackServerContext* ctx,
                                                    const fleettwin::v1::PutModelRequest* req,
                                                    fleettwin::v1::AssetModel* resp) {
  call c{ctx, put_probe_};
  if (!c.admit(audit_to_ ? audit_to_->gate() : nullptr))
    return c.reactor();
  if (audit_to_)
    c.audit(*audit_to_, "/fleettwin.v1.ModelService/PutModel", "models/" + req->model().kind(),
            false);
  const auto& p = req->model();
  if (p.kind().empty()) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "model.kind is required: the twin kind the model describes (e.g. \"vehicle\")"});
    return c.reactor();
  }
  if (!p.name().empty() && p.name() != std::string{model_prefix} + p.kind()) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "model.name \"" + p.name() + "\" does not match kind \"" + p.kind() +
                  "\" (expected \"models/" + p.kind() + "\", or leave it empty)"});
    return c.reactor();
  }
  std::string error;
  auto m = model_from_proto(p, error);
  if (!m) {
    c.finish({StatusCode::INVALID_ARGUMENT, "model." + error});
    return c.reactor();
  }
  if (auto why = core::validate(*m)) {
    c.finish({StatusCode::INVALID_ARGUMENT, *why});
    return c.reactor();
  }
  auto put = put_;
  bool queued = pool_.submit([c, resp, put, model = std::move(*m)]() mutable {
    bool invalid = false;
    std::string error;
    if (!put(model, invalid, error)) {
      c.finish({invalid ? StatusCode::INVALID_ARGUMENT : StatusCode::UNAVAILABLE, error});
      return;
    }
    model_to_proto(model, *resp);
    c.finish(Status::OK);
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

::grpc::ServerUnaryReactor* model_service::GetModel(::grpc::CallbackServerContext* ctx,
                                                    const fleettwin::v1::GetModelRequest* req,
                                                    fleettwin::v1::AssetModel* resp) {
  call c{ctx, get_probe_};
  if (!c.admit(audit_to_ ? audit_to_->gate() : nullptr))
    return c.reactor();
  const auto& name = req->name();
  if (!name.starts_with(model_prefix) || name.size() == model_prefix.size()) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "name \"" + name + "\" is not of the form \"models/{kind}\""});
    return c.reactor();
  }
  const auto kind = name.substr(model_prefix.size());
  auto set = models_ ? models_->get() : nullptr;
  auto it = set ? set->find(kind) : core::model_set::const_iterator{};
  if (!set || it == set->end()) {
    c.finish({StatusCode::NOT_FOUND, "no model for kind \"" + kind + "\""});
    return c.reactor();
  }
  model_to_proto(it->second, *resp);
  c.finish(Status::OK);
  return c.reactor();
}

::grpc::ServerUnaryReactor* model_service::ListModels(::grpc::CallbackServerContext* ctx,
                                                      const fleettwin::v1::ListModelsRequest*,
                                                      fleettwin::v1::ListModelsResponse* resp) {
  call c{ctx, list_probe_};
  if (!c.admit(audit_to_ ? audit_to_->gate() : nullptr))
    return c.reactor();
  if (auto set = models_ ? models_->get() : nullptr)
    for (const auto& [kind, m] : *set)
      model_to_proto(m, *resp->add_models());
  c.finish(Status::OK);
  return c.reactor();
}

}  // namespace fleettwin::grpc_api
