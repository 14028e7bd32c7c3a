#include "tools/sim/report.hpp"

#include <iterator>

#include <fmt/format.h>

#include "tools/sim/encoding.hpp"
#include "tools/sim/generator.hpp"

namespace fleettwin::sim {

std::string report_json(const run_counts& counts, const generator& gen, double elapsed_seconds) {
  std::string out;
  out.reserve(128 + 24 * counts.per_asset.size());
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "{{\"records_sent\":{},\"records_delivered\":{},\"delivery_failures\":{},"
                 "\"malformed_sent\":{},\"malformed_delivered\":{},\"aggregate_records_sent\":{},"
                 "\"aggregate_records_delivered\":{},\"relation_records_sent\":{},"
                 "\"relation_records_delivered\":{},\"elapsed_seconds\":",
                 counts.sent, counts.delivered, counts.failed, counts.malformed_sent,
                 counts.malformed_delivered, counts.aggregates_sent, counts.aggregates_delivered,
                 counts.relations_sent, counts.relations_delivered);
  append_json_double(out, elapsed_seconds);
  out.append(",\"per_asset\":{");
  for (size_t i = 0; i < counts.per_asset.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    append_json_string(out, gen.asset_id(i));
    fmt::format_to(std::back_inserter(out), ":{}", counts.per_asset[i]);
  }
  out.append("}}\n");
  return out;
}

}  // namespace fleettwin::sim
