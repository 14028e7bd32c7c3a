#include "tools/bench/failover_probe.hpp"

#include <time.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/service.grpc.pb.h"

namespace fleettwin::bench {

namespace {

double monotonic_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

/// Calls `step` every `period` seconds (from its start, not its end) until it returns true,
/// `stop` is set or `deadline` passes.
template <class F>
void every(double period, double deadline, const std::atomic<bool>& stop, F step) {
  double next = monotonic_seconds();
  while (!stop.load() && monotonic_seconds() < deadline) {
    if (step())
      return;
    next += period;
    const double wait = next - monotonic_seconds();
    if (wait > 0)
      std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    else
      next = monotonic_seconds();
  }
}

}  // namespace

int run_failover_probe(const failover_probe_options& o) {
  std::map<std::string, uint64_t> versions;
  {
    std::ifstream in{o.sample_file};
    if (!in)
      throw std::runtime_error("cannot read the sample file " + o.sample_file);
    std::string id;
    uint64_t version = 0;
    while (in >> id >> version)
      versions[id] = version;
  }
  if (versions.empty() || versions.size() > 1000)
    throw std::runtime_error("the sample file must name 1 to 1000 twins");
  const std::set<int> victim(o.victim_partitions.begin(), o.victim_partitions.end());
  auto channel = grpc::CreateChannel(o.server, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds{10}))
    throw std::runtime_error("cannot connect to " + o.server);
  auto admin = v1::AdminService::NewStub(channel);
  auto twins = v1::TwinService::NewStub(channel);
  v1::BatchGetTwinsRequest batch;
  for (const auto& [id, v] : versions)
    batch.add_names("twins/" + id);

  std::cout << "ready" << std::endl;
  std::string word;
  double t0 = 0;
  if (!(std::cin >> word >> t0) || word != "go")
    throw std::runtime_error("expected \"go T0\" on stdin");
  const double deadline = t0 + o.timeout_seconds;
  std::atomic<bool> stop{false};
  std::mutex m;
  std::optional<double> moved, all_active, first_answer, twins_answer;
  bool older_version_seen = false;
  uint64_t cluster_calls = 0, twin_calls = 0;

  std::thread cluster_poller{[&] {
    every(o.poll_seconds, deadline, stop, [&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{2});
      v1::ClusterStatus status;
      const auto s = admin->GetCluster(&ctx, v1::GetClusterRequest{}, &status);
      const double t = monotonic_seconds() - t0;
      std::lock_guard<std::mutex> guard{m};
      ++cluster_calls;
      if (!s.ok())
        return false;
      for (const auto& n : status.nodes()) {
        if (n.member().node_id() != o.node_id)
          continue;
        int active = 0;
        bool holds_victims = false;
        for (const auto& p : n.member().partitions()) {
          const bool held =
              p.role() == v1::PARTITION_ROLE_ACTIVE || p.role() == v1::PARTITION_ROLE_RESTORING;
          active += p.role() == v1::PARTITION_ROLE_ACTIVE ? 1 : 0;
          holds_victims = holds_victims || (held && victim.count(p.partition()) > 0);
        }
        if (!moved && holds_victims)
          moved = t;  // the group noticed: the victim's partitions are assigned here
        if (active == o.partitions && status.unserved_partitions().empty()) {
          all_active = t;
          return true;
        }
      }
      return false;
    });
  }};
  std::thread twin_poller{[&] {
    every(o.poll_seconds, deadline, stop, [&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{2});
      v1::BatchGetTwinsResponse reply;
      const auto s = twins->BatchGetTwins(&ctx, batch, &reply);
      const double t = monotonic_seconds() - t0;
      std::lock_guard<std::mutex> guard{m};
      ++twin_calls;
      if (!s.ok() || reply.twins_size() != static_cast<int>(versions.size()))
        return false;
      if (!first_answer)
        first_answer = t;
      for (const auto& tw : reply.twins()) {
        auto it = versions.find(tw.asset_id());
        if (it == versions.end() || it->second != tw.version()) {
          older_version_seen = true;  // an update lost? (polling goes on)
          return false;
        }
      }
      twins_answer = t;
      return true;
    });
  }};
  cluster_poller.join();
  twin_poller.join();
  const auto opt = [](const std::optional<double>& v) {
    return v ? fmt::format("{:.3f}", *v) : std::string{"null"};
  };
  std::cout << fmt::format(R"({{"moved_s":{},"all_active_s":{},"first_answer_s":{},"twins_s":{},)"
                           R"("older_version_seen":{},"cluster_calls":{},"twin_calls":{}}})",
                           opt(moved), opt(all_active), opt(first_answer), opt(twins_answer),
                           older_version_seen ? "true" : "false", cluster_calls, twin_calls)
            << std::endl;
  return all_active && twins_answer ? 0 : 1;
}

}  // namespace fleettwin::bench
