#include "services/node/model_catalog.hpp"

#include <spdlog/spdlog.h>

#include "fleettwin/v1/analytics.pb.h"
#include "services/grpc/model_service.hpp"

namespace fleettwin::node {

namespace {

constexpr std::string_view key_prefix = "asset-model/";
/// The store's copy: every model applied from the topic, as one
/// ListModelsResponse.
constexpr std::string_view setting_name = "asset-models";

}  // namespace

model_catalog::model_catalog(std::shared_ptr<runtime::models_holder> holder,
                             storage::rocksdb_store& store, definitions& defs)
    : holder_(std::move(holder)), store_(store), defs_(defs) {
  defs_.add(std::string{key_prefix},
            [this](std::string_view kind, std::string_view value) { on_record(kind, value); });
}

void model_catalog::apply(const core::asset_model& m) {
  std::lock_guard<std::mutex> guard{mutex_};
  auto current = holder_->get();
  if (current)
    if (auto it = current->find(m.kind); it != current->end() && it->second.revision >= m.revision)
      return;  // already applied (or newer)
  auto next =
      current ? std::make_shared<core::model_set>(*current) : std::make_shared<core::model_set>();
  (*next)[m.kind] = m;
  holder_->set(next);
  // The store's copy of every model the topic defined.
  fleettwin::v1::ListModelsResponse copy;
  if (auto bytes = store_.load_setting(setting_name))
    copy.ParseFromString(*bytes);
  bool replaced = false;
  for (auto& p : *copy.mutable_models())
    if (p.kind() == m.kind) {
      grpc_api::model_to_proto(m, p);
      replaced = true;
    }
  if (!replaced)
    grpc_api::model_to_proto(m, *copy.add_models());
  if (auto err = store_.save_setting(setting_name, copy.SerializeAsString()))
    spdlog::warn("event=asset_model_not_saved kind={} error=\"{}\"", m.kind, *err);
  spdlog::info("event=asset_model_applied kind={} revision={} properties={}", m.kind, m.revision,
               m.properties.size());
  applied_.notify_all();
}

void model_catalog::on_record(std::string_view kind, std::string_view value) {
  fleettwin::v1::AssetModel p;
  std::string error;
  std::optional<core::asset_model> m;
  if (p.ParseFromArray(value.data(), static_cast<int>(value.size())))
    m = grpc_api::model_from_proto(p, error);
  if (!m || core::validate(*m)) {
    spdlog::error("event=asset_model_refused kind={} error=\"{}\"", kind,
                  error.empty() ? "unreadable or invalid record" : error);
    return;
  }
  apply(*m);
}

void model_catalog::load_local() {
  auto bytes = store_.load_setting(setting_name);
  if (!bytes)
    return;
  fleettwin::v1::ListModelsResponse copy;
  if (!copy.ParseFromString(*bytes))
    return;
  for (const auto& p : copy.models()) {
    std::string error;
    auto m = grpc_api::model_from_proto(p, error);
    if (!m || core::validate(*m))
      continue;
    local_.push_back(*m);
    apply(*m);
  }
}

void model_catalog::republish(std::chrono::milliseconds timeout) {
  auto set = holder_->get();
  for (const auto& m : local_) {
    auto it = set->find(m.kind);
    // Written again only where the topic lacks it (a fresh Kafka).
    if (it == set->end() || it->second.revision != m.revision || defs_.seen(key_prefix, m.kind))
      continue;
    fleettwin::v1::AssetModel p;
    grpc_api::model_to_proto(m, p);
    if (auto err = defs_.append(key_prefix, m.kind, p.SerializeAsString(), timeout))
      spdlog::warn("event=asset_model_not_republished kind={} error=\"{}\"", m.kind, *err);
  }
  local_.clear();
}

model_catalog::put_result model_catalog::put(core::asset_model m,
                                             std::chrono::milliseconds timeout) {
  put_result r;
  std::lock_guard<std::mutex> one{put_mutex_};
  if (auto why = core::validate(m)) {
    r.invalid = true;
    r.error = *why;
    return r;
  }
  auto current = holder_->get();
  uint64_t known = 0;
  if (current)
    if (auto it = current->find(m.kind); it != current->end())
      known = it->second.revision;
  m.revision = known + 1;
  fleettwin::v1::AssetModel p;
  grpc_api::model_to_proto(m, p);
  if (auto err = defs_.append(key_prefix, m.kind, p.SerializeAsString(), timeout)) {
    r.error = *err;
    return r;
  }
  std::unique_lock<std::mutex> lock{mutex_};
  const bool done = applied_.wait_for(lock, timeout, [&] {
    auto now = holder_->get();
    auto it = now->find(m.kind);
    return it != now->end() && it->second.revision >= m.revision;
  });
  if (!done) {
    r.error = "the model was written but not read back within " + std::to_string(timeout.count()) +
              " ms; it applies once the models topic is read";
    return r;
  }
  r.model = holder_->get()->at(m.kind);
  return r;
}

}  // namespace fleettwin::node
