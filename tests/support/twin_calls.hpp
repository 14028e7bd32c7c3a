#pragma once

// gRPC calls on a node's TwinService, shared by the process-based suites.

#include <chrono>
#include <string>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/service.grpc.pb.h"

namespace fleettwin::test {

/// GetTwin of `asset_id` (deadline: `timeout`); `out` is cleared first.
grpc::Status get_twin(v1::TwinService::Stub& stub, const std::string& asset_id, v1::Twin& out,
                      std::chrono::milliseconds timeout = std::chrono::seconds{10});

}  // namespace fleettwin::test
