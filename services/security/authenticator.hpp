#pragma once

// Token (or client certificate) authentication and role checks for every gRPC call of the
// node, as gRPC's
// AuthMetadataProcessor: it runs before any handler, on TLS connections (tokens never
// travel in plaintext), and answers UNAUTHENTICATED (no, bad, expired ... token) or
// PERMISSION_DENIED (the token's roles do not include the one the method needs) with a
// message that says which. Verified tokens are cached until they expire (at most 5 min),
// so a client that sends the same token pays one signature check. Handlers find an accepted
// call's caller (caller.hpp) with caller_for(), from the call's own metadata: the auth
// context gRPC hands the processor is the connection's, shared by every call on it (and
// the calls of one connection may carry different tokens). Calls another node forwards
// run in process (no TLS connection, no processor): they carry the caller that node
// authenticated, and the gateway checks its role again.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/security/auth_metadata_processor.h>

#include "services/security/caller.hpp"
#include "services/security/roles.hpp"
#include "services/security/token_verifier.hpp"

namespace fleettwin::security {

/// Counts of refusals by reason ("missing", "invalid", "expired", "forbidden"), for metrics.
using refusal_counter = std::function<void(const char* reason)>;
/// Refused calls of methods that write or administer (they are audited): who (as far as
/// known: an invalid token names nobody), the method, the refusal.
using refusal_audit =
    std::function<void(const caller& who, std::string_view method, const grpc::Status& refusal)>;

class authenticator final : public grpc::AuthMetadataProcessor {
public:
  /// `verifier`: tokens (nullptr: none accepted); `cert_roles`: client certificate
  /// identities (SPIFFE id, URI, DNS name or common name) and the role each grants, for
  /// callers without a token; `reload_every`: how often the JWKS file is checked.
  authenticator(std::shared_ptr<token_verifier> verifier, std::chrono::seconds reload_every,
                refusal_counter count = {}, std::map<std::string, std::string> cert_roles = {},
                refusal_audit audit = {});
  ~authenticator() override;

  bool IsBlocking() const override {
    return false;  // a cache hit is a map lookup; a miss one signature check
  }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

  /// The decision for a call of `method` with the `authorization` metadata value
  /// (empty: none) at `now_s`, from a client whose verified certificate names
  /// `cert_identities`; what Process() answers. OK (with the caller in `who`, when the
  /// method needs a role) or the refusal.
  grpc::Status check(std::string_view method, std::string_view authorization, int64_t now_s,
                     const std::vector<std::string>& cert_identities = {}, caller* who = nullptr);

  /// The caller of a call the processor accepted, from the call's own `authorization`
  /// metadata (empty: none) or, without a token, the client certificate of its
  /// connection (`context`); nullopt when neither names one. A token is looked up in the
  /// cache Process() filled (verified again when it is not there any more).
  std::optional<caller> caller_for(std::string_view authorization,
                                   const grpc::AuthContext* context);

  static constexpr size_t max_cached_tokens = 4096;
  static constexpr int64_t max_cache_seconds = 300;

private:
  struct cached {
    principal who;
    int64_t until_s;
  };
  void reload_loop(std::chrono::seconds every);
  /// The token of "Bearer <token>" (any case of the scheme); nullopt when it is not one.
  static std::optional<std::string_view> bearer_token(std::string_view authorization);
  /// The principal of a verified token (cached until it expires, at most 5 min); nullopt
  /// with `why` when it is not valid.
  std::optional<principal> verified_principal(std::string_view token, int64_t now_s,
                                              std::string& why);
  static caller caller_of_token(const principal& who);
  /// The verified client certificate's names, most specific first (none when no
  /// certificate identity has a role).
  std::vector<std::string> cert_identities(const grpc::AuthContext& context) const;

  std::shared_ptr<token_verifier> verifier_;
  refusal_counter count_;
  refusal_audit audit_;
  std::map<std::string, std::string> cert_roles_;
  std::mutex mutex_;
  std::map<std::string, cached, std::less<>> cache_;
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread reloader_;
};

}  // namespace fleettwin::security
