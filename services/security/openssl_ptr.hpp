#pragma once

// OpenSSL objects owned by unique_ptr, freed with their own free function.

#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

namespace fleettwin::security {

template <class T, void (*Free)(T*)>
struct openssl_free {
  void operator()(T* p) const {
    Free(p);
  }
};
template <class T, void (*Free)(T*)>
using openssl_ptr = std::unique_ptr<T, openssl_free<T, Free>>;

using bio_ptr = openssl_ptr<BIO, BIO_free_all>;
using x509_ptr = openssl_ptr<X509, X509_free>;
using pkey_ptr = openssl_ptr<EVP_PKEY, EVP_PKEY_free>;
using pkey_ctx_ptr = openssl_ptr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using bn_ptr = openssl_ptr<BIGNUM, BN_free>;
using param_bld_ptr = openssl_ptr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>;
using params_ptr = openssl_ptr<OSSL_PARAM, OSSL_PARAM_free>;

}  // namespace fleettwin::security
