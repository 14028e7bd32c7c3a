#pragma once

// A real Apache Kafka cluster for tests (transactions, compaction, broker failures),
// run by tools/kafka/kafka.sh in KRaft mode on free loopback ports and a fresh temp dir.

#include <chrono>
#include <map>
#include <string>

namespace fleettwin::test {

/// One or three Kafka brokers, started by the constructor (throws std::runtime_error with the
/// script's diagnostics when they do not come up) and stopped by the destructor, which also
/// removes the temp dir. A watchdog stops the brokers if the test process dies first.
class kafka_broker {
public:
  /// `sasl_ssl`: the brokers also listen with SASL_SSL (TLS and SCRAM-SHA-512).
  explicit kafka_broker(int brokers = 1, bool sasl_ssl = false);
  ~kafka_broker();
  kafka_broker(const kafka_broker&) = delete;
  kafka_broker& operator=(const kafka_broker&) = delete;

  /// "127.0.0.1:port[,...]" for bootstrap.servers.
  const std::string& bootstrap() const {
    return bootstrap_;
  }
  int brokers() const {
    return brokers_;
  }
  /// With sasl_ssl: the SASL_SSL listeners, and the librdkafka settings file of a client
  /// of them (security.protocol, sasl.*, ssl.ca.location).
  const std::string& sasl_ssl_bootstrap() const {
    return sasl_ssl_bootstrap_;
  }
  std::string sasl_ssl_client_properties() const {
    return dir_ + "/client-sasl-ssl.properties";
  }
  /// The cluster's dir: configs, data and broker-N.log.
  const std::string& dir() const {
    return dir_;
  }

  /// SIGKILLs broker n (1-based) and waits until it is gone: a crash, for chaos tests.
  void kill_broker(int n);
  /// Starts broker n again with its data and waits until the cluster lists every broker.
  void restart_broker(int n);
  /// Stops all brokers (SIGTERM, then SIGKILL after a deadline); the destructor calls it.
  void stop();

  /// Deletes a topic and waits until the cluster's metadata no longer lists
  /// it; false and `error` on failure.
  bool delete_topic(const std::string& name, std::string& error) const;

  /// create_topic() below on this cluster.
  bool create_topic(const std::string& name, int partitions, int replication,
                    const std::map<std::string, std::string>& config, std::string& error) const;

private:
  int brokers_;
  std::string dir_;
  std::string bootstrap_;
  std::string sasl_ssl_bootstrap_;
  bool running_ = false;
};

/// Creates a topic with the librdkafka Admin API and waits until every partition has a
/// leader in the cluster's metadata. `config` holds topic settings such as
/// {"cleanup.policy", "compact"}. Returns false and sets `error` on failure (for example
/// TOPIC_ALREADY_EXISTS or INVALID_REPLICATION_FACTOR, named in the text).
bool create_topic(const std::string& bootstrap, const std::string& name, int partitions,
                  int replication, const std::map<std::string, std::string>& config,
                  std::string& error, std::chrono::milliseconds timeout = std::chrono::seconds{30});

}  // namespace fleettwin::test
