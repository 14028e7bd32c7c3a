#pragma once

// Reading a node's Prometheus /metrics in tests.

#include <string>

namespace fleettwin::test {

/// GET http://127.0.0.1:port/metrics ("" when nothing listens).
std::string scrape(int port);

/// The value of a metric line (name with labels as written), or -1.
double metric_value(const std::string& exposition, const std::string& series);

}  // namespace fleettwin::test
