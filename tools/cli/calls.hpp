#pragma once

// How commands call paged and streaming methods (shared by the commands).

#include <cstdint>

#include <fmt/format.h>

#include "tools/cli/commands.hpp"
#include "tools/cli/format.hpp"
#include "tools/cli/interrupter.hpp"
#include "tools/cli/run.hpp"

namespace fleettwin::cli {

/// Calls a paged method once, or (`all`) until its last page, printing each
/// page with `print`; says how to go on when pages remain.
template <class Response, class Request, class Call, class Print>
int print_pages(session& s, Request& request, bool all, Call call, Print print) {
  while (true) {
    grpc::ClientContext context;
    s.set_deadline(context);
    Response response;
    if (auto status = call(context, request, response); !status.ok())
      return s.fail(status);
    print(response);
    const auto& next = response.next_page_token();
    if (!all || next.empty()) {
      if (!s.json() && !next.empty())
        s.err() << "more: --page-token " << next << " (or --all)\n";
      return exit_ok;
    }
    if (next == request.page_token())
      return s.fail({grpc::StatusCode::INTERNAL,
                     fmt::format("server returned the same page token \"{}\" again", next)});
    request.set_page_token(next);
  }
}

/// Prints a server stream's messages, one per line, until `count` (0: the
/// server ends it or Ctrl-C); no deadline.
template <class Message, class Open, class Format>
int print_stream(session& s, uint64_t count, Open open, Format format) {
  grpc::ClientContext context;
  interrupter::guard guard{s.interrupt(), context};
  auto reader = open(context);
  Message m;
  uint64_t received = 0;
  bool done = false;
  while (!done && reader->Read(&m)) {
    s.out() << (s.json() ? to_json(m) : format(m)) << '\n';
    s.out().flush();
    done = count != 0 && ++received >= count;
  }
  if (done)
    context.TryCancel();
  auto status = reader->Finish();
  if (status.ok() || done || s.interrupt().interrupted())
    return exit_ok;
  return s.fail(status);
}

}  // namespace fleettwin::cli
