#include "services/metrics/https_exposer.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <stdexcept>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

namespace fleettwin::metrics {

namespace {

constexpr int io_timeout_s = 5;
constexpr size_t max_request_bytes = 8192;

struct ctx_free {
  void operator()(SSL_CTX* c) const {
    SSL_CTX_free(c);
  }
};
struct ssl_free {
  void operator()(SSL* s) const {
    SSL_free(s);
  }
};

std::string openssl_error() {
  char buf[256] = "unknown";
  if (auto e = ERR_get_error())
    ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

/// A server context from the files as they are now (read for every connection).
std::unique_ptr<SSL_CTX, ctx_free> context(const https_files& files, std::string& error) {
  std::unique_ptr<SSL_CTX, ctx_free> ctx{SSL_CTX_new(TLS_server_method())};
  if (!ctx) {
    error = openssl_error();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx.get(), files.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    error = openssl_error();
    return nullptr;
  }
  return ctx;
}

void set_timeouts(int fd) {
  timeval tv{io_timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void write_all(SSL* ssl, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    int n = SSL_write(ssl, data.data() + done, static_cast<int>(data.size() - done));
    if (n <= 0)
      return;
    done += static_cast<size_t>(n);
  }
}

std::string response(int code, const char* reason, const std::string& type,
                     const std::string& body) {
  std::ostringstream out;
  out << "HTTP/1.1 " << code << ' ' << reason << "\r\nContent-Type: " << type
      << "\r\nContent-Length: " << body.size() << "\r\nConnection: close\r\n\r\n"
      << body;
  return out.str();
}

}  // namespace

https_exposer::https_exposer(const std::string& address, https_files files)
    : files_(std::move(files)) {
  std::string host = address;
  std::string port = "0";
  if (auto colon = address.rfind(':'); colon != std::string::npos) {
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      rc != 0 || found == nullptr)
    throw std::runtime_error("metrics address " + address + ": " + gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard{found, freeaddrinfo};
  listen_fd_ = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (listen_fd_ < 0 || bind(listen_fd_, found->ai_addr, found->ai_addrlen) != 0 ||
      listen(listen_fd_, 16) != 0) {
    std::string why = std::strerror(errno);
    if (listen_fd_ >= 0)
      close(listen_fd_);
    throw std::runtime_error("cannot serve metrics on " + address + ": " + why);
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (pipe2(wake_, O_CLOEXEC) != 0) {
    close(listen_fd_);
    throw std::runtime_error("cannot serve metrics: pipe: " + std::string{std::strerror(errno)});
  }
  acceptor_ = std::thread{[this] { accept_loop(); }};
}

https_exposer::~https_exposer() {
  stopping_ = true;
  char b = 0;
  [[maybe_unused]] auto n = write(wake_[1], &b, 1);
  acceptor_.join();
  {
    // Handlers end within their timeouts.
    std::unique_lock<std::mutex> lock{mutex_};
    idle_.wait(lock, [this] { return active_ == 0; });
  }
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
}

void https_exposer::add(const std::weak_ptr<prometheus::Collectable>& collectable) {
  std::lock_guard<std::mutex> guard{mutex_};
  collectables_.push_back(collectable);
}

void https_exposer::accept_loop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR)
      return;
    if (stopping_)
      return;
    if (!(fds[0].revents & POLLIN))
      continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (active_ >= max_connections) {
        close(fd);
        continue;
      }
      ++active_;
    }
    std::thread{[this, fd] {
      handle(fd);
      close(fd);
      std::lock_guard<std::mutex> guard{mutex_};
      if (--active_ == 0)
        idle_.notify_all();
    }}.detach();
  }
}

void https_exposer::handle(int fd) {
  set_timeouts(fd);
  std::string error;
  auto ctx = context(files_, error);
  if (!ctx) {
    spdlog::warn("event=metrics_tls_failed reason=\"cannot load {} / {}: {}\"", files_.cert_file,
                 files_.key_file, error);
    return;
  }
  std::unique_ptr<SSL, ssl_free> ssl{SSL_new(ctx.get())};
  SSL_set_fd(ssl.get(), fd);
  if (SSL_accept(ssl.get()) != 1) {
    ERR_clear_error();  // a plaintext or untrusting client: nothing to answer
    return;
  }
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < max_request_bytes) {
    int n = SSL_read(ssl.get(), buf, sizeof(buf));
    if (n <= 0) {
      ERR_clear_error();
      return;
    }
    request.append(buf, static_cast<size_t>(n));
  }
  const auto line = request.substr(0, request.find("\r\n"));
  std::string reply;
  if (line.rfind("GET /metrics ", 0) == 0 || line.rfind("GET /metrics?", 0) == 0)
    reply = response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", exposition());
  else if (line.rfind("GET ", 0) == 0)
    reply = response(404, "Not Found", "text/plain", "only /metrics is served here\n");
  else
    reply = response(405, "Method Not Allowed", "text/plain", "GET /metrics\n");
  write_all(ssl.get(), reply);
  SSL_shutdown(ssl.get());
  ERR_clear_error();
}

std::string https_exposer::exposition() {
  std::vector<std::shared_ptr<prometheus::Collectable>> live;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    for (const auto& w : collectables_)
      if (auto c = w.lock())
        live.push_back(std::move(c));
  }
  std::vector<prometheus::MetricFamily> families;
  for (const auto& c : live) {
    auto f = c->Collect();
    families.insert(families.end(), std::make_move_iterator(f.begin()),
                    std::make_move_iterator(f.end()));
  }
  return prometheus::TextSerializer{}.Serialize(families);
}

}  // namespace fleettwin::metrics
