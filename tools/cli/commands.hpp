#pragma once

// One function per subcommand: build the request, call, print the result.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "fleettwin/v1/analytics.grpc.pb.h"
#include "fleettwin/v1/service.grpc.pb.h"
#include "services/security/tls.hpp"

namespace fleettwin::cli {

class interrupter;

struct global_options {
  std::string server;
  bool json = false;
  double timeout_s = 10;
  /// TLS to the node (plaintext when neither a CA nor a client certificate is given).
  security::client_tls tls;
  /// Bearer token (JWT) sent with every call (TLS only); --token-file reads it from a file.
  std::string token;
  std::string token_file;
};

/// What every command needs: stubs on one channel, the output streams, the clock.
class session {
public:
  session(const global_options& options, std::ostream& out, std::ostream& err,
          interrupter& interrupt, std::function<int64_t()> clock);

  v1::TwinService::Stub& twins() {
    return *twins_;
  }
  v1::NodeService::Stub& nodes() {
    return *nodes_;
  }
  v1::AdminService::Stub& admin() {
    return *admin_;
  }
  v1::AggregateService::Stub& aggregates() {
    return *aggregates_;
  }
  v1::AlertService::Stub& alerts() {
    return *alerts_;
  }
  v1::ModelService::Stub& models() {
    return *models_;
  }
  grpc::Channel& channel() {
    return *channel_;
  }
  const std::shared_ptr<grpc::Channel>& shared_channel() const {
    return channel_;
  }
  std::ostream& out() {
    return out_;
  }
  std::ostream& err() {
    return err_;
  }
  interrupter& interrupt() {
    return interrupt_;
  }
  bool json() const {
    return options_.json;
  }
  const std::string& server() const {
    return options_.server;
  }
  int64_t now_ms() const {
    return clock_();
  }
  /// Applies --timeout to a unary call.
  void set_deadline(grpc::ClientContext& context) const;
  /// Prints "error: CODE: message" and returns the matching exit code.
  int fail(const grpc::Status& status);

private:
  global_options options_;
  std::ostream& out_;
  std::ostream& err_;
  interrupter& interrupt_;
  std::function<int64_t()> clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TwinService::Stub> twins_;
  std::unique_ptr<v1::NodeService::Stub> nodes_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::AggregateService::Stub> aggregates_;
  std::unique_ptr<v1::AlertService::Stub> alerts_;
  std::unique_ptr<v1::ModelService::Stub> models_;
};

struct get_options {
  std::vector<std::string> assets;
};

struct list_options {
  std::string filter;
  int32_t page_size = 0;
  std::string page_token;
  bool all = false;
};

struct delete_options {
  std::string asset;
  std::optional<uint64_t> expected_version;
  /// The erasure cannot be undone: the command asks for --yes.
  bool yes = false;
};

struct audit_options {
  /// An asset id, or another audited target ("models/vehicle", "cluster").
  std::string target;
  std::string since;  // a time as --from takes it; empty: the whole retained trail
  int32_t limit = 0;  // 0: the node's default (100)
};

struct set_desired_options {
  std::string asset;
  std::vector<std::string> assignments;
  std::vector<std::string> remove;
  std::optional<uint64_t> expected_version;
};

struct bulk_desired_options {
  std::vector<std::string> assets;  // or:
  std::string filter;
  std::vector<std::string> assignments;
  std::vector<std::string> remove;
  bool if_unchanged = false;
  bool dry_run = false;
  int64_t max_twins = 0;
  /// Print every twin's outcome, not only those that did not change as asked.
  bool verbose = false;
};

struct history_options {
  std::string asset;
  std::string property;
  std::string from;
  std::string to;
  int32_t limit = 0;
};

struct watch_options {
  std::string asset;
  std::string filter;
  uint64_t count = 0;
};

struct agg_get_options {
  std::vector<std::string> aggregates;
};

struct agg_members_options {
  std::string aggregate;
  uint32_t depth = 1;
  std::string filter;
  bool twins_only = false;
  bool aggregates_only = false;
  int32_t page_size = 0;
  std::string page_token;
  bool all = false;
};

struct agg_watch_options {
  std::string aggregate;
  std::string kind;
  uint64_t count = 0;
};

struct agg_history_options {
  std::string aggregate;
  std::vector<std::string> measures;
  std::string from;
  std::string to;
  int32_t page_size = 0;
  std::string page_token;
  bool all = false;
};

struct traverse_options {
  std::string start;
  bool up = false;
  std::vector<std::string> types;
  uint32_t hops = 1;
  std::string filter;
  bool aggregates = false;
  int32_t page_size = 0;
  std::string page_token;
  bool all = false;
};

struct relations_options {
  std::string name;
  std::vector<std::string> types;
};

struct alerts_list_options {
  std::string filter;
  bool cleared = false;
  int32_t page_size = 0;
  std::string page_token;
  bool all = false;
};

struct alerts_watch_options {
  std::string asset;
  bool critical = false;
  uint64_t count = 0;
};

struct alerts_ack_options {
  /// "twins/a/alerts/p/n", or asset property number.
  std::vector<std::string> alert;
};

struct models_options {
  /// list, get KIND, or put FILE (an AssetModel as JSON).
  std::string action = "list";
  std::string argument;
};

struct forecast_options {
  std::string asset;
  std::string property;
  std::string horizon = "1h";
  std::string step;
};

int run_models(session& s, const models_options& options);
int run_forecast(session& s, const forecast_options& options);
int run_alerts_list(session& s, const alerts_list_options& options);
int run_alerts_watch(session& s, const alerts_watch_options& options);
int run_alerts_ack(session& s, const alerts_ack_options& options);
int run_agg_list(session& s, const list_options& options);
int run_agg_get(session& s, const agg_get_options& options);
int run_agg_members(session& s, const agg_members_options& options);
int run_agg_kinds(session& s);
int run_agg_watch(session& s, const agg_watch_options& options);
int run_agg_history(session& s, const agg_history_options& options);
int run_relations(session& s, const relations_options& options);
int run_traverse(session& s, const traverse_options& options);
int run_get(session& s, const get_options& options);
int run_list(session& s, const list_options& options);
int run_set_desired(session& s, const set_desired_options& options);
/// BulkUpdateDesired: progress on stderr, then the twins that were not changed as asked
/// and a summary (--json: each progress message). Exit 0 when every twin has OK, 5 when
/// some conflicted (ABORTED), 1 for any other outcome.
int run_bulk_desired(session& s, const bulk_desired_options& options);
/// DeleteTwin: erases a twin (admin).
int run_delete(session& s, const delete_options& options);
/// ListAuditEvents: the audit trail of a twin or another target (admin).
int run_audit(session& s, const audit_options& options);
int run_history(session& s, const history_options& options);
int run_watch(session& s, const watch_options& options);
int run_status(session& s);
int run_ping(session& s);
/// grpc.health.v1 Check of one service ("" = the node's readiness): exit 0 only when SERVING
/// (for container health checks and scripts).
int run_health(session& s, const std::string& service);

}  // namespace fleettwin::cli
