#include "services/node/config.hpp"

#include <fstream>

#include <unistd.h>

#include <CLI/CLI.hpp>

#include "services/security/bind_policy.hpp"

namespace fleettwin::node {

std::optional<int> parse_config(int argc, char** argv, node_config& cfg, std::ostream& out,
                                std::ostream& err) {
  CLI::App app{"fleettwin-node: digital twins of a fleet, fed by Kafka, queried over gRPC"};
  app.set_config("--config", "", "TOML or INI file with any of these options (keys = long names)");
  // A misspelt key in the file is an error, not an option silently left at its default.
  app.allow_config_extras(CLI::config_extras_mode::error);
  // A flag given twice takes its last value (later flags override earlier
  // ones, as in a wrapper script that appends to a base command line).
  app.option_defaults()->always_capture_default()->multi_option_policy(
      CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--grpc", cfg.grpc_address, "gRPC listen address")->envname("FLEETTWIN_GRPC");
  app.add_option("--metrics", cfg.metrics_address, "Prometheus /metrics listen address")
      ->envname("FLEETTWIN_METRICS");
  app.add_option("--data-dir", cfg.data_dir, "RocksDB data directory")
      ->envname("FLEETTWIN_DATA_DIR");
  app.add_option("--kafka", cfg.kafka,
                 "Kafka bootstrap servers; empty starts an embedded Kafka on loopback")
      ->envname("FLEETTWIN_KAFKA");
  app.add_option("--kafka-option", cfg.kafka_options,
                 "Extra librdkafka setting key=value for every client (repeatable)")
      ->envname("FLEETTWIN_KAFKA_OPTIONS")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--kafka-options-file", cfg.kafka_options_file,
                 "File of librdkafka settings, one key=value per line (# comments), for every "
                 "client: TLS and SASL settings with the password kept off the command line "
                 "(--kafka-option wins over it)")
      ->envname("FLEETTWIN_KAFKA_OPTIONS_FILE")
      ->check(CLI::ExistingFile);
  app.add_option("--topic-prefix", cfg.topic_prefix,
                 "Topic prefix: <prefix>.telemetry, .twin-changes, .twin-changes.redacted, "
                 ".twin-state, .alerts, .audit, .telemetry.dlq, .aggregates ...")
      ->envname("FLEETTWIN_TOPIC_PREFIX");
  app.add_option("--group", cfg.group_id, "Kafka consumer group")->envname("FLEETTWIN_GROUP");
  app.add_option("--node-id", cfg.node_id, "Node name (default: node-<hostname>)")
      ->envname("FLEETTWIN_NODE_ID");
  app.add_option("--partitions", cfg.partitions,
                 "Partitions per topic of the embedded Kafka, and of topics created on a real one")
      ->envname("FLEETTWIN_PARTITIONS")
      ->check(CLI::Range(1, 1024));
  app.add_option("--history", cfg.history, "Samples of history kept per property (0 = none)")
      ->envname("FLEETTWIN_HISTORY")
      ->check(CLI::Range(0, 100000));
  app.add_option("--stale-after-ms", cfg.stale_after_ms,
                 "A twin not seen for this long is STALE instead of ONLINE")
      ->envname("FLEETTWIN_STALE_AFTER_MS")
      ->check(CLI::PositiveNumber);
  app.add_option("--passivate-after-ms", cfg.passivate_after_ms,
                 "Idle time after which a twin actor is passivated")
      ->envname("FLEETTWIN_PASSIVATE_AFTER_MS")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-active-twins", cfg.max_active_twins,
                 "Resident twin actors per partition at most (LRU passivation)")
      ->envname("FLEETTWIN_MAX_ACTIVE_TWINS");
  app.add_option("--max-record-bytes", cfg.max_record_bytes,
                 "Larger telemetry records go to the dead-letter topic")
      ->envname("FLEETTWIN_MAX_RECORD_BYTES");
  app.add_option("--max-poll-records", cfg.max_poll_records, "Records taken from Kafka per poll")
      ->envname("FLEETTWIN_MAX_POLL_RECORDS");
  app.add_option("--max-items-in-flight", cfg.max_items_in_flight,
                 "Work items a partition keeps in flight: it applies the next while earlier ones "
                 "wait for Kafka and RocksDB (which commit them in order); 1: one at a time (more "
                 "is experimental: exactly-once is not yet proven with it under partition moves)")
      ->envname("FLEETTWIN_MAX_ITEMS_IN_FLIGHT")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-item-writes", cfg.max_item_writes,
                 "Desired updates of distinct twins queued together (a bulk update, many "
                 "operators) apply as one work item, one transaction, up to this many; 1: one "
                 "item per update")
      ->envname("FLEETTWIN_MAX_ITEM_WRITES")
      ->check(CLI::Range(size_t{1}, size_t{100'000}));
  app.add_option("--item-linger-ms", cfg.item_linger_ms,
                 "Behind items in flight, consumed batches gather this long into one work item "
                 "(an idle partition starts at once; 0: never wait)")
      ->envname("FLEETTWIN_ITEM_LINGER_MS")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--sync-commits,!--no-sync-commits", cfg.sync_commits,
               "fsync the RocksDB WAL on every commit (survives power loss; without it a commit "
               "survives a process crash)")
      ->envname("FLEETTWIN_SYNC_COMMITS");
  app.add_flag("--publish-changes,!--no-publish-changes", cfg.publish_changes,
               "Publish twin changes to the twin-changes topic (see --change-events)")
      ->envname("FLEETTWIN_PUBLISH_CHANGES");
  app.add_option_function<std::string>(
         "--change-events", [&cfg](const std::string& v) { cfg.merge_changes = v == "item"; },
         "item: one reported change per twin per work item, merging what the item's records "
         "changed (versions first_version..version; the default); each: one per applied record")
      ->envname("FLEETTWIN_CHANGE_EVENTS")
      ->check(CLI::IsMember({"item", "each"}));
  app.add_flag("--redacted-changes,!--no-redacted-changes", cfg.redacted_changes,
               "While an asset model marks a property sensitive, also publish every change to "
               "the redacted twin-changes topic (<prefix>.twin-changes.redacted) with the values "
               "of sensitive properties left out, for consumers that must not see them")
      ->envname("FLEETTWIN_REDACTED_CHANGES");
  app.add_option("--rocksdb-cache-mb", cfg.rocksdb_cache_mb, "RocksDB block cache size")
      ->envname("FLEETTWIN_ROCKSDB_CACHE_MB");
  app.add_option("--query-threads", cfg.query_threads, "Threads for ListTwins and GetHistory")
      ->envname("FLEETTWIN_QUERY_THREADS")
      ->check(CLI::Range(1, 64));
  app.add_option("--actor-threads", cfg.actor_threads, "CAF scheduler threads (0 = cores)")
      ->envname("FLEETTWIN_ACTOR_THREADS");
  app.add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error")
      ->envname("FLEETTWIN_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--bootstrap-file", cfg.bootstrap_file,
                 "Write the embedded Kafka's bootstrap address here (default: "
                 "<data-dir>/kafka.bootstrap)")
      ->envname("FLEETTWIN_BOOTSTRAP_FILE");
  app.add_option("--aggregates", cfg.aggregates_file,
                 "TOML file of aggregate kinds (fleets, feeders ...: members and measures) and "
                 "the rules that derive relations from attributes (see deploy/aggregates.toml)")
      ->envname("FLEETTWIN_AGGREGATES")
      ->check(CLI::ExistingFile);
  app.add_option("--models", cfg.models_file,
                 "TOML file of asset models (per kind and property: range, expected interval, "
                 "thresholds, period, sensitivity ...; see deploy/models.toml); the same file on "
                 "every node")
      ->envname("FLEETTWIN_MODELS")
      ->check(CLI::ExistingFile);
  app.add_flag("--analytics,!--no-analytics", cfg.analytics,
               "Forecasts, anomaly scores and alerts on every numeric sample of every twin")
      ->envname("FLEETTWIN_ANALYTICS");
  app.add_option("--alert-count-interval-ms", cfg.alert_count_interval_ms,
                 "Count the open alerts of the twins served here this often, for "
                 "fleettwin_alerts_open (each count reads every stored twin: about 4.5 s of one "
                 "core per million; 0: never)")
      ->envname("FLEETTWIN_ALERT_COUNT_INTERVAL_MS")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--aggregate-check-interval-ms", cfg.aggregate_check_interval_ms,
                 "Compare every resident aggregate's measures with a full recompute this often "
                 "(fleettwin_aggregate_recompute_mismatches_total; 0: never)")
      ->envname("FLEETTWIN_AGGREGATE_CHECK_INTERVAL_MS")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--member-checkpoint-ms", cfg.member_checkpoint_ms,
                 "Aggregates keep changed member records in memory and write them this often (a "
                 "restore replays the contributions since the last write; 0: write them with "
                 "every commit)")
      ->envname("FLEETTWIN_MEMBER_CHECKPOINT_MS")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--guarantee", cfg.guarantee,
                 "exactly-once (Kafka transactions; default with --kafka) or at-least-once "
                 "(default with the embedded Kafka)")
      ->envname("FLEETTWIN_GUARANTEE")
      ->check(CLI::IsMember({"exactly-once", "at-least-once"}));
  bool changelog = true;
  auto* changelog_opt =
      app.add_flag("--changelog,!--no-changelog", changelog,
                   "Write twin state to the compacted changelog topic so another node can restore "
                   "it (default: on with --kafka, off with the embedded Kafka)")
          ->envname("FLEETTWIN_CHANGELOG");
  app.add_option("--commit-interval-ms", cfg.commit_interval_ms,
                 "How long a Kafka transaction collects outputs before it commits")
      ->envname("FLEETTWIN_COMMIT_INTERVAL_MS")
      ->check(CLI::Range(1, 60'000));
  app.add_option("--transaction-timeout-ms", cfg.transaction_timeout_ms,
                 "Kafka transaction timeout: the broker aborts a dead node's open transaction "
                 "after it")
      ->envname("FLEETTWIN_TRANSACTION_TIMEOUT_MS")
      ->check(CLI::Range(1'000, 900'000));
  app.add_option("--standby-replicas", cfg.standby_replicas,
                 "Partitions of other nodes to keep warm per partition (0 = none): failover "
                 "then reads only the changelog's tail")
      ->envname("FLEETTWIN_STANDBY_REPLICAS")
      ->check(CLI::Range(0, 8));
  app.add_flag("--create-topics,!--no-create-topics", cfg.create_topics,
               "Create missing topics on a real Kafka (--partitions each; twin-state compacted)")
      ->envname("FLEETTWIN_CREATE_TOPICS");
  app.add_option("--replication-factor", cfg.replication_factor,
                 "Replication factor of created topics (-1 = the broker's default)")
      ->envname("FLEETTWIN_REPLICATION_FACTOR")
      ->check(CLI::Range(-1, 16));
  app.add_option("--fetch-wait-ms", cfg.fetch_wait_ms,
                 "How long the node's consumers let a fetch wait for new records (librdkafka's "
                 "fetch.wait.max.ms; -1 = 5 ms with the embedded Kafka, whose fetches wait "
                 "the whole time when nothing is there, else the consumers' defaults: 50 ms "
                 "for telemetry)")
      ->envname("FLEETTWIN_FETCH_WAIT_MS")
      ->check(CLI::Range(int64_t{-1}, int64_t{10'000}));
  app.add_option("--session-timeout-ms", cfg.session_timeout_ms,
                 "Consumer group session timeout: how soon a dead node's partitions move")
      ->envname("FLEETTWIN_SESSION_TIMEOUT_MS")
      ->check(CLI::Range(1'000, 300'000));
  app.add_option("--read-lease-ms", cfg.read_lease_ms,
                 "Read fencing: a node answers for its partitions only while the group "
                 "coordinator confirmed its membership within this time (-1 = half the "
                 "session timeout; 0 = off; always off with the embedded Kafka)")
      ->envname("FLEETTWIN_READ_LEASE_MS")
      ->check(CLI::Range(int64_t{-1}, int64_t{300'000}));
  app.add_option("--cluster-port", cfg.cluster_port,
                 "Port for calls forwarded between nodes (CAF remoting; 0 = any free port)")
      ->envname("FLEETTWIN_CLUSTER_PORT")
      ->check(CLI::Range(0, 65535));
  app.add_option("--advertise-host", cfg.advertise_host,
                 "Host other nodes and clients reach this node at (published in the members "
                 "topic; the cluster port listens on it)")
      ->envname("FLEETTWIN_ADVERTISE_HOST");
  app.add_option("--tls-cert", cfg.tls_cert,
                 "PEM certificate chain of this node: gRPC is served over TLS (the files are "
                 "re-read when they change)")
      ->envname("FLEETTWIN_TLS_CERT");
  app.add_option("--tls-key", cfg.tls_key, "PEM private key of --tls-cert")
      ->envname("FLEETTWIN_TLS_KEY");
  app.add_option("--tls-ca", cfg.tls_ca,
                 "PEM CA bundle that client certificates are verified against (mutual TLS)")
      ->envname("FLEETTWIN_TLS_CA");
  app.add_option("--tls-client-auth", cfg.tls_client_auth,
                 "Client certificates on the gRPC port: none, optional (verified when "
                 "presented) or require (default: require with --tls-ca, none without)")
      ->envname("FLEETTWIN_TLS_CLIENT_AUTH")
      ->check(CLI::IsMember({"none", "optional", "require"}));
  app.add_option("--tls-refresh-s", cfg.tls_refresh_s,
                 "How often the certificate, key and CA files are checked for a rotation")
      ->envname("FLEETTWIN_TLS_REFRESH_S")
      ->check(CLI::Range(1u, 86'400u));
  app.add_option("--auth-jwks", cfg.auth.jwks_file,
                 "JWKS file of the keys that sign bearer tokens (RS256, ES256): every gRPC call "
                 "then needs 'authorization: Bearer <JWT>' (re-read when it changes)")
      ->envname("FLEETTWIN_AUTH_JWKS");
  app.add_option("--auth-hs256-secret-file", cfg.auth.hs256_secret_file,
                 "File holding the shared secret of HS256 tokens (at least 32 bytes)")
      ->envname("FLEETTWIN_AUTH_HS256_SECRET_FILE");
  app.add_option("--auth-issuer", cfg.auth.issuer, "The issuer (iss) tokens must name")
      ->envname("FLEETTWIN_AUTH_ISSUER");
  app.add_option("--auth-audience", cfg.auth.audience,
                 "The audience (aud) tokens must name (recommended: this cluster's name)")
      ->envname("FLEETTWIN_AUTH_AUDIENCE");
  app.add_option("--auth-roles-claim", cfg.auth.roles_claim,
                 "Claim with the roles (viewer, operator, admin): an array or a space-separated "
                 "string")
      ->envname("FLEETTWIN_AUTH_ROLES_CLAIM");
  app.add_option("--auth-tenant-claim", cfg.auth.tenant_claim, "Claim with the caller's tenant")
      ->envname("FLEETTWIN_AUTH_TENANT_CLAIM");
  app.add_option("--auth-leeway-s", cfg.auth.leeway_s,
                 "Clock skew allowed when checking exp and nbf")
      ->envname("FLEETTWIN_AUTH_LEEWAY_S")
      ->check(CLI::Range(int64_t{0}, int64_t{600}));
  app.add_option("--auth-cert-role", cfg.auth_cert_roles,
                 "ID=ROLE: a client certificate naming ID (SPIFFE id, URI, DNS name or common "
                 "name; verified against --tls-ca) may call without a token, as ROLE (viewer, "
                 "operator, admin); repeatable")
      ->envname("FLEETTWIN_AUTH_CERT_ROLES")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--auth-reload-s", cfg.auth_reload_s,
                 "How often the JWKS file is checked for new keys")
      ->envname("FLEETTWIN_AUTH_RELOAD_S")
      ->check(CLI::Range(1, 3600));
  app.add_option("--principal-requests-per-s", cfg.principal_requests_per_s,
                 "Requests per second each principal (token subject, certificate identity, or "
                 "client address without security) may make; beyond, RESOURCE_EXHAUSTED with "
                 "retry-after-ms (0 = no limit)")
      ->envname("FLEETTWIN_PRINCIPAL_REQUESTS_PER_S")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--principal-burst", cfg.principal_burst,
                 "Requests a principal may make at once after being idle (0 = one second's "
                 "worth of --principal-requests-per-s)")
      ->envname("FLEETTWIN_PRINCIPAL_BURST")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--principal-watch-streams", cfg.principal_watch_streams,
                 "Watch streams (twins, aggregates, alerts) each principal may hold open on "
                 "this node (0 = no limit)")
      ->envname("FLEETTWIN_PRINCIPAL_WATCH_STREAMS");
  app.add_option("--max-bulk-calls", cfg.max_bulk_calls,
                 "Calls that may answer up to 1,000 entries (BatchGet*, List*, histories, "
                 "ListMembers, Traverse, ListAuditEvents) in progress on this node at once, "
                 "whoever calls; more are RESOURCE_EXHAUSTED with a time to retry: what bounds "
                 "the memory answers in progress hold (0 = no limit)")
      ->envname("FLEETTWIN_MAX_BULK_CALLS");
  app.add_option("--scenario-max", cfg.scenario_max,
                 "What-if scenarios this node holds at once (each holds a RocksDB snapshot: "
                 "no memory, but disk grows with what changes while it lives)")
      ->envname("FLEETTWIN_SCENARIO_MAX")
      ->check(CLI::Range(size_t{1}, size_t{1000}));
  app.add_option("--scenario-max-twins", cfg.scenario_max_twins,
                 "Twins one scenario may fork or hold with the twins its inputs add (a run "
                 "holds them in memory, about 4 KiB each)")
      ->envname("FLEETTWIN_SCENARIO_MAX_TWINS")
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}));
  app.add_option("--scenario-max-running", cfg.scenario_max_running,
                 "Scenario runs in progress at once (each takes a core while it runs)")
      ->envname("FLEETTWIN_SCENARIO_MAX_RUNNING")
      ->check(CLI::Range(size_t{1}, size_t{64}));
  app.add_flag("--insecure", cfg.insecure,
               "Allow plaintext gRPC, metrics and cluster listeners on addresses other than "
               "loopback (without it the node refuses to start that way)")
      ->envname("FLEETTWIN_INSECURE");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    // CLI11 says "INI was not able to parse <key>" for a key that is no option.
    std::string what = e.what();
    const std::string unknown = "INI was not able to parse ";
    if (what.rfind(unknown, 0) == 0) {
      what = "unknown option '" + what.substr(unknown.size()) +
             "' (keys are the long option names without --; see --help)";
    }
    err << "error: --config " << app.get_config_ptr()->as<std::string>() << ": " << what << '\n';
    return 2;
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2.
    return app.exit(e, out, err) == 0 ? 0 : 2;
  }
  for (const auto& kv : cfg.kafka_options) {
    if (kv.find('=') == std::string::npos || kv.front() == '=') {
      err << "--kafka-option " << kv << ": expected key=value\n";
      return 2;
    }
  }
  if (!cfg.kafka_options_file.empty()) {
    std::ifstream in{cfg.kafka_options_file};
    if (!in) {
      err << "--kafka-options-file " << cfg.kafka_options_file << ": cannot read it\n";
      return 2;
    }
    std::vector<std::string> from_file;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos || line[first] == '#')
        continue;
      const auto last = line.find_last_not_of(" \t\r");
      line = line.substr(first, last - first + 1);
      const auto eq = line.find('=');
      if (eq == std::string::npos || eq == 0) {
        err << "--kafka-options-file " << cfg.kafka_options_file << ":" << n
            << ": expected key=value, got \"" << line.substr(0, line.find('=')) << "...\"\n";
        return 2;
      }
      // Spaces around the '=' are allowed, as in Java properties files.
      auto key = line.substr(0, line.find_last_not_of(" \t", eq - 1) + 1);
      auto value = line.substr(eq + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      from_file.push_back(key + "=" + value);
    }
    // Given options come after the file's, so they win.
    cfg.kafka_options.insert(cfg.kafka_options.begin(), from_file.begin(), from_file.end());
  }
  if (cfg.node_id.empty()) {
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    cfg.node_id = std::string{"node-"} + host;
  }
  if (changelog_opt->count() > 0)
    cfg.changelog = changelog;
  if (cfg.guarantee.empty())
    cfg.guarantee = cfg.kafka.empty() ? "at-least-once" : "exactly-once";
  if (cfg.exactly_once() && !cfg.keeps_changelog()) {
    err << "--guarantee exactly-once needs the changelog (drop --no-changelog)\n";
    return 2;
  }
  if (cfg.bootstrap_file.empty())
    cfg.bootstrap_file = cfg.data_dir + "/kafka.bootstrap";
  if (cfg.read_lease_ms < 0)
    cfg.read_lease_ms = cfg.kafka.empty() ? 0 : cfg.session_timeout_ms / 2;
  if (cfg.read_lease_ms >= cfg.session_timeout_ms) {
    err << "--read-lease-ms " << cfg.read_lease_ms << " must be below --session-timeout-ms "
        << cfg.session_timeout_ms << " (a paused node must stop answering before its partitions "
        << "can move)\n";
    return 2;
  }
  if (cfg.tls_cert.empty() != cfg.tls_key.empty()) {
    err << "--tls-cert and --tls-key go together\n";
    return 2;
  }
  if (cfg.tls_cert.empty() && (!cfg.tls_ca.empty() || !cfg.tls_client_auth.empty())) {
    err << "--tls-ca and --tls-client-auth need TLS: give --tls-cert and --tls-key\n";
    return 2;
  }
  if (cfg.tls_client_auth.empty())
    cfg.tls_client_auth = cfg.tls_ca.empty() ? "none" : "require";
  if (cfg.tls_client_auth != "none" && cfg.tls_ca.empty()) {
    err << "--tls-client-auth " << cfg.tls_client_auth
        << " needs --tls-ca, the CA bundle client certificates are verified against\n";
    return 2;
  }
  if (cfg.authenticates() && cfg.tls_cert.empty()) {
    err << "authentication (--auth-jwks, --auth-hs256-secret-file, --auth-cert-role) needs "
           "TLS: give --tls-cert and --tls-key (bearer tokens must not travel in plaintext)\n";
    return 2;
  }
  for (const auto& kv : cfg.auth_cert_roles) {
    auto eq = kv.rfind('=');
    const auto role = eq == std::string::npos ? std::string{} : kv.substr(eq + 1);
    if (eq == std::string::npos || eq == 0 ||
        (role != "viewer" && role != "operator" && role != "admin")) {
      err << "--auth-cert-role " << kv << ": expected ID=ROLE with ROLE viewer, operator or "
          << "admin\n";
      return 2;
    }
  }
  if (!cfg.auth_cert_roles.empty() && (cfg.tls_ca.empty() || cfg.tls_client_auth == "none")) {
    err << "--auth-cert-role needs client certificates: give --tls-ca (and --tls-client-auth "
           "optional or require)\n";
    return 2;
  }
  if (auto why = plaintext_refusal(cfg)) {
    err << *why << '\n';
    return 2;
  }
  return std::nullopt;
}

std::vector<plaintext_listener> plaintext_listeners(const node_config& cfg) {
  const plaintext_listener all[] = {
      {"gRPC", "--grpc", cfg.grpc_address},
      {"metrics", "--metrics", cfg.metrics_address},
      {"the cluster port", "--advertise-host",
       cfg.advertise_host + ":" + std::to_string(cfg.cluster_port)},
  };
  const bool tls[] = {!cfg.tls_cert.empty(), !cfg.tls_cert.empty(), cfg.cluster_tls()};
  std::vector<plaintext_listener> out;
  for (size_t i = 0; i < std::size(all); ++i)
    if (!tls[i] && !security::loopback_only(all[i].address))
      out.push_back(all[i]);
  return out;
}

std::optional<std::string> plaintext_refusal(const node_config& cfg) {
  if (cfg.insecure)
    return std::nullopt;
  auto open = plaintext_listeners(cfg);
  if (open.empty())
    return std::nullopt;
  const auto& l = open.front();
  return "refusing to serve " + l.what + " in plaintext on " + l.address + " (" + l.option +
         " is not a loopback address): " +
         (l.what != "the cluster port" ? "give --tls-cert and --tls-key, or "
          : l.what == "the cluster port"
              ? "give --tls-cert, --tls-key and --tls-ca (nodes verify each other against it), "
                "or "
              : "") +
         "pass --insecure to allow plaintext on a network you trust";
}

security::server_tls node_config::grpc_tls() const {
  security::server_tls tls;
  tls.cert_file = tls_cert;
  tls.key_file = tls_key;
  tls.ca_file = tls_ca;
  tls.clients = security::parse_client_auth(tls_client_auth).value_or(security::client_auth::none);
  tls.refresh_seconds = tls_refresh_s;
  return tls;
}

std::map<std::string, std::string> consumer_settings(
    const std::map<std::string, std::string>& kafka_settings, int64_t fetch_wait_ms,
    bool embedded_kafka) {
  auto settings = kafka_settings;
  // The embedded Kafka (librdkafka's mock cluster) holds a fetch that finds no new
  // records for the whole fetch.wait.max.ms, and does not answer early when records
  // arrive, as a real broker does. With the consumers' 50 ms, a partition's records
  // came in lumps: its fetches took what the mock had in a few milliseconds, then one
  // found nothing and waited 50 ms. fleettwin-bench aggregates --aggregates none
  // --rate 20000 on the mock, read-after-ingest p50 42.9 -> 3.6 ms, p99 92.4 -> 48.7
  // ms with 5 ms (and more, smaller work items).
  const int64_t wait = fetch_wait_ms >= 0 ? fetch_wait_ms
                       : embedded_kafka   ? embedded_fetch_wait_ms
                                          : -1;
  if (wait >= 0)
    settings.emplace("fetch.wait.max.ms", std::to_string(wait));
  return settings;
}

}  // namespace fleettwin::node
