#include "kafka_broker.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "services/kafka/topic_admin.hpp"
#include "support/process.hpp"

#ifndef FLEETTWIN_KAFKA_SCRIPT
#error "FLEETTWIN_KAFKA_SCRIPT (path of tools/kafka/kafka.sh) must be defined"
#endif

namespace fleettwin::test {
namespace {

struct script_result {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string out;  // stdout; stderr goes to the test's stderr
};

/// Runs kafka.sh with `args` and collects its stdout. No shell: paths need no quoting.
script_result run_script(std::vector<std::string> args) {
  args.insert(args.begin(), FLEETTWIN_KAFKA_SCRIPT);
  // Built before fork(): the child of a multi-threaded process may not allocate.
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0)
    throw std::runtime_error(std::string{"pipe: "} + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0)
    throw std::runtime_error(std::string{"fork: "} + std::strerror(errno));
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  script_result result;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n > 0)
      result.out.append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR)
      break;
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status))
    result.status = WEXITSTATUS(status);
  return result;
}

std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of("\r\n");
  if (end == std::string::npos)
    return {};
  auto begin = text.find_last_of('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end - begin);
}

void expect_success(const script_result& r, const std::string& what) {
  if (r.status != 0)
    throw std::runtime_error("kafka.sh " + what + " failed (exit " + std::to_string(r.status) +
                             "); its diagnostics are on stderr");
}

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string{base && *base ? base : "/tmp"} + "/fleettwin-kafka-XXXXXX";
  if (!mkdtemp(pattern.data()))
    throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
  return pattern;
}

struct handle_deleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_destroy(rk);
  }
};
using handle_ptr = std::unique_ptr<rd_kafka_t, handle_deleter>;

/// True when the metadata lists `topic` with `partitions` partitions, each with a leader.
bool topic_ready(rd_kafka_t* rk, const std::string& topic, int partitions) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  auto err = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return false;
  bool ready = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
               md->topics[0].partition_cnt == partitions;
  for (int i = 0; ready && i < md->topics[0].partition_cnt; ++i)
    ready = md->topics[0].partitions[i].leader >= 0;
  rd_kafka_metadata_destroy(md);
  return ready;
}

/// The cluster's metadata lists the topic (with any number of partitions).
bool topic_listed(rd_kafka_t* rk, const std::string& topic) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  auto err = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return true;  // unknown: assume still there
  bool listed = md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                md->topics[0].partition_cnt > 0;
  rd_kafka_metadata_destroy(md);
  return listed;
}

/// The per-topic results of an Admin API call: false with `error` set at the
/// first topic that failed.
bool topic_results_ok(const rd_kafka_topic_result_t** results, size_t count, std::string& error) {
  for (size_t i = 0; i < count; ++i)
    if (auto err = rd_kafka_topic_result_error(results[i])) {
      const char* text = rd_kafka_topic_result_error_string(results[i]);
      error = std::string{rd_kafka_err2name(err)} + ": " + (text ? text : rd_kafka_err2str(err));
      return false;
    }
  return true;
}

}  // namespace

kafka_broker::kafka_broker(int brokers, bool sasl_ssl) : brokers_(brokers), dir_(make_temp_dir()) {
  // Test brokers live for a minute or two at modest rates: C1-compiled code
  // serves them well, and C2's compiler threads no longer take the CPU the
  // brokers, the nodes and the test share on two cores (three brokers with
  // three nodes starved the controller quorum). Benchmarks start their
  // brokers with the full JIT. An explicit setting wins.
  setenv("FLEETTWIN_KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1", 0);
  std::vector<std::string> args{"start",
                                "--dir",
                                dir_,
                                "--brokers",
                                std::to_string(brokers_),
                                "--owner",
                                std::to_string(getpid())};
  if (sasl_ssl)
    args.emplace_back("--sasl-ssl");
  auto r = run_script(args);
  if (r.status != 0) {
    // Keep the dir: its broker-N.log tells why (the script printed the tail too).
    throw std::runtime_error("kafka.sh start failed (exit " + std::to_string(r.status) +
                             "); logs in " + dir_);
  }
  running_ = true;
  bootstrap_ = last_line(r.out);
  if (bootstrap_.empty()) {
    stop();
    throw std::runtime_error("kafka.sh start printed no bootstrap");
  }
  if (sasl_ssl) {
    std::ifstream in{dir_ + "/bootstrap-sasl-ssl"};
    std::getline(in, sasl_ssl_bootstrap_);
    if (sasl_ssl_bootstrap_.empty()) {
      stop();
      throw std::runtime_error("kafka.sh start --sasl-ssl wrote no bootstrap-sasl-ssl");
    }
  }
}

kafka_broker::~kafka_broker() {
  try {
    stop();
    // FLEETTWIN_KEEP_TEST_DIR keeps the brokers' logs and data too.
    std::error_code ec;
    if (!std::getenv("FLEETTWIN_KEEP_TEST_DIR"))
      std::filesystem::remove_all(dir_, ec);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw
  }
}

void kafka_broker::stop() {
  if (!running_)
    return;
  running_ = false;
  expect_success(run_script({"stop", "--dir", dir_}), "stop");
}

void kafka_broker::kill_broker(int n) {
  expect_success(run_script({"kill", "--dir", dir_, "--broker", std::to_string(n)}), "kill");
}

void kafka_broker::restart_broker(int n) {
  expect_success(run_script({"restart-broker", "--dir", dir_, "--broker", std::to_string(n)}),
                 "restart-broker");
}

bool kafka_broker::delete_topic(const std::string& name, std::string& error) const {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_.c_str(), errstr, sizeof(errstr));
  handle_ptr rk{rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))};
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    error = errstr;
    return false;
  }
  std::unique_ptr<rd_kafka_DeleteTopic_t, decltype(&rd_kafka_DeleteTopic_destroy)> topic{
      rd_kafka_DeleteTopic_new(name.c_str()), &rd_kafka_DeleteTopic_destroy};
  std::unique_ptr<rd_kafka_AdminOptions_t, decltype(&rd_kafka_AdminOptions_destroy)> options{
      rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_DELETETOPICS),
      &rd_kafka_AdminOptions_destroy};
  rd_kafka_AdminOptions_set_operation_timeout(options.get(), 30'000, errstr, sizeof(errstr));
  std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)> queue{
      rd_kafka_queue_new(rk.get()), &rd_kafka_queue_destroy};
  rd_kafka_DeleteTopic_t* topics[] = {topic.get()};
  rd_kafka_DeleteTopics(rk.get(), topics, 1, options.get(), queue.get());
  std::unique_ptr<rd_kafka_event_t, decltype(&rd_kafka_event_destroy)> event{
      rd_kafka_queue_poll(queue.get(), 35'000), &rd_kafka_event_destroy};
  if (!event) {
    error = "no DeleteTopics result";
    return false;
  }
  if (rd_kafka_event_error(event.get())) {
    error = rd_kafka_event_error_string(event.get());
    return false;
  }
  size_t count = 0;
  const auto** results =
      rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event.get()), &count);
  if (!topic_results_ok(results, count, error))
    return false;
  // Gone from the metadata (KRaft brokers learn of it asynchronously).
  if (!eventually([&] { return !topic_listed(rk.get(), name); }, std::chrono::seconds{30},
                  std::chrono::milliseconds{50})) {
    error = "topic " + name + " is still listed after its deletion";
    return false;
  }
  return true;
}

bool kafka_broker::create_topic(const std::string& name, int partitions, int replication,
                                const std::map<std::string, std::string>& config,
                                std::string& error) const {
  return test::create_topic(bootstrap_, name, partitions, replication, config, error);
}

bool create_topic(const std::string& bootstrap, const std::string& name, int partitions,
                  int replication, const std::map<std::string, std::string>& config,
                  std::string& error, std::chrono::milliseconds timeout) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), errstr, sizeof(errstr)) !=
      RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    error = errstr;
    return false;
  }
  handle_ptr rk{rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))};
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    error = errstr;
    return false;
  }

  std::unique_ptr<rd_kafka_NewTopic_t, decltype(&rd_kafka_NewTopic_destroy)> topic{
      rd_kafka_NewTopic_new(name.c_str(), partitions, replication, errstr, sizeof(errstr)),
      &rd_kafka_NewTopic_destroy};
  if (!topic) {
    error = errstr;
    return false;
  }
  for (const auto& [key, value] : config) {
    if (auto err = rd_kafka_NewTopic_set_config(topic.get(), key.c_str(), value.c_str())) {
      error = key + ": " + rd_kafka_err2str(err);
      return false;
    }
  }

  const int timeout_ms = static_cast<int>(timeout.count());
  std::unique_ptr<rd_kafka_AdminOptions_t, decltype(&rd_kafka_AdminOptions_destroy)> options{
      rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS),
      &rd_kafka_AdminOptions_destroy};
  rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, errstr, sizeof(errstr));
  // The controller answers once the topic is created, not right away.
  rd_kafka_AdminOptions_set_operation_timeout(options.get(), timeout_ms, errstr, sizeof(errstr));

  std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)> queue{
      rd_kafka_queue_new(rk.get()), &rd_kafka_queue_destroy};
  rd_kafka_NewTopic_t* topics[] = {topic.get()};
  // A broker just started (or busy) may still be fenced: such refusals are
  // asked again, polled with the deadline, as the node does
  // (kafka::ensure_topics); any other answer ends the polling.
  bool created = false;
  bool asked_before = false;
  auto attempt = [&] {
    rd_kafka_CreateTopics(rk.get(), topics, 1, options.get(), queue.get());
    // The result event carries an overall error (e.g. a timeout) and one error per topic.
    std::unique_ptr<rd_kafka_event_t, decltype(&rd_kafka_event_destroy)> event{
        rd_kafka_queue_poll(queue.get(), timeout_ms + 5000), &rd_kafka_event_destroy};
    if (!event) {
      error = "no CreateTopics result within " + std::to_string(timeout_ms) + " ms";
      return true;  // no answer at all: stop
    }
    rd_kafka_resp_err_t err = rd_kafka_event_error(event.get());
    if (err) {
      error = rd_kafka_event_error_string(event.get());
    } else {
      size_t count = 0;
      const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(
          rd_kafka_event_CreateTopics_result(event.get()), &count);
      err = count > 0 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR_UNKNOWN;
      // An earlier attempt that timed out may have created it after all.
      if (topic_results_ok(results, count, error) ||
          (asked_before && err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS))
        return created = true;
    }
    asked_before = true;
    return !kafka::creation_may_succeed_later(err, error);  // false: ask again
  };
  eventually(attempt, timeout, std::chrono::milliseconds{500});
  if (!created)
    return false;

  // KRaft brokers learn of the topic asynchronously; tests want it usable on return.
  if (!eventually([&] { return topic_ready(rk.get(), name, partitions); }, timeout,
                  std::chrono::milliseconds{50})) {
    error = "topic " + name + " created but its partitions have no leaders yet";
    return false;
  }
  return true;
}

}  // namespace fleettwin::test
