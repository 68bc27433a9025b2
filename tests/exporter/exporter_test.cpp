// shmetrics-exporter end to end: real writer processes, a real exporter process on a
// free port, real HTTP, promtool, prometheus_client's parsers and a real Prometheus.
#include <catch2/catch.hpp>

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "../support.hpp"

#ifndef EXPORTER_BIN
#error "EXPORTER_BIN must name shmetrics-exporter"
#endif
#ifndef SCRIPTED_WRITER
#error "SCRIPTED_WRITER must name the helper"
#endif

using namespace std::chrono_literals;

namespace {

/// A child process with stdin and stdout on pipes.
struct process {
  pid_t pid = -1;
  FILE* in = nullptr;
  FILE* out = nullptr;
  explicit process(const std::vector<std::string>& argv) {
    int to[2], from[2];
    REQUIRE(::pipe(to) == 0);
    REQUIRE(::pipe(from) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    posix_spawn_file_actions_addclose(&fa, to[1]);
    posix_spawn_file_actions_addclose(&fa, from[0]);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    REQUIRE(posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(to[0]);
    ::close(from[1]);
    in = ::fdopen(to[1], "w");
    out = ::fdopen(from[0], "r");
  }
  ~process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (in) std::fclose(in);
    if (out) std::fclose(out);
  }
  std::string line() {
    char buf[4096];
    if (!std::fgets(buf, sizeof buf, out)) return {};
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  void send(const std::string& cmd) {
    std::fprintf(in, "%s\n", cmd.c_str());
    std::fflush(in);
  }
  /// Sends commands, then waits until the writer has applied them.
  void run(std::initializer_list<std::string> cmds) {
    for (auto& c : cmds)
      send(c);
    send("sync");
    REQUIRE(line() == "ok");
  }
  int wait() {
    int st = 0;
    ::waitpid(pid, &st, 0);
    pid = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  void kill9() {
    ::kill(pid, SIGKILL);
    wait();
  }
};

struct writer : process {
  std::string path;
  writer(const test::unique_prefix& up, bool keep = true, std::string arena_bytes = "65536")
      : process({SCRIPTED_WRITER, up.dir, up.prefix, keep ? "keep" : "unlink", arena_bytes}) {
    path = line();
    REQUIRE(!path.empty());
  }
};

struct exporter : process {
  int port = 0;
  // `wrapper` runs first (e.g. unshare), then the exporter with its flags and `extra`.
  exporter(const test::unique_prefix& up, std::vector<std::string> extra = {},
           std::vector<std::string> wrapper = {})
      : process([&] {
          std::vector<std::string> a = std::move(wrapper);
          for (std::string x : {std::string(EXPORTER_BIN), std::string("--web.listen-address"),
                                std::string("127.0.0.1:0"), std::string("--shm.dir"), up.dir,
                                std::string("--shm.prefix"), up.prefix, std::string("--log.level"),
                                std::string("warn")})
            a.push_back(std::move(x));
          a.insert(a.end(), extra.begin(), extra.end());
          return a;
        }()) {
    std::string l = line();  // "listening on http://127.0.0.1:PORT/metrics"
    auto colon = l.rfind(':');
    REQUIRE(colon != std::string::npos);
    port = std::stoi(l.substr(colon + 1));
    REQUIRE(port > 0);
  }
  httplib::Result get(const std::string& path, httplib::Headers h = {}) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(10, 0);
    return c.Get(path.c_str(), h);
  }
  std::string metrics() {
    auto r = get("/metrics");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return r->body;
  }
  /// Sample lines as "name{labels}" -> value.
  std::map<std::string, double> samples() { return test::parse_samples(metrics()); }
};

std::string write_tmp(const std::string& name, const std::string& text) {
  std::string p = "/tmp/" + name;
  std::ofstream(p) << text;
  return p;
}

}  // namespace

TEST_CASE("the exporter serves what writers wrote, merged across processes", "[exporter][merge]") {
  test::unique_prefix up;
  writer w1(up), w2(up);
  w1.run({"counter req_total a 3", "gauge g_sum sum x 1", "gauge g_max max x 1",
          "gauge g_min min x 1", "gauge g_live live_sum x 1", "hist lat 0.5",
          "counter only_one b 2"});
  w2.run({"counter req_total a 4", "gauge g_sum sum x 2", "gauge g_max max x 5",
          "gauge g_min min x 7", "gauge g_live live_sum x 2", "hist lat 3"});
  exporter e(up);
  auto s = e.samples();
  CHECK(s["req_total{k=\"a\"}"] == 7);
  CHECK(s["only_one_total{k=\"b\"}"] == 2);
  CHECK(s["g_sum{k=\"x\"}"] == 3);
  CHECK(s["g_max{k=\"x\"}"] == 5);
  CHECK(s["g_min{k=\"x\"}"] == 1);
  CHECK(s["g_live{k=\"x\"}"] == 3);
  CHECK(s["lat_bucket{le=\"1.0\"}"] == 1);
  CHECK(s["lat_bucket{le=\"5.0\"}"] == 2);
  CHECK(s["lat_bucket{le=\"+Inf\"}"] == 2);
  CHECK(s["lat_count"] == 2);
  CHECK(s["lat_sum"] == 3.5);
  CHECK(s["shmetrics_exporter_segments{state=\"alive\"}"] == 2);

  SECTION("latest follows the most recent set across writers") {
    w1.run({"gauge g_latest latest x 10"});
    std::this_thread::sleep_for(2ms);
    w2.run({"gauge g_latest latest x 20"});
    CHECK(e.samples()["g_latest{k=\"x\"}"] == 20);
    std::this_thread::sleep_for(2ms);
    w1.run({"gauge g_latest latest x 30"});
    CHECK(e.samples()["g_latest{k=\"x\"}"] == 30);
  }

  SECTION("a dead writer's counters keep counting; its live_* gauges go") {
    w2.kill9();
    auto d = e.samples();
    CHECK(d["req_total{k=\"a\"}"] == 7);
    CHECK(d["lat_count"] == 2);
    CHECK(d["g_sum{k=\"x\"}"] == 3);   // sum keeps the dead writer's gauge
    CHECK(d["g_live{k=\"x\"}"] == 1);  // live_sum does not
    CHECK(d["shmetrics_exporter_segments{state=\"dead\"}"] == 1);
    auto js = e.get("/segments");
    REQUIRE(js);
    CHECK(js->body.find("\"state\": \"dead\"") != std::string::npos);

    // A restarted writer starts from zero; the merged counter does not go back.
    writer w3(up);
    w3.run({"counter req_total a 1"});
    CHECK(e.samples()["req_total{k=\"a\"}"] == 8);
  }

  SECTION("a writer that exits cleanly and removes its segment is folded, not lost") {
    writer w4(up, false);
    w4.run({"counter req_total a 100", "gauge g_sum sum x 100"});
    CHECK(e.samples()["req_total{k=\"a\"}"] == 107);
    w4.send("exit");
    REQUIRE(w4.wait() == 0);
    REQUIRE(::access(w4.path.c_str(), F_OK) != 0);
    auto after = e.samples();
    CHECK(after["req_total{k=\"a\"}"] == 107);
    CHECK(after["g_sum{k=\"x\"}"] == 3);  // gauges of removed writers are gone
    CHECK(after["shmetrics_exporter_retired_segments_total"] == 1);
  }
}

TEST_CASE("one exporter serves several prefixes, merged as one set of writers",
          "[exporter][prefixes]") {
  test::unique_prefix a, b;
  writer wa(a), wb(b);
  wa.run({"counter req_total a 3", "gauge g_max max x 4", "hist lat 0.5", "counter only_a c 1"});
  wb.run({"counter req_total a 4", "gauge g_max max x 9", "hist lat 3", "counter only_b c 2"});
  // --shm.prefix repeated: the second adds to the first.
  exporter e(a, {"--shm.prefix", b.prefix});
  auto s = e.samples();
  CHECK(s["req_total{k=\"a\"}"] == 7);  // the same family from both prefixes merges
  CHECK(s["g_max{k=\"x\"}"] == 9);
  CHECK(s["lat_count"] == 2);
  CHECK(s["lat_bucket{le=\"1.0\"}"] == 1);
  CHECK(s["only_a_total{k=\"c\"}"] == 1);
  CHECK(s["only_b_total{k=\"c\"}"] == 2);
  CHECK(s["shmetrics_exporter_segments{state=\"alive\"}"] == 2);
  auto js = e.get("/segments");
  REQUIRE(js);
  CHECK(js->body.find(wa.path) != std::string::npos);
  CHECK(js->body.find(wb.path) != std::string::npos);

  // A writer of the second prefix dies: its counters keep counting in the merged total.
  wb.kill9();
  auto d = e.samples();
  CHECK(d["req_total{k=\"a\"}"] == 7);
  CHECK(d["shmetrics_exporter_segments{state=\"dead\"}"] == 1);

  // One prefix alone serves only its writers; a prefix given twice serves them once.
  exporter only_a(a);
  CHECK(only_a.samples()["req_total{k=\"a\"}"] == 3);
  exporter twice(a, {"--shm.prefix", a.prefix});
  auto t = twice.samples();
  CHECK(t["req_total{k=\"a\"}"] == 3);
  CHECK(t["shmetrics_exporter_segments{state=\"alive\"}"] == 1);
}

TEST_CASE("/segments reports writers as of now, with no scraper", "[exporter][segments]") {
  test::unique_prefix up;
  writer w(up);
  w.run({"counter req_total a 1"});
  exporter e(up);
  auto before = e.get("/segments");
  REQUIRE(before);
  CHECK(before->body.find("\"state\": \"alive\"") != std::string::npos);
  w.kill9();
  std::this_thread::sleep_for(1100ms);
  auto after = e.get("/segments");  // no /metrics scrape in between
  REQUIRE(after);
  INFO(after->body);
  CHECK(after->body.find("\"state\": \"dead\"") != std::string::npos);
  CHECK(after->body.find("\"state\": \"alive\"") == std::string::npos);
}

TEST_CASE("dead segments are removed after --shm.gc-dead-after, totals kept", "[exporter][gc]") {
  test::unique_prefix up;
  exporter e(up, {"--shm.gc-dead-after", "200ms"});
  writer w(up);
  w.run({"counter req_total a 5", "hist lat 1"});
  writer live(up);
  live.run({"counter req_total a 1"});
  CHECK(e.samples()["req_total{k=\"a\"}"] == 6);
  w.kill9();
  CHECK(e.samples()["req_total{k=\"a\"}"] == 6);  // dead, not yet collected
  std::this_thread::sleep_for(400ms);
  auto s = e.samples();
  CHECK(::access(w.path.c_str(), F_OK) != 0);  // reaped
  CHECK(::access(live.path.c_str(), F_OK) == 0);
  CHECK(s["req_total{k=\"a\"}"] == 6);
  CHECK(s["lat_count"] == 1);
  CHECK(s["shmetrics_exporter_retired_segments_total"] == 1);
}

TEST_CASE("a removed series leaves /metrics; re-added, it counts from its new value",
          "[exporter][remove]") {
  test::unique_prefix up;
  exporter e(up, {"--shm.gc-dead-after", "200ms"});
  writer w(up);
  w.run({"counter req_total a 5", "counter req_total b 2"});
  auto s = e.samples();
  CHECK(s["req_total{k=\"a\"}"] == 5);
  w.run({"remove req_total a"});
  s = e.samples();
  CHECK(s.count("req_total{k=\"a\"}") == 0);
  CHECK(s["req_total{k=\"b\"}"] == 2);
  // Re-added after a scrape that did not serve it: a new series, from its new value (a
  // counter reset, which rate() handles).
  w.run({"counter req_total a 1"});
  CHECK(e.samples()["req_total{k=\"a\"}"] == 1);
  // Removed and re-added between two scrapes: the exporter's monotonic guard
  // (keep_monotonic) sees the same series read less and holds it at its last value, adding
  // the new increments on top.
  w.run({"counter req_total a 4"});
  CHECK(e.samples()["req_total{k=\"a\"}"] == 5);
  w.run({"remove req_total a", "counter req_total a 1"});
  CHECK(e.samples()["req_total{k=\"a\"}"] == 5);
  w.run({"counter req_total a 2"});
  CHECK(e.samples()["req_total{k=\"a\"}"] == 7);
  // A dead writer's removed series are not folded into the retired totals.
  w.run({"remove req_total b"});
  w.kill9();
  CHECK(e.samples().count("req_total{k=\"b\"}") == 0);  // dead, not yet collected
  std::this_thread::sleep_for(400ms);
  s = e.samples();
  CHECK(::access(w.path.c_str(), F_OK) != 0);  // reaped, folded
  CHECK(s.count("req_total{k=\"b\"}") == 0);
  CHECK(s["req_total{k=\"a\"}"] == 7);
}

TEST_CASE("the exporter logs an empty match and a dying writer once; unfinished files are reaped",
          "[exporter][gc][log]") {
  test::unique_prefix up;
  const std::string log = "/tmp/" + up.prefix + ".log";
  exporter e(up, {"--shm.gc-dead-after", "200ms", "--log.level", "info"},
             {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>" + log});
  auto log_count = [&](const std::string& needle) {
    std::ifstream in(log);
    std::string l;
    int n = 0;
    while (std::getline(in, l))
      n += l.find(needle) != std::string::npos;
    return n;
  };
  e.metrics();
  e.metrics();
  CHECK(log_count("msg=\"no segment matches\"") == 1);
  CHECK(log_count(up.prefix + ".<pid>.<instance>") == 1);

  // A writer killed between creating its file and publishing it: never readable.
  const std::string unfinished = up.dir + "/" + up.prefix + ".999997.00000000000000cc";
  std::ofstream(unfinished) << std::string(8192, '\0');
  writer w(up);
  w.run({"counter req_total a 1"});
  e.metrics();
  CHECK(::access(unfinished.c_str(), F_OK) == 0);  // not before the grace period
  std::this_thread::sleep_for(2500ms);
  e.metrics();
  e.metrics();
  CHECK(::access(unfinished.c_str(), F_OK) != 0);
  CHECK(log_count("msg=\"unfinished segment removed\"") == 1);
  CHECK(::access(w.path.c_str(), F_OK) == 0);  // a live writer's segment stays

  w.kill9();
  e.metrics();
  e.metrics();
  CHECK(log_count("msg=\"writer died\"") == 1);
  ::unlink(log.c_str());
}

TEST_CASE("a family defined differently by two writers is a conflict, not served wrong",
          "[exporter][conflict]") {
  test::unique_prefix up;
  writer w1(up), w2(up);
  w1.run({"counter thing a 1"});
  w2.run({"gauge thing sum a 5"});
  exporter e(up);
  std::string text = e.metrics();
  auto s = e.samples();
  CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"family_conflict\"}"] == 1);
  // exactly one of the two definitions is served, whole
  bool counter = text.find("# TYPE thing_total counter") != std::string::npos;
  bool gauge = text.find("# TYPE thing gauge") != std::string::npos;
  CHECK(counter != gauge);
  // counted once, however many scrapes see it
  CHECK(e.samples()["shmetrics_exporter_segment_errors_total{reason=\"family_conflict\"}"] == 1);
}

TEST_CASE("a served counter or _sum never goes back when a writer leaves (float order)",
          "[exporter][monotonic]") {
  // Three writers add 0.1, 0.2 and 0.3 in path order: summed in that order the total is
  // 0.6000000000000001. When the first leaves, its total is folded in last: 0.2 + 0.3 +
  // 0.1 = 0.6, a decrease Prometheus reads as a counter reset.
  test::unique_prefix up;
  std::vector<std::unique_ptr<writer>> w;
  for (int i = 0; i < 3; ++i)
    w.push_back(std::make_unique<writer>(up, false));
  std::sort(w.begin(), w.end(), [](auto& a, auto& b) { return a->path < b->path; });
  const char* amount[] = {"0.1", "0.2", "0.3"};
  for (int i = 0; i < 3; ++i)
    w[i]->run({std::string("counter x a ") + amount[i], std::string("hist lat ") + amount[i]});
  exporter e(up);
  auto before = e.samples();
  REQUIRE(before["x_total{k=\"a\"}"] == 0.1 + 0.2 + 0.3);
  REQUIRE(before["lat_sum"] == 0.1 + 0.2 + 0.3);
  w[0]->send("exit");
  REQUIRE(w[0]->wait() == 0);
  REQUIRE(::access(w[0]->path.c_str(), F_OK) != 0);
  auto after = e.samples();
  CHECK(after["shmetrics_exporter_retired_segments_total"] == 1);
  CHECK(after["x_total{k=\"a\"}"] >= before["x_total{k=\"a\"}"]);
  CHECK(after["lat_sum"] >= before["lat_sum"]);
  CHECK(after["lat_count"] == 3);
  // It keeps counting what it sees from there.
  w[1]->run({"counter x a 1", "hist lat 1"});
  auto later = e.samples();
  CHECK(later["x_total{k=\"a\"}"] >= after["x_total{k=\"a\"}"] + 0.999);
  CHECK(later["lat_sum"] >= after["lat_sum"] + 0.999);
  CHECK(later["lat_count"] == 4);
  // Negative observations still lower _sum (a new observation explains the drop).
  w[1]->run({"hist lat -5"});
  CHECK(e.samples()["lat_sum"] < later["lat_sum"] - 4);
}

TEST_CASE("a family whose definition changes: the newest writer's wins, counts never go back",
          "[exporter][conflict][monotonic]") {
  test::unique_prefix up;
  exporter e(up);
  auto old_writer = std::make_unique<writer>(up, false);
  old_writer->run({"hist lat 0.5", "hist lat 1.5", "hist lat 3", "hist lat 4", "hist lat 9"});
  auto before = e.samples();
  REQUIRE(before["lat_count"] == 5);
  REQUIRE(before["lat_bucket{le=\"1.0\"}"] == 1);
  // An upgrade: the new engine's histogram has other buckets; the old one exits.
  std::this_thread::sleep_for(5ms);  // a later creation time
  writer upgraded(up);
  upgraded.run({"histb lat 1,10 0.5"});
  old_writer->send("exit");
  REQUIRE(old_writer->wait() == 0);
  std::string text = e.metrics();
  CHECK(text.find("lat_bucket{le=\"10.0\"}") != std::string::npos);  // the new definition
  CHECK(text.find("lat_bucket{le=\"2.0\"}") == std::string::npos);
  auto s = test::parse_samples(text);
  CHECK(s["lat_count"] >= 5);               // not back to 1
  CHECK(s["lat_bucket{le=\"1.0\"}"] >= 1);  // a bound both definitions have
  CHECK(s["lat_sum"] >= before["lat_sum"]);
  CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"family_conflict\"}"] >= 1);
  // and counts on from there: two more observations add two
  upgraded.run({"histb lat 1,10 0.5", "histb lat 1,10 5"});
  auto s2 = e.samples();
  CHECK(s2["lat_count"] == s["lat_count"] + 2);
  CHECK(s2["lat_bucket{le=\"1.0\"}"] == s["lat_bucket{le=\"1.0\"}"] + 1);
  CHECK(s2["lat_bucket{le=\"10.0\"}"] >= s2["lat_bucket{le=\"1.0\"}"]);
  CHECK(s2["lat_bucket{le=\"+Inf\"}"] == s2["lat_count"]);
}

TEST_CASE("families whose sample names collide are served once; the exporter's own names win",
          "[exporter][conflict]") {
  test::unique_prefix up;
  writer w1(up), w2(up);
  w1.run({"counter x a 1", "hist h 1", "gauge shmetrics_exporter_segments sum q 42"});
  w2.run({"gauge x_total sum a 5", "gauge h_count sum a 5", "gauge h_bucket sum a 5"});
  exporter e(up);
  std::string text = e.metrics();
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1))
      ++n;
    return n;
  };
  CHECK(count("# TYPE x_total ") == 1);
  CHECK(count("# TYPE h_count ") + count("# TYPE h histogram") == 1);
  CHECK(count("# TYPE h_bucket ") + count("# TYPE h histogram") == 1);
  CHECK(count("# TYPE shmetrics_exporter_segments gauge") == 1);
  CHECK(text.find("shmetrics_exporter_segments{state=\"alive\"} 2") != std::string::npos);
  CHECK(text.find("shmetrics_exporter_segments{k=\"q\"}") == std::string::npos);
  auto s = test::parse_samples(text);
  CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"family_conflict\"}"] >= 3);
  // promtool's parser rejects a second TYPE line for a name (exit 1; 3 is lint only)
  auto [rc, out] =
      test::run("promtool check metrics < " + write_tmp(up.prefix + ".prom", text) + " 2>&1");
  INFO(out);
  CHECK((rc == 0 || rc == 3));
}

TEST_CASE("a histogram not served leaves the writer's later series intact",
          "[exporter][conflict]") {
  // Each writer has one histogram that conflicts with the other's counter, so whichever
  // is served first, one writer's histogram is skipped: its bucket counts must be passed
  // over, not read as the next series'.
  test::unique_prefix up;
  writer w1(up), w2(up);
  w1.run({"counter thing a 1", "hist thing2 0.5", "hist lat 0.5", "counter after a 3"});
  w2.run({"hist thing 4", "counter thing2 a 1", "hist lat 3", "counter after a 4"});
  exporter e(up);
  auto s = e.samples();
  CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"family_conflict\"}"] == 2);
  CHECK(s["lat_bucket{le=\"1.0\"}"] == 1);
  CHECK(s["lat_bucket{le=\"5.0\"}"] == 2);
  CHECK(s["lat_count"] == 2);
  CHECK(s["lat_sum"] == 3.5);
  CHECK(s["after_total{k=\"a\"}"] == 7);
  // served whole from one writer: the counter 1, or the histogram's one observation
  CHECK(s["thing_total{k=\"a\"}"] + s["thing_count"] == 1);
  CHECK(s["thing2_total{k=\"a\"}"] + s["thing2_count"] == 1);
}

TEST_CASE("bad files are counted and skipped; good segments keep being served",
          "[exporter][corrupt]") {
  test::unique_prefix up;
  writer w(up);
  w.run({"counter req_total a 2"});
  std::string junk = up.dir + "/" + up.prefix + ".999999.00000000000000aa";
  std::ofstream(junk) << std::string(4096, 'x');
  std::string empty = up.dir + "/" + up.prefix + ".999998.00000000000000bb";
  std::ofstream(empty).flush();
  exporter e(up);
  auto s = e.samples();
  CHECK(s["req_total{k=\"a\"}"] == 2);
  CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"bad_magic\"}"] == 1);
  CHECK(s["shmetrics_exporter_segments{state=\"invalid\"}"] == 1);  // the empty one is "not ready"
  CHECK(e.samples()["shmetrics_exporter_segment_errors_total{reason=\"bad_magic\"}"] == 1);
}

TEST_CASE("a segment the exporter has no memory to read is skipped and counted; the others served",
          "[exporter][corrupt][.rlimit]") {
  // 256 series with 1 MiB label values: a valid segment, but reading it takes ~256 MiB
  // of copies, more than the exporter's data limit (prlimit --data) allows. Its read
  // fails with bad_alloc; that one segment is counted, the other is served fresh.
  test::unique_prefix up;
  writer small(up);
  small.run({"counter req_total a 2"});
  writer huge(up, true, std::to_string(300u << 20));
  huge.run({"wide big 256 1048576"});
  exporter e(up, {}, {"/usr/bin/prlimit", "--data=160000000", "--"});
  auto s = e.samples();
  CHECK(s["req_total{k=\"a\"}"] == 2);
  CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"out_of_memory\"}"] == 1);
  small.run({"counter req_total a 3"});
  auto s2 = e.samples();
  CHECK(s2["req_total{k=\"a\"}"] == 5);  // fresh, not the previous collection
  CHECK(s2["shmetrics_exporter_segment_errors_total{reason=\"out_of_memory\"}"] == 1);
  CHECK(e.get("/healthz")->status == 200);
}

TEST_CASE("a segment that shrinks while served is reported; the others keep being served",
          "[exporter][corrupt]") {
  test::unique_prefix up;
  writer good(up), victim(up);
  good.run({"counter req_total a 2"});
  victim.run({"counter req_total a 5", "counter other_total b 1"});
  exporter e(up);
  CHECK(e.samples()["req_total{k=\"a\"}"] == 7);
  // Someone truncates the victim's file: reading its mapped pages would be SIGBUS.
  REQUIRE(::truncate(victim.path.c_str(), 0) == 0);
  for (int i = 0; i < 3; ++i) {
    auto s = e.samples();
    CHECK(s["req_total{k=\"a\"}"] == 7);  // the victim's last good values, not zeros
    CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"shrunk\"}"] == 1);
  }
  good.run({"counter req_total a 1"});
  CHECK(e.samples()["req_total{k=\"a\"}"] == 8);
}

// Hidden ([.foreign_owner]): its own meson test, which skips (77) when not root. A user
// namespace does not help: a file of another real uid is needed, and only root can chown.
TEST_CASE("segments owned by another user are refused unless allowed",
          "[exporter][security][.foreign_owner]") {
  if (::geteuid() != 0) test::skip("needs root to chown a segment to another user");
  test::unique_prefix up;
  writer mine(up), planted(up);
  mine.run({"counter req_total a 2"});
  planted.run({"counter req_total a 1000"});
  REQUIRE(::chown(planted.path.c_str(), 65534, 65534) == 0);
  {
    exporter e(up);
    auto s = e.samples();
    CHECK(s["req_total{k=\"a\"}"] == 2);
    CHECK(s["shmetrics_exporter_segment_errors_total{reason=\"foreign_owner\"}"] == 1);
    CHECK(s["shmetrics_exporter_segments{state=\"invalid\"}"] == 1);
    auto seg = e.get("/segments");
    REQUIRE(seg);
    CHECK(seg->body.find("owned by uid 65534") != std::string::npos);
  }
  exporter allowed(up, {"--shm.allow-other-users"});
  CHECK(allowed.samples()["req_total{k=\"a\"}"] == 1002);
}

// The gzip body as sent (not inflated by httplib): RFC 1952 as Python's gzip module and
// gzip(1) read it (header, deflate stream, CRC-32 and size trailer), for both formats,
// with a body of a few hundred KB (several deflate blocks). The compressor is libdeflate
// or zlib, whichever the build found (src/meson.build): run in both builds.
TEST_CASE("a gzip body is valid gzip that gzip -d and Python inflate", "[exporter][http]") {
  test::unique_prefix up;
  writer w(up, true, "1048576");
  w.run({"wide wide_total 240 1000", "counter req_total a 2", "hist lat 0.5"});
  exporter e(up);
  httplib::Client c("127.0.0.1", e.port);
  c.set_read_timeout(10, 0);
  c.set_decompress(false);
  for (const char* accept : {"text/plain", "application/openmetrics-text;version=1.0.0"}) {
    INFO(accept);
    auto plain = c.Get("/metrics", {{"Accept", accept}, {"Accept-Encoding", "identity"}});
    auto gz = c.Get("/metrics", {{"Accept", accept}, {"Accept-Encoding", "gzip"}});
    REQUIRE(plain);
    REQUIRE(gz);
    REQUIRE(gz->get_header_value("Content-Encoding") == "gzip");
    REQUIRE(gz->body.size() > 18);
    CHECK(gz->body.size() < plain->body.size() / 4);
    // ID1 ID2 CM=8 (deflate)
    CHECK(gz->body.substr(0, 3) == std::string("\x1f\x8b\x08"));
    std::string z = write_tmp(up.prefix + ".gz", gz->body);
    auto [py_rc, py] = test::run(
        "/usr/bin/python3 -c 'import gzip,sys; sys.stdout.buffer.write(gzip.decompress("
        "open(sys.argv[1],\"rb\").read()))' " +
        z + " 2>&1");
    auto [gz_rc, gzd] = test::run("gzip -t " + z + " 2>&1 && gzip -dc " + z + " 2>&1");
    std::remove(z.c_str());
    REQUIRE(py_rc == 0);
    REQUIRE(gz_rc == 0);
    CHECK(py == gzd);
    // The same exposition as the identity body (another collection: the exporter's own
    // metrics differ, the writer's series do not).
    auto writers = [](const std::string& body) {
      std::string kept;
      std::istringstream in(body);
      for (std::string l; std::getline(in, l);)
        if (l.starts_with("wide_total") || l.starts_with("req_total") || l.starts_with("lat_") ||
            l.starts_with("# EOF"))
          kept += l + "\n";
      return kept;
    };
    CHECK(std::count(py.begin(), py.end(), '\n') > 240);
    CHECK(writers(py) == writers(plain->body));
    CHECK(writers(py).find("wide_total{k=\"239") != std::string::npos);
    if (std::string(accept).starts_with("application/openmetrics")) CHECK(py.ends_with("# EOF\n"));
  }
}

TEST_CASE("content negotiation, gzip, HEAD and the other endpoints", "[exporter][http]") {
  test::unique_prefix up;
  writer w(up);
  w.run({"counter req_total a 2", "hist lat 0.5"});
  exporter e(up);

  auto plain = e.get("/metrics");
  REQUIRE(plain);
  CHECK(plain->get_header_value("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(plain->body.find("# EOF") == std::string::npos);

  // What Prometheus 2.42 sends.
  auto om =
      e.get("/metrics", {{"Accept",
                          "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                          "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}});
  REQUIRE(om);
  CHECK(om->get_header_value("Content-Type") ==
        "application/openmetrics-text; version=1.0.0; charset=utf-8");
  CHECK(om->body.ends_with("# EOF\n"));
  CHECK(om->body.find("# TYPE req counter\n") != std::string::npos);
  CHECK(om->body.find("req_total{k=\"a\"} 2.0\n") != std::string::npos);
  CHECK(om->body.find("lat_bucket{le=\"+Inf\"} 1\n") != std::string::npos);

  // Text preferred by q: 0.0.4.
  auto txt = e.get("/metrics", {{"Accept", "application/openmetrics-text;q=0.2,text/plain;q=0.9"}});
  CHECK(txt->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"));

  auto gz = e.get("/metrics", {{"Accept-Encoding", "gzip"}});
  REQUIRE(gz);
  CHECK(gz->get_header_value("Content-Encoding") == "gzip");
  CHECK(gz->body.find("req_total{k=\"a\"} 2.0") != std::string::npos);  // httplib inflated it

  httplib::Client c("127.0.0.1", e.port);
  auto head = c.Head("/metrics");
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->body.empty());

  CHECK(e.get("/healthz")->status == 200);
  CHECK(e.get("/nope")->status == 404);
  auto landing = e.get("/");
  CHECK(landing->body.find("href=\"/metrics\"") != std::string::npos);

  auto seg = e.get("/segments");
  REQUIRE(seg);
  CHECK(seg->get_header_value("Content-Type") == "application/json");
  std::string js = write_tmp(up.prefix + ".json", seg->body);
  auto [rc, out] = test::run(
      "/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d[\"segments\"][0]; "
      "assert s[\"state\"]==\"alive\" and s[\"families\"]==2 and s[\"series\"]==2 and "
      "s[\"pid\"]>0; "
      "assert s[\"heartbeat_age_seconds\"] < 5 and s[\"error\"] is None; print(\"ok\")' " +
      js + " 2>&1");
  INFO(out);
  CHECK(rc == 0);
  std::remove(js.c_str());

  SECTION("concurrent scrapes all succeed") {
    std::vector<std::thread> ts;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i)
      ts.emplace_back([&] {
        for (int k = 0; k < 10; ++k) {
          httplib::Client cc("127.0.0.1", e.port);
          auto r = cc.Get("/metrics");
          if (r && r->status == 200 && r->body.find("req_total") != std::string::npos) ++ok;
        }
      });
    for (auto& t : ts)
      t.join();
    CHECK(ok.load() == 80);
  }
}

TEST_CASE("promtool and prometheus_client's parsers accept what the exporter serves",
          "[exporter][promtool][python]") {
  test::unique_prefix up;
  writer w(up);
  w.run({"counter vllm:request_success_total stop 2", "gauge vllm:num_requests_running latest x 3",
         "hist vllm:e2e_request_latency_seconds 0.5", "counter plain_total a 1"});
  exporter e(up);
  std::string text = write_tmp(up.prefix + ".prom", e.metrics());
  auto [rc, out] = test::run("promtool check metrics < " + text + " 2>&1");
  INFO(out);
  CHECK((rc == 0 || rc == 3));
  std::istringstream lines(out);
  std::string l;
  while (std::getline(lines, l)) {
    INFO(l);
    if (!l.empty()) CHECK(l.find("metric names should not contain ':'") != std::string::npos);
  }

  auto om = e.get("/metrics", {{"Accept", "application/openmetrics-text;version=1.0.0"}});
  std::string omfile = write_tmp(up.prefix + ".om", om->body);
  auto [rc2, out2] = test::run(
      "/usr/bin/python3 -c 'import sys\n"
      "from prometheus_client.openmetrics.parser import text_string_to_metric_families as om\n"
      "from prometheus_client.parser import text_string_to_metric_families as t4\n"
      "a = list(om(open(sys.argv[1]).read()))\n"
      "b = list(t4(open(sys.argv[2]).read()))\n"
      "assert {f.name for f in a} == {f.name for f in b}, (sorted(f.name for f in a), "
      "sorted(f.name for f in b))\n"
      "print(\"ok\", len(a))' " +
      omfile + " " + text + " 2>&1");
  INFO(out2);
  CHECK(rc2 == 0);
  std::remove(text.c_str());
  std::remove(omfile.c_str());
}

TEST_CASE("a real Prometheus server scrapes the exporter", "[exporter][prometheus]") {
  test::unique_prefix up;
  writer w(up);
  w.run({"counter vllm:prompt_tokens_total m 42", "hist vllm:e2e_request_latency_seconds 0.5"});
  exporter e(up);
  test::prometheus_server prom("/tmp/" + up.prefix + "-prom", e.port);
  httplib::Client c("127.0.0.1", prom.port);
  std::string body;
  bool found = false;
  for (int i = 0; i < 60 && !found; ++i) {
    std::this_thread::sleep_for(500ms);
    auto r = c.Get("/api/v1/query?query=vllm%3Aprompt_tokens_total");
    if (r && r->status == 200) {
      body = r->body;
      found = body.find("\"42\"") != std::string::npos;
    }
  }
  INFO(body);
  CHECK(found);
  auto up_q = c.Get("/api/v1/query?query=up%7Bjob%3D%22shmetrics%22%7D");
  REQUIRE(up_q);
  CHECK(up_q->body.find("\"1\"") != std::string::npos);
}

TEST_CASE("bad flags are refused with a one-line error naming the flag", "[exporter][flags]") {
  auto check = [](const std::string& args, const std::string& needle) {
    auto [rc, out] = test::run(std::string(EXPORTER_BIN) + " " + args + " 2>&1");
    INFO(args << " -> " << out);
    CHECK(rc == 2);
    CHECK(out.find(needle) != std::string::npos);
    CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  };
  check("--no-such-flag", "--no-such-flag");
  check("--web.listen-address", "--web.listen-address");
  check("--web.listen-address=nonsense", "--web.listen-address");
  check("--log.level loud", "--log.level");
  check("--shm.gc-dead-after=soon", "--shm.gc-dead-after");
  check("--web.telemetry-path=metrics", "--web.telemetry-path");
  check("--shm.prefix a --shm.prefix=b/c", "--shm.prefix");
  auto [rc, out] = test::run(std::string(EXPORTER_BIN) + " --version");
  CHECK(rc == 0);
  CHECK(out.find("segment format " + std::to_string(SHMETRICS_FORMAT_MAJOR) + "." +
                 std::to_string(SHMETRICS_FORMAT_MINOR)) != std::string::npos);
  auto [rc2, out2] = test::run(std::string(EXPORTER_BIN) + " --help");
  CHECK(rc2 == 0);
  CHECK(out2.find("--shm.prefix") != std::string::npos);
  CHECK(out2.find("repeat") != std::string::npos);  // several prefixes
}

// Hidden ([.pidns]): its own meson test. Without root the PID namespace comes inside a user
// namespace (--user --map-root-user); it skips (77) where neither can be made.
TEST_CASE("a sidecar in its own PID namespace tells live writers from dead ones",
          "[exporter][.pidns]") {
  std::vector<std::string> ns = {"/usr/bin/unshare"};
  if (::geteuid() != 0) ns.insert(ns.end(), {"--user", "--map-root-user"});
  ns.insert(ns.end(), {"--pid", "--fork", "--kill-child", "--mount-proc"});
  std::string probe;
  for (auto& a : ns)
    probe += a + " ";
  if (auto [rc, out] = test::run(probe + "true 2>&1"); rc != 0)
    test::skip("cannot make a PID namespace: " + probe +
               "true: " + out.substr(0, out.find_last_not_of('\n') + 1));
  test::unique_prefix up;
  writer w(up);
  w.run({"counter req_total a 5", "gauge g live_sum x 2"});
  // The exporter cannot see the writer's pid: only the lock and the heartbeat tell.
  exporter e(up, {}, ns);
  auto s = e.samples();
  CHECK(s["shmetrics_exporter_segments{state=\"alive\"}"] == 1);
  CHECK(s["g{k=\"x\"}"] == 2);
  w.kill9();
  auto d = e.samples();
  CHECK(d["shmetrics_exporter_segments{state=\"dead\"}"] == 1);
  CHECK(d["req_total{k=\"a\"}"] == 5);
  CHECK(d.count("g{k=\"x\"}") == 0);
}

namespace {

/// Open fds of `pid`, counted as process_open_fds counts them.
double open_fds_of(pid_t pid) {
  auto [rc, out] = test::run("ls /proc/" + std::to_string(pid) + "/fd | wc -l");
  REQUIRE(rc == 0);
  return std::stod(out);
}

}  // namespace

TEST_CASE("writers' process_* families replace the exporter's own", "[exporter][process]") {
  test::unique_prefix up;
  writer w1(up);
  std::this_thread::sleep_for(50ms);  // distinct start times (10 ms clock ticks)
  writer w2(up);
  w1.run({"counter req_total a 1"});
  std::this_thread::sleep_for(50ms);
  exporter e(up);

  // Without process_metrics in any writer, process_* describe the exporter.
  auto own = e.samples();
  CHECK(own.at("process_start_time_seconds") ==
        Approx(test::process_start_time_of(e.pid)).margin(0.02));

  // Writers that record their process: their figures, merged, and the exporter's are gone.
  w1.run({"process"});
  w2.run({"process"});
  std::this_thread::sleep_for(150ms);  // a few of the writers' 50 ms samples
  std::string text = e.metrics();
  auto s = test::parse_samples(text);
  CHECK(s.at("process_start_time_seconds") ==
        Approx(test::process_start_time_of(w1.pid)).margin(0.02));
  CHECK(s.at("process_start_time_seconds") < test::process_start_time_of(e.pid));
  // (A sample taken while the other reads /proc/PID/fd sees one more: ask again.)
  double fds = s.at("process_open_fds");
  for (int i = 0; i < 10 && fds != open_fds_of(w1.pid) + open_fds_of(w2.pid); ++i)
    fds = e.samples().at("process_open_fds");
  CHECK(fds == open_fds_of(w1.pid) + open_fds_of(w2.pid));
  CHECK(s.at("process_resident_memory_bytes") > 0);
  CHECK(s.at("process_cpu_seconds_total") >= 0);
  for (const char* name :
       {"process_cpu_seconds_total", "process_start_time_seconds", "process_open_fds",
        "process_max_fds", "process_resident_memory_bytes", "process_virtual_memory_bytes"}) {
    INFO(name);
    std::string type_line = std::string("# TYPE ") + name + " ";
    std::size_t found = 0;
    for (auto at = text.find(type_line); at != std::string::npos; at = text.find(type_line, at + 1))
      ++found;
    CHECK(found == 1);
  }
  std::string file = write_tmp(up.prefix + ".process.prom", text);
  auto [rc, out] = test::run("promtool check metrics < " + file + " 2>&1");
  INFO(out);
  CHECK(rc == 0);
  std::remove(file.c_str());

  // The oldest live writer dies: the start time is the other's; CPU seconds never go back.
  double cpu_before = s.at("process_cpu_seconds_total");
  w1.kill9();
  auto after = e.samples();
  CHECK(after.at("process_start_time_seconds") ==
        Approx(test::process_start_time_of(w2.pid)).margin(0.02));
  CHECK(after.at("process_cpu_seconds_total") >= cpu_before);

  // Every writer gone: their CPU seconds stay (a counter); no gauge of the exporter's own
  // process stands in for the engine's.
  w2.kill9();
  auto gone = e.samples();
  CHECK(gone.at("process_cpu_seconds_total") >= after.at("process_cpu_seconds_total"));
  CHECK(gone.count("process_start_time_seconds") == 0);
  CHECK(gone.count("process_resident_memory_bytes") == 0);
}
