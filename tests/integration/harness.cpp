#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <librdkafka/rdkafka.h>

#include "fleettwin/v1/telemetry.pb.h"

namespace fleettwin::test {

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});  // poll interval, not a sync
  }
  return cond();
}

node_process::node_process(std::string bootstrap, std::string data_dir,
                           std::vector<std::string> extra)
    : bootstrap_(std::move(bootstrap)), data_dir_(std::move(data_dir)), extra_(std::move(extra)) {
  log_ = data_dir_ + ".log";
}

node_process::~node_process() {
  if (pid_ > 0)
    kill9();
}

void node_process::start() {
  grpc_port_ = free_port();
  metrics_port_ = free_port();
  std::vector<std::string> args{
      FLEETTWIN_NODE_BINARY, "--kafka", bootstrap_, "--data-dir", data_dir_, "--grpc",
      grpc_address(), "--metrics", "127.0.0.1:" + std::to_string(metrics_port_), "--cluster-port",
      "0", "--session-timeout-ms", "6000", "--passivate-after-ms", "2000", "--stale-after-ms",
      "60000",
      // The mock cluster has no real transactions and no
      // CreateTopics: these tests cover one node.
      "--guarantee", "at-least-once", "--no-changelog", "--no-create-topics"};
  args.insert(args.end(), extra_.begin(), extra_.end());
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  // Ready when the gRPC health service answers.
  auto channel = grpc::CreateChannel(grpc_address(), grpc::InsecureChannelCredentials());
  auto stub = fleettwin::v1::NodeService::NewStub(channel);
  bool ok = eventually([&] {
    if (!running())
      return true;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds{500});
    fleettwin::v1::PingResponse resp;
    return stub->Ping(&ctx, {}, &resp).ok();
  });
  if (!ok || !running())
    throw std::runtime_error("fleettwin-node did not start; see " + log_);
}

bool node_process::running() {
  if (pid_ <= 0)
    return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void node_process::kill9() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int node_process::terminate() {
  if (pid_ <= 0)
    return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

producer::producer(const std::string& bootstrap) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof(err));
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
  rd_kafka_conf_set(conf, "message.max.bytes", "4000000", err, sizeof(err));
  rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
}

producer::~producer() {
  flush();
  rd_kafka_destroy(static_cast<rd_kafka_t*>(rk_));
}

void producer::send(const std::string& topic, const std::string& key, const std::string& value,
                    const std::string& content_type) {
  auto* h = rd_kafka_headers_new(1);
  if (!content_type.empty())
    rd_kafka_header_add(h, "content-type", -1, content_type.data(),
                        static_cast<ssize_t>(content_type.size()));
  for (;;) {
    auto err = rd_kafka_producev(static_cast<rd_kafka_t*>(rk_), RD_KAFKA_V_TOPIC(topic.c_str()),
                                 RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                 RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      break;
    rd_kafka_poll(static_cast<rd_kafka_t*>(rk_), 10);
  }
  rd_kafka_poll(static_cast<rd_kafka_t*>(rk_), 0);
}

int producer::flush() {
  return rd_kafka_flush(static_cast<rd_kafka_t*>(rk_), 30'000) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
                                                                                             : 1;
}

std::vector<consumed_record> read_topic(const std::string& bootstrap, const std::string& topic,
                                        size_t expected, std::chrono::milliseconds timeout) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", ("reader-" + std::to_string(free_port())).c_str(), err,
                    sizeof(err));
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
  auto* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  rd_kafka_poll_set_consumer(rk);
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  std::vector<consumed_record> out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < expected && std::chrono::steady_clock::now() < deadline) {
    auto* m = rd_kafka_consumer_poll(rk, 100);
    if (!m)
      continue;
    if (!m->err) {
      consumed_record r;
      r.key.assign(static_cast<const char*>(m->key), m->key_len);
      r.value.assign(static_cast<const char*>(m->payload), m->len);
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i)
          r.headers[name] = std::string(static_cast<const char*>(value), size);
      }
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

std::string telemetry(const std::string& asset, uint64_t seq, int64_t ts,
                      const std::map<std::string, double>& metrics,
                      const std::map<std::string, std::string>& attributes,
                      const std::string& kind) {
  fleettwin::v1::Telemetry t;
  t.set_asset_id(asset);
  t.set_kind(kind);
  t.set_tenant("test");
  t.set_sequence(seq);
  t.set_source_time_ms(ts);
  for (const auto& [k, v] : metrics)
    (*t.mutable_metrics())[k].set_double_value(v);
  for (const auto& [k, v] : attributes)
    (*t.mutable_attributes())[k] = v;
  return t.SerializeAsString();
}

std::string scrape(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return {};
  }
  std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

double metric_value(const std::string& exposition, const std::string& series) {
  std::istringstream in{exposition};
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, series.size(), series) == 0 && line.size() > series.size() &&
        line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

}  // namespace fleettwin::test
