#pragma once

// Compact binary encoding of twin state and history points for the local
// store. Hand-written rather than protobuf because it runs once per changed
// twin per batch on the ingest path; the leading format byte allows evolution.

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

}  // namespace fleettwin::core
