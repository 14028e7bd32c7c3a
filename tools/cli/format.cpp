#include "tools/cli/format.hpp"

#include <algorithm>
#include <chrono>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <google/protobuf/util/json_util.h>

namespace fleettwin::cli {

namespace {

/// The reported properties shown per row in a list.
constexpr size_t summary_properties = 3;

/// Protobuf maps iterate in no particular order; humans want names sorted.
template <class Map>
auto sorted(const Map& map) {
  return std::map<std::string, typename Map::mapped_type>(map.begin(), map.end());
}

std::string format_stat(double value) {
  return fmt::format("{:.6g}", value);
}

std::string connectivity_name(v1::Connectivity connectivity) {
  switch (connectivity) {
    case v1::ONLINE:
      return "ONLINE";
    case v1::STALE:
      return "STALE";
    default:
      return "UNSPECIFIED";
  }
}

std::string change_type_name(v1::ChangeType type) {
  switch (type) {
    case v1::REPORTED:
      return "REPORTED";
    case v1::DESIRED:
      return "DESIRED";
    case v1::ERASED:
      return "ERASED";
    default:
      return "UNSPECIFIED";
  }
}

void print_field(std::ostream& out, std::string_view label, std::string_view value) {
  out << fmt::format("{:<14}{}\n", label, value);
}

void print_values(std::ostream& out, std::string_view label,
                  const google::protobuf::Map<std::string, v1::Value>& values) {
  if (values.empty()) {
    print_field(out, label, "(none)");
    return;
  }
  out << label << '\n';
  table rows({"PROPERTY", "VALUE"});
  for (const auto& [key, value] : sorted(values)) {
    rows.add({key, format_value(value)});
  }
  rows.print(out, "  ");
}

std::string format_duration(int64_t ms) {
  auto s = ms / 1000;
  if (s < 60) {
    return fmt::format("{}s", s);
  }
  if (s < 3600) {
    return fmt::format("{}m{}s", s / 60, s % 60);
  }
  if (s < 86400) {
    return fmt::format("{}h{}m", s / 3600, s / 60 % 60);
  }
  return fmt::format("{}d{}h", s / 86400, s / 3600 % 24);
}

}  // namespace

std::string format_value(const v1::Value& value) {
  switch (value.kind_case()) {
    case v1::Value::kDoubleValue: {
      auto text = fmt::format("{}", value.double_value());
      if (text.find_first_of(".eEni") == std::string::npos) {
        text += ".0";
      }
      return text;
    }
    case v1::Value::kIntValue:
      return fmt::format("{}", value.int_value());
    case v1::Value::kBoolValue:
      return value.bool_value() ? "true" : "false";
    case v1::Value::kStringValue:
      return fmt::format("\"{}\"", value.string_value());
    default:
      return "null";
  }
}

std::string format_time(int64_t unix_ms) {
  using namespace std::chrono;
  if (unix_ms == 0) {
    return "-";
  }
  sys_time<milliseconds> t{milliseconds{unix_ms}};
  auto day = floor<days>(t);
  year_month_day date{day};
  hh_mm_ss time{t - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(date.year()),
                     static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                     time.hours().count(), time.minutes().count(), time.seconds().count(),
                     time.subseconds().count());
}

std::string status_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return fmt::format("CODE_{}", static_cast<int>(code));
  }
}

std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    // Only possible for messages with Any fields whose type is unknown; ours have none.
    return fmt::format("{{\"error\":\"{}\"}}", status.ToString());
  }
  return json;
}

table::table(std::vector<std::string> header) : header_(std::move(header)) {
  for (const auto& cell : header_) {
    widths_.push_back(cell.size());
  }
}

void table::add(std::vector<std::string> row) {
  row.resize(header_.size());
  for (size_t i = 0; i < row.size(); ++i) {
    widths_[i] = std::max(widths_[i], row[i].size());
  }
  rows_.push_back(std::move(row));
}

void table::print(std::ostream& out, const std::string& indent) {
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        line += row[i];
      } else {
        line += fmt::format("{:<{}}  ", row[i], widths_[i]);
      }
    }
    out << line << '\n';
  };
  if (!header_printed_) {
    print_row(header_);
    header_printed_ = true;
  }
  for (const auto& row : rows_) {
    print_row(row);
  }
  rows_.clear();
}

void print_twin(std::ostream& out, const v1::Twin& twin) {
  print_field(out, "name", twin.name());
  print_field(out, "kind", twin.kind().empty() ? "-" : twin.kind());
  print_field(out, "tenant", twin.tenant().empty() ? "-" : twin.tenant());
  print_field(out, "version", fmt::format("{}", twin.version()));
  print_field(out, "connectivity", connectivity_name(twin.connectivity()));
  print_field(out, "last seen",
              twin.last_seen_ms() == 0 ? "never" : format_time(twin.last_seen_ms()));
  print_field(out, "records",
              fmt::format("{} applied, {} duplicates, {} out of order, last sequence {}",
                          twin.applied_records(), twin.duplicates(), twin.out_of_order(),
                          twin.last_sequence()));
  if (twin.attributes().empty()) {
    print_field(out, "attributes", "(none)");
  } else {
    out << "attributes\n";
    table rows({"KEY", "VALUE"});
    for (const auto& [key, value] : sorted(twin.attributes())) {
      rows.add({key, value});
    }
    rows.print(out, "  ");
  }
  if (twin.reported().empty()) {
    print_field(out, "reported", "(none)");
  } else {
    out << "reported\n";
    table rows({"PROPERTY", "VALUE", "SOURCE TIME", "SEQUENCE"});
    for (const auto& [key, property] : sorted(twin.reported())) {
      rows.add({key, format_value(property.value()), format_time(property.source_time_ms()),
                fmt::format("{}", property.sequence())});
    }
    rows.print(out, "  ");
  }
  print_values(out, "desired", twin.desired());
  print_values(out, "delta", twin.delta());
  if (twin.stats().empty()) {
    print_field(out, "stats", "(none)");
  } else {
    out << "stats\n";
    table rows({"PROPERTY", "COUNT", "MIN", "MAX", "MEAN"});
    for (const auto& [key, stats] : sorted(twin.stats())) {
      rows.add({key, fmt::format("{}", stats.count()), format_stat(stats.min()),
                format_stat(stats.max()), format_stat(stats.mean())});
    }
    rows.print(out, "  ");
  }
}

void print_desired_result(std::ostream& out, const v1::Twin& twin) {
  print_field(out, "name", twin.name());
  print_field(out, "version", fmt::format("{}", twin.version()));
  print_values(out, "desired", twin.desired());
  print_values(out, "delta", twin.delta());
}

std::vector<std::string> twin_summary_header() {
  return {"ASSET", "KIND", "VERSION", "CONNECTIVITY", "LAST SEEN", "REPORTED"};
}

std::vector<std::string> twin_summary_row(const v1::Twin& twin) {
  std::string reported;
  size_t shown = 0;
  for (const auto& [key, property] : sorted(twin.reported())) {
    if (shown == summary_properties) {
      reported += fmt::format(" (+{} more)", twin.reported().size() - shown);
      break;
    }
    reported += fmt::format("{}{}={}", shown == 0 ? "" : " ", key, format_value(property.value()));
    ++shown;
  }
  return {twin.asset_id(),
          twin.kind().empty() ? "-" : twin.kind(),
          fmt::format("{}", twin.version()),
          connectivity_name(twin.connectivity()),
          format_time(twin.last_seen_ms()),
          reported};
}

std::string format_change(const v1::TwinChange& change) {
  // A work item's changes of one twin, merged: the versions they cover.
  const auto first = change.first_version();
  const auto versions = first != 0 && first < change.version()
                            ? fmt::format("v{}-{}", first, change.version())
                            : fmt::format("v{}", change.version());
  auto line = fmt::format("{} {} {} {}", format_time(change.time_ms()), change.asset_id(), versions,
                          change_type_name(change.type()));
  for (const auto& [key, property] : sorted(change.reported())) {
    line += fmt::format(" {}={}", key, format_value(property.value()));
  }
  for (const auto& [key, value] : sorted(change.desired())) {
    line += fmt::format(" {}={}", key, format_value(value));
  }
  if (!change.removed().empty()) {
    line += fmt::format(" removed={}", fmt::join(change.removed(), ","));
  }
  if (change.sequence() != 0) {
    line += fmt::format(" seq={}", change.sequence());
  }
  return line;
}

void print_history(std::ostream& out, const v1::GetHistoryResponse& history) {
  table rows({"TIME", "VALUE", "SEQUENCE"});
  for (const auto& point : history.points()) {
    rows.add({format_time(point.source_time_ms()), format_value(point.value()),
              fmt::format("{}", point.sequence())});
  }
  rows.print(out);
}

void print_status(std::ostream& out, const v1::NodeStatus& status, int64_t now_ms) {
  print_field(out, "node", status.node_id());
  print_field(out, "ready",
              status.ready() ? std::string{"yes"} : "no (" + status.not_ready_reason() + ")");
  print_field(out, "version", status.version());
  if (status.started_ms() != 0) {
    print_field(out, "started",
                fmt::format("{} (up {})", format_time(status.started_ms()),
                            format_duration(now_ms - status.started_ms())));
  }
  print_field(out, "data dir", status.data_dir().empty() ? "-" : status.data_dir());
  print_field(out, "kafka",
              fmt::format("{} ({})", status.kafka_bootstrap(),
                          status.kafka_embedded() ? "embedded" : "external"));
  print_field(out, "topic", status.telemetry_topic());
  print_field(out, "twins",
              fmt::format("{} active, {} stored", status.active_twins(), status.stored_twins()));
  print_field(
      out, "records",
      fmt::format("{} applied, {} rejected", status.records_applied(), status.records_rejected()));
  if (status.partitions().empty()) {
    print_field(out, "partitions", "(none assigned)");
    return;
  }
  out << "partitions\n";
  table rows({"PARTITION", "COMMITTED", "HIGH WATERMARK", "LAG", "ACTIVE TWINS"});
  int64_t total_lag = 0;
  bool lag_unknown = false;
  uint64_t total_active = 0;
  // -1: the log's end is not known yet; shown as "?", never as 0.
  auto known = [](int64_t x) { return x < 0 ? std::string{"?"} : fmt::format("{}", x); };
  for (const auto& p : status.partitions()) {
    rows.add({fmt::format("{}", p.partition()), fmt::format("{}", p.committed_offset()),
              known(p.high_watermark()), known(p.lag()), fmt::format("{}", p.active_twins())});
    total_lag += std::max<int64_t>(p.lag(), 0);
    lag_unknown |= p.lag() < 0;
    total_active += p.active_twins();
  }
  rows.add({fmt::format("total ({})", status.partitions().size()), "", "",
            fmt::format("{}{}", lag_unknown ? ">= " : "", total_lag),
            fmt::format("{}", total_active)});
  rows.print(out, "  ");
}

namespace {

/// "0-3,7" for a sorted list of partitions.
std::string ranges(std::vector<int32_t> ps) {
  if (ps.empty()) {
    return "-";
  }
  std::sort(ps.begin(), ps.end());
  std::string out;
  for (size_t i = 0; i < ps.size();) {
    size_t j = i;
    while (j + 1 < ps.size() && ps[j + 1] == ps[j] + 1) {
      ++j;
    }
    out += (out.empty() ? "" : ",") +
           (i == j ? fmt::format("{}", ps[i]) : fmt::format("{}-{}", ps[i], ps[j]));
    i = j + 1;
  }
  return out;
}

}  // namespace

void print_cluster(std::ostream& out, const v1::ClusterStatus& cluster) {
  out << fmt::format("cluster (group {}, {} partitions, {}, answered by {})\n", cluster.group_id(),
                     cluster.partitions(), cluster.guarantee(), cluster.answered_by());
  table rows({"NODE", "STATE", "GRPC", "ACTIVE", "RESTORING", "STANDBY", "LAG", "TWINS", "SEEN"});
  for (const auto& n : cluster.nodes()) {
    std::vector<int32_t> active;
    std::vector<int32_t> restoring;
    std::vector<int32_t> standby;
    int64_t lag = 0;
    uint64_t twins = 0;
    for (const auto& p : n.member().partitions()) {
      switch (p.role()) {
        case v1::PARTITION_ROLE_ACTIVE:
          active.push_back(p.partition());
          lag += std::max<int64_t>(p.lag(), 0);
          twins += p.stored_twins();
          break;
        case v1::PARTITION_ROLE_RESTORING:
          restoring.push_back(p.partition());
          break;
        case v1::PARTITION_ROLE_STANDBY:
          standby.push_back(p.partition());
          break;
        default:
          break;
      }
    }
    rows.add({n.member().node_id(), n.alive() ? "up" : "gone", n.member().grpc_endpoint(),
              ranges(active), ranges(restoring), ranges(standby), fmt::format("{}", lag),
              fmt::format("{}", twins), format_duration(n.age_ms()) + " ago"});
  }
  rows.print(out, "  ");
  if (cluster.unserved_partitions_size() > 0) {
    print_field(
        out, "unserved",
        ranges({cluster.unserved_partitions().begin(), cluster.unserved_partitions().end()}) +
            " (rebalance or restore in progress)");
  }
}

void print_audit(std::ostream& out, const std::string& target,
                 const v1::ListAuditEventsResponse& trail) {
  if (trail.events_size() == 0) {
    out << "no audited calls of " << target << " (" << trail.scanned() << " audit records read)\n";
    return;
  }
  table rows({"TIME", "OUTCOME", "METHOD", "CALLER", "TARGET", "NODE", "DETAIL"});
  for (const auto& e : trail.events()) {
    std::string method = e.method();
    if (auto slash = method.rfind('/'); slash != std::string::npos)
      method = method.substr(slash + 1);
    std::string caller = e.subject().empty() ? "-" : e.subject();
    if (!e.role().empty())
      caller += " (" + e.role() + (e.tenant().empty() ? "" : ", tenant " + e.tenant()) + ")";
    rows.add({format_time(e.time_ms()), e.code(), method, caller, e.target(), e.node(),
              e.message().empty() ? "-" : e.message()});
  }
  rows.print(out, "");
  if (trail.total() > trail.events_size())
    out << "(the newest " << trail.events_size() << " of " << trail.total()
        << " events; --since or --limit show others)\n";
}

namespace {

std::string format_measure(const v1::Measure& m) {
  if (!m.has_value())
    return "-";
  return fmt::format("{:.6g}", m.value());
}

std::string strip(std::string_view name, std::string_view prefix) {
  return std::string{name.starts_with(prefix) ? name.substr(prefix.size()) : name};
}

}  // namespace

void print_aggregate(std::ostream& out, const v1::Aggregate& a) {
  out << fmt::format("{}  ({})  version {}  updated {}\n", a.name(), a.kind(), a.version(),
                     format_time(a.updated_ms()));
  out << fmt::format("members {} (twins {}, direct {}, in transit {})\n", a.members(),
                     a.member_twins(), a.direct_members(), a.in_transit());
  if (!a.tenant().empty())
    out << "tenant " << a.tenant() << '\n';
  for (const auto& p : a.parents())
    out << fmt::format("parent: {} {}\n", p.type(), strip(p.parent(), "aggregates/"));
  if (!a.attributes().empty()) {
    std::map<std::string, std::string> sorted(a.attributes().begin(), a.attributes().end());
    out << "attributes:";
    for (const auto& [k, v] : sorted)
      out << ' ' << k << '=' << v;
    out << '\n';
  }
  if (a.measures().empty())
    return;
  out << "measures:\n";
  table rows({"measure", "value"});
  for (const auto& m : a.measures())
    rows.add({m.name(), format_measure(m)});
  rows.print(out, "  ");
}

std::string format_aggregate_change(const v1::AggregateChange& c) {
  auto line = fmt::format("{} {} v{} twins={} members={}", format_time(c.time_ms()),
                          c.aggregate_id(), c.version(), c.member_twins(), c.members());
  for (const auto& m : c.measures())
    line += fmt::format(" {}={}", m.name(), format_measure(m));
  return line;
}

namespace {

std::string_view state_text(v1::AlertState s) {
  switch (s) {
    case v1::OPEN:
      return "open";
    case v1::ACKNOWLEDGED:
      return "acknowledged";
    case v1::CLEARED:
      return "cleared";
    default:
      return "-";
  }
}

std::string_view severity_text(v1::AlertSeverity s) {
  return s == v1::CRITICAL ? "critical" : s == v1::WARNING ? "warning" : "-";
}

}  // namespace

std::vector<std::string> alert_header() {
  return {"TWIN", "PROPERTY", "#", "STATE", "SEVERITY", "DETECTOR", "PEAK", "RAISED", "CLEARED"};
}

std::vector<std::string> alert_row(const v1::Alert& a) {
  return {a.asset_id(),
          a.property(),
          fmt::format("{}", a.number()),
          std::string{state_text(a.state())},
          std::string{severity_text(a.severity())},
          a.kind(),
          fmt::format("{:.2f}", a.peak_score()),
          format_time(a.raised_ms()),
          a.cleared_ms() > 0 ? format_time(a.cleared_ms()) : "-"};
}

std::string format_alert_event(const v1::AlertEvent& e) {
  return fmt::format("{} {} {} {} {} score={:.2f}", format_time(e.time_ms()), e.event(),
                     e.alert().name(), severity_text(e.alert().severity()), e.alert().kind(),
                     e.score());
}

std::vector<std::string> aggregate_history_header(const v1::AggregatePoint& first) {
  std::vector<std::string> head{"TIME", "VERSION"};
  for (const auto& m : first.measures())
    head.push_back(m.name());
  return head;
}

std::vector<std::string> aggregate_history_row(const v1::AggregatePoint& p,
                                               const std::vector<std::string>& header) {
  std::vector<std::string> row{format_time(p.time_ms()), fmt::format("{}", p.version())};
  for (size_t i = 2; i < header.size(); ++i) {
    std::string cell = "-";
    for (const auto& m : p.measures())
      if (m.name() == header[i])
        cell = format_measure(m);
    row.push_back(std::move(cell));
  }
  return row;
}

std::vector<std::string> aggregate_summary_header() {
  return {"aggregate", "kind", "twins", "version", "measures"};
}

std::vector<std::string> aggregate_summary_row(const v1::Aggregate& a) {
  std::string measures;
  int shown = 0;
  for (const auto& m : a.measures()) {
    if (shown++ == 5) {
      measures += " ...";
      break;
    }
    measures += (measures.empty() ? "" : " ") + m.name() + "=" + format_measure(m);
  }
  return {a.aggregate_id(), a.kind(), std::to_string(a.member_twins()), std::to_string(a.version()),
          measures};
}

std::vector<std::string> member_header() {
  return {"member", "depth", "relation", "kind", "version", "fields"};
}

std::vector<std::string> member_row(const v1::AggregateMember& m) {
  std::map<std::string, v1::Value> sorted(m.reported().begin(), m.reported().end());
  std::string fields;
  for (const auto& [k, v] : sorted)
    fields += (fields.empty() ? "" : " ") + k + "=" + format_value(v);
  std::string relation = m.relation_type().empty()
                             ? "via " + fmt::format("{}", fmt::join(m.via(), ","))
                             : m.relation_type();
  if (m.in_transit())
    relation += " (in transit)";
  return {m.name(),
          std::to_string(m.depth()),
          relation,
          m.twin() ? m.kind() : "aggregate",
          m.twin() ? std::to_string(m.version()) : "-",
          fields};
}

void print_kinds(std::ostream& out, const v1::ListAggregateKindsResponse& kinds) {
  for (const auto& k : kinds.kinds()) {
    out << fmt::format("{}  collection {}  members by {}\n", k.name(), k.collection(),
                       fmt::join(k.member_relations(), ", "));
    if (!k.description().empty())
      out << "  " << k.description() << '\n';
    for (const auto& m : k.measures())
      out << fmt::format("  {} = {}\n", m.name(), m.expression());
  }
  if (kinds.rules_size() > 0) {
    out << "rules:\n";
    for (const auto& r : kinds.rules())
      out << fmt::format("  attributes.{} -> {} {}/<value>\n", r.attribute(), r.type(),
                         r.collection());
  }
}

void print_model(std::ostream& out, const v1::AssetModel& m) {
  out << fmt::format("{}  revision {}{}\n", m.kind(), m.revision(),
                     m.revision() == 0 ? " (from the node's file)" : "");
  if (!m.description().empty())
    out << "  " << m.description() << '\n';
  for (const auto& st : m.states())
    out << fmt::format("  state {}: {}\n", st.name(), st.when());
  table rows({"PROPERTY", "TYPE", "UNIT", "RANGE", "INTERVAL", "MAX RATE/S", "WARNING", "CRITICAL",
              "FAILURE", "PERIOD", "SENSITIVE", "ANALYSED IN"});
  auto ms = [](int64_t v) { return v > 0 ? fmt::format("{}ms", v) : std::string{"-"}; };
  auto text = [](const std::string& s) { return s.empty() ? std::string{"-"} : s; };
  for (const auto& p : m.properties()) {
    std::string range = "-";
    if (p.has_min() || p.has_max())
      range = fmt::format("[{}, {}]", p.has_min() ? fmt::format("{}", p.min()) : "",
                          p.has_max() ? fmt::format("{}", p.max()) : "");
    rows.add({p.name(), p.type(), text(p.unit()), range, ms(p.expected_interval_ms()),
              p.max_rate_per_s() > 0 ? fmt::format("{}", p.max_rate_per_s()) : "-",
              text(p.warning()), text(p.critical()), text(p.failure()), ms(p.period_ms()),
              p.sensitive() ? "yes" : "no",
              p.analyse_in().empty()
                  ? std::string{"always"}
                  : fmt::format("{}{}", fmt::join(p.analyse_in(), ","),
                                p.settle_ms() > 0 ? fmt::format(" (settle {}ms)", p.settle_ms())
                                                  : std::string{})});
  }
  rows.print(out, "  ");
}

void print_relations(std::ostream& out, const v1::Relations& r) {
  for (const auto& p : r.parents())
    out << fmt::format("parent  {} {}  ({})\n", p.type(), p.parent(),
                       v1::RelationOrigin_Name(p.origin()));
  for (const auto& c : r.children())
    out << fmt::format("child   {} {}\n", c.type(), c.child());
  if (r.parents().empty() && r.children().empty())
    out << "no relations\n";
}

}  // namespace fleettwin::cli
