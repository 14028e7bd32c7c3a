#pragma once

// A scenario as its node keeps it across restarts (in the store's meta
// column family): its definition, its inputs as the client sent them, the
// parts other nodes hold, and the outcome of its last run and sweep. Not its
// snapshot, which does not survive the process: a scenario read back forks
// again from its point in time, from the twins' retained history.
//
// Floor: above storage, below grpc (DESIGN.md, "Layout").

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "services/scenario/scenario_registry.hpp"

namespace fleettwin::scenario {

/// Turns an input as the client sent it back into the core's (the gRPC
/// layer's parser); nullopt with why when it no longer parses.
using input_parser =
    std::function<std::optional<core::scenario_input>(const std::string& raw, std::string& error)>;

void encode_scenario(const scenario& s, std::string& out);

/// Decodes a scenario (without a snapshot); the reason when the bytes are not one.
std::optional<std::string> decode_scenario(std::string_view bytes, const input_parser& parse,
                                           scenario& out);

}  // namespace fleettwin::scenario
