// TwinService.GetForecast: a property's forecast and time to failure, from
// the forecaster every twin keeps per numeric property.

#include <algorithm>
#include <cmath>

#include "actors/core/twin_analytics.hpp"
#include "services/grpc/convert.hpp"
#include "services/grpc/privacy.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace {

constexpr const char* forecast_method = "/fleettwin.v1.TwinService/GetForecast";
constexpr int64_t max_horizon_ms = 366LL * 86'400'000;
constexpr size_t max_points = 1000;

/// Fills `out` from the twin; an error status when the property has none.
Status forecast_of(const core::twin& tw, const std::string& property, int64_t horizon_ms,
                   int64_t step_ms, const core::model_set* models, fleettwin::v1::Forecast& out) {
  auto it = tw.analysis.find(property);
  if (it == tw.analysis.end()) {
    if (tw.reported.count(property))
      return {StatusCode::FAILED_PRECONDITION, "property \"" + property + "\" of twin \"" +
                                                   tw.asset_id +
                                                   "\" is not numeric: only numbers are forecast"};
    return {StatusCode::NOT_FOUND,
            "twin \"" + tw.asset_id + "\" has no property \"" + property + "\""};
  }
  const auto& a = it->second;
  const auto& f = a.state.forecast;
  const core::property_model* pm = nullptr;
  if (models)
    if (auto m = models->find(tw.kind); m != models->end())
      pm = m->second.find(property);
  const auto params = core::analytics_params(pm);
  out.set_name("twins/" + tw.asset_id);
  out.set_property(property);
  out.set_method(params.forecast.period_ms > 0 ? "holt_winters" : "damped_holt");
  out.set_origin_ms(f.last_time_ms);
  out.set_origin_value(f.last_value);
  out.set_samples(f.samples);
  out.set_mean_interval_ms(f.interval_ms);
  if (auto m = core::mase(f))
    out.set_mase(*m);
  // At most max_points points: a coarser step for a long horizon.
  int64_t step = step_ms > 0 ? step_ms : static_cast<int64_t>(std::llround(f.interval_ms));
  const auto points = static_cast<int64_t>(max_points);
  step = std::max<int64_t>({step, 1, (horizon_ms + points - 1) / points});
  for (const auto& p : core::forecast(f, params.forecast, horizon_ms, step, max_points)) {
    auto* o = out.add_points();
    o->set_time_ms(p.time_ms);
    o->set_value(p.value);
    o->set_lower80(p.lower80);
    o->set_upper80(p.upper80);
    o->set_lower95(p.lower95);
    o->set_upper95(p.upper95);
  }
  if (pm && pm->failure) {
    auto* ttf = out.mutable_time_to_failure();
    ttf->set_threshold(core::to_string(*pm->failure));
    // The expected time is the twin's own (Twin.failure_expected_ms: only a
    // slope beyond the series' noise heads somewhere); the band's crossings
    // give its interval.
    const auto& q = a.quality;
    ttf->set_failed(q.failed);
    if (q.failed) {
      ttf->set_expected_ms(f.last_time_ms);
    } else if (q.failure_eta_ms > 0) {
      ttf->set_expected_ms(q.failure_eta_ms);
      const auto c = core::time_to_threshold(f, params.forecast, pm->failure->value,
                                             pm->failure->above, max_horizon_ms);
      if (c.earliest_ms)
        ttf->set_earliest_ms(std::min(*c.earliest_ms, q.failure_eta_ms));
      if (c.latest_ms)
        ttf->set_latest_ms(std::max(*c.latest_ms, q.failure_eta_ms));
    }
  }
  return Status::OK;
}

}  // namespace

::grpc::ServerUnaryReactor* twin_service::GetForecast(::grpc::CallbackServerContext* ctx,
                                                      const fleettwin::v1::GetForecastRequest* req,
                                                      fleettwin::v1::Forecast* resp) {
  call c{ctx, forecast_};
  if (!c.admit(backend_))
    return c.reactor();
  std::string error;
  auto id = parse_twin_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  if (req->property().empty()) {
    c.finish({StatusCode::INVALID_ARGUMENT, "property is required (a numeric reported property)"});
    return c.reactor();
  }
  if (req->horizon_ms() <= 0 || req->horizon_ms() > max_horizon_ms) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "horizon_ms must be 1 to " + std::to_string(max_horizon_ms) + " (366 days), got " +
                  std::to_string(req->horizon_ms())});
    return c.reactor();
  }
  if (req->step_ms() < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "step_ms must not be negative"});
    return c.reactor();
  }
  auto r = backend_.route_asset(*id, error);
  if (!r) {
    forward_if_remote(backend_, c, *id, error, forecast_method, *req, resp);
    return c.reactor();
  }
  // Up to 1,000 points and a search of a year for the failure's interval:
  // computed on the query pool, never on a gRPC or actor thread.
  auto compute = [c, resp, id = *id, property = req->property(), horizon = req->horizon_ms(),
                  step = req->step_ms(), models = models_, masks = privacy_of(c),
                  &backend = backend_, &pool = pool_](std::shared_ptr<const core::twin> tw) {
    if (!c.sees(tw->tenant)) {
      c.finish(twin_not_found(id));
      return;
    }
    if (masks.masked(tw->kind, property)) {
      c.finish({StatusCode::PERMISSION_DENIED, sensitive_refusal(property, "its forecast")});
      return;
    }
    if (masks.reveals(tw->kind, property))
      audit_revealed(backend, c, forecast_method, "twins/" + id, {property});
    bool queued = pool.submit([c, resp, property, horizon, step, models, tw] {
      auto set = models ? models->get() : nullptr;
      c.finish(forecast_of(*tw, property, horizon, step, set.get(), *resp));
    });
    if (!queued)
      c.finish(
          {StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  };
  if (auto tw = backend_.cached_twin(*id)) {
    compute(std::move(tw));
    return c.reactor();
  }
  runtime::twin_completion done{[c, compute](runtime::twin_reply reply) {
                                  if (reply.error != runtime::query_error::none)
                                    c.finish(to_status(reply));
                                  else
                                    compute(std::move(reply.twin));
                                },
                                unanswered()};
  caf::anon_send(r->actor, runtime::get_atom::value, std::move(*id), std::move(done));
  return c.reactor();
}

}  // namespace fleettwin::grpc_api
