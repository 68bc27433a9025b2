// shmetrics-inspect watch: a live view, like top, of the busiest series and their rates.
//
// The terminal is put in non-canonical, no-echo mode so that a single `q` quits without
// Enter; ISIG stays on, so Ctrl-C arrives as SIGINT, which only sets a flag: every exit
// path goes through the same restore (termios, cursor, alternate screen), and a signal
// never leaves the terminal raw.
#include <algorithm>    // sort
#include <csignal>      // sigaction
#include <cstdio>       // printf
#include <map>          // previous values
#include <memory>       // readers
#include <poll.h>       // poll
#include <string>       // rows
#include <sys/ioctl.h>  // TIOCGWINSZ
#include <sys/stat.h>   // stat
#include <termios.h>    // raw mode
#include <unistd.h>     // read, isatty

#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>

#include "inspect_common.hpp"

namespace inspect {

namespace {

volatile std::sig_atomic_t quit_signal = 0;

void on_signal(int sig) {
  quit_signal = sig;
}

struct tracked {
  shmetrics::segment_reader reader;
  std::map<std::string, double> prev;  // series key -> counter value / histogram count
  std::uint64_t prev_ns = 0;
};

struct row {
  double rate = 0;
  bool has_rate = false;
  double value = 0;
  std::string series;  // name{labels}
  std::string type;
  std::uint32_t pid = 0;
};

bool series_selected(const options& o, const shmetrics::family_snapshot& f,
                     const shmetrics::series_snapshot& s) {
  if (!o.name_glob.empty()) {
    std::string exposed =
        f.type == shmetrics::layout::metric_type::counter ? f.name + "_total" : f.name;
    if (!glob_match(o.name_glob, f.name) && !glob_match(o.name_glob, exposed)) return false;
  }
  // watch supports the plain matchers (= and !=); regexes are for show.
  for (auto& m : o.labels) {
    std::string v;
    for (std::size_t k = 0; k < f.label_names.size() && k < s.label_values.size(); ++k)
      if (f.label_names[k] == m.name) v = s.label_values[k];
    if (m.kind == label_matcher::op::eq && v != m.value) return false;
    if (m.kind == label_matcher::op::ne && v == m.value) return false;
  }
  return true;
}

class terminal {
 public:
  terminal() {
    in_tty_ = ::isatty(0) && ::tcgetattr(0, &saved_) == 0;
    out_tty_ = ::isatty(1);
    if (in_tty_) {
      termios raw = saved_;
      raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      ::tcsetattr(0, TCSANOW, &raw);
    }
    if (out_tty_) std::fputs("\x1b[?1049h\x1b[?25l", stdout);  // alternate screen, no cursor
  }
  ~terminal() {
    if (out_tty_) std::fputs("\x1b[?25h\x1b[?1049l", stdout);
    std::fflush(stdout);
    if (in_tty_) ::tcsetattr(0, TCSANOW, &saved_);
  }
  terminal(const terminal&) = delete;
  terminal& operator=(const terminal&) = delete;
  bool out_tty() const { return out_tty_; }
  int rows() const {
    winsize ws{};
    if (out_tty_ && ::ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 4) return ws.ws_row;
    return 0;
  }

 private:
  termios saved_{};
  bool in_tty_ = false, out_tty_ = false;
};

std::string rate_text(const row& r) {
  if (!r.has_rate) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", r.rate);
  return b;
}

}  // namespace

int cmd_watch(const options& o) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: poll() must return so the loop sees the flag
  for (int s : {SIGINT, SIGTERM, SIGHUP})
    ::sigaction(s, &sa, nullptr);

  terminal term;
  std::map<std::string, std::unique_ptr<tracked>> segs;  // by path
  bool stdin_open = true;
  long frames = 0;
  while (!quit_signal) {
    // Rescan each frame: writers come and go; a replaced file is a new writer.
    auto names = shmetrics::list_segments(o.dir, o.prefix);
    std::map<std::string, std::unique_ptr<tracked>> next;
    std::string note;
    if (!names) note = "cannot read " + o.dir + ": " + names.error().message();
    for (auto& n : names ? *names : std::vector<shmetrics::segment_name>{}) {
      auto it = segs.find(n.path);
      struct stat st;
      if (it != segs.end() && ::stat(n.path.c_str(), &st) == 0 &&
          static_cast<std::uint64_t>(st.st_ino) == it->second->reader.inode()) {
        next[n.path] = std::move(it->second);
        continue;
      }
      auto r = shmetrics::segment_reader::open(n.path);
      if (!r) continue;  // not ready or invalid: `list` says why
      auto t = std::make_unique<tracked>();
      t->reader = std::move(*r);
      next[n.path] = std::move(t);
    }
    segs = std::move(next);

    std::vector<row> rows;
    std::size_t alive = 0;
    for (auto& [path, t] : segs) {
      auto snap = t->reader.snapshot();
      if (!snap) continue;
      alive += t->reader.writer_alive();
      std::uint64_t now = now_ns(CLOCK_MONOTONIC);
      double dt = t->prev_ns ? static_cast<double>(now - t->prev_ns) * 1e-9 : 0;
      std::map<std::string, double> cur;
      for (auto& f : snap->families)
        for (auto& s : f.series) {
          if (!series_selected(o, f, s)) continue;
          row r;
          r.pid = snap->info.writer_pid;
          r.type = f.type == shmetrics::layout::metric_type::counter     ? "counter"
                   : f.type == shmetrics::layout::metric_type::histogram ? "histogram"
                                                                         : "gauge";
          r.series = f.type == shmetrics::layout::metric_type::counter ? f.name + "_total" : f.name;
          std::string labels;
          for (std::size_t k = 0; k < f.label_names.size() && k < s.label_values.size(); ++k)
            labels += (k ? "," : "") + f.label_names[k] + "=\"" + s.label_values[k] + "\"";
          if (!labels.empty()) r.series += "{" + labels + "}";
          bool rated = f.type == shmetrics::layout::metric_type::counter ||
                       f.type == shmetrics::layout::metric_type::histogram;
          r.value = f.type == shmetrics::layout::metric_type::histogram
                        ? static_cast<double>(s.count())
                        : s.value;
          if (rated) {
            std::string key = r.series;
            cur[key] = r.value;
            auto p = t->prev.find(key);
            if (dt > 0 && p != t->prev.end()) {
              r.rate = (r.value - p->second) / dt;
              r.has_rate = true;
            }
          }
          rows.push_back(std::move(r));
        }
      t->prev = std::move(cur);
      t->prev_ns = now;
    }
    // Busiest first; series without a rate (gauges, first frame) after, by name.
    std::sort(rows.begin(), rows.end(), [](const row& a, const row& b) {
      if (a.has_rate != b.has_rate) return a.has_rate;
      if (a.has_rate && a.rate != b.rate) return a.rate > b.rate;
      return a.series < b.series;
    });
    std::size_t limit = o.top > 0         ? static_cast<std::size_t>(o.top)
                        : term.rows() > 0 ? static_cast<std::size_t>(term.rows() - 4)
                                          : 20;
    std::string frame = term.out_tty() ? "\x1b[H\x1b[2J" : "";
    char line[512];
    std::snprintf(line, sizeof line,
                  "shmetrics-inspect watch  %s/%s.*  %zu segments (%zu alive)  every %gs  "
                  "q to quit\n",
                  o.dir.c_str(), o.prefix.c_str(), segs.size(), alive, o.interval_s);
    frame += line;
    if (!note.empty()) frame += note + "\n";
    std::snprintf(line, sizeof line, "%14s %16s %8s %-9s %s\n", "RATE/S", "VALUE", "PID", "TYPE",
                  "SERIES");
    frame += line;
    for (std::size_t k = 0; k < rows.size() && k < limit; ++k) {
      const row& r = rows[k];
      std::snprintf(line, sizeof line, "%14s %16s %8u %-9s ", rate_text(r).c_str(),
                    human_number(r.value).c_str(), r.pid, r.type.c_str());
      frame += line;
      frame += r.series;
      frame += '\n';
    }
    if (!term.out_tty()) frame += '\n';
    std::fputs(frame.c_str(), stdout);
    std::fflush(stdout);
    if (o.count > 0 && ++frames >= o.count) break;

    // Wait one interval, or less if a key or a signal comes.
    std::uint64_t deadline =
        now_ns(CLOCK_MONOTONIC) + static_cast<std::uint64_t>(o.interval_s * 1e9);
    bool quit = false;
    while (!quit_signal && !quit) {
      std::uint64_t now = now_ns(CLOCK_MONOTONIC);
      if (now >= deadline) break;
      int ms = static_cast<int>((deadline - now + 999999) / 1000000);
      pollfd pfd{0, POLLIN, 0};
      int n = ::poll(&pfd, stdin_open ? 1 : 0, ms);
      if (n <= 0) continue;  // timeout, or EINTR from a signal
      char buf[64];
      ssize_t got = ::read(0, buf, sizeof buf);
      if (got <= 0) {
        stdin_open = false;  // EOF (e.g. </dev/null): keep refreshing until a signal
        continue;
      }
      for (ssize_t k = 0; k < got; ++k)
        if (buf[k] == 'q' || buf[k] == 'Q' || buf[k] == 3 /* ^C without ISIG */) quit = true;
    }
    if (quit) break;
  }
  return 0;
}

}  // namespace inspect
