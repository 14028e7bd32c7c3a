// fleettwin-node: the FleetTwin daemon.

#include <csignal>
#include <iostream>
#include <thread>

#include <spdlog/spdlog.h>

#include "services/node/node.hpp"

int main(int argc, char** argv) {
  fleettwin::node::node_config cfg;
  if (auto code = fleettwin::node::parse_config(argc, argv, cfg, std::cout, std::cerr))
    return *code;
  spdlog::set_pattern("ts=%Y-%m-%dT%H:%M:%S.%e level=%l %v");
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  // Signals are taken by a dedicated thread through sigwait, never in a handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Lines reach a file or pipe promptly (an operator tails them), warnings
  // at once. (Its thread starts after the mask: it must not take signals.)
  spdlog::flush_on(spdlog::level::warn);
  spdlog::flush_every(std::chrono::seconds{1});
  std::string error;
  auto n = fleettwin::node::node::start(cfg, error);
  if (!n) {
    spdlog::critical("event=start_failed error=\"{}\"", error);
    return 1;
  }
  if (!n->kafka_bootstrap().empty())
    std::cout << "kafka bootstrap: " << n->kafka_bootstrap() << std::endl;
  std::thread{[&n, signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("event=signal signal={}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    n->request_stop(0);
  }}.detach();
  int code = n->wait();
  n->shutdown();
  n.reset();
  return code;
}
