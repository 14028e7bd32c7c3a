#pragma once

// Payload decoding for the `fleettwin.telemetry` topic: protobuf
// `fleettwin.v1.Telemetry` or the JSON form documented in README.md, chosen by
// the record's content-type header.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "actors/runtime/ports.hpp"

namespace fleettwin::kafka {

/// Default of `--max-record-bytes`.
inline constexpr size_t default_max_record_bytes = size_t{1} << 20;

/// Decodes telemetry payloads into `core::telemetry`. Not thread-safe: one
/// instance per partition actor. Protobuf is read straight from the wire
/// format; JSON with a simdjson On Demand parser whose buffers (and a padded
/// copy of the input) are kept between records. Decoding allocates nothing
/// beyond the output strings, and `out`'s elements are reused. Names and
/// limits are not checked here: `core::validate` does that after decoding.
class telemetry_codec final : public runtime::telemetry_decoder {
public:
  explicit telemetry_codec(size_t max_record_bytes = default_max_record_bytes);
  ~telemetry_codec() override;
  telemetry_codec(const telemetry_codec&) = delete;
  telemetry_codec& operator=(const telemetry_codec&) = delete;

  /// Error codes: oversized, unsupported_content_type, malformed, key_mismatch.
  std::optional<std::pair<std::string, std::string>> decode(const runtime::raw_record& r,
                                                            core::telemetry& out) override;
  /// A fleettwin.v1.RelationRecord (protobuf, or its JSON form). Error
  /// codes: oversized, unsupported_content_type, malformed, key_mismatch,
  /// invalid.
  std::optional<std::pair<std::string, std::string>> decode_relations(
      const runtime::raw_record& r, std::string& child, core::relation_update& out) override;

private:
  struct buffers;  // keeps protobuf and simdjson out of this header
  size_t max_record_bytes_;
  std::unique_ptr<buffers> buf_;
};

/// The decoder a partition actor uses (`partition_config::make_decoder`).
std::unique_ptr<runtime::telemetry_decoder> make_telemetry_decoder(
    size_t max_record_bytes = default_max_record_bytes);

}  // namespace fleettwin::kafka
