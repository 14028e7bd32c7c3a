#include "services/security/tls.hpp"
#include "services/security/openssl_ptr.hpp"

#include <fstream>
#include <sstream>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace fleettwin::security {

namespace {

bio_ptr memory_bio(const std::string& pem) {
  return bio_ptr{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
}

/// The certificates of a PEM text, in order.
std::vector<x509_ptr> certificates(const std::string& pem) {
  std::vector<x509_ptr> out;
  auto bio = memory_bio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
    out.emplace_back(x);
  ERR_clear_error();  // the end of the text reads as an error
  return out;
}

std::optional<std::string> read_named(const std::string& what, const std::string& path,
                                      std::string& text) {
  if (path.empty())
    return what + " is not set";
  auto content = read_file(path);
  if (!content)
    return what + " " + path + " cannot be read";
  text = std::move(*content);
  return std::nullopt;
}

/// "expired" / "not yet valid" for a certificate outside its validity now.
std::optional<std::string> validity(X509* cert) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
    return std::string{"expired"};
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
    return std::string{"not yet valid"};
  return std::nullopt;
}

}  // namespace

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return std::nullopt;
  return text.str();
}

std::optional<client_auth> parse_client_auth(const std::string& text) {
  if (text == "none")
    return client_auth::none;
  if (text == "optional")
    return client_auth::optional;
  if (text == "require")
    return client_auth::require;
  return std::nullopt;
}

std::optional<std::string> check(const server_tls& tls) {
  std::string cert_pem;
  std::string key_pem;
  if (auto e = read_named("--tls-cert", tls.cert_file, cert_pem))
    return e;
  if (auto e = read_named("--tls-key", tls.key_file, key_pem))
    return e;
  auto chain = certificates(cert_pem);
  if (chain.empty())
    return "--tls-cert " + tls.cert_file + " holds no PEM certificate";
  if (auto v = validity(chain.front().get()))
    return "the certificate in --tls-cert " + tls.cert_file + " is " + *v;
  auto bio = memory_bio(key_pem);
  pkey_ptr key{PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)};
  ERR_clear_error();
  if (!key)
    return "--tls-key " + tls.key_file + " holds no PEM private key (or it is encrypted)";
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return "--tls-key " + tls.key_file + " is not the key of the certificate in --tls-cert " +
           tls.cert_file;
  }
  if (tls.clients != client_auth::none && tls.ca_file.empty())
    return "client certificates (--tls-client-auth) need --tls-ca, the CA bundle they are "
           "verified against";
  if (!tls.ca_file.empty()) {
    std::string ca_pem;
    if (auto e = read_named("--tls-ca", tls.ca_file, ca_pem))
      return e;
    if (certificates(ca_pem).empty())
      return "--tls-ca " + tls.ca_file + " holds no PEM certificate";
  }
  if (tls.refresh_seconds == 0)
    return "the certificate refresh interval must be at least 1 s";
  return std::nullopt;
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const server_tls& tls) {
  using namespace grpc::experimental;
  auto provider = std::make_shared<FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, tls.ca_file, tls.refresh_seconds);
  TlsServerCredentialsOptions options{provider};
  options.watch_identity_key_cert_pairs();
  if (!tls.ca_file.empty())
    options.watch_root_certs();
  switch (tls.clients) {
    case client_auth::none:
      options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      break;
    case client_auth::optional:
      options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
      break;
    case client_auth::require:
      options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      break;
  }
  return TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const client_tls& tls,
                                                              std::string& error) {
  if (!tls.enabled())
    return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  if (!tls.ca_file.empty()) {
    auto ca = read_file(tls.ca_file);
    if (!ca) {
      error = "--tls-ca " + tls.ca_file + " cannot be read";
      return nullptr;
    }
    options.pem_root_certs = std::move(*ca);
  }
  if (!tls.cert_file.empty() || !tls.key_file.empty()) {
    auto cert = read_file(tls.cert_file);
    auto key = read_file(tls.key_file);
    if (!cert || !key) {
      error = "the client certificate needs both --tls-cert and --tls-key, readable (" +
              (cert ? tls.key_file : tls.cert_file) + ")";
      return nullptr;
    }
    options.pem_cert_chain = std::move(*cert);
    options.pem_private_key = std::move(*key);
  }
  return grpc::SslCredentials(options);
}

}  // namespace fleettwin::security
