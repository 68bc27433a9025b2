// Test support: segments crafted to make a reader allocate far more than the file holds
// (issue 20, "amplification"), and a watchdog that runs a reader in a child process and
// kills it when its memory or time runs away, so that an unfixed reader fails the test
// cleanly instead of eating the machine.
//
// Every hostile segment starts as a real writer's segment; then bytes are patched in (see
// docs/segment-format.md for the offsets). The real records use the start of the 1 MiB
// arena; the crafted shapes use [256 KiB, 512 KiB) as one long valid string ('x's) and
// [512 KiB, 1 MiB) for string-ref lists.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shmetrics/shmetrics.hpp>

namespace test {

enum class hostile {
  label_refs_whole_arena,  // issue 20: 65,535 label-name refs, each the whole 1 MiB arena
  label_names_shared,      // 65,535 label-name refs to one 256 KiB string (not their list)
  label_values_shared,     // 65,536 series whose one label value is the same 256 KiB string
  help_shared,             // 4,096 families whose help is the same 256 KiB string
  bounds_shared,           // 4,096 histogram families sharing one list of 4,000 bounds
  cells_shared,            // 65,536 histogram series (4,002 cells each) on the same cells
};

inline const char* hostile_name(hostile h) {
  switch (h) {
    case hostile::label_refs_whole_arena:
      return "label refs, each the whole arena";
    case hostile::label_names_shared:
      return "label names sharing one string";
    case hostile::label_values_shared:
      return "label values sharing one string";
    case hostile::help_shared:
      return "help texts sharing one string";
    case hostile::bounds_shared:
      return "bucket bounds shared by families";
    case hostile::cells_shared:
      return "histogram series sharing cells";
  }
  return "?";
}

inline constexpr hostile all_hostile[] = {
    hostile::label_refs_whole_arena, hostile::label_names_shared,
    hostile::label_values_shared,    hostile::help_shared,
    hostile::bounds_shared,          hostile::cells_shared};

/// The bytes of a real segment: family 0 counter "c" {a}, one series {a="x"}; family 1
/// histogram "h" with 4,000 bounds and no labels, one series. Arena 1 MiB, room for 4,096
/// families and 65,536 series, 16,384 cells in one shard.
inline std::string real_segment_bytes(const std::string& dir, const std::string& prefix) {
  shmetrics::registry_options o;
  o.dir = dir;
  o.prefix = prefix;
  o.max_families = 4096;
  o.max_series = 65536;
  o.max_cells = 16384;
  o.string_bytes = 1 << 20;
  o.shards = 1;
  auto reg = shmetrics::registry::create(o).value();
  reg.add_counter({.name = "c", .help = "h", .labels = {"a"}})->with_labels({"x"})->inc();
  std::vector<double> bounds;
  for (int i = 1; i <= 4000; ++i)
    bounds.push_back(i);
  reg.add_histogram({.name = "h", .help = "h", .buckets = bounds})->with_labels({})->observe(1);
  std::ifstream in(reg.path(), std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// `good` (from real_segment_bytes) patched into shape `h`.
inline std::string hostile_bytes(std::string b, hostile h) {
  namespace layout = shmetrics::layout;
  layout::segment_header hd;
  std::memcpy(&hd, b.data(), sizeof hd);
  const std::uint64_t arena = hd.strings_offset, cap = hd.strings_capacity;
  const auto big_off = static_cast<std::uint32_t>(cap / 4), big_len = big_off;
  const auto list_off = static_cast<std::uint32_t>(cap / 2);
  std::memset(b.data() + arena + big_off, 'x', big_len);
  auto family = [&](std::uint32_t i) {
    layout::family_record r;
    std::memcpy(&r, b.data() + hd.families_offset + std::uint64_t{i} * hd.family_record_size,
                sizeof r);
    return r;
  };
  auto put_family = [&](std::uint32_t i, const layout::family_record& r) {
    std::memcpy(b.data() + hd.families_offset + std::uint64_t{i} * hd.family_record_size, &r,
                sizeof r);
  };
  auto series = [&](std::uint32_t i) {
    layout::series_record r;
    std::memcpy(&r, b.data() + hd.series_offset + std::uint64_t{i} * hd.series_record_size,
                sizeof r);
    return r;
  };
  auto put_series = [&](std::uint32_t i, const layout::series_record& r) {
    std::memcpy(b.data() + hd.series_offset + std::uint64_t{i} * hd.series_record_size, &r,
                sizeof r);
  };
  auto put_refs = [&](std::uint32_t count, layout::string_ref ref) {
    for (std::uint32_t k = 0; k < count; ++k)
      std::memcpy(b.data() + arena + list_off + k * sizeof ref, &ref, sizeof ref);
  };
  switch (h) {
    case hostile::label_refs_whole_arena:
    case hostile::label_names_shared: {
      auto f = family(0);
      f.label_count = 65535;
      f.labels_off = list_off;
      put_family(0, f);
      if (h == hostile::label_refs_whole_arena)  // all of it UTF-8 (family 1's bounds are not)
        for (std::uint64_t k = 0; k < big_off; ++k)
          if (static_cast<unsigned char>(b[arena + k]) >= 0x80) b[arena + k] = 0;
      put_refs(65535, h == hostile::label_names_shared ? layout::string_ref{big_off, big_len}
                                                       : layout::string_ref{0, std::uint32_t(cap)});
      hd.series_published = 0;
      break;
    }
    case hostile::label_values_shared: {
      put_refs(1, {big_off, big_len});
      for (std::uint32_t i = 0; i < hd.series_capacity; ++i)
        put_series(i, {.family_index = 0,
                       .cell_index = 0,
                       .labels_off = list_off,
                       .cell_count = 2,
                       .removed = 0,
                       .reserved = 0});
      hd.series_published = hd.series_capacity;
      break;
    }
    case hostile::help_shared:
    case hostile::bounds_shared: {
      auto f = family(h == hostile::help_shared ? 0 : 1);
      if (h == hostile::help_shared) {
        f.help_off = big_off;
        f.help_len = big_len;
      }
      for (std::uint32_t i = 0; i < hd.family_capacity; ++i)
        put_family(i, f);
      hd.families_published = hd.family_capacity;
      hd.series_published = 0;
      break;
    }
    case hostile::cells_shared: {
      auto s = series(1);
      for (std::uint32_t i = 0; i < hd.series_capacity; ++i)
        put_series(i, s);
      hd.series_published = hd.series_capacity;
      break;
    }
  }
  std::memcpy(b.data(), &hd, sizeof hd);
  return b;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// kB of a /proc/PID/status field ("VmRSS", "VmHWM"), -1 if unreadable.
inline long proc_status_kb(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + key.size());
  return -1;
}

/// How a watched child ended.
struct watched {
  int status = -1;      ///< exit status, or 128 + signal
  bool killed = false;  ///< by the watchdog
  std::string why;      ///< why the watchdog killed it
  long max_rss_kb = 0;  ///< the child's peak RSS (wait4's ru_maxrss)
  double seconds = 0;
};

/// Waits for `pid`, killing it once its RSS passes `kill_rss_kb` or after `timeout`.
inline watched watch(pid_t pid, long kill_rss_kb, std::chrono::seconds timeout) {
  watched w;
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    int st = 0;
    rusage ru{};
    pid_t r = ::wait4(pid, &st, WNOHANG, &ru);
    if (r == pid) {
      w.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      w.max_rss_kb = ru.ru_maxrss;
      break;
    }
    auto elapsed = std::chrono::steady_clock::now() - start;
    long rss = proc_status_kb(pid, "VmRSS");
    if (!w.killed && (rss > kill_rss_kb || elapsed > timeout)) {
      w.killed = true;
      w.why = rss > kill_rss_kb ? "RSS " + std::to_string(rss) + " kB passed the kill limit of " +
                                      std::to_string(kill_rss_kb) + " kB"
                                : "still running after " + std::to_string(timeout.count()) + " s";
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  w.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return w;
}

}  // namespace test
