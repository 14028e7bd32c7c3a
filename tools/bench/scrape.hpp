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

/// The sum of every series of a family, whatever its labels (0 when there is none).
inline double metric_sum(const std::string& text, const std::string& family) {
  double sum = 0;
  for (auto pos = text.find("\n" + family); pos != std::string::npos;
       pos = text.find("\n" + family, pos + 1)) {
    const auto name_end = pos + 1 + family.size();
    if (name_end >= text.size() || (text[name_end] != '{' && text[name_end] != ' '))
      continue;  // another family with this prefix
    const auto line_end = text.find('\n', name_end);
    const auto line = text.substr(name_end, line_end - name_end);
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

}  // namespace fleettwin::bench
