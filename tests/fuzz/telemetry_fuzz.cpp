// The telemetry topic's decoder (protobuf and JSON, records and relation records), then
// what the partition actor does with a decoded record: validate, apply to a twin (twice:
// the second is a duplicate when the record has a sequence), store the twin and read it
// back. Input: a selector byte, the record key as a piece, the payload (the rest).

#include <cstdint>
#include <string>

#include "actors/core/codec.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/twin.hpp"
#include "services/kafka/telemetry_decoder.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace fleettwin;

namespace {

constexpr const char* content_types[] = {"application/x-protobuf", "application/json",
                                         "application/json; charset=utf-8", ""};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // One decoder for every input, as a partition actor keeps one: its reused buffers
  // must not carry one record into the next.
  static kafka::telemetry_codec codec{64 * 1024};
  fuzz::pieces in{data, size};
  const uint8_t selector = in.byte();
  runtime::raw_record record;
  record.content_type = content_types[selector & 3];
  record.key = in.piece();
  record.payload = in.rest();
  record.offset = 7;
  record.timestamp_ms = 1'700'000'000'000;

  if (selector & 4) {
    std::string child;
    core::relation_update update;
    if (auto err = codec.decode_relations(record, child, update)) {
      FUZZ_CHECK(!err->first.empty() && !err->second.empty());
    }
    return 0;
  }

  core::telemetry t;
  if (auto err = codec.decode(record, t)) {
    // Every rejection names its code and says why: the reason goes to the DLQ.
    FUZZ_CHECK(!err->first.empty() && !err->second.empty());
    return 0;
  }
  core::limits limits;
  if (core::validate(t, limits)) {
    return 0;
  }
  core::twin tw;
  tw.asset_id = t.asset_id;
  core::apply_result result;
  core::apply_telemetry(tw, t, 1'700'000'000'000, limits, result);
  const auto first = result.status;
  core::apply_telemetry(tw, t, 1'700'000'000'001, limits, result);
  if (first == core::apply_status::applied && t.sequence != 0) {
    FUZZ_CHECK(result.status == core::apply_status::duplicate);
  }
  std::string stored;
  core::encode_twin(tw, stored);
  core::twin back;
  FUZZ_CHECK(!core::decode_twin(stored, back).has_value());
  std::string again;
  core::encode_twin(back, again);
  FUZZ_CHECK(again == stored);
  return 0;
}
