#include "tools/cli/commands.hpp"
#include "tools/cli/calls.hpp"

#include <chrono>
#include <iostream>

#include <unistd.h>

#include <fmt/format.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/security/credentials.h>

#include "grpc/health/v1/health.pb.h"

#include "tools/cli/format.hpp"
#include "tools/cli/interrupter.hpp"
#include "tools/cli/parse.hpp"
#include "tools/cli/run.hpp"

namespace fleettwin::cli {

namespace {

/// A full page of twins with many properties exceeds gRPC's 4 MiB default.
constexpr int max_receive_bytes = 64 << 20;

std::shared_ptr<grpc::Channel> make_channel(const global_options& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_receive_bytes);
  if (!options.tls.server_name.empty())
    args.SetSslTargetNameOverride(options.tls.server_name);
  std::string error;
  auto credentials = security::channel_credentials(options.tls, error);
  if (!credentials)
    throw usage_error(error);
  std::string token = options.token;
  if (!options.token_file.empty()) {
    auto text = security::read_file(options.token_file);
    if (!text)
      throw usage_error("--token-file " + options.token_file + " cannot be read");
    token = *text;
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
      token.pop_back();
  }
  if (!token.empty()) {
    if (!options.tls.enabled())
      throw usage_error("a token is sent only over TLS: give --tls-ca");
    credentials =
        grpc::CompositeChannelCredentials(credentials, grpc::AccessTokenCredentials(token));
  }
  return grpc::CreateCustomChannel(options.server, credentials, args);
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
      .count();
}

std::string json_string(std::string_view text) {
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
    }
    quoted += c;
  }
  return quoted + '"';
}

}  // namespace

session::session(const global_options& options, std::ostream& out, std::ostream& err,
                 interrupter& interrupt, std::function<int64_t()> clock)
    : options_(options),
      out_(out),
      err_(err),
      interrupt_(interrupt),
      clock_(std::move(clock)),
      channel_(make_channel(options)),
      twins_(v1::TwinService::NewStub(channel_)),
      nodes_(v1::NodeService::NewStub(channel_)),
      admin_(v1::AdminService::NewStub(channel_)),
      aggregates_(v1::AggregateService::NewStub(channel_)),
      alerts_(v1::AlertService::NewStub(channel_)),
      models_(v1::ModelService::NewStub(channel_)) {}

void session::set_deadline(grpc::ClientContext& context) const {
  auto timeout = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::duration<double>(options_.timeout_s));
  context.set_deadline(std::chrono::system_clock::now() + timeout);
}

int session::fail(const grpc::Status& status) {
  err_ << fmt::format("error: {}: {}\n", status_code_name(status.error_code()),
                      status.error_message());
  const auto& message = status.error_message();
  const bool no_connection = message.find("failed to connect") != std::string::npos ||
                             message.find("Socket closed") != std::string::npos ||
                             message.find("andshake") != std::string::npos;
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE && no_connection) {
    // A TLS port closes a plaintext connection, and a failed handshake looks the same.
    if (!options_.tls.enabled())
      err_ << "hint: if the node serves TLS, give --tls-ca (and --tls-cert and --tls-key when "
              "it requires client certificates)\n";
    else
      err_ << "hint: check that --tls-ca issued the node's certificate, that the certificate "
              "names the --server host (or give --tls-server-name), and that the node accepts "
              "your client certificate\n";
  }
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && options_.token.empty() &&
      options_.token_file.empty())
    err_ << "hint: the node wants a bearer token: give --token or --token-file "
            "(FLEETTWIN_TOKEN, FLEETTWIN_TOKEN_FILE)\n";
  return exit_code_for(status.error_code());
}

int run_agg_list(session& s, const list_options& options) {
  v1::ListAggregatesRequest request;
  request.set_filter(options.filter);
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  table rows(aggregate_summary_header());
  return print_pages<v1::ListAggregatesResponse>(
      s, request, options.all,
      [&](grpc::ClientContext& context, auto& req, auto& response) {
        return s.aggregates().ListAggregates(&context, req, &response);
      },
      [&](const v1::ListAggregatesResponse& response) {
        if (s.json()) {
          for (const auto& a : response.aggregates())
            s.out() << to_json(a) << '\n';
          return;
        }
        for (const auto& a : response.aggregates())
          rows.add(aggregate_summary_row(a));
        rows.print(s.out());
      });
}

int run_agg_get(session& s, const agg_get_options& options) {
  for (size_t i = 0; i < options.aggregates.size(); ++i) {
    v1::GetAggregateRequest request;
    request.set_name(aggregate_name(options.aggregates[i]));
    grpc::ClientContext context;
    s.set_deadline(context);
    v1::Aggregate aggregate;
    if (auto status = s.aggregates().GetAggregate(&context, request, &aggregate); !status.ok())
      return s.fail(status);
    if (s.json()) {
      s.out() << to_json(aggregate) << '\n';
      continue;
    }
    if (i > 0)
      s.out() << '\n';
    print_aggregate(s.out(), aggregate);
  }
  return exit_ok;
}

int run_agg_members(session& s, const agg_members_options& options) {
  v1::ListMembersRequest request;
  request.set_name(aggregate_name(options.aggregate));
  request.set_depth(options.depth);
  request.set_filter(options.filter);
  request.set_twins_only(options.twins_only);
  request.set_aggregates_only(options.aggregates_only);
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  table rows(member_header());
  return print_pages<v1::ListMembersResponse>(
      s, request, options.all,
      [&](grpc::ClientContext& context, auto& req, auto& response) {
        return s.aggregates().ListMembers(&context, req, &response);
      },
      [&](const v1::ListMembersResponse& response) {
        if (s.json()) {
          s.out() << to_json(response) << '\n';
          return;
        }
        for (const auto& m : response.members())
          rows.add(member_row(m));
        rows.print(s.out());
      });
}

int run_agg_watch(session& s, const agg_watch_options& options) {
  v1::WatchAggregatesRequest request;
  if (!options.aggregate.empty())
    request.set_name(aggregate_name(options.aggregate));
  request.set_kind(options.kind);
  return print_stream<v1::AggregateChange>(
      s, options.count,
      [&](grpc::ClientContext& context) {
        return s.aggregates().WatchAggregates(&context, request);
      },
      [](const v1::AggregateChange& c) { return format_aggregate_change(c); });
}

int run_agg_history(session& s, const agg_history_options& options) {
  v1::GetAggregateHistoryRequest request;
  request.set_name(aggregate_name(options.aggregate));
  for (const auto& m : options.measures)
    request.add_measures(m);
  auto now = s.now_ms();
  if (!options.from.empty())
    request.set_start_ms(parse_time(options.from, now));
  if (!options.to.empty())
    request.set_end_ms(parse_time(options.to, now));
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  std::optional<table> rows;
  std::vector<std::string> header;
  size_t points = 0;
  auto code = print_pages<v1::GetAggregateHistoryResponse>(
      s, request, options.all,
      [&](grpc::ClientContext& context, auto& req, auto& response) {
        return s.aggregates().GetAggregateHistory(&context, req, &response);
      },
      [&](const v1::GetAggregateHistoryResponse& response) {
        points += response.points_size();
        if (s.json()) {
          s.out() << to_json(response) << '\n';
          return;
        }
        for (const auto& p : response.points()) {
          if (!rows) {
            header = aggregate_history_header(p);
            rows.emplace(header);
          }
          rows->add(aggregate_history_row(p, header));
        }
        if (rows)
          rows->print(s.out());
      });
  if (code == exit_ok && !s.json() && points == 0)
    s.err() << "no recorded changes of " << options.aggregate << " in the range\n";
  return code;
}

int run_agg_kinds(session& s) {
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::ListAggregateKindsResponse response;
  if (auto status =
          s.aggregates().ListAggregateKinds(&context, v1::ListAggregateKindsRequest{}, &response);
      !status.ok())
    return s.fail(status);
  if (s.json())
    s.out() << to_json(response) << '\n';
  else
    print_kinds(s.out(), response);
  return exit_ok;
}

int run_relations(session& s, const relations_options& options) {
  v1::GetRelationsRequest request;
  request.set_name(node_name(options.name));
  for (const auto& t : options.types)
    request.add_types(t);
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::Relations response;
  if (auto status = s.aggregates().GetRelations(&context, request, &response); !status.ok())
    return s.fail(status);
  if (s.json())
    s.out() << to_json(response) << '\n';
  else
    print_relations(s.out(), response);
  return exit_ok;
}

int run_traverse(session& s, const traverse_options& options) {
  v1::TraverseRequest request;
  request.set_start(node_name(options.start));
  request.set_direction(options.up ? v1::UP : v1::DOWN);
  for (const auto& t : options.types)
    request.add_types(t);
  request.set_max_hops(options.hops);
  request.set_filter(options.filter);
  request.set_include_aggregates(options.aggregates);
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  table rows({"HOPS", "NAME", "KIND", "VERSION", "VALUES"});
  return print_pages<v1::TraverseResponse>(
      s, request, options.all,
      [&](grpc::ClientContext& context, auto& req, auto& response) {
        return s.aggregates().Traverse(&context, req, &response);
      },
      [&](const v1::TraverseResponse& response) {
        if (s.json()) {
          s.out() << to_json(response) << '\n';
          return;
        }
        for (const auto& hit : response.hits()) {
          auto row = hit.has_twin() ? twin_summary_row(hit.twin())
                                    : aggregate_summary_row(hit.aggregate());
          // Twins: asset, kind, version, ..., reported; aggregates: id, kind,
          // twins, version, measures.
          rows.add({std::to_string(hit.hops()),
                    hit.has_twin() ? hit.twin().name() : hit.aggregate().name(), row[1],
                    hit.has_twin() ? row[2] : row[3], row.back()});
        }
        rows.print(s.out());
      });
}

int run_get(session& s, const get_options& options) {
  std::vector<v1::Twin> twins;
  if (options.assets.size() == 1) {
    v1::GetTwinRequest request;
    request.set_name(twin_name(options.assets.front()));
    grpc::ClientContext context;
    s.set_deadline(context);
    auto& twin = twins.emplace_back();
    if (auto status = s.twins().GetTwin(&context, request, &twin); !status.ok()) {
      return s.fail(status);
    }
  } else {
    v1::BatchGetTwinsRequest request;
    for (const auto& asset : options.assets) {
      request.add_names(twin_name(asset));
    }
    grpc::ClientContext context;
    s.set_deadline(context);
    v1::BatchGetTwinsResponse response;
    if (auto status = s.twins().BatchGetTwins(&context, request, &response); !status.ok()) {
      return s.fail(status);
    }
    twins.assign(response.twins().begin(), response.twins().end());
  }
  for (size_t i = 0; i < twins.size(); ++i) {
    if (s.json()) {
      s.out() << to_json(twins[i]) << '\n';
      continue;
    }
    if (i > 0) {
      s.out() << '\n';
    }
    print_twin(s.out(), twins[i]);
  }
  return exit_ok;
}

int run_list(session& s, const list_options& options) {
  v1::ListTwinsRequest request;
  request.set_filter(options.filter);
  request.set_page_size(options.page_size);
  request.set_page_token(options.page_token);
  table rows(twin_summary_header());
  size_t listed = 0;
  while (true) {
    grpc::ClientContext context;
    s.set_deadline(context);
    v1::ListTwinsResponse response;
    if (auto status = s.twins().ListTwins(&context, request, &response); !status.ok()) {
      return s.fail(status);
    }
    listed += response.twins_size();
    if (s.json()) {
      s.out() << to_json(response) << '\n';
    } else {
      for (const auto& twin : response.twins()) {
        rows.add(twin_summary_row(twin));
      }
      if (response.twins_size() > 0) {
        rows.print(s.out());
      }
    }
    const auto& next = response.next_page_token();
    if (!options.all || next.empty()) {
      if (!s.json()) {
        if (listed == 0) {
          s.err() << "no twins\n";
        }
        if (!next.empty()) {
          s.err() << "next page token: " << next << '\n';
        }
      }
      return exit_ok;
    }
    if (next == request.page_token()) {
      return s.fail({grpc::StatusCode::INTERNAL,
                     fmt::format("server returned the same page token \"{}\" again", next)});
    }
    request.set_page_token(next);
  }
}

int run_set_desired(session& s, const set_desired_options& options) {
  v1::UpdateDesiredRequest request;
  request.set_name(twin_name(options.asset));
  for (const auto& text : options.assignments) {
    auto [key, value] = parse_assignment(text);
    (*request.mutable_desired())[key] = std::move(value);
  }
  for (const auto& key : options.remove) {
    request.add_remove(key);
  }
  if (request.desired().empty() && request.remove().empty()) {
    throw usage_error("nothing to change: give key=value or --remove key");
  }
  if (options.expected_version) {
    request.set_expected_version(*options.expected_version);
  }
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::Twin twin;
  if (auto status = s.twins().UpdateDesired(&context, request, &twin); !status.ok()) {
    return s.fail(status);
  }
  if (s.json()) {
    s.out() << to_json(twin) << '\n';
  } else {
    print_desired_result(s.out(), twin);
  }
  return exit_ok;
}

int run_bulk_desired(session& s, const bulk_desired_options& options) {
  v1::BulkUpdateDesiredRequest request;
  if (options.assets.empty() == options.filter.empty())
    throw usage_error("select the twins with asset ids or --filter (one of them)");
  for (const auto& a : options.assets)
    request.add_names(twin_name(a));
  request.set_filter(options.filter);
  for (const auto& text : options.assignments) {
    auto [key, value] = parse_assignment(text);
    (*request.mutable_desired())[key] = std::move(value);
  }
  for (const auto& key : options.remove)
    request.add_remove(key);
  if (request.desired().empty() && request.remove().empty())
    throw usage_error("nothing to change: give key=value or --remove key");
  request.set_if_unchanged(options.if_unchanged);
  request.set_dry_run(options.dry_run);
  request.set_max_twins(options.max_twins);

  grpc::ClientContext context;  // no deadline: a bulk call takes as long as it takes
  interrupter::guard guard{s.interrupt(), context};
  auto reader = s.twins().BulkUpdateDesired(&context, request);
  v1::BulkUpdateDesiredProgress m, last;
  std::vector<v1::TwinUpdateOutcome> shown;
  // The progress line goes to a terminal only, rewritten at most every 100 ms.
  const bool tty = &s.err() == &std::cerr && isatty(STDERR_FILENO);
  bool progress_shown = false;
  auto shown_at = std::chrono::steady_clock::now() - std::chrono::seconds{1};
  while (reader->Read(&m)) {
    if (s.json()) {
      s.out() << to_json(m) << '\n';
      s.out().flush();
    }
    for (auto& o : *m.mutable_outcomes())
      if (options.verbose || o.code() != "OK")
        shown.push_back(std::move(o));
    m.clear_outcomes();
    last = m;
    const auto now = std::chrono::steady_clock::now();
    if (s.json() || !tty || (now - shown_at < std::chrono::milliseconds{100} && !m.done()))
      continue;
    shown_at = now;
    // One line, rewritten in place: how far the call got.
    const auto done = m.changed() + m.unchanged() + m.conflicts() + m.not_found() + m.failed();
    s.err() << fmt::format(
        "\r{} {}{} twins, {} done: {} changed, {} unchanged, {} conflicts, {} not found, "
        "{} failed   ",
        m.dry_run() ? "dry run:" : "selected", m.selected(), m.selection_complete() ? "" : "+",
        done, m.changed(), m.unchanged(), m.conflicts(), m.not_found(), m.failed());
    s.err().flush();
    progress_shown = true;
  }
  if (progress_shown)
    s.err() << '\n';
  auto status = reader->Finish();
  if (!status.ok())
    return s.fail(status);
  if (!s.json()) {
    for (const auto& o : shown)
      s.out() << fmt::format("{}  {}{}{}\n", o.name(), o.code(),
                             o.code() == "OK" ? fmt::format(" version {}{}", o.version(),
                                                            o.changed() ? "" : " (unchanged)")
                                              : "",
                             o.message().empty() ? "" : ": " + o.message());
    s.out() << fmt::format(
        "{}{} twins: {} changed, {} unchanged, {} conflicts, {} not found, "
        "{} failed\n",
        last.dry_run() ? "dry run, nothing changed; would change: " : "", last.selected(),
        last.changed(), last.unchanged(), last.conflicts(), last.not_found(), last.failed());
  }
  if (last.not_found() + last.failed() > 0)
    return exit_failure;
  return last.conflicts() > 0 ? exit_aborted : exit_ok;
}

int run_delete(session& s, const delete_options& options) {
  if (!options.yes)
    throw usage_error("erasing twin \"" + options.asset +
                      "\" cannot be undone (its state, history and analytics go): add --yes");
  v1::DeleteTwinRequest request;
  request.set_name(twin_name(options.asset));
  if (options.expected_version)
    request.set_expected_version(*options.expected_version);
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::DeleteTwinResponse response;
  if (auto status = s.twins().DeleteTwin(&context, request, &response); !status.ok())
    return s.fail(status);
  if (s.json())
    s.out() << to_json(response) << '\n';
  else
    s.out() << "erased twin \"" << options.asset << "\" (it was at version " << response.version()
            << "); telemetry older than " << response.erased_ms() << " ms will not bring it back\n";
  return exit_ok;
}

int run_audit(session& s, const audit_options& options) {
  v1::ListAuditEventsRequest request;
  // An asset id names its twin; anything with a '/' (or "cluster", or "twins": watches of
  // many twins) is a target as audited.
  const bool asset = options.target.find('/') == std::string::npos && options.target != "cluster" &&
                     options.target != "twins";
  request.set_target(asset ? twin_name(options.target) : options.target);
  if (!options.since.empty())
    request.set_since_ms(parse_time(options.since, s.now_ms()));
  request.set_page_size(options.limit);
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::ListAuditEventsResponse response;
  if (auto status = s.admin().ListAuditEvents(&context, request, &response); !status.ok())
    return s.fail(status);
  if (s.json()) {
    s.out() << to_json(response) << '\n';
    return exit_ok;
  }
  print_audit(s.out(), request.target(), response);
  return exit_ok;
}

int run_history(session& s, const history_options& options) {
  v1::GetHistoryRequest request;
  request.set_name(twin_name(options.asset));
  request.set_property(options.property);
  auto now = s.now_ms();
  if (!options.from.empty()) {
    request.set_start_time_ms(parse_time(options.from, now));
  }
  if (!options.to.empty()) {
    request.set_end_time_ms(parse_time(options.to, now));
  }
  request.set_limit(options.limit);
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::GetHistoryResponse response;
  if (auto status = s.twins().GetHistory(&context, request, &response); !status.ok()) {
    return s.fail(status);
  }
  if (s.json()) {
    s.out() << to_json(response) << '\n';
  } else if (response.points().empty()) {
    s.err() << "no samples of \"" << options.property << "\" in the range\n";
  } else {
    print_history(s.out(), response);
  }
  return exit_ok;
}

int run_watch(session& s, const watch_options& options) {
  v1::WatchTwinsRequest request;
  if (!options.asset.empty()) {
    request.set_name(twin_name(options.asset));
  }
  request.set_filter(options.filter);
  return print_stream<v1::TwinChange>(
      s, options.count,
      [&](grpc::ClientContext& context) { return s.twins().WatchTwins(&context, request); },
      [](const v1::TwinChange& c) { return format_change(c); });
}

int run_status(session& s) {
  grpc::ClientContext context;
  s.set_deadline(context);
  v1::NodeStatus status;
  if (auto rpc = s.nodes().GetStatus(&context, {}, &status); !rpc.ok()) {
    return s.fail(rpc);
  }
  // The cluster as the node sees it; a node without AdminService has none.
  grpc::ClientContext cluster_context;
  s.set_deadline(cluster_context);
  v1::ClusterStatus cluster;
  auto rpc = s.admin().GetCluster(&cluster_context, {}, &cluster);
  if (!rpc.ok() && rpc.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
    return s.fail(rpc);
  }
  if (s.json()) {
    s.out() << to_json(status) << '\n';
    if (rpc.ok()) {
      s.out() << to_json(cluster) << '\n';
    }
  } else {
    print_status(s.out(), status, s.now_ms());
    if (rpc.ok()) {
      print_cluster(s.out(), cluster);
    }
  }
  return exit_ok;
}

int run_ping(session& s) {
  // The first call also sets up the connection; time a second one for the round trip.
  auto ping = [&](double& ms) {
    grpc::ClientContext context;
    s.set_deadline(context);
    v1::PingResponse response;
    auto start = std::chrono::steady_clock::now();
    auto status = s.nodes().Ping(&context, {}, &response);
    ms = elapsed_ms(start);
    return status;
  };
  double first_ms = 0;
  double rtt_ms = 0;
  if (auto status = ping(first_ms); !status.ok()) {
    return s.fail(status);
  }
  if (auto status = ping(rtt_ms); !status.ok()) {
    return s.fail(status);
  }
  if (s.json()) {
    s.out() << fmt::format("{{\"server\":{},\"rtt_ms\":{:.3f},\"first_call_ms\":{:.3f}}}\n",
                           json_string(s.server()), rtt_ms, first_ms);
  } else {
    s.out() << fmt::format("pong from {}: time={:.3f} ms (first call with connect: {:.3f} ms)\n",
                           s.server(), rtt_ms, first_ms);
  }
  return exit_ok;
}

int run_health(session& s, const std::string& service) {
  // Only the messages of grpc.health.v1 are compiled (gRPC serves the service itself), so
  // the call goes through gRPC's unary-call helper, as a generated stub would.
  static const grpc::internal::RpcMethod check{"/grpc.health.v1.Health/Check",
                                               grpc::internal::RpcMethod::NORMAL_RPC};
  grpc::ClientContext context;
  s.set_deadline(context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto status =
      grpc::internal::BlockingUnaryCall(&s.channel(), check, &context, request, &response);
  if (!status.ok()) {
    return s.fail(status);
  }
  auto name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (s.json()) {
    s.out() << fmt::format("{{\"server\":{},\"service\":{},\"status\":{}}}\n",
                           json_string(s.server()), json_string(service), json_string(name));
  } else {
    s.out() << fmt::format("{}{}: {}\n", s.server(),
                           service.empty() ? std::string{} : " " + service, name);
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? exit_ok
                                                                             : exit_failure;
}

}  // namespace fleettwin::cli
