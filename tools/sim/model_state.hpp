#pragma once

// The generator's model state slots (generator::asset_state::x) per asset
// kind; internal to generator*.cpp.

namespace fleettwin::sim {

namespace veh {
enum { speed, battery, lat, lon, hx, hy, odometer };
}
namespace mch {
enum { temperature, vibration, rpm, base_rpm, base_temperature };
}
namespace mtr {
enum { voltage, current, base_current, line_drop };
}

}  // namespace fleettwin::sim
