// fleettwin-bench flood: a node (its own process, on a real Kafka) under a flood of bad
// records and of requests far beyond what it can process, while its resident memory is
// sampled: it must stay bounded (what the node holds is bounded by its fetch queues,
// query queue, watch queues and caches, not by what clients send).

#include "tools/bench/flood.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <librdkafka/rdkafka.h>

#include "fleettwin/v1/service.grpc.pb.h"
#include "tools/bench/scrape.hpp"

extern char** environ;

namespace fleettwin::bench {

namespace {

using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

/// The resident set of `pid` in MB (0 once it is gone).
double rss_mb(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

/// Every series of a metric family, summed (all its label sets).
double family_sum(const std::string& text, const std::string& family) {
  double sum = 0;
  for (size_t pos = text.find("\n" + family); pos != std::string::npos;
       pos = text.find("\n" + family, pos + 1)) {
    const size_t start = pos + 1 + family.size();
    if (start >= text.size() || (text[start] != ' ' && text[start] != '{'))
      continue;
    const size_t value = text.find(' ', text[start] == '{' ? text.find('}', start) : start);
    if (value != std::string::npos)
      sum += std::stod(text.substr(value + 1));
  }
  return sum;
}

/// Records the node has taken off its input, whatever became of them.
double records_handled(const std::string& m) {
  return family_sum(m, "fleettwin_records_applied_total") +
         family_sum(m, "fleettwin_records_rejected_total") +
         family_sum(m, "fleettwin_out_of_order_records_total") +
         family_sum(m, "fleettwin_unchanged_records_total") +
         family_sum(m, "fleettwin_duplicates_total");
}

struct rd_deleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_flush(rk, 10'000);
    rd_kafka_destroy(rk);
  }
};
using producer_ptr = std::unique_ptr<rd_kafka_t, rd_deleter>;

producer_ptr make_producer(const std::string& bootstrap) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  for (const auto& [k, v] :
       std::vector<std::pair<std::string, std::string>>{{"bootstrap.servers", bootstrap},
                                                        {"partitioner", "murmur2_random"},
                                                        {"linger.ms", "5"},
                                                        {"acks", "1"},
                                                        {"queue.buffering.max.kbytes", "65536"}})
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK)
      throw std::runtime_error(err);
  auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (!rk)
    throw std::runtime_error(err);
  return producer_ptr{rk};
}

/// Produces one record (waiting while the producer's queue is full); false if it failed.
bool send(rd_kafka_t* rk, const std::string& topic, const std::string& key,
          const std::string& value, const char* content_type) {
  for (;;) {
    auto* h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "content-type", -1, content_type, -1);
    auto err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (!err)
      return true;
    rd_kafka_headers_destroy(h);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      return false;
    rd_kafka_poll(rk, 5);
  }
}

std::string valid_record(const std::string& id, uint64_t seq, double speed) {
  return fmt::format(
      R"({{"asset_id":"{}","kind":"vehicle","sequence":{},"source_time_ms":{},"metrics":{{"speed":{:.1f},"battery":{:.1f}}}}})",
      id, seq, 1'700'000'000'000 + static_cast<int64_t>(seq), speed, 50 + speed / 10);
}

struct node_process {
  pid_t pid = -1;
  uint16_t grpc = 0;
  uint16_t metrics = 0;
  std::string log;
};

node_process start_node(const flood_options& o, const std::string& dir, const std::string& prefix) {
  node_process n;
  n.grpc = free_port();
  n.metrics = free_port();
  n.log = dir + "/node.log";
  std::vector<std::string> args{o.node_binary,
                                "--kafka",
                                o.kafka,
                                "--data-dir",
                                dir + "/data",
                                "--grpc",
                                fmt::format("127.0.0.1:{}", n.grpc),
                                "--metrics",
                                fmt::format("127.0.0.1:{}", n.metrics),
                                "--cluster-port",
                                "0",
                                "--node-id",
                                prefix,
                                "--group",
                                prefix,
                                "--topic-prefix",
                                prefix,
                                "--partitions",
                                "8",
                                "--log-level",
                                "warn"};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, n.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  const int rc = posix_spawn(&n.pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    throw std::runtime_error("cannot start " + o.node_binary);
  const auto deadline = clk::now() + 120s;
  while (metric(scrape_metrics(n.metrics), "fleettwin_ready") != 1) {
    int status = 0;
    if (waitpid(n.pid, &status, WNOHANG) == n.pid)
      throw std::runtime_error("the node stopped while starting; see " + n.log);
    if (clk::now() > deadline)
      throw std::runtime_error("the node was not ready within 120 s; see " + n.log);
    std::this_thread::sleep_for(100ms);
  }
  return n;
}

double median(std::vector<double> v) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int run_flood(const flood_options& o) {
  const std::string prefix = fmt::format("flood-{}-{}", getpid(),
                                         std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  const std::string dir = (std::filesystem::temp_directory_path() / prefix).string();
  std::filesystem::create_directories(dir);
  auto node = start_node(o, dir, prefix);
  const std::string topic = prefix + ".telemetry";
  std::cerr << fmt::format("node pid {} ready (log {})\n", node.pid, node.log);

  // Twins to read and watch: one record each, applied before the flood.
  {
    auto p = make_producer(o.kafka);
    for (int i = 0; i < o.twins; ++i) {
      auto id = fmt::format("f-{:06}", i);
      send(p.get(), topic, id, valid_record(id, 1, 10), "application/json");
    }
  }
  const auto seeded = clk::now() + 120s;
  while (metric(scrape_metrics(node.metrics), "fleettwin_records_applied_total") < o.twins) {
    if (clk::now() > seeded)
      throw std::runtime_error("the node did not apply the seed records within 120 s");
    std::this_thread::sleep_for(100ms);
  }

  // Resident memory, sampled every 250 ms from here on.
  std::mutex samples_mutex;
  std::vector<std::pair<double, double>> samples;  // seconds since the flood, MB
  std::atomic<bool> sampling{true};
  auto flood_start = clk::now() + 5s;
  std::thread sampler{[&] {
    while (sampling) {
      const double t = std::chrono::duration<double>(clk::now() - flood_start).count();
      const double mb = rss_mb(node.pid);
      {
        std::lock_guard<std::mutex> guard{samples_mutex};
        samples.emplace_back(t, mb);
      }
      std::this_thread::sleep_for(250ms);
    }
  }};
  std::this_thread::sleep_until(flood_start);  // 5 s of the node at rest

  std::atomic<bool> flooding{true};
  std::atomic<uint64_t> offered{0}, calls_ok{0}, calls_refused{0}, calls_other{0};
  const auto handled_before = records_handled(scrape_metrics(node.metrics));
  std::vector<std::thread> threads;
  // Bad records (malformed JSON, a content type nobody reads) and valid updates of the
  // seeded twins, as fast as the producers go.
  for (int t = 0; t < o.record_threads; ++t)
    threads.emplace_back([&, t] {
      auto p = make_producer(o.kafka);
      std::mt19937_64 rng{static_cast<uint64_t>(t) + 1};
      uint64_t seq = 2 + static_cast<uint64_t>(t) * 1'000'000'000;
      for (uint64_t i = 0; flooding; ++i) {
        auto id = fmt::format("f-{:06}", rng() % static_cast<uint64_t>(o.twins));
        bool ok = false;
        switch (i % 5) {
          case 0:
          case 1:
            ok = send(p.get(), topic, id,
                      R"({"asset_id":")" + id + R"(","sequence":)" + std::to_string(i) +
                          R"(,"metrics":{"speed":)",
                      "application/json");
            break;
          case 2:
            ok = send(p.get(), topic, id, "speed=12.5 battery=40", "text/plain");
            break;
          default:
            ok = send(p.get(), topic, id,
                      valid_record(id, ++seq, static_cast<double>(rng() % 1200) / 10),
                      "application/json");
        }
        if (ok)
          ++offered;
        if (i % 1000 == 0)
          rd_kafka_poll(p.get(), 0);
      }
    });
  // Queries: large pages and batches from many clients at once.
  for (int t = 0; t < o.request_threads; ++t)
    threads.emplace_back([&, t] {
      auto stub = v1::TwinService::NewStub(grpc::CreateCustomChannel(
          fmt::format("127.0.0.1:{}", node.grpc), grpc::InsecureChannelCredentials(), [t] {
            grpc::ChannelArguments a;
            a.SetInt("flood.channel", t);  // a connection of its own
            return a;
          }()));
      for (uint64_t i = 0; flooding; ++i) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 10s);
        grpc::Status st;
        if (i % 2 == 0) {
          v1::ListTwinsRequest req;
          req.set_page_size(1000);
          v1::ListTwinsResponse resp;
          st = stub->ListTwins(&ctx, req, &resp);
        } else {
          v1::BatchGetTwinsRequest req;
          for (int k = 0; k < 1000; ++k)
            req.add_names(fmt::format("twins/f-{:06}", (i * 7 + static_cast<uint64_t>(k)) %
                                                           static_cast<uint64_t>(o.twins)));
          v1::BatchGetTwinsResponse resp;
          st = stub->BatchGetTwins(&ctx, req, &resp);
        }
        if (st.ok())
          ++calls_ok;
        else if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
          ++calls_refused;
        else
          ++calls_other;
      }
    });
  // Watchers that never read: the node holds at most a bounded queue for each.
  struct watcher {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::TwinChange>> reader;
  };
  auto watch_stub = v1::TwinService::NewStub(grpc::CreateChannel(
      fmt::format("127.0.0.1:{}", node.grpc), grpc::InsecureChannelCredentials()));
  std::vector<std::unique_ptr<watcher>> watchers;
  for (int w = 0; w < o.watchers; ++w) {
    auto x = std::make_unique<watcher>();
    x->reader = watch_stub->WatchTwins(&x->ctx, v1::WatchTwinsRequest{});
    watchers.push_back(std::move(x));
  }
  std::this_thread::sleep_until(flood_start + std::chrono::duration_cast<clk::duration>(
                                                  std::chrono::duration<double>(o.seconds)));
  flooding = false;
  const auto handled_after = records_handled(scrape_metrics(node.metrics));
  for (auto& t : threads)
    t.join();
  for (auto& w : watchers)
    w->ctx.TryCancel();
  watchers.clear();
  std::this_thread::sleep_for(10s);  // the node after the flood
  sampling = false;
  sampler.join();

  kill(node.pid, SIGTERM);
  int status = 0;
  waitpid(node.pid, &status, 0);

  std::vector<double> before, during, late, after;
  double peak = 0;
  for (const auto& [t, mb] : samples) {
    if (t < 0)
      before.push_back(mb);
    else if (t <= o.seconds) {
      during.push_back(mb);
      peak = std::max(peak, mb);
      if (t >= o.seconds * 2 / 3)
        late.push_back(mb);
    } else {
      after.push_back(mb);
    }
  }
  std::vector<double> first_third;
  for (const auto& [t, mb] : samples)
    if (t >= 0 && t < o.seconds / 3)
      first_third.push_back(mb);
  // RSS every 5 s from the flood's start (the timeline shows whether it levels off).
  std::string timeline;
  for (double mark = 0;; mark += 5) {
    auto it = std::find_if(samples.begin(), samples.end(),
                           [mark](const auto& s) { return s.first >= mark; });
    if (it == samples.end())
      break;
    timeline += fmt::format("{}{:.0f}", timeline.empty() ? "" : ",", it->second);
  }
  const double offered_rate = static_cast<double>(offered) / o.seconds;
  const double handled_rate = (handled_after - handled_before) / o.seconds;
  std::cout << fmt::format(
      R"({{"bench":"flood","seconds":{},"twins":{},"watchers":{},"request_threads":{},"offered_records_per_s":{:.0f},"handled_records_per_s":{:.0f},"offered_over_handled":{:.1f},"calls_ok_per_s":{:.0f},"calls_refused_per_s":{:.0f},"calls_failed_otherwise":{},"rss_mb_before":{:.0f},"rss_mb_first_third":{:.0f},"rss_mb_last_third":{:.0f},"rss_mb_peak":{:.0f},"rss_mb_after":{:.0f},"rss_mb_every_5s":[{}],"node_exit":{}}})"
      "\n",
      o.seconds, o.twins, o.watchers, o.request_threads, offered_rate, handled_rate,
      handled_rate > 0 ? offered_rate / handled_rate : 0.0,
      static_cast<double>(calls_ok) / o.seconds, static_cast<double>(calls_refused) / o.seconds,
      calls_other.load(), median(before), median(first_third), median(late), peak, median(after),
      timeline, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}

}  // namespace fleettwin::bench
