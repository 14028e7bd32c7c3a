#include "services/security/authenticator.hpp"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

namespace fleettwin::security {

namespace {

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v)
    out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "no role" : out;
}

}  // namespace

authenticator::authenticator(std::shared_ptr<token_verifier> verifier,
                             std::chrono::seconds reload_every, refusal_counter count,
                             std::map<std::string, std::string> cert_roles, refusal_audit audit)
    : verifier_(std::move(verifier)),
      count_(std::move(count)),
      audit_(std::move(audit)),
      cert_roles_(std::move(cert_roles)) {
  if (verifier_ && !verifier_->settings().jwks_file.empty())
    reloader_ = std::thread{[this, reload_every] { reload_loop(reload_every); }};
}

authenticator::~authenticator() {
  {
    std::lock_guard<std::mutex> guard{stop_mutex_};
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (reloader_.joinable())
    reloader_.join();
}

void authenticator::reload_loop(std::chrono::seconds every) {
  std::unique_lock<std::mutex> lock{stop_mutex_};
  while (!stop_cv_.wait_for(lock, every, [this] { return stopping_; })) {
    lock.unlock();
    auto before = verifier_->settings().jwks_file;
    if (auto error = verifier_->reload_if_changed()) {
      spdlog::warn("event=jwks_reload_failed file={} reason=\"{}\" action=\"the keys in use stay\"",
                   before, *error);
    } else {
      // Unchanged or reloaded; after a reload, tokens are verified again with the new keys.
      std::lock_guard<std::mutex> guard{mutex_};
      cache_.clear();
    }
    lock.lock();
  }
}

std::optional<std::string_view> authenticator::bearer_token(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size())
    return std::nullopt;
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i])
      return std::nullopt;
  return authorization.substr(scheme.size());
}

std::optional<principal> authenticator::verified_principal(std::string_view token, int64_t now_s,
                                                           std::string& why) {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    if (auto it = cache_.find(token); it != cache_.end() && now_s <= it->second.until_s)
      return it->second.who;
  }
  auto verdict = verifier_->verify(token, now_s);
  if (verdict.index() == 1) {
    why = std::get<1>(verdict);
    return std::nullopt;
  }
  auto who = std::move(std::get<0>(verdict));
  std::lock_guard<std::mutex> guard{mutex_};
  if (cache_.size() >= max_cached_tokens)
    cache_.clear();
  cache_.emplace(std::string{token},
                 cached{who, std::min(who.expires_s + verifier_->settings().leeway_s,
                                      now_s + max_cache_seconds)});
  return who;
}

caller authenticator::caller_of_token(const principal& who) {
  return caller{
      who.subject, highest_role(who.roles).value_or(role::viewer), who.tenant,
      std::find(who.roles.begin(), who.roles.end(), read_sensitive_permission) != who.roles.end()};
}

std::optional<caller> authenticator::caller_for(std::string_view authorization,
                                                const grpc::AuthContext* context) {
  if (authorization.empty()) {
    if (!context)
      return std::nullopt;
    for (const auto& id : cert_identities(*context))
      if (auto it = cert_roles_.find(id); it != cert_roles_.end())
        return caller{id, highest_role({it->second}).value_or(role::viewer), {}};
    return std::nullopt;
  }
  auto token = bearer_token(authorization);
  if (!token || !verifier_)
    return std::nullopt;
  std::string why;
  auto who = verified_principal(*token, now_seconds(), why);
  if (!who)
    return std::nullopt;
  return caller_of_token(*who);
}

std::vector<std::string> authenticator::cert_identities(const grpc::AuthContext& context) const {
  std::vector<std::string> identities;
  if (cert_roles_.empty())
    return identities;
  // The verified client certificate's names, most specific first.
  for (const char* property : {"peer_spiffe_id", "peer_uri", "peer_dns", "x509_common_name"})
    for (const auto& v : context.FindPropertyValues(property))
      identities.emplace_back(v.data(), v.size());
  return identities;
}

grpc::Status authenticator::check(std::string_view method, std::string_view authorization,
                                  int64_t now_s, const std::vector<std::string>& cert_identities,
                                  caller* who_out) {
  auto needed = required_role(method);
  if (!needed)
    return grpc::Status::OK;
  auto refuse = [&](const char* reason, grpc::StatusCode code, std::string message) {
    if (count_)
      count_(reason);
    return grpc::Status{code, std::move(message)};
  };
  if (authorization.empty()) {
    // A verified client certificate whose identity has a role stands in for a token.
    for (const auto& id : cert_identities) {
      auto it = cert_roles_.find(id);
      if (it == cert_roles_.end())
        continue;
      auto has = highest_role({it->second});
      if (who_out)  // also when refused: the audit names who was
        *who_out = caller{id, has.value_or(role::viewer), {}};
      if (!has || *has < *needed)
        return refuse("forbidden", grpc::StatusCode::PERMISSION_DENIED,
                      std::string{method} + " needs the role " + role_name(*needed) +
                          "; the client certificate of '" + id + "' grants " + it->second);
      return grpc::Status::OK;
    }
    std::string message = "no token: send the metadata 'authorization: Bearer <JWT>'";
    if (!cert_identities.empty())
      message += " (the client certificate of '" + cert_identities.front() +
                 "' has no role: --auth-cert-role)";
    return refuse("missing", grpc::StatusCode::UNAUTHENTICATED, message);
  }
  if (!verifier_)
    return refuse("invalid", grpc::StatusCode::UNAUTHENTICATED,
                  "tokens are not accepted here (the node has no --auth-jwks or "
                  "--auth-hs256-secret-file): authenticate with a client certificate");
  auto token = bearer_token(authorization);
  if (!token)
    return refuse("invalid", grpc::StatusCode::UNAUTHENTICATED,
                  "the authorization metadata is not 'Bearer <JWT>'");
  std::string why;
  auto verified = verified_principal(*token, now_s, why);
  if (!verified)
    return refuse(why.find("expired") != std::string::npos ? "expired" : "invalid",
                  grpc::StatusCode::UNAUTHENTICATED, "invalid token: " + why);
  const auto& who = *verified;
  auto has = highest_role(who.roles);
  if (who_out)  // also when refused: the audit names who was
    *who_out = caller_of_token(who);
  if (!has || *has < *needed)
    return refuse("forbidden", grpc::StatusCode::PERMISSION_DENIED,
                  std::string{method} + " needs the role " + role_name(*needed) +
                      "; the token of '" + who.subject + "' grants " + joined(who.roles));
  return grpc::Status::OK;
}

grpc::Status authenticator::Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                                    OutputMetadata*, OutputMetadata*) {
  std::string_view method;
  std::string_view authorization;
  for (const auto& [key, value] : auth_metadata) {
    std::string_view k{key.data(), key.size()};
    if (k == ":path") {
      method = {value.data(), value.size()};
    } else if (k == "authorization") {
      authorization = {value.data(), value.size()};
    } else if (k.substr(0, reserved_metadata_prefix.size()) == reserved_metadata_prefix) {
      // Only nodes forwarding a call send these, and never through this port.
      if (count_)
        count_("invalid");
      return {grpc::StatusCode::UNAUTHENTICATED,
              "the metadata '" + std::string{k} +
                  "' is reserved for calls between FleetTwin nodes; do not send it"};
    }
  }
  std::vector<std::string> identities;
  if (authorization.empty() && context != nullptr)
    identities = cert_identities(*context);
  caller who;
  // The auth context is the connection's, shared by every call on it (whatever token
  // each sends): nothing of this call's caller is written to it. Handlers find the
  // caller again with caller_for() from the call's own metadata.
  auto verdict = check(method, authorization, now_seconds(), identities, &who);
  if (!verdict.ok() && audit_) {
    // Refused writes and admin calls are audited (reads are only counted).
    auto needed = required_role(method);
    if (needed && *needed >= role::operator_)
      audit_(who, method, verdict);
  }
  return verdict;
}

}  // namespace fleettwin::security
