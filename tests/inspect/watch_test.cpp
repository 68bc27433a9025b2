// shmetrics-inspect watch in a pseudo-terminal: a few refreshes, then `q` or Ctrl-C,
// a clean exit and the terminal given back in canonical mode.
#include <catch2/catch.hpp>

#include <chrono>
#include <poll.h>
#include <pty.h>
#include <termios.h>

#include "../support.hpp"

#ifndef INSPECT
#error "INSPECT must name the shmetrics-inspect binary"
#endif

namespace {

// The tool on the slave side of a new pty; the test holds the master.
struct pty_child {
  pid_t pid = -1;
  int master = -1;
  std::string seen;

  explicit pty_child(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    winsize ws{};
    ws.ws_row = 30;
    ws.ws_col = 160;
    pid = ::forkpty(&master, nullptr, nullptr, &ws);
    if (pid == 0) {
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~pty_child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (master >= 0) ::close(master);
  }
  // Reads until `text` has appeared `times` times in the output, or the deadline.
  bool wait_for(const std::string& text, int times, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int n = 0;
      for (std::size_t p = seen.find(text); p != std::string::npos; p = seen.find(text, p + 1))
        ++n;
      if (n >= times) return true;
      pollfd pfd{master, POLLIN, 0};
      if (::poll(&pfd, 1, 50) > 0) {
        char buf[4096];
        ssize_t got = ::read(master, buf, sizeof buf);
        if (got <= 0) return false;  // the child went away
        seen.append(buf, static_cast<std::size_t>(got));
      }
    }
    return false;
  }
  // Exit status within `limit`, or -1 if it did not exit.
  int wait_exit(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid, &st, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      char buf[4096];  // keep draining so the child never blocks on a full pty
      pollfd pfd{master, POLLIN, 0};
      if (::poll(&pfd, 1, 20) > 0 && ::read(master, buf, sizeof buf) > 0) continue;
    }
    return -1;
  }
  bool canonical() const {
    termios t{};
    return ::tcgetattr(master, &t) == 0 && (t.c_lflag & ICANON) && (t.c_lflag & ECHO);
  }
};

constexpr const char* frame_marker = "shmetrics-inspect watch";

}  // namespace

TEST_CASE("watch refreshes in a terminal and quits cleanly on q", "[inspect][watch]") {
  test::unique_prefix up;
  test::child w({WRITER_CHILD, up.dir, up.prefix, "live"});
  REQUIRE(!w.line().empty());
  pty_child t(
      {INSPECT, "watch", "--interval", "0.1", "--shm.dir", up.dir, "--shm.prefix", up.prefix});
  REQUIRE(t.pid > 0);
  REQUIRE(t.wait_for(frame_marker, 4, std::chrono::seconds(10)));
  INFO(t.seen);
  REQUIRE(t.seen.find("\x1b[?1049h") != std::string::npos);  // alternate screen
  REQUIRE(t.seen.find("ops_total{kind=\"a\"}") != std::string::npos);
  REQUIRE(t.seen.find("1 segments (1 alive)") != std::string::npos);
  REQUIRE(!t.canonical());  // raw while it runs: a single key is enough
  REQUIRE(::write(t.master, "q", 1) == 1);
  REQUIRE(t.wait_exit(std::chrono::seconds(5)) == 0);
  REQUIRE(t.canonical());
}

TEST_CASE("watch quits cleanly on Ctrl-C", "[inspect][watch]") {
  test::unique_prefix up;
  auto reg = shmetrics::registry::create(up.options()).value();
  reg.add_counter({.name = "c_total", .help = "h"})->with_labels({})->inc();
  pty_child t(
      {INSPECT, "watch", "--interval=0.05", "--shm.dir", up.dir, "--shm.prefix", up.prefix});
  REQUIRE(t.wait_for(frame_marker, 3, std::chrono::seconds(10)));
  REQUIRE(::write(t.master, "\x03", 1) == 1);  // the line discipline turns it into SIGINT
  REQUIRE(t.wait_exit(std::chrono::seconds(5)) == 0);
  REQUIRE(t.canonical());
}

TEST_CASE("watch without a terminal: plain frames, rates of a live writer", "[inspect][watch]") {
  test::unique_prefix up;
  test::child w({WRITER_CHILD, up.dir, up.prefix, "live"});
  REQUIRE(!w.line().empty());
  auto [rc, out] = test::run(std::string(INSPECT) + " watch --count 3 --interval 0.1 --top 5" +
                             " --shm.dir " + up.dir + " --shm.prefix " + up.prefix + " </dev/null");
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(out.find('\x1b') == std::string::npos);
  std::size_t frames = 0;
  for (auto p = out.find(frame_marker); p != std::string::npos; p = out.find(frame_marker, p + 1))
    ++frames;
  REQUIRE(frames == 3);
  // The last frame shows the busy counter with a positive rate.
  auto last = out.substr(out.rfind(frame_marker));
  auto at = last.find("ops_total{kind=\"a\"}");
  REQUIRE(at != std::string::npos);
  auto row = last.substr(last.rfind('\n', at) + 1);
  REQUIRE(std::stod(row) > 0);
}
