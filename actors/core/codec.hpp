#pragma once

// Compact binary encoding of twin state and history points for the local
// store. Hand-written rather than protobuf because it runs once per changed
// twin per batch on the ingest path; the leading format byte allows evolution.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "actors/core/twin.hpp"

namespace fleettwin::core {

/// One recorded sample of a property.
struct history_point {
  value val;
  int64_t source_time_ms = 0;
  uint64_t sequence = 0;
};

/// Appends the encoding of `tw` to `out` (cleared first).
void encode_twin(const twin& tw, std::string& out);

/// Decodes a twin; returns a description of the corruption on failure.
std::optional<std::string> decode_twin(std::string_view bytes, twin& out);

void encode_history_point(const history_point& p, std::string& out);
std::optional<std::string> decode_history_point(std::string_view bytes, history_point& out);

/// A history segment: consecutive samples of one twin, stored under a single
/// key (a ring of segments per twin) so that history costs one write per
/// segment, not one per sample. The open segment travels inside the twin's
/// state record (twin::open_history) until it closes.
void begin_history_segment(std::string& out);
/// `same_record`: the sample has the previous sample's source time and sequence (another
/// metric of the same record), which the segment then does not repeat.
void append_history_sample(std::string& out, std::string_view property, const value& v,
                           int64_t source_time_ms, uint64_t sequence, bool same_record = false);

/// Calls `fn(property, point)` for every sample; returns the corruption found.
std::optional<std::string> decode_history_segment(
    std::string_view bytes, const std::function<void(std::string_view, history_point&)>& fn);

}  // namespace fleettwin::core
