#include "process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

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

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool open = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return open;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond())
      return true;
    std::this_thread::sleep_for(interval);  // poll interval, not a sync
  }
  return cond();
}

std::string make_temp_dir(const std::string& name) {
  static std::atomic<int> counter{0};
  for (;;) {
    auto dir =
        std::filesystem::temp_directory_path() /
        ("fleettwin-" + name + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    if (std::filesystem::create_directories(dir))
      return dir.string();
  }
}

std::string file_tail(const std::string& path, size_t lines) {
  std::ifstream in{path};
  if (!in)
    return {};
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(std::move(line));
    if (last.size() > lines)
      last.pop_front();
  }
  std::string out;
  for (const auto& l : last)
    out += l + '\n';
  return out;
}

child_process::~child_process() {
  if (pid_ > 0)
    kill9();
}

void child_process::start(std::vector<std::string> args, const std::string& log_path,
                          uint64_t max_file_bytes) {
  if (running())
    throw std::runtime_error("child_process::start: " + args.front() + " is running already");
  // Everything the child needs is built before fork(): the child of a
  // multi-threaded process may only call async-signal-safe functions.
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string log = log_path;
  pid_t parent = getpid();
  ended_.clear();
  pid_ = fork();
  if (pid_ < 0)
    throw std::runtime_error(std::string{"fork: "} + std::strerror(errno));
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(126);
    if (max_file_bytes > 0) {
      rlimit limit{max_file_bytes, max_file_bytes};
      setrlimit(RLIMIT_FSIZE, &limit);
    }
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
}

void child_process::reaped(int status) {
  pid_ = -1;
  ended_ = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                             : "signal " + std::to_string(WTERMSIG(status));
}

bool child_process::running() {
  if (pid_ <= 0)
    return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped(status);
    return false;
  }
  return true;
}

std::pair<int, std::string> run_command(const std::string& command) {
  FILE* f = popen(command.c_str(), "r");
  if (!f)
    return {-1, {}};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    out.append(buf, n);
  int status = pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

void child_process::pause() {
  if (pid_ > 0)
    ::kill(pid_, SIGSTOP);
}

void child_process::resume() {
  if (pid_ > 0)
    ::kill(pid_, SIGCONT);
}

void child_process::kill9() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped(status);
}

int child_process::terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0)
    return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  bool exited = eventually([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout,
                           std::chrono::milliseconds{10});
  if (!exited) {
    kill9();
    return -2;
  }
  reaped(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace fleettwin::test
