#include "tools/bench/proc_cpu.hpp"

#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fleettwin::bench {

namespace {

/// Parses a /proc/.../stat line: the name between the first '(' and the last
/// ')' (names may hold spaces and parentheses), then utime and stime, the
/// 14th and 15th fields, in clock ticks.
bool parse_stat(const std::string& path, std::string& name, double& seconds) {
  std::ifstream in{path};
  std::string line;
  if (!std::getline(in, line))
    return false;
  auto open = line.find('(');
  auto close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return false;
  name = line.substr(open + 1, close - open - 1);
  std::istringstream rest{line.substr(close + 1)};
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  // Fields 3..13 come first (state, ppid, ..., cmajflt).
  for (int i = 3; i <= 13; ++i)
    if (!(rest >> field))
      return false;
  if (!(rest >> utime >> stime))
    return false;
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  seconds = static_cast<double>(utime + stime) / ticks;
  return true;
}

std::string kind_of(std::string name) {
  while (!name.empty() && (std::isdigit(static_cast<unsigned char>(name.back())) ||
                           name.back() == '-' || name.back() == '_' || name.back() == '.'))
    name.pop_back();
  return name.empty() ? "(unnamed)" : name;
}

}  // namespace

double process_cpu_seconds_of(pid_t pid) {
  std::string name;
  double seconds = 0;
  if (!parse_stat("/proc/" + std::to_string(pid) + "/stat", name, seconds))
    return -1;
  return seconds;
}

std::map<pid_t, thread_cpu> thread_cpu_seconds() {
  std::map<pid_t, thread_cpu> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator{"/proc/self/task", ec}) {
    thread_cpu t;
    if (parse_stat(entry.path().string() + "/stat", t.name, t.seconds))
      out[static_cast<pid_t>(std::stol(entry.path().filename().string()))] = std::move(t);
  }
  return out;
}

std::map<std::string, double> cpu_by_thread_kind(const std::map<pid_t, thread_cpu>& before,
                                                 const std::map<pid_t, thread_cpu>& after) {
  std::map<std::string, double> out;
  for (const auto& [tid, t] : after) {
    auto was = before.find(tid);
    double used =
        t.seconds - (was != before.end() && was->second.name == t.name ? was->second.seconds : 0.0);
    out[kind_of(t.name)] += used;
  }
  return out;
}

}  // namespace fleettwin::bench
