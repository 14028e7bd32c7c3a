// The local store's encodings (twins, history points and segments, aggregate headers,
// member entries) and the contributions topic's records: whatever bytes a corrupt disk
// or a foreign producer hands them, decoding ends with a value or an error, and what
// decodes re-encodes to bytes that decode to the same encoding again.
// Input: a selector byte, then the encoded bytes.

#include <cstdint>
#include <string>
#include <vector>

#include "actors/core/aggregate_codec.hpp"
#include "actors/core/codec.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace fleettwin;

namespace {

/// decode, encode, decode, encode: the two encodings agree.
template <typename T, typename Decode, typename Encode>
void round_trip(std::string_view bytes, Decode decode, Encode encode) {
  T first;
  if (auto err = decode(bytes, first)) {
    FUZZ_CHECK(!err->empty());
    return;
  }
  std::string once;
  encode(first, once);
  T second;
  FUZZ_CHECK(!decode(once, second).has_value());
  std::string twice;
  encode(second, twice);
  FUZZ_CHECK(once == twice);
}

struct sample {
  std::string property;
  core::history_point point;
};

std::optional<std::string> decode_segment(std::string_view bytes, std::vector<sample>& out) {
  return core::decode_history_segment(bytes,
                                      [&](std::string_view property, core::history_point& p) {
                                        out.push_back({std::string(property), p});
                                      });
}

void encode_segment(const std::vector<sample>& samples, std::string& out) {
  out.clear();
  core::begin_history_segment(out);
  for (const auto& s : samples) {
    core::append_history_sample(out, s.property, s.point.val, s.point.source_time_ms,
                                s.point.sequence);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::pieces in{data, size};
  const uint8_t selector = in.byte();
  const auto bytes = in.rest();
  switch (selector % 6) {
    case 0:
      round_trip<core::twin>(bytes, core::decode_twin, core::encode_twin);
      break;
    case 1:
      round_trip<core::history_point>(bytes, core::decode_history_point,
                                      core::encode_history_point);
      break;
    case 2:
      round_trip<std::vector<sample>>(bytes, decode_segment, encode_segment);
      break;
    case 3:
      round_trip<core::aggregate_header>(bytes, core::decode_aggregate_header,
                                         core::encode_aggregate_header);
      break;
    case 4:
      round_trip<core::member_entry>(bytes, core::decode_member_entry, core::encode_member_entry);
      break;
    default:
      round_trip<std::vector<core::contribution>>(
          bytes,
          [](auto b, auto& items) {
            items.clear();
            return core::decode_contributions(b, "fleets/north", items);
          },
          [](const auto& items, auto& out) { core::encode_contributions(items, out); });
      break;
  }
  return 0;
}
