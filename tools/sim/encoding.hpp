#pragma once

// Payload encoders for the two documented telemetry formats. Hand-written
// (rather than going through the generated message) so that the output is
// byte-identical across protobuf versions and cheap enough for rate-0 runs.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tools/sim/sample.hpp"

namespace fleettwin::sim {

inline constexpr std::string_view content_type_header = "content-type";
inline constexpr std::string_view content_type_protobuf = "application/x-protobuf";
inline constexpr std::string_view content_type_json = "application/json";

/// Payload encoding of one record.
enum class encoding : uint8_t { protobuf, json };

/// The content-type header value of `e`.
std::string_view content_type(encoding e);

/// What `--format` selects: one encoding, or both alternating per record.
enum class payload_format : uint8_t { protobuf, json, mixed };

std::string_view to_string(payload_format f);
std::optional<payload_format> parse_payload_format(std::string_view s);

/// Appends `s` as a serialized fleettwin.v1.Telemetry (fields in number order,
/// map entries in sample order, proto3 defaults omitted).
void encode_protobuf(const sample& s, std::string& out);

/// Appends `s` in the documented JSON form. Integers are written without a
/// fraction, doubles always with one (or an exponent), so the type survives.
void encode_json(const sample& s, std::string& out);

/// Appends `s` in `e`.
void encode(encoding e, const sample& s, std::string& out);

/// Appends `r` as a serialized fleettwin.v1.RelationRecord: child, then one
/// `set` entry (type, parent) or one `remove` entry.
void encode_relation_protobuf(const relation_change& r, std::string& out);

/// Appends `r` in the JSON form of a RelationRecord, e.g.
/// {"child":"veh-000001","set":[{"type":"charging_at","parent":"chargers/depot-2-c1"}]}
/// or {"child":"veh-000001","remove":["chargers/depot-2-c1"]}.
void encode_relation_json(const relation_change& r, std::string& out);

/// Appends `r` in `e`.
void encode_relation(encoding e, const relation_change& r, std::string& out);

/// Appends `s` as a quoted JSON string.
void append_json_string(std::string& out, std::string_view s);

/// Appends the shortest round-tripping form of `v`, with ".0" added when it
/// would otherwise read as an integer. Non-finite values are written as null.
void append_json_double(std::string& out, double v);

namespace protowire {

/// Low-level protobuf wire helpers (also used to build malformed payloads).
void append_varint(std::string& out, uint64_t v);
void append_tag(std::string& out, uint32_t field, uint32_t wire_type);
void append_bytes_field(std::string& out, uint32_t field, std::string_view bytes);
size_t varint_size(uint64_t v);
/// Size of a length-delimited field with a one-byte tag.
size_t bytes_field_size(size_t len);

}  // namespace protowire

}  // namespace fleettwin::sim
