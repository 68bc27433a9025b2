// shmetrics-inspect against real writer processes, real segments in /dev/shm and
// damaged copies of them: outputs, exit codes and JSON shapes (parsed by Python).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>
#include <sys/stat.h>

#include <shmetrics/reader/segment_reader.hpp>
#include "../hostile_segment.hpp"
#include "../support.hpp"

#ifndef INSPECT
#error "INSPECT must name the shmetrics-inspect binary"
#endif
#ifndef WRITER_CHILD
#error "WRITER_CHILD must name the helper binary"
#endif

namespace {

// Runs the tool with stderr folded into stdout; returns (status, output).
std::pair<int, std::string> inspect(const std::string& args) {
  return test::run(std::string(INSPECT) + " " + args + " 2>&1");
}
// Stdout only (for JSON).
std::pair<int, std::string> inspect_out(const std::string& args) {
  return test::run(std::string(INSPECT) + " " + args + " 2>/dev/null");
}

// Writes `text` to a new temporary file; returns its path.
std::string temp_file(const std::string& text) {
  char path[] = "/tmp/shmetrics-inspect-test-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  ::close(fd);
  return path;
}

// Parses `json` with Python and runs `script` on it (as `d`); true if every assert held.
bool python_ok(const std::string& json, const std::string& script) {
  std::string data = temp_file(json);
  std::string code = temp_file("import json, sys\nd = json.load(open(sys.argv[1]))\n" + script +
                               "\nprint('PYOK')\n");
  auto [rc, out] = test::run("/usr/bin/python3 " + code + " " + data + " 2>&1");
  ::unlink(data.c_str());
  ::unlink(code.c_str());
  if (rc != 0) UNSCOPED_INFO("python: " << out << "\njson: " << json);
  return rc == 0 && out.find("PYOK") != std::string::npos;
}

std::string prefix_flags(const test::unique_prefix& up) {
  return "--shm.dir " + up.dir + " --shm.prefix " + up.prefix;
}

// A scratch directory, removed with everything in it.
struct scratch {
  std::string dir;
  scratch() {
    char t[] = "/tmp/shmetrics-inspect-XXXXXX";
    dir = ::mkdtemp(t);
  }
  ~scratch() { std::filesystem::remove_all(dir); }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
void poke(std::string& bytes, std::size_t off, T v) {
  std::memcpy(bytes.data() + off, &v, sizeof v);
}
template <class T>
T peek(const std::string& bytes, std::size_t off) {
  T v;
  std::memcpy(&v, bytes.data() + off, sizeof v);
  return v;
}

// A writer that ran to completion (state closed, file kept): ops_total{kind="a"} 2000.
std::string finished_writer(const test::unique_prefix& up) {
  test::child w({WRITER_CHILD, up.dir, up.prefix, "totals", "2", "1000"});
  std::string path = w.line();
  REQUIRE(!path.empty());
  REQUIRE(w.wait() == 0);
  return path;
}

std::size_t count_lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST_CASE("flags: help, version, both value forms, one-line usage errors", "[inspect]") {
  auto [rc, out] = inspect("--help");
  REQUIRE(rc == 0);
  REQUIRE(out.find("list") != std::string::npos);
  std::tie(rc, out) = inspect("--version");
  REQUIRE(rc == 0);
  REQUIRE(out == std::string("shmetrics-inspect ") + SHMETRICS_VERSION_STRING +
                     " (segment format " + std::to_string(SHMETRICS_FORMAT_MAJOR) + "." +
                     std::to_string(SHMETRICS_FORMAT_MINOR) + ")\n");
  for (const char* bad : {"--bogus list", "list --shm.dir", "--json dump x", "--interval 0 watch",
                          "--interval=abc watch", "--label '1x=y' show", "--json=1 list",
                          "frobnicate", "--format xml show", "--top -3 watch"}) {
    std::tie(rc, out) = inspect(bad);
    INFO(bad << " -> " << out);
    REQUIRE(rc == 2);
    REQUIRE(count_lines(out) == 1);
  }
  std::tie(rc, out) = inspect("--bogus=1 list");
  REQUIRE(out.find("--bogus") != std::string::npos);
  std::tie(rc, out) = inspect("list --shm.dir");
  REQUIRE(out.find("--shm.dir needs a value") != std::string::npos);
  std::tie(rc, out) = inspect("dump --json x");
  REQUIRE(out.find("--json does not apply to dump") != std::string::npos);
}

TEST_CASE("list: no segments says where it looked", "[inspect][list]") {
  test::unique_prefix up;
  auto [rc, out] = inspect("list --shm.dir=" + up.dir + " --shm.prefix=" + up.prefix);
  REQUIRE(rc == 1);
  REQUIRE(out.find("no segments found") != std::string::npos);
  REQUIRE(out.find(up.dir) != std::string::npos);
  REQUIRE(out.find(up.prefix) != std::string::npos);
  std::tie(rc, out) = inspect("list --shm.dir /nonexistent-dir-xyz");
  REQUIRE(rc == 1);
  REQUIRE(out.find("/nonexistent-dir-xyz") != std::string::npos);
  std::tie(rc, out) = inspect_out("list --json " + prefix_flags(up));
  REQUIRE(rc == 1);
  REQUIRE(python_ok(out, "assert d['segments'] == [] and d['prefix'].startswith('shmtest')"));
}

TEST_CASE("list: live, dead, restarted and invalid writers, as a table and as JSON",
          "[inspect][list]") {
  test::unique_prefix up;
  test::child live({WRITER_CHILD, up.dir, up.prefix, "live"});
  std::string live_path = live.line();
  REQUIRE(!live_path.empty());
  std::string dead_path = finished_writer(up);

  // restarted: this process closes one registry and opens another, as an engine that
  // restarts in the same PID namespace would leave them.
  auto o = up.options();
  o.unlink_on_close = false;
  std::string old_path;
  {
    auto first = shmetrics::registry::create(o).value();
    old_path = first.path();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  auto second = shmetrics::registry::create(o).value();

  // invalid: a segment of a newer major version.
  std::string newer = up.dir + "/" + up.prefix + ".77777.00000000000000aa";
  std::string bytes = slurp(dead_path);
  poke<std::uint16_t>(bytes, 8, 2);
  poke<std::uint16_t>(bytes, 10, 3);
  spit(newer, bytes);

  auto [rc, out] = inspect("list " + prefix_flags(up));
  INFO(out);
  REQUIRE(rc == 0);
  auto line_of = [&](const std::string& path) {
    auto p = out.find(path);
    REQUIRE(p != std::string::npos);
    return out.substr(p, out.find('\n', p) - p);
  };
  REQUIRE(line_of(live_path).find(" alive ") != std::string::npos);
  REQUIRE(line_of(dead_path).find(" dead ") != std::string::npos);
  REQUIRE(line_of(dead_path).find("closed cleanly") != std::string::npos);
  REQUIRE(line_of(old_path).find(" restarted ") != std::string::npos);
  REQUIRE(line_of(second.path()).find(" alive ") != std::string::npos);
  REQUIRE(line_of(newer).find(" invalid ") != std::string::npos);
  REQUIRE(line_of(newer).find("segment format 2.3 not supported: this reader reads 1.x") !=
          std::string::npos);

  std::tie(rc, out) = inspect_out("list --json " + prefix_flags(up));
  REQUIRE(rc == 0);
  REQUIRE(python_ok(out, R"PY(
s = {x['path']: x for x in d['segments']}
assert len(s) == 5, s
keys = {'path','file','pid','instance','state','error','closed','version','start_time',
        'start_unix_ns','heartbeat_age_s','heartbeat_count','segment_bytes','shards','families',
        'family_capacity','series','series_capacity','string_bytes','string_capacity','cells',
        'cell_capacity','registrations_dropped'}
for x in s.values(): assert set(x) == keys, set(x) ^ keys
l = s[')PY" + live_path + R"PY(']
assert l['state'] == 'alive' and l['error'] is None and l['closed'] is False
assert l['version'] == ')PY" +
                             std::to_string(SHMETRICS_FORMAT_MAJOR) + "." +
                             std::to_string(SHMETRICS_FORMAT_MINOR) +
                             R"PY(' and l['families'] == 2 and l['series'] == 2
assert isinstance(l['heartbeat_age_s'], (int, float)) and 0 <= l['heartbeat_age_s'] < 5
assert len(l['instance']) == 16 and l['family_capacity'] == 16 and l['shards'] == 4
assert s[')PY" + dead_path + R"PY(']['state'] == 'dead' and s[')PY" +
                             dead_path + R"PY(']['closed'] is True
assert s[')PY" + old_path + R"PY(']['state'] == 'restarted'
n = s[')PY" + newer + R"PY(']
assert n['state'] == 'invalid' and '2.3' in n['error'] and '1.x' in n['error']
assert n['families'] is None and n['pid'] == 77777
)PY"));

  // A killed writer: dead, with its heartbeat going stale.
  live.kill(SIGKILL);
  live.wait();
  std::tie(rc, out) = inspect("list " + prefix_flags(up));
  REQUIRE(line_of(live_path).find(" dead ") != std::string::npos);
}

TEST_CASE("show: Prometheus text, a table, JSON, by pid, name pattern and label matchers",
          "[inspect][show]") {
  test::unique_prefix up;
  auto reg = shmetrics::registry::create(up.options()).value();
  reg.add_gauge({.name = "queue_depth", .help = "Queue \"depth\".\n", .labels = {"model"}})
      ->with_labels({"m\"1"})
      ->set(3.5);
  auto c = reg.add_counter({.name = "req_total", .help = "Requests.", .labels = {"model", "code"}})
               .value();
  c.with_labels({"m1", "200"})->add(5);
  c.with_labels({"m1", "500"})->add(2);
  c.with_labels({"m2", "200"})->add(7);
  reg.add_histogram({.name = "lat_seconds", .help = "Latency.", .buckets = {0.1, 1}})
      ->with_labels({})
      ->observe(0.5);
  std::string pid = std::to_string(getpid());

  auto [rc, out] = inspect("show " + pid + " " + prefix_flags(up));
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(out.find("# segment " + reg.path()) == 0);
  REQUIRE(out.find("req_total{code=\"200\",model=\"m1\"} 5.0\n") != std::string::npos);
  REQUIRE(out.find("lat_seconds_bucket{le=\"+Inf\"} 1.0\n") != std::string::npos);

  std::tie(rc, out) =
      inspect("show " + reg.path() + " --name 'req_*' --label model=m1 " + prefix_flags(up));
  REQUIRE(rc == 0);
  REQUIRE(out.find("model=\"m1\"") != std::string::npos);
  REQUIRE(out.find("model=\"m2\"") == std::string::npos);
  REQUIRE(out.find("queue_depth") == std::string::npos);

  std::tie(rc, out) = inspect("show --format=table --label 'code!~2..' " + prefix_flags(up));
  REQUIRE(rc == 0);
  REQUIRE(out.find("FAMILY") != std::string::npos);
  REQUIRE(out.find("code=\"500\"") != std::string::npos);
  REQUIRE(out.find("code=\"200\"") == std::string::npos);

  std::tie(rc, out) = inspect_out("show --json " + pid + " " + prefix_flags(up));
  REQUIRE(rc == 0);
  REQUIRE(python_ok(out, R"PY(
[seg] = d['segments']
assert seg['pid'] == )PY" + pid +
                             R"PY( and seg['alive'] is True and len(seg['instance']) == 16
f = {x['name']: x for x in seg['families']}
r = f['req']
assert r['exposed_name'] == 'req_total' and r['type'] == 'counter' and r['gauge_mode'] is None
assert r['label_names'] == ['model', 'code'] and r['bounds'] is None
assert {(s['labels']['model'], s['labels']['code']): s['value'] for s in r['series']} == {
    ('m1','200'): 5, ('m1','500'): 2, ('m2','200'): 7}
q = f['queue_depth']
assert q['help'] == 'Queue "depth".\n' and q['gauge_mode'] is not None
assert q['series'][0]['labels'] == {'model': 'm"1'} and q['series'][0]['value'] == 3.5
h = f['lat_seconds']
assert h['bounds'] == [0.1, 1.0] and h['series'][0]['buckets'] == [0, 1, 1]
assert h['series'][0]['count'] == 1 and h['series'][0]['sum'] == 0.5
)PY"));

  std::tie(rc, out) = inspect("show 999999999 " + prefix_flags(up));
  REQUIRE(rc == 1);
  REQUIRE(out.find("no segment matches 999999999") != std::string::npos);
  REQUIRE(out.find(up.dir) != std::string::npos);
}

TEST_CASE("show and dump PID without --shm.prefix: that pid's segments under any prefix",
          "[inspect][show]") {
  test::unique_prefix up, other;
  test::child live({WRITER_CHILD, up.dir, up.prefix, "live"});
  std::string live_path = live.line();
  REQUIRE(!live_path.empty());
  std::string pid = std::to_string(live.pid);

  auto [rc, out] = inspect("show " + pid);  // the writer's prefix is not the default one
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(out.find("# segment " + live_path + " pid " + pid) == 0);
  REQUIRE(out.find("ops_total{kind=\"a\"}") != std::string::npos);
  std::tie(rc, out) = inspect("dump " + pid);
  REQUIRE(rc == 0);
  REQUIRE(out.find("segment " + live_path + "\n") == 0);
  std::tie(rc, out) = inspect("show " + live_path.substr(live_path.rfind('.') + 1));  // instance
  REQUIRE(rc == 0);
  REQUIRE(out.find("# segment " + live_path) == 0);

  // None: says so and where it looked.
  std::tie(rc, out) = inspect("show 999999999");
  REQUIRE(rc == 1);
  REQUIRE(out.find("no segment matches pid 999999999: looked for <prefix>.<pid>.<instance> "
                   "under any prefix in /dev/shm") != std::string::npos);

  // Several prefixes for one pid (this process): each shown, and a note naming them.
  auto a = shmetrics::registry::create(up.options()).value();
  auto b = shmetrics::registry::create(other.options()).value();
  std::string me = std::to_string(getpid());
  std::tie(rc, out) = inspect("show " + me);
  REQUIRE(rc == 0);
  REQUIRE(out.find("# segment " + a.path()) != std::string::npos);
  REQUIRE(out.find("# segment " + b.path()) != std::string::npos);
  auto [p1, p2] = std::minmax(up.prefix, other.prefix);  // listed sorted
  REQUIRE(out.find("pid " + me + " has segments under 2 prefixes (" + p1 + ", " + p2 +
                   "): all shown; --shm.prefix picks one") != std::string::npos);
  std::tie(rc, out) = inspect("show " + me + " --shm.prefix " + other.prefix);
  REQUIRE(rc == 0);
  REQUIRE(out.find("# segment " + b.path()) == 0);
  REQUIRE(out.find(a.path()) == std::string::npos);
}

// Hidden ([.permissions]): its own meson test, which skips (77) without root or setpriv. A
// user namespace does not help: the kernel still checks the file against the real uid.
TEST_CASE("show and list name the file and its owner on permission denied",
          "[inspect][.permissions]") {
  if (::geteuid() != 0) test::skip("needs root to become another user");
  if (::access("/usr/bin/setpriv", X_OK) != 0) test::skip("/usr/bin/setpriv is not installed");
  test::unique_prefix up;
  auto reg = shmetrics::registry::create(up.options()).value();  // mode 0600, root's
  std::string as_nobody = "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups ";
  auto [rc, out] = test::run(as_nobody + INSPECT + " show " + prefix_flags(up) + " 2>&1");
  INFO(out);
  REQUIRE(rc == 1);
  REQUIRE(out.find(reg.path() + ": permission denied (owned by uid 0 (root), mode 0600") !=
          std::string::npos);
  std::tie(rc, out) = test::run(as_nobody + INSPECT + " check " + reg.path() + " 2>&1");
  REQUIRE(rc == 1);
  REQUIRE(out.find("permission denied") != std::string::npos);
}

TEST_CASE("check: sound segments pass, damaged copies give one line per problem",
          "[inspect][check]") {
  test::unique_prefix up;
  test::child live({WRITER_CHILD, up.dir, up.prefix, "live"});
  std::string live_path = live.line();
  REQUIRE(!live_path.empty());
  std::string dead_path = finished_writer(up);
  scratch tmp;

  auto [rc, out] = inspect("check " + prefix_flags(up));  // every segment of the prefix
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(out.find(live_path + ": ok (2 families, 2 series)") != std::string::npos);
  REQUIRE(count_lines(out) == 2);

  const std::string good = slurp(dead_path);
  auto hdr = [&](std::size_t off) { return peek<std::uint64_t>(good, off); };
  auto copy = [&](const std::string& name, const std::string& bytes) {
    std::string p = tmp.dir + "/" + name;
    spit(p, bytes);
    return p;
  };

  SECTION("truncated") {
    std::string p = copy("truncated", good.substr(0, good.size() - 4096));
    std::tie(rc, out) = inspect("check " + p);
    REQUIRE(rc == 1);
    REQUIRE(out.find(p + ": header segment_size @16 (0x10): truncated") == 0);
    std::tie(rc, out) = inspect("check " + copy("stub", good.substr(0, 100)));
    REQUIRE(rc == 1);
    REQUIRE(out.find("the header needs 256") != std::string::npos);
  }
  SECTION("bit-flipped magic") {
    std::string b = good;
    b[3] ^= 0x10;
    std::tie(rc, out) = inspect("check " + copy("flipped", b));
    REQUIRE(rc == 1);
    REQUIRE(out.find("bad magic") != std::string::npos);
    REQUIRE(count_lines(out) == 1);
  }
  SECTION("wrong version names both versions") {
    std::string b = good;
    poke<std::uint16_t>(b, 8, 2);
    poke<std::uint16_t>(b, 10, 0);  // version 2.0, whatever this writer's minor is
    std::tie(rc, out) = inspect("check " + copy("v2", b));
    REQUIRE(rc == 1);
    REQUIRE(out.find("segment format 2.0 not supported: this reader reads 1.x") !=
            std::string::npos);
  }
  SECTION("several damaged records are all reported, with their offsets") {
    std::string b = good;
    std::uint64_t fam = hdr(64), ser = hdr(80);
    b[fam + 64 + 30] = 9;                            // family 1: type 9
    poke<std::uint32_t>(b, ser + 32 + 4, 1u << 30);  // series 1: cells outside the shard
    poke<std::uint64_t>(b, 240, 1u << 20);           // cells_used beyond the shard
    std::string p = copy("records", b);
    std::tie(rc, out) = inspect("check " + p);
    REQUIRE(rc == 1);
    REQUIRE(count_lines(out) == 3);
    REQUIRE(out.find("family 1 type @" + std::to_string(fam + 64 + 30)) != std::string::npos);
    REQUIRE(out.find("series 1 cell_index @" + std::to_string(ser + 32 + 4)) != std::string::npos);
    REQUIRE(out.find("header cells_used @240") != std::string::npos);

    std::tie(rc, out) = inspect_out("check --json " + p + " " + dead_path);
    REQUIRE(rc == 1);
    REQUIRE(python_ok(out, R"PY(
assert d['sound'] is False
bad, ok = d['files']
assert set(bad) == {'path','sound','families','series','problems','problems_omitted'}
assert bad['sound'] is False and len(bad['problems']) == 3 and bad['problems_omitted'] == 0
for p in bad['problems']: assert set(p) == {'where','offset','what'} and isinstance(p['offset'], int)
assert ok['sound'] is True and ok['problems'] == [] and ok['families'] == 2 and ok['series'] == 2
)PY"));
  }
  SECTION("not segments at all: empty, random, directory, symlink, device, huge sparse") {
    std::string empty = copy("empty", "");
    std::mt19937_64 rng(42);
    std::string junk(5000, '\0');
    for (auto& ch : junk)
      ch = static_cast<char>(rng());
    std::string random = copy("random", junk);
    std::string link = tmp.dir + "/link";
    REQUIRE(::symlink(dead_path.c_str(), link.c_str()) == 0);
    std::string huge = tmp.dir + "/huge";
    {
      std::string b = good.substr(0, 256);
      poke<std::uint64_t>(b, 16, 1ull << 40);   // segment_size: 1 TiB
      poke<std::uint32_t>(b, 72, 0xFFFFFFFFu);  // family_capacity
      spit(huge, b);
      REQUIRE(::truncate(huge.c_str(), 1ll << 36) == 0);  // 64 GiB, sparse
    }
    std::tie(rc, out) = inspect("check " + empty + " " + random + " " + tmp.dir + " " + link +
                                " /dev/null " + huge + " /nonexistent-file");
    INFO(out);
    REQUIRE(rc == 1);
    REQUIRE(out.find(empty + ": file: empty file") != std::string::npos);
    REQUIRE(out.find(random + ": header magic @0 (0x0): bad magic") != std::string::npos);
    REQUIRE(out.find(tmp.dir + ": file: a directory") != std::string::npos);
    REQUIRE(out.find(link + ": file: a symbolic link") != std::string::npos);
    REQUIRE(out.find("/dev/null: file: not a regular file") != std::string::npos);
    REQUIRE(out.find(huge + ": header segment_size") != std::string::npos);
    REQUIRE(out.find("/nonexistent-file: file: cannot stat") != std::string::npos);
  }
  SECTION("random bit flips never crash it") {
    std::mt19937_64 rng(7);
    std::string p = tmp.dir + "/fuzz";
    // Flips land in the header, the records and the arena, where the checks are.
    std::size_t span = static_cast<std::size_t>(hdr(112));
    for (int round = 0; round < 60; ++round) {
      std::string b = good;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k)
        b[rng() % span] ^= static_cast<char>(1 << (rng() % 8));
      if (round % 10 == 9) b.resize(rng() % b.size());
      spit(p, b);
      std::tie(rc, out) = inspect("check " + p + " >/dev/null");
      INFO("round " << round);
      REQUIRE((rc == 0 || rc == 1));
      auto [drc, dout] = inspect("dump " + p + " >/dev/null");
      REQUIRE((drc == 0 || drc == 1));
    }
  }
}

TEST_CASE("check and dump: segments built to amplify are refused in bounded memory",
          "[inspect][check][dump][amplification]") {
  // The issue's file (65,535 label refs, each the whole 1 MiB arena) had `check` killed by
  // the OOM killer. Each run here is watched: killed past +512 MiB RSS or 60 s, so an
  // unbounded walk fails the test instead of exhausting the machine.
  test::unique_prefix up;
  scratch tmp;
  const std::string good = test::real_segment_bytes(up.dir, up.prefix);
  const std::string path = tmp.dir + "/hostile", out_path = tmp.dir + "/out";
  // Output is capped too (ulimit -f: 64 MiB, else SIGXFSZ), and only its start is read
  // back. The peak RSS (wait4) is an upper bound: it includes this process's at the exec.
  auto run = [&](const std::string& cmd, long kill_rss_kb) {
    test::child c({"/bin/sh", "-c",
                   "ulimit -f 65536; exec " + std::string(INSPECT) + " " + cmd + " " + path + " >" +
                       out_path + " 2>&1"});
    REQUIRE(c.pid > 0);
    auto w = test::watch(c.pid, kill_rss_kb, std::chrono::seconds(60));
    c.pid = -1;  // reaped
    std::string head(1 << 20, '\0');
    std::ifstream in(out_path, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<std::size_t>(in.gcount()));
    return std::make_pair(w, head);
  };
  // The tool's own footprint (sanitizers included) on the sound file.
  test::write_file(path, good);
  auto [base, base_out] = run("check", 1L << 30);
  INFO(base_out);
  REQUIRE(base.status == 0);
  const long base_kb = base.max_rss_kb;
  for (test::hostile h : test::all_hostile) {
    INFO("shape: " << test::hostile_name(h));
    test::write_file(path, test::hostile_bytes(good, h));
    for (const char* cmd : {"check", "dump"}) {
      auto [w, out] = run(cmd, base_kb + (512 << 10));
      INFO(cmd << " (" << w.seconds << " s, peak " << w.max_rss_kb << " kB, sound file " << base_kb
               << " kB): " << (w.killed ? "killed: " + w.why : "") << out.substr(0, 2000));
      CHECK(!w.killed);
      if (w.killed) continue;
      CHECK(w.status == 1);
      CHECK(w.max_rss_kb < base_kb + (64 << 10));
      CHECK(w.seconds < 30);
      if (h == test::hostile::label_refs_whole_arena)
        CHECK(out.find("overlaps its own list") != std::string::npos);
      else if (h == test::hostile::cells_shared)
        CHECK(out.find("more than the shard's 16384") != std::string::npos);
      else
        CHECK(out.find("more than the arena's 1048576") != std::string::npos);
    }
  }
}

TEST_CASE("dump: the raw layout, record by record, with offsets", "[inspect][dump]") {
  test::unique_prefix up;
  std::string path = finished_writer(up);
  auto [rc, out] = inspect("dump " + path + " " + prefix_flags(up));
  INFO(out);
  REQUIRE(rc == 0);
  REQUIRE(out.find("  0x0000 magic") != std::string::npos);
  REQUIRE(out.find("  0x00d8 families_published     2") != std::string::npos);
  REQUIRE(out.find("families @0x100 (2 published of 16, 64 bytes each)") != std::string::npos);
  REQUIRE(out.find("[0] @0x100 type=1(counter)") != std::string::npos);
  REQUIRE(out.find("name=\"lat_seconds\"") != std::string::npos);
  REQUIRE(out.find("buckets=[0.5,1.0,2.0]") != std::string::npos);
  REQUIRE(out.find("{kind=\"a\"}") != std::string::npos);
  REQUIRE(out.find("cells @0x") != std::string::npos);

  // By pid, from the file name.
  shmetrics::segment_name n;
  REQUIRE(shmetrics::parse_segment_name(path.substr(path.rfind('/') + 1), up.prefix, n));
  std::tie(rc, out) = inspect("dump " + std::to_string(n.pid) + " " + prefix_flags(up));
  REQUIRE(rc == 0);
  REQUIRE(out.find("segment " + path) == 0);

  scratch tmp;
  std::string b = slurp(path);
  b[peek<std::uint64_t>(b, 64) + 30] = 9;
  spit(tmp.dir + "/bad", b);
  std::tie(rc, out) = inspect("dump " + tmp.dir + "/bad");
  REQUIRE(rc == 1);
  REQUIRE(out.find("!! family 0 type") != std::string::npos);
  REQUIRE(out.find("** damaged **") != std::string::npos);
}

TEST_CASE("catalog: each family with type, labels, status and upstream source; JSON",
          "[inspect][catalog]") {
#if INSPECT_HAS_CATALOG
  const std::string cat = std::string("--catalog ") + SHMETRICS_TEST_CATALOG;
  auto [rc, out] = inspect("catalog " + cat);
  INFO(out);
  REQUIRE(rc == 0);
  // The releases the catalog matches.
  REQUIRE(out.find("matches vllm: vllm-project/vllm 0.32 @ea5790cc") != std::string::npos);
  REQUIRE(out.find("matches vllm-omni: vllm-project/vllm-omni") != std::string::npos);
  // One line per family: the line of `name`, whose fields are separated by blanks.
  auto line_of = [&](const std::string& name) {
    auto at = out.find("\n" + name + " ");
    REQUIRE(at != std::string::npos);
    return out.substr(at + 1, out.find('\n', at + 1) - at - 1);
  };
  auto has = [](const std::string& line, const std::string& part) {
    INFO(line);
    return line.find(part) != std::string::npos;
  };
  std::string worker = line_of("vllm:worker_step_time_seconds");
  CHECK(has(worker, " histogram "));
  CHECK(has(worker, " upstream "));
  CHECK(has(worker, " model_name,engine,phase,num_model_tokens "));
  CHECK(has(worker, "vllm-project/vllm:vllm/v1/metrics/worker.py@ea5790cc6efb"));
  std::string gpu = line_of("vllm:gpu_cache_usage_perc");
  CHECK(has(gpu, " removed "));  // deprecated in 0.9, the catalog is 0.32
  std::string running = line_of("vllm:num_requests_running");
  CHECK(has(running, " seed "));
  CHECK(has(running, "(seed 001_83e946c820acdeae.txt, 002_0ea94750cbc59907.txt)"));
  CHECK(has(line_of("vllm:omni_audio_rtf"), " seed "));
  CHECK(has(line_of("vllm:kv_offload_tiering_block_hits_total"), " model_name,engine,tier "));
  CHECK(out.find(" families: ") != std::string::npos);

  // --status keeps one status; --name a pattern.
  std::tie(rc, out) = inspect("catalog --status removed " + cat);
  REQUIRE(rc == 0);
  CHECK(out.find("vllm:gpu_cache_usage_perc") != std::string::npos);
  CHECK(out.find("vllm:num_requests_running ") == std::string::npos);
  std::tie(rc, out) = inspect("catalog --name 'vllm:worker_*' " + cat);
  REQUIRE(rc == 0);
  CHECK(out.find("3 families: 0 seed, 3 upstream") != std::string::npos);
  std::tie(rc, out) = inspect("catalog --status hidden --name 'vllm:worker_*' " + cat);
  CHECK(rc == 1);  // nothing found
  CHECK(out.find("no family with status hidden") != std::string::npos);

  // JSON, parsed by Python.
  std::tie(rc, out) = inspect_out("catalog --json " + cat);
  REQUIRE(rc == 0);
  REQUIRE(python_ok(out, R"(
f = {x['name']: x for x in d['families']}
assert d['vllm_version'] == '0.32'
assert [r['name'] for r in d['upstream_releases']] == ['vllm', 'vllm-omni']
w = f['vllm:worker_model_execute_time_seconds']
assert w['status'] == 'upstream' and w['type'] == 'histogram', w
assert w['labels'] == ['model_name', 'engine', 'phase', 'num_model_tokens'], w
assert w['upstream'] == {'repo': 'vllm-project/vllm', 'path': 'vllm/v1/metrics/worker.py',
                         'ref': 'ea5790cc6efbdd8a36a5e9050bca679d552cd1f6'}, w
assert f['vllm:gpu_cache_usage_perc']['status'] in ('removed', 'hidden')
assert f['vllm:iteration_tokens_total']['seeds'] == ['004_1f4ebcbc4a190607.txt']
assert f['vllm:iteration_tokens_total']['status'] == 'seed'
assert all(x['status'] in ('seed', 'upstream', 'deprecated', 'hidden', 'removed')
           for x in d['families'])
assert len(d['families']) > 150
)"));

  // Errors: a bad status, segment flags, a catalog that is not there, one that is refused.
  std::tie(rc, out) = inspect("catalog --status shown " + cat);
  CHECK(rc == 2);
  CHECK(out.find("--status shown: want seed, upstream, deprecated, hidden or removed") !=
        std::string::npos);
  std::tie(rc, out) = inspect("catalog --shm.dir /tmp " + cat);
  CHECK(rc == 2);
  CHECK(out.find("--shm.dir does not apply to catalog") != std::string::npos);
  std::tie(rc, out) = inspect("catalog --catalog /tmp/shmetrics-no-such-catalog.json");
  CHECK(rc == 1);
  CHECK(out.find("catalog JSON file /tmp/shmetrics-no-such-catalog.json") != std::string::npos);
  std::string bad = temp_file(R"({"format": "shmetrics-vllm-catalog", "format_version": 1})");
  std::tie(rc, out) = inspect("catalog --catalog " + bad);
  ::unlink(bad.c_str());
  CHECK(rc == 1);
  CHECK(out.find("\"format_version\" must be 2") != std::string::npos);
#else
  // Built without simdjson: the subcommand says why it cannot list.
  auto [rc, out] = inspect("catalog");
  CHECK(rc == 1);
  CHECK(out.find("built without simdjson") != std::string::npos);
#endif
}
