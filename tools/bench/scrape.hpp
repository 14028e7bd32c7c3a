#pragma once

// A node's Prometheus exposition, read by the benchmarks (plain HTTP on loopback).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace fleettwin::bench {

/// GET /metrics from the node on 127.0.0.1:`port` ("" when it does not answer).
inline std::string scrape_metrics(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string req = "GET /metrics HTTP/1.0\r\n\r\n";
    (void)!write(fd, req.data(), req.size());
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
      out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

/// The value of one series (its name with its labels, as exposed), 0 when absent.
inline double metric(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  return pos == std::string::npos ? 0 : std::stod(text.substr(pos + series.size() + 2));
}

}  // namespace fleettwin::bench
