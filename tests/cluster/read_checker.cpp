#include "read_checker.hpp"

#include <chrono>
#include <random>
#include <thread>

namespace fleettwin::test {

read_checker::read_checker(std::vector<std::string> nodes, std::vector<std::string> assets,
                           int threads, std::chrono::milliseconds deadline)
    : nodes_(std::move(nodes)), assets_(std::move(assets)), deadline_(deadline) {
  for (const auto& addr : nodes_) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    stubs_.push_back(v1::TwinService::NewStub(
        grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args)));
  }
  for (int t = 0; t < threads; ++t)
    threads_.emplace_back([this, t] { run(static_cast<size_t>(t)); });
}

read_checker::~read_checker() {
  stop();
}

void read_checker::exclude(const std::string& address) {
  std::unique_lock<std::mutex> lock{mutex_};
  excluded_.insert(address);
  done_.wait_for(lock, deadline_ + std::chrono::seconds{1}, [&] { return calling_[address] == 0; });
}

void read_checker::include(const std::string& address) {
  std::lock_guard<std::mutex> guard{mutex_};
  excluded_.erase(address);
}

read_checker::result read_checker::stop() {
  stop_ = true;
  for (auto& t : threads_)
    if (t.joinable())
      t.join();
  std::lock_guard<std::mutex> guard{mutex_};
  return result_;
}

void read_checker::run(size_t thread_index) {
  std::mt19937 rng{static_cast<unsigned>(thread_index * 7919 + 1)};
  // What this client saw: the highest version of each twin, and where.
  std::map<std::string, std::pair<uint64_t, std::string>> seen;
  size_t next_node = thread_index;
  // Paced like a real client: at most one read per `pace`, and a retry
  // backoff after an answer that says "not now". Unpaced, three readers
  // answered UNAVAILABLE at thousands of calls a second during a broker
  // outage and took the CPU the brokers needed to recover (a KRaft
  // controller starved for tens of seconds on two cores).
  constexpr auto pace = std::chrono::milliseconds{4};
  constexpr auto backoff = std::chrono::milliseconds{50};
  auto next_call = std::chrono::steady_clock::now();
  while (!stop_.load()) {
    std::this_thread::sleep_until(next_call);
    next_call = std::chrono::steady_clock::now() + pace;
    size_t n = next_node++ % nodes_.size();
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (excluded_.contains(nodes_[n]))
        continue;
      ++calling_[nodes_[n]];
    }
    const auto& asset = assets_[rng() % assets_.size()];
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
    v1::GetTwinRequest req;
    req.set_name("twins/" + asset);
    v1::Twin twin;
    auto began = std::chrono::steady_clock::now();
    auto status = stubs_[n]->GetTwin(&ctx, req, &twin);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    reads_.fetch_add(1);
    std::lock_guard<std::mutex> guard{mutex_};
    if (--calling_[nodes_[n]] == 0)
      done_.notify_all();
    result_.max_seconds = std::max(result_.max_seconds, secs);
    switch (status.error_code()) {
      case grpc::StatusCode::OK: {
        ++result_.ok;
        auto& [version, where] = seen[asset];
        if (twin.version() < version && result_.backwards.size() < 20)
          result_.backwards.push_back(asset + ": version " + std::to_string(twin.version()) +
                                      " through " + nodes_[n] + " after version " +
                                      std::to_string(version) + " through " + where);
        if (twin.version() >= version) {
          version = twin.version();
          where = nodes_[n];
        }
        break;
      }
      case grpc::StatusCode::UNAVAILABLE:
        ++result_.unavailable;
        next_call += backoff;
        break;
      case grpc::StatusCode::NOT_FOUND: {
        ++result_.not_found;
        // Unknown after it was seen: an answer from an old state.
        auto it = seen.find(asset);
        if (it != seen.end() && it->second.first > 0 && result_.backwards.size() < 20)
          result_.backwards.push_back(asset + ": NOT_FOUND through " + nodes_[n] +
                                      " after version " + std::to_string(it->second.first) +
                                      " through " + it->second.second);
        break;
      }
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        ++result_.hung;
        break;
      case grpc::StatusCode::CANCELLED:
        ++result_.cancelled;
        break;
      default:
        if (result_.other++ == 0)
          result_.first_other =
              std::to_string(status.error_code()) + " " + status.error_message() + " through " +
              nodes_[n] + " after " + std::to_string(secs) + " s, at " +
              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count() %
                             100'000) +
              " ms (wall clock mod 100 s)";
        break;
    }
  }
}

}  // namespace fleettwin::test
