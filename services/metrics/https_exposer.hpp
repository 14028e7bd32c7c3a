#pragma once

// /metrics over TLS (HTTPS), for nodes that serve their other ports with TLS.
// prometheus-cpp's exposer (civetweb) cannot do TLS in Debian's build, so this small
// server does it with OpenSSL: one GET /metrics per connection, answered with the text
// exposition format. The certificate and key are read for every connection, so a
// rotated certificate is served at the next scrape. Scrapes are rare and small: each
// connection gets a thread of its own, at most a few at a time, with short timeouts.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/collectable.h>

namespace fleettwin::metrics {

struct https_files {
  std::string cert_file;  ///< PEM certificate chain
  std::string key_file;   ///< its private key
};

class https_exposer {
public:
  /// Listens on `address` ("host:port", "[v6]:port"; port 0: any free port); throws
  /// std::runtime_error when it cannot.
  https_exposer(const std::string& address, https_files files);
  ~https_exposer();
  https_exposer(const https_exposer&) = delete;
  https_exposer& operator=(const https_exposer&) = delete;

  void add(const std::weak_ptr<prometheus::Collectable>& collectable);
  uint16_t port() const {
    return port_;
  }

  /// Connections handled at once; more are closed at once.
  static constexpr int max_connections = 4;

private:
  void accept_loop();
  void handle(int fd);
  std::string exposition();

  https_files files_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::mutex mutex_;
  std::condition_variable idle_;
  int active_ = 0;
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
};

}  // namespace fleettwin::metrics
