#include "services/node/kind_catalog.hpp"

#include <spdlog/spdlog.h>

#include "fleettwin/v1/aggregate.pb.h"
#include "services/grpc/aggregate_service.hpp"

namespace fleettwin::node {

namespace {

constexpr std::string_view key_prefix = "aggregate-kind/";
/// The store's copy: every kind applied from the topic, as one
/// ListAggregateKindsResponse.
constexpr std::string_view setting_name = "aggregate-kinds";

core::aggregate_kind from_proto(const fleettwin::v1::AggregateKind& p) {
  core::aggregate_kind k;
  k.name = p.name();
  k.collection = p.collection();
  k.member_relations.assign(p.member_relations().begin(), p.member_relations().end());
  for (const auto& m : p.measures())
    k.measures.emplace_back(m.name(), m.expression());
  k.description = p.description();
  k.revision = p.revision();
  return k;
}

}  // namespace

kind_catalog::kind_catalog(std::shared_ptr<runtime::kinds_holder> holder,
                           storage::rocksdb_store& store, definitions& defs)
    : holder_(std::move(holder)), store_(store), defs_(defs) {
  defs_.add(std::string{key_prefix},
            [this](std::string_view name, std::string_view value) { on_record(name, value); });
}

bool kind_catalog::apply(const core::aggregate_kind& kind, std::string& error) {
  std::lock_guard<std::mutex> guard{mutex_};
  auto current = holder_->get();
  if (const auto* known = current->by_name(kind.name);
      known && known->def.revision >= kind.revision)
    return true;  // already applied (or newer)
  auto next = std::make_shared<core::kind_registry>(*current);
  if (auto err = next->put(kind)) {
    error = *err;
    return false;
  }
  holder_->set(next);
  // The store's copy of every kind the topic defined.
  fleettwin::v1::ListAggregateKindsResponse copy;
  if (auto bytes = store_.load_setting(setting_name))
    copy.ParseFromString(*bytes);
  bool replaced = false;
  for (auto& k : *copy.mutable_kinds())
    if (k.name() == kind.name) {
      grpc_api::kind_to_proto(kind, k);
      replaced = true;
    }
  if (!replaced)
    grpc_api::kind_to_proto(kind, *copy.add_kinds());
  if (auto err = store_.save_setting(setting_name, copy.SerializeAsString()))
    spdlog::warn("event=aggregate_kind_not_saved kind={} error=\"{}\"", kind.name, *err);
  spdlog::info("event=aggregate_kind_applied kind={} collection={} revision={} measures={}",
               kind.name, kind.collection, kind.revision, kind.measures.size());
  applied_.notify_all();
  return true;
}

void kind_catalog::on_record(std::string_view name, std::string_view value) {
  fleettwin::v1::AggregateKind p;
  if (!p.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    spdlog::warn("event=aggregate_kind_unreadable name=\"{}\"", name);
    return;
  }
  std::string error;
  const auto before = holder_->get();
  if (!apply(from_proto(p), error))
    spdlog::error("event=aggregate_kind_refused kind={} revision={} error=\"{}\"", p.name(),
                  p.revision(), error);
  else if (holder_->get() != before && on_change_)
    on_change_();
}

void kind_catalog::load_local() {
  // What this node applied before: the topic of an embedded Kafka starts
  // empty, and is given those kinds again (republish).
  auto bytes = store_.load_setting(setting_name);
  if (!bytes)
    return;
  fleettwin::v1::ListAggregateKindsResponse copy;
  if (!copy.ParseFromString(*bytes))
    return;
  for (const auto& k : copy.kinds()) {
    local_.push_back(from_proto(k));
    std::string why;
    if (!apply(local_.back(), why))
      spdlog::error("event=aggregate_kind_refused kind={} error=\"{}\"", k.name(), why);
  }
}

void kind_catalog::republish(std::chrono::milliseconds timeout) {
  auto registry = holder_->get();
  for (const auto& k : local_) {
    const auto* known = registry->by_name(k.name);
    // Written again only where the topic lacks it (a fresh Kafka).
    if (!known || known->def.revision != k.revision || defs_.seen(key_prefix, k.name))
      continue;
    fleettwin::v1::AggregateKind p;
    grpc_api::kind_to_proto(k, p);
    if (auto err = defs_.append(key_prefix, k.name, p.SerializeAsString(), timeout))
      spdlog::warn("event=aggregate_kind_not_republished kind={} error=\"{}\"", k.name, *err);
  }
  local_.clear();
}

kind_catalog::put_result kind_catalog::put(core::aggregate_kind kind,
                                           std::chrono::milliseconds timeout) {
  put_result r;
  std::lock_guard<std::mutex> one{put_mutex_};
  auto current = holder_->get();
  const auto* known = current->by_name(kind.name);
  if (known && known->def.collection != kind.collection) {
    r.invalid = true;
    r.error = "kind \"" + kind.name + "\" has collection \"" + known->def.collection +
              "\"; a kind's collection cannot change (its aggregates are named by it)";
    return r;
  }
  kind.revision = (known ? known->def.revision : 0) + 1;
  // Checked against the registry as it would be: the same check every node
  // makes when it applies the record.
  core::kind_registry trial{*current};
  if (auto err = trial.put(kind)) {
    r.invalid = true;
    r.error = *err;
    return r;
  }
  fleettwin::v1::AggregateKind p;
  grpc_api::kind_to_proto(kind, p);
  if (auto err = defs_.append(key_prefix, kind.name, p.SerializeAsString(), timeout)) {
    r.error = *err;
    return r;
  }
  std::unique_lock<std::mutex> lock{mutex_};
  const bool done = applied_.wait_for(lock, timeout, [&] {
    const auto* now = holder_->get()->by_name(kind.name);
    return now && now->def.revision >= kind.revision;
  });
  if (!done) {
    r.error = "the kind was written but not read back within " + std::to_string(timeout.count()) +
              " ms; it applies once the models topic is read";
    return r;
  }
  r.kind = holder_->get()->by_name(kind.name)->def;
  return r;
}

}  // namespace fleettwin::node
