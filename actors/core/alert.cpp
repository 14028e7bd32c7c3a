#include "actors/core/alert.hpp"

#include <algorithm>

#include "actors/core/wire.hpp"

namespace fleettwin::core {

const char* to_string(alert_severity s) {
  return s == alert_severity::critical ? "critical" : "warning";
}

const char* to_string(alert_event e) {
  switch (e) {
    case alert_event::none:
      return "none";
    case alert_event::raised:
      return "raised";
    case alert_event::updated:
      return "updated";
    case alert_event::cleared:
      return "cleared";
    case alert_event::acknowledged:
      return "acknowledged";
  }
  return "none";
}

namespace {

/// The streak of samples on the other side of the hysteresis grows (or
/// starts); true once it is long enough in samples and time.
bool streak(alert_state& a, uint32_t samples, int64_t span_ms, int64_t time_ms) {
  if (a.streak == 0)
    a.streak_since_ms = time_ms;
  if (a.streak < UINT32_MAX)
    ++a.streak;
  return a.streak >= std::max<uint32_t>(samples, 1) && time_ms - a.streak_since_ms >= span_ms;
}

}  // namespace

alert_event observe(alert_state& a, const alert_policy& p, double score, alert_severity severity,
                    uint8_t kind, int64_t time_ms) {
  if (!a.active) {
    if (score < p.raise_at) {
      a.streak = 0;
      return alert_event::none;
    }
    if (!streak(a, p.raise_after_samples, p.raise_after_ms, time_ms))
      return alert_event::none;
    a.active = true;
    a.acknowledged = false;
    a.severity = severity;
    a.kind = kind;
    a.peak = score;
    a.raised_ms = a.updated_ms = time_ms;
    a.streak = 0;
    ++a.raised_count;
    return alert_event::raised;
  }
  if (score >= p.clear_below) {
    a.streak = 0;
    a.peak = std::max(a.peak, score);
    // Only a raised condition's escalation, or a new kind, is news; a
    // score that wavers above the clearing level is not.
    if (score >= p.raise_at && (severity > a.severity || kind != a.kind)) {
      a.severity = std::max(a.severity, severity);
      a.kind = kind;
      a.updated_ms = time_ms;
      return alert_event::updated;
    }
    return alert_event::none;
  }
  if (!streak(a, p.clear_after_samples, p.clear_after_ms, time_ms))
    return alert_event::none;
  a.active = false;
  a.streak = 0;
  a.cleared_ms = a.updated_ms = time_ms;
  return alert_event::cleared;
}

bool acknowledge(alert_state& a, int64_t time_ms) {
  if (!a.active || a.acknowledged)
    return false;
  a.acknowledged = true;
  a.updated_ms = time_ms;
  return true;
}

void encode_alert(const alert_state& a, std::string& out) {
  out.push_back(2);  // format (1: the peak in 8 bytes)
  out.push_back(static_cast<char>((a.active ? 1 : 0) | (a.acknowledged ? 2 : 0)));
  out.push_back(static_cast<char>(a.severity));
  out.push_back(static_cast<char>(a.kind));
  wire::put_varint(out, a.raised_count);
  wire::put_varint(out, a.streak);
  for (int64_t t : {a.streak_since_ms, a.raised_ms, a.updated_ms, a.cleared_ms})
    wire::put_signed(out, t);
  wire::put_real(out, a.peak);
}

bool decode_alert(std::string_view& in, alert_state& a) {
  wire::reader r{in};
  const auto format = r.byte();
  if (format != 1 && format != 2)
    return false;
  alert_state d;
  const auto flags = r.byte();
  const auto severity = r.byte();
  d.kind = r.byte();
  d.raised_count = static_cast<uint32_t>(std::min<uint64_t>(r.varint(), UINT32_MAX));
  d.streak = static_cast<uint32_t>(std::min<uint64_t>(r.varint(), UINT32_MAX));
  for (int64_t* t : {&d.streak_since_ms, &d.raised_ms, &d.updated_ms, &d.cleared_ms})
    *t = r.signed_varint();
  d.peak = format >= 2 ? r.compact_real() : r.real();
  if (!r.ok || flags > 3 || severity > static_cast<uint8_t>(alert_severity::critical))
    return false;
  d.active = (flags & 1) != 0;
  d.acknowledged = (flags & 2) != 0;
  d.severity = static_cast<alert_severity>(severity);
  a = d;
  in = r.in;
  return true;
}

}  // namespace fleettwin::core
