#pragma once

// The aggregate kinds and relation rules of a node, from a TOML file:
//
//   [[rule]]                       # attributes.fleet = "north" -> member_of fleets/north
//   attribute = "fleet"
//   relation = "member_of"
//   collection = "fleets"
//
//   [[kind]]
//   name = "fleet"
//   collection = "fleets"
//   members = ["member_of"]        # relation types that make members
//   description = "Vehicles run by one operator"
//   measures = [                   # "name = expression", in this order
//     "vehicles = count()",
//     "soc_mean = mean(reported.soc)",
//   ]

#include <memory>
#include <string>
#include <string_view>

#include "actors/core/relations.hpp"

namespace fleettwin::node {

/// Parses `path`; null with `error` (file, line and what to fix) when the
/// file or a kind in it is invalid.
std::shared_ptr<core::kind_registry> load_aggregate_config(const std::string& path,
                                                           std::string& error);

/// The same from TOML text (`origin` names it in errors).
std::shared_ptr<core::kind_registry> parse_aggregate_config(std::string_view text,
                                                            const std::string& origin,
                                                            std::string& error);

}  // namespace fleettwin::node
