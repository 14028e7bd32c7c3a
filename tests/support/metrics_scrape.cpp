#include "metrics_scrape.hpp"

#include <sstream>

#include "tools/bench/scrape.hpp"

namespace fleettwin::test {

std::string scrape(int port) {
  return bench::scrape_metrics(static_cast<uint16_t>(port));
}

double metric_value(const std::string& exposition, const std::string& series) {
  std::istringstream in{exposition};
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, series.size(), series) == 0 && line.size() > series.size() &&
        line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace fleettwin::test
