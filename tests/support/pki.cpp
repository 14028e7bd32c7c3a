#include "support/pki.hpp"

#include <stdexcept>

#include "support/process.hpp"

namespace fleettwin::test {

pki::pki(const std::string& name) : dir(make_temp_dir(name)) {
  issue("ca");
}

void pki::issue(const std::string& args) {
  auto [rc, out] =
      run_command(std::string{FLEETTWIN_MAKE_CERTS} + " " + dir + " " + args + " 2>&1");
  if (rc != 0)
    throw std::runtime_error("make-certs.sh " + args + ": " + out);
}

std::vector<std::string> pki::node_flags(const std::string& node, bool with_ca) const {
  std::vector<std::string> flags{"--tls-cert", file(node + ".crt"), "--tls-key",
                                 file(node + ".key")};
  if (with_ca)
    flags.insert(flags.end(), {"--tls-ca", file("ca.crt")});
  return flags;
}

security::client_tls pki::client(const std::string& name) const {
  security::client_tls tls;
  tls.ca_file = file("ca.crt");
  if (!name.empty()) {
    tls.cert_file = file(name + ".crt");
    tls.key_file = file(name + ".key");
  }
  return tls;
}

std::shared_ptr<grpc::ChannelCredentials> pki::credentials(const std::string& name) const {
  std::string error;
  auto c = security::channel_credentials(client(name), error);
  if (!c)
    throw std::runtime_error(error);
  return c;
}

}  // namespace fleettwin::test
