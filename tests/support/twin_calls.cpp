#include "support/twin_calls.hpp"

namespace fleettwin::test {

grpc::Status get_twin(v1::TwinService::Stub& stub, const std::string& asset_id, v1::Twin& out,
                      std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
  v1::GetTwinRequest req;
  req.set_name("twins/" + asset_id);
  out.Clear();
  return stub.GetTwin(&ctx, req, &out);
}

}  // namespace fleettwin::test
