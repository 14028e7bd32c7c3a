#pragma once

// Sensitive properties (personal data: a vehicle's position, a driver's id), as the asset
// models mark them, are masked for callers without the read_sensitive permission in every
// read: their values are left out of twins and changes (the names listed as redacted), and
// filters, history and forecasts that would reveal them are refused.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/asset_model.hpp"
#include "actors/core/filter.hpp"
#include "actors/runtime/asset_actor.hpp"
#include "fleettwin/v1/twin.pb.h"
#include "services/grpc/caller_scope.hpp"

namespace fleettwin::grpc_api {

/// What one caller may not read. Empty (masks nothing) for a caller allowed to read
/// sensitive properties, and on a node that does not authenticate.
class privacy {
public:
  privacy() = default;
  privacy(const std::optional<caller>& who, const runtime::models_holder* models);

  /// Masks the caller may not read (there are sensitive properties to hide from it).
  bool masks() const {
    return models_ != nullptr;
  }
  /// Whether `property` of a twin of `kind` is masked for the caller.
  bool masked(std::string_view kind, std::string_view property) const;
  /// Leaves the masked values out of `t` (and lists them in t.redacted).
  void redact(fleettwin::v1::Twin& t) const;
  void redact(fleettwin::v1::TwinChange& c) const;
  /// Why the caller may not use `f` (it compares a masked property); nullopt when it may.
  std::optional<std::string> refuses(const core::filter& f) const;

  /// For a caller allowed to read sensitive properties (reads of them are audited): the
  /// sensitive properties `t` shows; empty for any other caller.
  std::vector<std::string> revealed(const fleettwin::v1::Twin& t) const;
  /// For a caller allowed to read sensitive properties: every sensitive property a twin may
  /// show it ("kind.property", sorted), for a read that cannot list what it showed (a
  /// watch); empty for any other caller.
  std::vector<std::string> revealable() const;
  /// Whether `property` of a twin of `kind` is sensitive and the caller may read it.
  bool reveals(std::string_view kind, std::string_view property) const;

private:
  std::shared_ptr<const core::model_set> models_;
  /// Set for callers with read_sensitive when some property is sensitive.
  std::shared_ptr<const core::model_set> revealing_;
};

/// The refusal of a read of `property`'s values (history, forecast, a filter) by a caller
/// without read_sensitive.
std::string sensitive_refusal(std::string_view property, std::string_view what);

/// Masks sensitive values for every reader (the redacted changes topic).
void redact_all(const core::model_set& models, fleettwin::v1::TwinChange& c);

}  // namespace fleettwin::grpc_api
