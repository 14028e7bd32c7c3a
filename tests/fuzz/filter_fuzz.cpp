// The filter language (ListTwins, WatchTwins, ListAlerts, aggregates' count-where
// measures): parse any text, and evaluate what parses against twins and alerts whose
// values come from the input too. Input: a piece of property values, then the filter.

#include <cstdint>
#include <string>

#include "actors/core/filter.hpp"
#include "actors/core/twin.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace fleettwin;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::pieces in{data, size};
  const auto values = in.piece();
  const auto text = in.rest();

  core::filter f;
  if (auto err = core::filter::parse(text, f)) {
    // A parse error points into the text and says what to fix.
    FUZZ_CHECK(err->position <= text.size());
    FUZZ_CHECK(!err->message.empty());
    return 0;
  }
  FUZZ_CHECK(f.text() == text);
  core::field_set fields;
  f.collect_fields(fields);
  (void)f.reads_connectivity();

  // A twin with properties of every value type, named like those the filter may read.
  core::twin tw;
  tw.asset_id = "veh-1";
  tw.kind = "vehicle";
  tw.tenant = "demo";
  tw.version = 3;
  tw.last_seen_ms = 1'700'000'000'000;
  size_t i = 0;
  for (const auto& name : fields.reported) {
    const uint8_t b = i < values.size() ? static_cast<uint8_t>(values[i]) : 0;
    core::value v;
    switch (b % 4) {
      case 0:
        v = static_cast<double>(b) - 100.5;
        break;
      case 1:
        v = static_cast<int64_t>(b) * 1000;
        break;
      case 2:
        v = (b & 8) != 0;
        break;
      default:
        v = std::string(values.substr(0, i + 1));
        break;
    }
    tw.reported[name] = core::reported_property{v, 1'700'000'000'000, 1'700'000'000'000, 1};
    ++i;
  }
  for (const auto& name : fields.attributes) {
    tw.attributes[name] = std::string(values.substr(0, i++ % (values.size() + 1)));
  }
  const bool now = f.matches(tw, 1'700'000'000'500, 300'000);
  const bool later = f.matches(tw, 1'700'000'000'500 + 600'000, 300'000);
  // Only connectivity changes with time.
  if (!f.reads_connectivity()) {
    FUZZ_CHECK(now == later);
  }
  // The empty twin (nothing reported) must not trip the evaluator either.
  core::twin empty;
  (void)f.matches(empty, 0, 300'000);

  core::alert_state alert;
  core::alert_view view{&tw, "speed", &alert};
  (void)f.matches(view, 1'700'000'000'500, 300'000);
  return 0;
}
