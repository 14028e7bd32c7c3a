// TLS and mutual TLS on the gRPC port of a real fleettwin-node: who gets in, what a
// refused client is told, certificate rotation under connected clients, and the node's
// refusals to start unsafely.

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include <grpcpp/grpcpp.h>

#include "integration/harness.hpp"
#include "services/security/tls.hpp"
#include "support/pki.hpp"

namespace fleettwin::test {
namespace {

using namespace std::chrono_literals;

/// A new connection each call: channels of the tests never share a subchannel, so each
/// one makes its own TLS handshake.
std::shared_ptr<grpc::Channel> channel(const std::string& address,
                                       const security::client_tls& tls) {
  static std::atomic<int> n{0};
  std::string error;
  auto credentials = security::channel_credentials(tls, error);
  if (!credentials)
    throw std::runtime_error(error);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("fleettwin.test.channel", ++n);
  return grpc::CreateCustomChannel(address, credentials, args);
}

grpc::Status ping(const std::shared_ptr<grpc::Channel>& ch) {
  auto stub = v1::NodeService::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 3s);
  v1::PingResponse resp;
  return stub->Ping(&ctx, {}, &resp);
}

security::client_tls client(const pki& p, const std::string& name = "") {
  return p.client(name);
}

class TlsTest : public ::testing::Test {
protected:
  void start(std::vector<std::string> extra, const security::client_tls& ready) {
    node_ = std::make_unique<node_process>("", make_temp_dir("tls-node"), std::move(extra));
    std::string error;
    node_->use_credentials(security::channel_credentials(ready, error));
    node_->start();
  }
  std::vector<std::string> tls_args(const pki& p, const std::string& node) {
    return {"--tls-cert", p.file(node + ".crt"), "--tls-key", p.file(node + ".key")};
  }
  std::string address() const {
    return node_->grpc_address();
  }
  /// Exit status and output of a fleettwin-node that is expected to refuse to start.
  std::pair<int, std::string> refused(const std::string& args) {
    auto dir = make_temp_dir("tls-refused");
    // `timeout`: a node that wrongly starts fails the test instead of hanging it.
    return run_command("timeout 30 " + std::string{FLEETTWIN_NODE_BINARY} + " --data-dir " + dir +
                       " --cluster-port 0 --metrics 127.0.0.1:0 " + args + " 2>&1");
  }
  std::unique_ptr<node_process> node_;
};

TEST_F(TlsTest, MutualTlsLetsInOnlyClientsWithACertificateOfTheCa) {
  pki ours{"pki-ours"};
  pki theirs{"pki-theirs"};
  ours.issue("node node-a");
  ours.issue("client alice");
  theirs.issue("client mallory");
  auto args = tls_args(ours, "node-a");
  args.insert(args.end(), {"--tls-ca", ours.file("ca.crt")});
  start(args, client(ours, "alice"));

  EXPECT_TRUE(ping(channel(address(), client(ours, "alice"))).ok());
  // Plaintext to the TLS port, TLS without a client certificate, a certificate of
  // another CA: no connection.
  auto plain = ping(channel(address(), {}));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  auto anonymous = ping(channel(address(), client(ours)));
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAVAILABLE);
  auto forged = client(ours);
  forged.cert_file = theirs.file("mallory.crt");
  forged.key_file = theirs.file("mallory.key");
  EXPECT_EQ(ping(channel(address(), forged)).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client that trusts another CA does not accept the node.
  auto wrong_ca = client(theirs, "mallory");
  EXPECT_EQ(ping(channel(address(), wrong_ca)).error_code(), grpc::StatusCode::UNAVAILABLE);

  // grpcurl, which knows the API only from server reflection, over mutual TLS.
  const std::string grpcurl = FLEETTWIN_GRPCURL;
  ASSERT_TRUE(std::filesystem::exists(grpcurl)) << grpcurl << " is missing: `make grpcurl`";
  auto [rc, out] = run_command(grpcurl + " -max-time 5 -cacert " + ours.file("ca.crt") + " -cert " +
                               ours.file("alice.crt") + " -key " + ours.file("alice.key") + " " +
                               address() + " list 2>&1");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("fleettwin.v1.TwinService"), std::string::npos) << out;
  auto [rc_plain, out_plain] =
      run_command(grpcurl + " -max-time 3 -plaintext " + address() + " list 2>&1");
  EXPECT_NE(rc_plain, 0) << out_plain;

#ifdef FLEETTWIN_CLI_BINARY
  // The CLI, as an operator (and the container's health check) uses it.
  const std::string cli = std::string{FLEETTWIN_CLI_BINARY} + " --server " + address();
  auto [h_rc, h_out] =
      run_command(cli + " --tls-ca " + ours.file("ca.crt") + " --tls-cert " +
                  ours.file("alice.crt") + " --tls-key " + ours.file("alice.key") + " health 2>&1");
  EXPECT_EQ(h_rc, 0) << h_out;
  EXPECT_NE(h_out.find("SERVING"), std::string::npos) << h_out;
  auto [p_rc, p_out] = run_command(cli + " health 2>&1");
  EXPECT_EQ(p_rc, 6) << p_out;
  EXPECT_NE(p_out.find("--tls-ca"), std::string::npos)
      << "a plaintext client refused by a TLS port should be told about TLS: " << p_out;
#endif
}

TEST_F(TlsTest, ServerTlsAloneServesClientsWithoutCertificates) {
  pki ours{"pki-server"};
  ours.issue("node node-a");
  start(tls_args(ours, "node-a"), client(ours));
  EXPECT_TRUE(ping(channel(address(), client(ours))).ok());
  EXPECT_EQ(ping(channel(address(), {})).error_code(), grpc::StatusCode::UNAVAILABLE);

  // The metrics port serves HTTPS with the same certificate, as Prometheus scrapes it.
  const std::string url = "https://127.0.0.1:" + std::to_string(node_->metrics_port());
  auto [rc, out] = run_command("curl -sS --max-time 10 --cacert " + ours.file("ca.crt") + " " +
                               url + "/metrics 2>&1");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("# TYPE fleettwin_records_applied_total counter"), std::string::npos)
      << out.substr(0, 2000);
  auto [rc404, out404] = run_command(
      "curl -s -o /dev/null -w '%{http_code}' --max-time 10 "
      "--cacert " +
      ours.file("ca.crt") + " " + url + "/other");
  EXPECT_EQ(out404, "404");
  auto [plain_rc, plain_out] = run_command("curl -sS --max-time 5 http://127.0.0.1:" +
                                           std::to_string(node_->metrics_port()) + "/metrics 2>&1");
  EXPECT_NE(plain_rc, 0) << plain_out;
  auto [untrusted_rc, untrusted_out] =
      run_command("curl -sS --max-time 5 " + url + "/metrics 2>&1");
  EXPECT_NE(untrusted_rc, 0) << "a client that does not trust the CA got in: " << untrusted_out;
  // And it starts on a wildcard address without --insecure, TLS covering every port.
  // (`timeout 5` stops it: exit status 124 means it was still running.)
  auto [wild_rc, wild_out] =
      run_command("timeout 5 " + std::string{FLEETTWIN_NODE_BINARY} + " --data-dir " +
                  make_temp_dir("tls-wild") + " --cluster-port 0 --grpc 127.0.0.1:" +
                  std::to_string(free_port()) + " --metrics 0.0.0.0:0 --tls-cert " +
                  ours.file("node-a.crt") + " --tls-key " + ours.file("node-a.key") + " 2>&1");
  EXPECT_EQ(wild_rc, 124) << wild_out;
  EXPECT_EQ(wild_out.find("refusing"), std::string::npos) << wild_out;
}

TEST_F(TlsTest, RotatedCertificatesServeNewConnectionsWhileConnectedClientsStay) {
  // The node's certificate is replaced by one of a new CA (the files rewritten in place,
  // as a Kubernetes Secret update does): within the refresh interval new connections
  // get the new certificate, and a client connected before keeps its connection.
  pki old_ca{"pki-old"};
  pki new_ca{"pki-new"};
  old_ca.issue("node node-a");
  new_ca.issue("node node-a");
  auto live = make_temp_dir("tls-live");
  auto install = [&](const pki& p) {
    for (const char* f : {"node-a.crt", "node-a.key"}) {
      std::filesystem::copy_file(p.file(f), live + "/" + f + ".tmp",
                                 std::filesystem::copy_options::overwrite_existing);
      std::filesystem::rename(live + "/" + f + ".tmp", live + "/" + f);
    }
  };
  install(old_ca);
  start({"--tls-cert", live + "/node-a.crt", "--tls-key", live + "/node-a.key", "--tls-refresh-s",
         "1"},
        client(old_ca));
  auto connected = channel(address(), client(old_ca));
  ASSERT_TRUE(ping(connected).ok());
  EXPECT_EQ(ping(channel(address(), client(new_ca))).error_code(), grpc::StatusCode::UNAVAILABLE);

  install(new_ca);
  EXPECT_TRUE(eventually([&] { return ping(channel(address(), client(new_ca))).ok(); }, 20s, 200ms))
      << "new connections never got the rotated certificate";
  EXPECT_EQ(ping(channel(address(), client(old_ca))).error_code(), grpc::StatusCode::UNAVAILABLE)
      << "new connections still get the old certificate";
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(ping(connected).ok()) << "the connected client lost its connection";
}

TEST_F(TlsTest, TheNodeRefusesUnsafeOrBrokenSettingsAndSaysWhy) {
  pki ours{"pki-refusals"};
  ours.issue("node node-a");
  ours.issue("node node-b");
  const auto port = std::to_string(free_port());
  struct refusal {
    std::string args;
    std::string says;
  };
  const refusal refusals[] = {
      {"--grpc 0.0.0.0:" + port, "refusing to serve gRPC in plaintext on 0.0.0.0:" + port},
      {"--grpc [::]:" + port, "pass --insecure"},
      {"--metrics 0.0.0.0:0", "refusing to serve metrics in plaintext"},
      {"--advertise-host 0.0.0.0", "refusing to serve the cluster port in plaintext"},
      {"--tls-cert " + ours.file("node-a.crt"), "--tls-cert and --tls-key go together"},
      {"--tls-cert " + ours.file("node-a.crt") + " --tls-key " + ours.file("node-b.key") +
           " --grpc 127.0.0.1:" + port,
       "is not the key of the certificate"},
      {"--tls-cert " + ours.dir + "/missing.crt --tls-key " + ours.file("node-a.key") +
           " --grpc 127.0.0.1:" + port,
       "missing.crt cannot be read"},
      {"--tls-cert " + ours.file("ca.srl") + " --tls-key " + ours.file("node-a.key") +
           " --grpc 127.0.0.1:" + port,
       "holds no PEM certificate"},
      {"--tls-ca " + ours.file("ca.crt"), "need TLS: give --tls-cert and --tls-key"},
      {"--tls-cert " + ours.file("node-a.crt") + " --tls-key " + ours.file("node-a.key") +
           " --tls-client-auth require",
       "needs --tls-ca"},
  };
  for (const auto& r : refusals) {
    auto [rc, out] = refused(r.args);
    EXPECT_NE(rc, 0) << r.args << ": " << out;
    EXPECT_NE(out.find(r.says), std::string::npos) << r.args << ":\n" << out;
  }
}

TEST_F(TlsTest, PlaintextBeyondLoopbackStartsOnlyWithInsecure) {
  // --insecure is the operator's explicit choice (a private network, a mesh doing TLS).
  // (The harness binds 127.0.0.1; a wildcard bind is what --insecure is about.)
  auto port = free_port();
  auto dir = make_temp_dir("tls-insecure-wild");
  child_process p;
  p.start({FLEETTWIN_NODE_BINARY, "--data-dir", dir, "--grpc", "0.0.0.0:" + std::to_string(port),
           "--metrics", "127.0.0.1:0", "--cluster-port", "0", "--insecure"},
          dir + ".log");
  EXPECT_TRUE(eventually(
      [&] { return ping(channel("127.0.0.1:" + std::to_string(port), {})).ok(); }, 60s, 100ms))
      << file_tail(dir + ".log", 40);
  // (Logged once it started, which is just after gRPC answers.)
  EXPECT_TRUE(eventually(
      [&] {
        return file_tail(dir + ".log", 200).find("event=insecure_listener") != std::string::npos;
      },
      10s, 50ms))
      << "an insecure node should say so in its log: " << file_tail(dir + ".log", 40);
  EXPECT_EQ(p.terminate(), 0);
}

}  // namespace
}  // namespace fleettwin::test
