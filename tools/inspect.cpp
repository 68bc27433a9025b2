// shmetrics-inspect: look at what writers really wrote, without the exporter.
//
//   shmetrics-inspect [--shm.dir DIR] [--shm.prefix NAME] list
//   shmetrics-inspect [--shm.dir DIR] [--shm.prefix NAME] show [SEGMENT|PID]
#include <cstdio>  // printf
#include <ctime>   // clock_gettime
#include <string>  // args
#include <vector>  // args

#include <shmetrics/reader/discovery.hpp>
#include <shmetrics/reader/segment_reader.hpp>
#include <shmetrics/reader/text_format.hpp>

namespace {

const char* usage =
    "usage: shmetrics-inspect [--shm.dir DIR] [--shm.prefix NAME] COMMAND\n"
    "commands:\n"
    "  list                  every segment: pid, instance, state, heartbeat age, usage\n"
    "  show [SEGMENT|PID]    families and values, as Prometheus text\n"
    "flags:\n"
    "  --shm.dir DIR         where segments live (default /dev/shm)\n"
    "  --shm.prefix NAME     segment name prefix (default shmetrics)\n";

double now_monotonic() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

const char* state_of(const shmetrics::segment_reader& r, const shmetrics::segment_info& i) {
  if (r.writer_alive()) return "alive";
  return i.state == shmetrics::layout::segment_state::closed ? "closed" : "dead";
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/dev/shm", prefix = "shmetrics";
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string flag = a.substr(0, a.find('='));
    if (flag == "--shm.dir" || flag == "--shm.prefix") {
      std::string v;
      if (a.find('=') != std::string::npos)
        v = a.substr(a.find('=') + 1);
      else if (i + 1 < argc)
        v = argv[++i];
      else {
        std::fprintf(stderr, "shmetrics-inspect: %s needs a value\n", flag.c_str());
        return 2;
      }
      (flag == "--shm.dir" ? dir : prefix) = v;
    } else if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      return 0;
    } else if (a.starts_with("--")) {
      std::fprintf(stderr, "shmetrics-inspect: unknown flag %s\n", a.c_str());
      return 2;
    } else {
      args.push_back(a);
    }
  }
  if (args.empty()) {
    std::fputs(usage, stderr);
    return 2;
  }
  auto segs = shmetrics::list_segments(dir, prefix);
  if (!segs) {
    std::fprintf(stderr, "shmetrics-inspect: %s\n", segs.error().message().c_str());
    return 1;
  }
  if (args[0] == "list") {
    if (segs->empty()) {
      std::fprintf(stderr, "shmetrics-inspect: no segments named %s.* in %s\n", prefix.c_str(),
                   dir.c_str());
      return 1;
    }
    std::printf("%-48s %8s %-16s %-7s %9s %9s %9s\n", "PATH", "PID", "INSTANCE", "STATE",
                "HB_AGE_S", "FAMILIES", "SERIES");
    for (auto& s : *segs) {
      auto r = shmetrics::segment_reader::open(s.path);
      if (!r) {
        std::printf("%-48s %8u %016llx %-7s  %s\n", s.path.c_str(), s.pid,
                    static_cast<unsigned long long>(s.instance), "invalid",
                    r.error().message().c_str());
        continue;
      }
      auto snap = r->refresh();
      auto i = r->info();
      double age = now_monotonic() - static_cast<double>(i.heartbeat_ns) * 1e-9;
      std::printf("%-48s %8u %016llx %-7s %9.1f %9llu %9llu%s\n", s.path.c_str(), i.writer_pid,
                  static_cast<unsigned long long>(i.instance_id), state_of(*r, i), age,
                  static_cast<unsigned long long>(i.families),
                  static_cast<unsigned long long>(i.series),
                  snap ? "" : ("  " + snap.error().message()).c_str());
    }
    return 0;
  }
  if (args[0] == "show") {
    int shown = 0, failed = 0;
    for (auto& s : *segs) {
      if (args.size() > 1 && args[1] != s.path && args[1] != s.file &&
          args[1] != std::to_string(s.pid))
        continue;
      auto r = shmetrics::segment_reader::open(s.path);
      auto snap = r ? r->snapshot() : shmetrics::result<shmetrics::segment_snapshot>(r.error());
      if (!snap) {
        std::fprintf(stderr, "shmetrics-inspect: %s\n", snap.error().message().c_str());
        ++failed;
        continue;
      }
      std::string text;
      shmetrics::encode_text(snap->families, text);
      std::printf("# segment %s pid %u\n%s", s.path.c_str(), snap->info.writer_pid, text.c_str());
      ++shown;
    }
    if (shown == 0 && failed == 0) {
      std::fprintf(stderr, "shmetrics-inspect: no segment matches%s%s in %s (prefix %s)\n",
                   args.size() > 1 ? " " : "", args.size() > 1 ? args[1].c_str() : "", dir.c_str(),
                   prefix.c_str());
      return 1;
    }
    return failed ? 1 : 0;
  }
  std::fprintf(stderr, "shmetrics-inspect: unknown command %s\n%s", args[0].c_str(), usage);
  return 2;
}
