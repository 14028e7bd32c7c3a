// The analytics commands: alerts (list, watch, ack), asset models, forecasts.

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include "tools/cli/calls.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/format.hpp"
#include "tools/cli/parse.hpp"
#include "tools/cli/run.hpp"

namespace fleettwin::cli {

int run_alerts_list(session& s, const alerts_list_options& options) {
  v1::ListAlertsRequest request;
  request.set_filter(options.filter);
  request.set_include_cleared(options.cleared);
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  table rows(alert_header());
  size_t shown = 0;
  auto code = print_pages<v1::ListAlertsResponse>(
      s, request, options.all,
      [&](grpc::ClientContext& context, auto& req, auto& response) {
        return s.alerts().ListAlerts(&context, req, &response);
      },
      [&](const v1::ListAlertsResponse& response) {
        shown += response.alerts_size();
        if (s.json()) {
          for (const auto& a : response.alerts())
            s.out() << to_json(a) << '\n';
          return;
        }
        for (const auto& a : response.alerts())
          rows.add(alert_row(a));
        rows.print(s.out());
      });
  if (code == exit_ok && shown == 0 && !s.json())
    s.out() << (options.cleared ? "no alerts\n" : "no open alerts\n");
  return code;
}

int run_alerts_watch(session& s, const alerts_watch_options& options) {
  v1::WatchAlertsRequest request;
  if (!options.asset.empty())
    request.set_twin(twin_name(options.asset));
  if (options.critical)
    request.set_min_severity(v1::CRITICAL);
  return print_stream<v1::AlertEvent>(
      s, options.count,
      [&](grpc::ClientContext& context) { return s.alerts().WatchAlerts(&context, request); },
      [](const v1::AlertEvent& e) { return format_alert_event(e); });
}

int run_alerts_ack(session& s, const alerts_ack_options& options) {
  v1::AcknowledgeAlertRequest request;
  const auto& args = options.alert;
  if (args.size() == 1) {
    request.set_name(args[0]);
  } else if (args.size() == 3) {
    request.set_name(twin_name(args[0]) + "/alerts/" + args[1] + "/" + args[2]);
  } else {
    s.err() << "error: give an alert's name (twins/ASSET/alerts/PROPERTY/N) or ASSET PROPERTY N\n";
    return exit_usage;
  }
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::Alert alert;
  if (auto status = s.alerts().AcknowledgeAlert(&context, request, &alert); !status.ok())
    return s.fail(status);
  if (s.json()) {
    s.out() << to_json(alert) << '\n';
    return exit_ok;
  }
  table rows(alert_header());
  rows.add(alert_row(alert));
  rows.print(s.out());
  return exit_ok;
}

namespace {

std::string span_text(int64_t at, int64_t from) {
  const double h = static_cast<double>(at - from) / 3'600'000.0;
  return h < 48 ? fmt::format("in {:.1f} h", h) : fmt::format("in {:.1f} d", h / 24);
}

}  // namespace

int run_forecast(session& s, const forecast_options& options) {
  v1::GetForecastRequest request;
  request.set_name(twin_name(options.asset));
  request.set_property(options.property);
  request.set_horizon_ms(parse_span(options.horizon));
  if (!options.step.empty())
    request.set_step_ms(parse_span(options.step));
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::Forecast f;
  if (auto status = s.twins().GetForecast(&context, request, &f); !status.ok())
    return s.fail(status);
  if (s.json()) {
    s.out() << to_json(f) << '\n';
    return exit_ok;
  }
  s.out() << fmt::format("{} {}  {}  from {} = {}  ({} samples, every {:.0f} ms", options.asset,
                         f.property(), f.method(), format_time(f.origin_ms()), f.origin_value(),
                         f.samples(), f.mean_interval_ms());
  if (f.has_mase())
    s.out() << fmt::format(", MASE {:.2f}", f.mase());
  s.out() << ")\n";
  if (f.has_time_to_failure()) {
    const auto& t = f.time_to_failure();
    if (t.failed())
      s.out() << fmt::format("failure ({}): already beyond it\n", t.threshold());
    else if (t.has_expected_ms())
      s.out() << fmt::format("failure ({}): {} {} (95 %: {} .. {})\n", t.threshold(),
                             format_time(t.expected_ms()),
                             span_text(t.expected_ms(), f.origin_ms()),
                             t.has_earliest_ms() ? format_time(t.earliest_ms()) : "-",
                             t.has_latest_ms() ? format_time(t.latest_ms()) : "beyond 366 d");
    else
      s.out() << fmt::format("failure ({}): not within 366 days\n", t.threshold());
  }
  table rows({"TIME", "FORECAST", "80 %", "95 %"});
  for (const auto& p : f.points())
    rows.add({format_time(p.time_ms()), fmt::format("{:.4g}", p.value()),
              fmt::format("{:.4g} .. {:.4g}", p.lower80(), p.upper80()),
              fmt::format("{:.4g} .. {:.4g}", p.lower95(), p.upper95())});
  rows.print(s.out());
  return exit_ok;
}

int run_models(session& s, const models_options& options) {
  grpc::ClientContext context;
  s.set_deadline(context);
  if (options.action == "list") {
    v1::ListModelsResponse response;
    if (auto status = s.models().ListModels(&context, {}, &response); !status.ok())
      return s.fail(status);
    for (int i = 0; i < response.models_size(); ++i) {
      if (s.json()) {
        s.out() << to_json(response.models(i)) << '\n';
        continue;
      }
      if (i > 0)
        s.out() << '\n';
      print_model(s.out(), response.models(i));
    }
    if (response.models_size() == 0 && !s.json())
      s.out() << "no models (start the node with --models FILE, or put one)\n";
    return exit_ok;
  }
  v1::AssetModel model;
  grpc::Status status;
  if (options.action == "get") {
    v1::GetModelRequest request;
    request.set_name("models/" + options.argument);
    status = s.models().GetModel(&context, request, &model);
  } else {
    std::ifstream in{options.argument};
    if (!in) {
      s.err() << "error: cannot read " << options.argument << '\n';
      return exit_usage;
    }
    std::stringstream text;
    text << in.rdbuf();
    v1::PutModelRequest request;
    if (auto st = google::protobuf::util::JsonStringToMessage(text.str(), request.mutable_model());
        !st.ok()) {
      s.err() << "error: " << options.argument << " is not an AssetModel in JSON: " << st.ToString()
              << '\n';
      return exit_usage;
    }
    status = s.models().PutModel(&context, request, &model);
  }
  if (!status.ok())
    return s.fail(status);
  if (s.json())
    s.out() << to_json(model) << '\n';
  else
    print_model(s.out(), model);
  return exit_ok;
}

}  // namespace fleettwin::cli
