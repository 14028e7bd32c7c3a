// fleettwin-node: the FleetTwin daemon.

#include <csignal>
#include <iostream>
#include <thread>

#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include "services/node/node.hpp"

int main(int argc, char** argv) {
  fleettwin::node::node_config cfg;
  if (auto code = fleettwin::node::parse_config(argc, argv, cfg, std::cout, std::cerr))
    return *code;
  spdlog::set_pattern("ts=%Y-%m-%dT%H:%M:%S.%e level=%l %v");
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  // libprotobuf writes its complaints (e.g. a relation record whose strings are not
  // UTF-8) to stderr in a format of its own, one line per bad record: under a flood of
  // bad records that is a flood of lines. The record itself goes to the DLQ with the
  // reason, so the message is a debug line of the node's log.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
        if (level >= google::protobuf::LOGLEVEL_FATAL)
          spdlog::critical("event=protobuf_fatal at={}:{} message=\"{}\"", file, line, message);
        else
          spdlog::debug("event=protobuf_log at={}:{} message=\"{}\"", file, line, message);
      });
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
