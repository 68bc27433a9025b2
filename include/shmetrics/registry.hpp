// shmetrics: the registry, which owns one shared-memory segment per process, and the
// families registered in it.
//
//   shmetrics::registry_options opt;         // dir /dev/shm, prefix "shmetrics"
//   auto reg = shmetrics::registry::create(opt);
//   if (!reg) { fprintf(stderr, "%s\n", reg.error().message().c_str()); return 1; }
//   auto fam = reg->add_counter({.name = "vllm:prompt_tokens_total",
//                                .help = "Number of prefill tokens processed.",
//                                .labels = {"model_name", "engine"}});
//   shmetrics::counter c = fam->with_labels({"m", "0"}).value_or({});
//   c.add(128);                               // hot path
//
// Everything in this header is the cold path: it may allocate, takes a process-local
// mutex, and returns errors. The hot path lives in counter.hpp, gauge.hpp, histogram.hpp.
#ifndef SHMETRICS_REGISTRY_HPP
#define SHMETRICS_REGISTRY_HPP

#include <algorithm>           // std::min
#include <atomic>              // callback failure counts
#include <bit>                 // std::bit_cast
#include <cerrno>              // ENOSPC from posix_fallocate
#include <chrono>              // heartbeat interval
#include <cmath>               // std::isfinite
#include <condition_variable>  // heartbeat thread wake-up
#include <cstdint>             // sizes
#include <cstring>             // memcpy
#include <deque>               // stable family storage
#include <functional>          // callback gauges
#include <initializer_list>    // with_labels({...})
#include <limits>              // infinity
#include <memory>              // unique_ptr, shared_ptr
#include <mutex>               // registration lock (process-local, never in the segment)
#include <new>                 // placement new: fresh locks in a forked child
#include <optional>            // series_key: an error or none
#include <string>              // names
#include <string_view>         // names
#include <thread>              // heartbeat thread
#include <type_traits>         // std::is_same_v
#include <unordered_map>       // dedupe of families and label sets (process memory only)
#include <vector>              // label lists
#include <fcntl.h>             // posix_fallocate: tmpfs pages reserved as registrations reach them
#include <pthread.h>           // pthread_atfork
#include <sys/mman.h>          // the forked child's private copy of the segment
#include <sys/random.h>        // getrandom for the instance id
#include <time.h>              // clock_gettime
#include <unistd.h>            // getpid, unlink

#include "config.hpp"
#include "counter.hpp"
#include "detail/atomics.hpp"
#include "detail/exposed_names.hpp"
#include "detail/proc_self.hpp"
#include "detail/segment_file.hpp"
#include "detail/shards.hpp"
#include "detail/validate.hpp"
#include "errc.hpp"
#include "gauge.hpp"
#include "histogram.hpp"
#include "segment_layout.hpp"

SHMETRICS_BEGIN_NAMESPACE

using layout::gauge_mode;
using layout::metric_type;

/// Where the segment goes and how big it is. The size is fixed at creation (tmpfs
/// pages are only used when touched); a full segment is an error at registration,
/// never on the hot path. segment_bytes() gives the size these options produce.
struct registry_options {
  std::string dir = "/dev/shm";      ///< directory of the segment file
  std::string prefix = "shmetrics";  ///< file name is <prefix>.<pid>.<instance>
  std::uint32_t max_families = 1024;
  std::uint32_t max_series = 16384;
  std::uint32_t max_cells =
      65536;  ///< value cells per shard (counter 2, gauge 2, histogram buckets+2)
  std::uint64_t string_bytes = 1u << 20;  ///< arena for names, help, labels, bucket bounds
  std::uint32_t shards = 16;              ///< value shards incl. the shared shard 0; 1..64
  std::chrono::milliseconds heartbeat_interval{1000};  ///< 0: no thread; call heartbeat() yourself
  /// How often a thread of the registry calls the callback gauges' functions
  /// (gauge_family::with_callback). The thread starts with the first callback. 0: no
  /// thread; call registry::sample_callbacks() yourself.
  std::chrono::milliseconds callback_interval{1000};
  bool unlink_on_close = true;  ///< remove the file when the registry is destroyed
  /// Reserve the segment's tmpfs pages (posix_fallocate) before they are written: the
  /// header at creation, then records, strings and every shard's cells as registrations
  /// reach them, 16 KiB a region at a time. A segment takes about what it holds (not
  /// segment_bytes()), and a full /dev/shm is a no_space error at creation or
  /// registration, never SIGBUS on the hot path. false: pages are taken when touched.
  bool reserve = true;
  unsigned mode = 0600;  ///< file mode, applied exactly (umask ignored)

  /// Bytes of the segment these options create.
  std::uint64_t segment_bytes() const noexcept {
    auto align = [](std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; };
    std::uint64_t off = layout::header_size;
    off += std::uint64_t{max_families} * layout::family_record_size;
    off += std::uint64_t{max_series} * layout::series_record_size;
    off += align(string_bytes, 8);
    off = align(off, layout::shard_alignment);
    return off +
           std::uint64_t{shards} * align(std::uint64_t{max_cells} * 8, layout::shard_alignment);
  }
};

/// A label with the same value on every series of a family (prometheus-cpp's constant
/// labels): `.const_labels = {{"engine", "0"}}`. The name follows the label name rules and
/// may not repeat a variable label's; the value is any UTF-8. with_labels() takes the
/// variable labels' values only.
struct const_label {
  std::string_view name, value;
};

/// Family definitions. `labels` are the label names, in the order with_labels() takes
/// their values. Counter names may end in `_total` or not; they are exposed with it.
struct counter_spec {
  std::string_view name, help;
  std::vector<std::string_view> labels = {};
  std::string_view unit = {};
  std::vector<const_label> const_labels = {};
};
struct gauge_spec {
  std::string_view name, help;
  std::vector<std::string_view> labels = {};
  gauge_mode mode = gauge_mode::live_sum;  ///< how the exporter merges processes
  std::string_view unit = {};
  std::vector<const_label> const_labels = {};
};
struct histogram_spec {
  std::string_view name, help;
  std::vector<std::string_view> labels = {};
  /// Finite upper bounds, strictly increasing (+Inf implied; a trailing +Inf is dropped).
  /// At least one: an empty list is refused (errc::invalid_buckets) unless inf_bucket_only.
  std::vector<double> buckets = {};
  std::string_view unit = {};
  std::vector<const_label> const_labels = {};
  /// Opt-in to a histogram with no finite bucket (`buckets` empty): only `le="+Inf"`,
  /// `_count` and `_sum`. Without it an empty bucket list is a mistake (prometheus_client
  /// refuses it too), not a silent +Inf-only histogram.
  bool inf_bucket_only = false;
};
/// An info-style family: a gauge fixed at 1 whose labels carry the information.
struct info_spec {
  std::string_view name, help;
  std::vector<std::string_view> labels = {};
  std::vector<const_label> const_labels = {};
};

/// What a registry has used of its segment.
struct registry_usage {
  std::uint32_t families, family_capacity;
  std::uint32_t series, series_capacity;
  std::uint64_t string_bytes, string_capacity;
  std::uint32_t cells, cell_capacity;
  std::uint64_t registrations_dropped;
  std::uint64_t series_removed;     ///< remove()/clear(): records and cells not reused
  std::uint64_t callback_failures;  ///< callback gauge calls that threw (value kept)
};

namespace detail {

inline std::uint64_t clock_ns(clockid_t id) noexcept {
  timespec ts;
  clock_gettime(id, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Field 22 of /proc/self/stat (process start time in clock ticks since boot); 0 if
/// unreadable. Together with the pid it identifies a process where namespaces match.
inline std::uint64_t process_start_ticks() noexcept {
  return read_proc_stat().start_ticks;
}

inline std::uint64_t random_instance_id() noexcept {
  std::uint64_t id = 0;
  if (getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id) || id == 0)
    id = (clock_ns(CLOCK_REALTIME) * 0x9E3779B97F4A7C15ULL) ^ static_cast<std::uint64_t>(getpid());
  return id ? id : 1;
}

struct family_state {
  std::string name;  // as exposed in the segment (counters: without _total)
  metric_type type;
  gauge_mode mode;
  std::vector<std::string> label_names;  // the variable ones, in with_labels() order
  // Constant labels: stored after the variable ones in the family record, their values
  // after the variable values in every series record, so readers see ordinary labels.
  std::vector<std::string> const_names, const_values;
  std::vector<double> bounds;
  std::string help, unit;
  std::uint32_t index;
  const double* arena_bounds = nullptr;  // bounds as stored in the arena (histogram handles)
  struct slot {
    std::uint32_t cell, record;  // first cell; index of the series record
  };
  std::unordered_map<std::string, slot> series;  // label key -> live series
};

inline const char* type_word(metric_type type) noexcept {
  switch (type) {
    case metric_type::counter:
      return "counter";
    case metric_type::histogram:
      return "histogram";
    case metric_type::info:
      return "info";
    default:
      return "gauge";
  }
}

/// The callback gauges of one registry and the thread that samples them. Shared with the
/// callback_gauge handles, so that a handle outliving its registry stays safe to destroy.
struct callback_set {
  struct entry {
    gauge target;
    std::function<double()> fn;
    bool dead = false;                       // under run_mu
    std::atomic<std::uint64_t> failures{0};  // calls that threw
  };

  // Held while callbacks run and while `entries` changes: once a handle's reset() has
  // returned, its function is neither running nor called again. Recursive, so that a
  // callback may register or drop a callback (itself included) without deadlock.
  std::recursive_mutex run_mu;
  std::vector<std::shared_ptr<entry>> entries;
  int depth = 0;        // passes running (nested only when a callback samples)
  bool closed = false;  // the registry is going: nothing is called any more
  std::atomic<std::uint64_t> failures{0};

  std::mutex thread_mu;
  std::condition_variable thread_cv;
  bool stopping = false;
  std::thread thread;

  // One call: a throwing function keeps the gauge's previous value and is counted.
  static void call(entry& e) noexcept {
#if defined(__cpp_exceptions)
    try {
      e.target.set(e.fn());
    } catch (...) {
      e.failures.fetch_add(1, std::memory_order_relaxed);
    }
#else
    e.target.set(e.fn());
#endif
  }

  void sample() noexcept {
    std::lock_guard lock(run_mu);
    if (closed) return;
    ++depth;
    // By index, on a copy of each pointer: a callback may add entries (the vector grows).
    for (std::size_t i = 0; i < entries.size(); ++i) {
      std::shared_ptr<entry> e = entries[i];
      if (e->dead) continue;
      const std::uint64_t before = e->failures.load(std::memory_order_relaxed);
      call(*e);
      if (e->failures.load(std::memory_order_relaxed) != before)
        failures.fetch_add(1, std::memory_order_relaxed);
    }
    if (--depth == 0) std::erase_if(entries, [](const auto& e) { return e->dead; });
  }

  void drop(const std::shared_ptr<entry>& e) noexcept {
    std::lock_guard lock(run_mu);
    e->dead = true;
    if (depth == 0) std::erase(entries, e);
  }

  void start(std::chrono::milliseconds every) {
    thread = std::thread([this, every] {
      std::unique_lock lock(thread_mu);
      while (!thread_cv.wait_for(lock, every, [this] { return stopping; })) {
        lock.unlock();  // stop() may come meanwhile; it then waits for this pass
        sample();
        lock.lock();
      }
    });
  }
  void stop() noexcept {
    {
      std::lock_guard lock(thread_mu);
      stopping = true;
    }
    thread_cv.notify_all();
    if (thread.joinable()) thread.join();
    std::lock_guard lock(run_mu);
    closed = true;
  }
};

class registry_state;

/// Every live registry_state of this process, for the fork handlers (see registry's
/// "Fork" note). Intrusive, so the child handler walks it without allocating.
struct live_registries {
  std::mutex mu;
  registry_state* head = nullptr;
  static live_registries& get() noexcept {
    static live_registries l;
    return l;
  }
};

/// Owns the mapping, the lock fd and the heartbeat thread. Lives behind a unique_ptr so
/// that handles may point into it while the registry object moves.
class registry_state {
 public:
  /// The caller holds live_registries::mu (see registry::create: held from before the
  /// segment file is opened until the state is in the list).
  registry_state(mapped_segment seg, const registry_options& opt)
      : seg_(std::move(seg)),
        unlink_on_close_(opt.unlink_on_close),
        reserve_(opt.reserve),
        callback_every_(opt.callback_interval) {
    base_ = static_cast<char*>(seg_.base);
    hdr_ = reinterpret_cast<layout::segment_header*>(base_);
    live_registries& l = live_registries::get();
    next_ = l.head;
    if (next_) next_->prev_ = this;
    l.head = this;
  }

  ~registry_state() {
    {
      live_registries& l = live_registries::get();
      std::lock_guard lock(l.mu);
      (prev_ ? prev_->next_ : l.head) = next_;
      if (next_) next_->prev_ = prev_;
    }
    stop_heartbeat();
    if (callbacks_) callbacks_->stop();  // before the unmap: callbacks write into the segment
    if (forked_) {
      // An inherited registry: the segment is the parent's. Drop the private copy only;
      // never mark it closed nor unlink it.
      if (base_) ::munmap(base_, seg_.size);
      return;
    }
    if (base_) {
      store_release(&hdr_->state, static_cast<std::uint64_t>(layout::segment_state::closed));
      if (unlink_on_close_) ::unlink(seg_.path.c_str());
      ::munmap(seg_.base, seg_.size);
    }
    if (seg_.fd >= 0) ::close(seg_.fd);  // drops the lifetime lock
  }

  registry_state(const registry_state&) = delete;
  registry_state& operator=(const registry_state&) = delete;

  void init(const registry_options& opt, std::uint64_t instance_id) {
    auto align = [](std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; };
    layout::segment_header& h = *hdr_;
    h.version_major = layout::version_major;
    h.version_minor = layout::version_minor;
    h.header_size = layout::header_size;
    h.segment_size = seg_.size;
    h.instance_id = instance_id_ = instance_id;
    h.writer_pid = static_cast<std::uint32_t>(getpid());
    h.shard_count = opt.shards;
    h.writer_start_ticks = process_start_ticks();
    h.created_realtime_ns = clock_ns(CLOCK_REALTIME);
    h.created_monotonic_ns = clock_ns(CLOCK_MONOTONIC);
    std::uint64_t off = layout::header_size;
    h.families_offset = off;
    h.family_capacity = opt.max_families;
    h.family_record_size = layout::family_record_size;
    off += std::uint64_t{opt.max_families} * layout::family_record_size;
    h.series_offset = off;
    h.series_capacity = opt.max_series;
    h.series_record_size = layout::series_record_size;
    off += std::uint64_t{opt.max_series} * layout::series_record_size;
    h.strings_offset = off;
    h.strings_capacity = align(opt.string_bytes, 8);
    off = align(off + h.strings_capacity, layout::shard_alignment);
    h.cells_offset = off;
    h.cells_per_shard = opt.max_cells;
    h.shard_stride = align(std::uint64_t{opt.max_cells} * 8, layout::shard_alignment);
    h.heartbeat_ns = h.created_monotonic_ns;
    h.state = static_cast<std::uint64_t>(layout::segment_state::ready);
    pool_ = std::make_shared<shard_pool>(opt.shards, h.shard_stride);
    // release: publishes every write-once field above; a reader that sees the magic
    // with acquire sees them all.
    store_release(&h.magic, layout::magic);
    if (opt.heartbeat_interval.count() > 0) start_heartbeat(opt.heartbeat_interval);
  }

  /// True in a child of fork(): the registry is inert (see registry's "Fork" note).
  bool forked() const noexcept { return forked_; }

  void heartbeat() noexcept {
    store_relaxed(&hdr_->heartbeat_ns, clock_ns(CLOCK_MONOTONIC));
    add_shared(&hdr_->heartbeat_count, std::uint64_t{1});
  }

  result<std::uint32_t> add_family(metric_type type, std::string_view name, std::string_view help,
                                   std::string_view unit,
                                   const std::vector<std::string_view>& labels,
                                   std::vector<double> bounds, gauge_mode mode,
                                   const std::vector<const_label>& consts = {},
                                   bool inf_bucket_only = false) {
    std::string exposed(name);
    if (type == metric_type::counter && exposed.size() > 6 &&
        exposed.compare(exposed.size() - 6, 6, "_total") == 0)
      exposed.resize(exposed.size() - 6);
    if (forked_) return error{errc::forked, 0, std::string(name)};
    if (!valid_metric_name(exposed)) return error{errc::invalid_metric_name, 0, std::string(name)};
    if (!valid_utf8(help)) return error{errc::invalid_utf8, 0, std::string(name) + " help"};
    if (!valid_utf8(unit) || !valid_metric_name(unit.empty() ? "x" : unit))
      return error{errc::invalid_metric_name, 0, std::string(name) + " unit"};
    // Every label name the segment gets: the variable ones, then the constant ones.
    std::vector<std::string_view> all_labels = labels;
    for (const const_label& c : consts)
      all_labels.push_back(c.name);
    for (std::size_t i = 0; i < all_labels.size(); ++i) {
      const bool fixed = i >= labels.size();
      std::string who = std::string(name) + (fixed ? " constant label '" : " label '") +
                        std::string(all_labels[i]) + "'";
      if (!valid_label_name(all_labels[i])) return error{errc::invalid_label_name, 0, who};
      if (all_labels[i].starts_with("__") ||
          (type == metric_type::histogram && all_labels[i] == "le"))
        return error{errc::reserved_label_name, 0, who};
      for (std::size_t j = 0; j < i; ++j)
        if (all_labels[j] == all_labels[i])
          return error{errc::duplicate_label_name, 0,
                       who + (fixed && j < labels.size() ? " (also a variable label)" : "")};
      if (fixed && !valid_utf8(consts[i - labels.size()].value))
        return error{errc::invalid_utf8, 0, who + " value"};
    }
    if (all_labels.size() > 0xFFFF)
      return error{errc::invalid_options, 0, std::string(name) + " labels"};
    if (type == metric_type::histogram) {
      if (!bounds.empty() && bounds.back() == std::numeric_limits<double>::infinity())
        bounds.pop_back();
      // An empty list is almost always a bug (a bucket list built from a config that was
      // not read): refused rather than served as a histogram of +Inf only.
      if (bounds.empty() && !inf_bucket_only)
        return error{errc::invalid_buckets, 0,
                     std::string(name) +
                         ": no finite bucket bound (set histogram_spec::inf_bucket_only for a "
                         "histogram of +Inf, _count and _sum only)"};
      if (!bounds.empty() && inf_bucket_only)
        return error{errc::invalid_buckets, 0,
                     std::string(name) + ": inf_bucket_only with finite bucket bounds"};
      for (std::size_t i = 0; i < bounds.size(); ++i)
        if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
          return error{errc::invalid_buckets, 0, std::string(name)};
      if (bounds.size() > 4096) return error{errc::invalid_buckets, 0, std::string(name)};
    } else {
      bounds.clear();
    }

    std::lock_guard lock(mu_);
    if (auto it = by_name_.find(exposed); it != by_name_.end()) {
      family_state& f = families_[it->second];
      bool same = f.type == type && f.mode == mode && f.bounds == bounds && f.help == help &&
                  f.unit == unit && f.label_names.size() == labels.size() &&
                  f.const_names.size() == consts.size();
      for (std::size_t i = 0; same && i < labels.size(); ++i)
        same = f.label_names[i] == labels[i];
      for (std::size_t i = 0; same && i < consts.size(); ++i)
        same = f.const_names[i] == consts[i].name && f.const_values[i] == consts[i].value;
      if (!same)
        return error{f.type != type ? errc::wrong_family_type : errc::family_conflict, 0, exposed};
      return f.index;
    }
    std::vector<std::string> names = exposed_names(type, exposed);
    for (const std::string& n : names)
      if (auto it = exposed_.find(n); it != exposed_.end()) {
        const family_state& other = families_[it->second];
        return error{errc::sample_name_collision, 0,
                     std::string(type_word(type)) + " " + std::string(name) + " and " +
                         type_word(other.type) + " " + other.name + " both expose " + n};
      }
    layout::segment_header& h = *hdr_;
    if (families_.size() >= h.family_capacity) return dropped(errc::families_full, exposed);
    {
      std::uint64_t bytes = exposed.size() + help.size() + unit.size() +
                            bounds.size() * sizeof(double) + 16;  // + alignment
      for (auto l : all_labels)
        bytes += l.size() + sizeof(layout::string_ref) + 4;
      if (!reserve_region(
              h.families_offset, std::uint64_t{h.family_capacity} * layout::family_record_size,
              families_reserved_, (families_.size() + 1) * layout::family_record_size) ||
          !reserve_region(h.strings_offset, h.strings_capacity, strings_reserved_,
                          strings_used_ + bytes))
        return dropped(errc::no_space, exposed);
    }

    std::uint64_t mark = strings_used_;
    auto undo = [&](errc c) {
      strings_used_ = mark;
      return dropped(c, exposed);
    };
    layout::family_record rec{};
    if (!put_string(exposed, rec.name_off, rec.name_len) ||
        !put_string(help, rec.help_off, rec.help_len) ||
        !put_string(unit, rec.unit_off, rec.unit_len) || !put_refs(all_labels, rec.labels_off))
      return undo(errc::strings_full);
    rec.label_count = static_cast<std::uint16_t>(all_labels.size());
    rec.type = static_cast<std::uint8_t>(type);
    rec.gauge_mode = static_cast<std::uint8_t>(mode);
    rec.bucket_count = static_cast<std::uint32_t>(bounds.size());
    std::uint32_t boff = 0;
    if (!alloc(bounds.size() * sizeof(double), 8, boff)) return undo(errc::strings_full);
    if (!bounds.empty()) std::memcpy(arena() + boff, bounds.data(), bounds.size() * sizeof(double));
    rec.buckets_off = boff;

    auto index = static_cast<std::uint32_t>(families_.size());
    std::memcpy(base_ + h.families_offset + std::uint64_t{index} * layout::family_record_size, &rec,
                sizeof rec);
    store_relaxed(&h.strings_used, strings_used_);
    // release: the record and its arena bytes are complete before the count covers them.
    store_release(&h.families_published, index + 1u);

    family_state& f = families_.emplace_back();
    f.name = exposed;
    f.type = type;
    f.mode = mode;
    for (auto l : labels)
      f.label_names.emplace_back(l);
    for (const const_label& c : consts) {
      f.const_names.emplace_back(c.name);
      f.const_values.emplace_back(c.value);
    }
    f.bounds = std::move(bounds);
    f.help = help;
    f.unit = unit;
    f.index = index;
    f.arena_bounds = reinterpret_cast<const double*>(arena() + boff);
    by_name_.emplace(exposed, index);
    for (std::string& n : names)
      exposed_.emplace(std::move(n), index);
    return index;
  }

  /// The key of `f`'s series with these label values (length-prefixed, so no two value
  /// lists share one), or why there is none. Called with mu_ held.
  static std::optional<error> series_key(const family_state& f,
                                         const std::vector<std::string_view>& values,
                                         std::string& key) {
    if (values.size() != f.label_names.size())
      return error{errc::label_count_mismatch, 0,
                   f.name + ": " + std::to_string(values.size()) + " values for " +
                       std::to_string(f.label_names.size()) + " labels"};
    for (auto v : values) {
      if (!valid_utf8(v)) return error{errc::invalid_utf8, 0, f.name + " label value"};
      key += std::to_string(v.size());
      key += ':';
      key += v;
    }
    return std::nullopt;
  }

  /// Registers (or finds) the series; returns a pointer to its first cell in shard 0.
  result<std::uint64_t*> add_series(std::uint32_t family,
                                    const std::vector<std::string_view>& values) {
    // Checked before the lock: another thread of the parent may have held it at fork().
    if (forked_) return error{errc::forked, 0, "series of family " + std::to_string(family)};
    std::lock_guard lock(mu_);
    family_state& f = families_[family];
    std::string key;
    if (auto e = series_key(f, values, key)) return *e;
    layout::segment_header& h = *hdr_;
    if (auto it = f.series.find(key); it != f.series.end()) return cell(it->second.cell);
    if (series_count_ >= h.series_capacity) return dropped(errc::series_full, f.name);
    std::vector<std::string_view> all_values = values;  // then the constant labels' values
    for (const std::string& v : f.const_values)
      all_values.push_back(v);
    std::uint32_t ncells = layout::cells_for(f.type, static_cast<std::uint32_t>(f.bounds.size()));
    if (h.cells_per_shard - cells_used_ < ncells) return dropped(errc::cells_full, f.name);
    {
      std::uint64_t bytes = 8;  // + alignment
      for (auto v : all_values)
        bytes += v.size() + sizeof(layout::string_ref) + 4;
      if (!reserve_region(h.series_offset,
                          std::uint64_t{h.series_capacity} * layout::series_record_size,
                          series_reserved_, (series_count_ + 1ull) * layout::series_record_size) ||
          !reserve_region(h.strings_offset, h.strings_capacity, strings_reserved_,
                          strings_used_ + bytes) ||
          !reserve_region(h.cells_offset, std::uint64_t{h.cells_per_shard} * 8, cells_reserved_,
                          (std::uint64_t{cells_used_} + ncells) * 8, h.shard_count, h.shard_stride))
        return dropped(errc::no_space, f.name);
    }
    std::uint64_t mark = strings_used_;
    layout::series_record rec{};
    if (!put_refs(all_values, rec.labels_off)) {
      strings_used_ = mark;
      return dropped(errc::strings_full, f.name);
    }
    rec.family_index = family;
    rec.cell_index = cells_used_;
    rec.cell_count = ncells;
    cells_used_ += ncells;
    const std::uint32_t record = series_count_;
    std::memcpy(base_ + h.series_offset + std::uint64_t{record} * layout::series_record_size, &rec,
                sizeof rec);
    store_relaxed(&h.strings_used, strings_used_);
    store_relaxed(&h.cells_used, cells_used_);
    // release: record and label bytes complete before the count covers them.
    store_release(&h.series_published, ++series_count_);
    f.series.emplace(std::move(key), family_state::slot{rec.cell_index, record});
    if (f.type == metric_type::info)
      store_relaxed(cell(rec.cell_index), std::bit_cast<std::uint64_t>(1.0));
    return cell(rec.cell_index);
  }

  /// Adds a callback for the gauge at `cell`, calls it once now, and starts the sampling
  /// thread with the first one (callback_interval > 0).
  result<std::shared_ptr<callback_set::entry>> add_callback(const family_state& f, gauge target,
                                                            std::function<double()> fn,
                                                            std::chrono::milliseconds every) {
    if (!fn) return error{errc::invalid_options, 0, f.name + ": empty callback"};
    if (f.type != metric_type::gauge)
      return error{errc::wrong_family_type, 0, f.name + ": a callback needs a gauge family"};
    std::shared_ptr<callback_set> set;
    {
      std::lock_guard lock(mu_);
      if (forked_) return error{errc::forked, 0, f.name};
      if (!callbacks_) {
        callbacks_ = std::make_shared<callback_set>();
        if (every.count() > 0) callbacks_->start(every);
      }
      set = callbacks_;
    }
    auto e = std::make_shared<callback_set::entry>();
    e->target = target;
    e->fn = std::move(fn);
    std::lock_guard lock(set->run_mu);
    set->entries.push_back(e);
    const std::uint64_t before = e->failures.load(std::memory_order_relaxed);
    callback_set::call(*e);
    if (e->failures.load(std::memory_order_relaxed) != before)
      set->failures.fetch_add(1, std::memory_order_relaxed);
    return e;
  }
  std::chrono::milliseconds callback_interval() const noexcept { return callback_every_; }
  std::shared_ptr<callback_set> callbacks() {
    std::lock_guard lock(mu_);
    return callbacks_;
  }
  void sample_callbacks() noexcept {
    if (auto c = callbacks()) c->sample();
  }

  /// Marks the series of these label values removed (remove()); false if it has none.
  result<bool> remove_series(std::uint32_t family, const std::vector<std::string_view>& values) {
    if (forked_) return error{errc::forked, 0, "remove of family " + std::to_string(family)};
    std::lock_guard lock(mu_);
    family_state& f = families_[family];
    std::string key;
    if (auto e = series_key(f, values, key)) return *e;
    auto it = f.series.find(key);
    if (it == f.series.end()) return false;
    mark_removed(it->second.record);
    f.series.erase(it);
    return true;
  }

  /// Marks every series of the family removed (clear()); returns how many.
  result<std::size_t> clear_series(std::uint32_t family) {
    if (forked_) return error{errc::forked, 0, "clear of family " + std::to_string(family)};
    std::lock_guard lock(mu_);
    family_state& f = families_[family];
    const std::size_t n = f.series.size();
    for (const auto& [key, slot] : f.series)
      mark_removed(slot.record);
    f.series.clear();
    return n;
  }

  const family_state& family(std::uint32_t i) {
    std::lock_guard lock(mu_);
    return families_[i];
  }
  shard_pool* pool() noexcept { return pool_.get(); }
  const mapped_segment& segment() const noexcept { return seg_; }
  std::uint64_t instance_id() const noexcept { return instance_id_; }

  registry_usage usage() {
    std::lock_guard lock(mu_);
    const layout::segment_header& h = *hdr_;
    return {static_cast<std::uint32_t>(families_.size()),
            h.family_capacity,
            series_count_,
            h.series_capacity,
            strings_used_,
            h.strings_capacity,
            cells_used_,
            h.cells_per_shard,
            load_relaxed(&h.registrations_dropped),
            series_removed_,
            callbacks_ ? callbacks_->failures.load(std::memory_order_relaxed) : 0};
  }

 private:
  char* arena() noexcept { return base_ + hdr_->strings_offset; }
  std::uint64_t* cell(std::uint32_t index) noexcept {
    return reinterpret_cast<std::uint64_t*>(base_ + hdr_->cells_offset) + index;
  }

  // Under mu_. The record's word first, then the header count with release: a reader that
  // acquires the count sees every flag it covers. Cells are left as they are: handles of
  // the series keep writing there, and nobody reads them.
  void mark_removed(std::uint32_t record) noexcept {
    layout::segment_header& h = *hdr_;
    auto* rec = reinterpret_cast<layout::series_record*>(
        base_ + h.series_offset + std::uint64_t{record} * layout::series_record_size);
    store_relaxed(&rec->removed, std::uint64_t{1});
    store_release(&h.series_removed, ++series_removed_);
  }

  error dropped(errc c, const std::string& who) {
    add_shared(&hdr_->registrations_dropped, std::uint64_t{1});
    return error{c, 0, who};
  }

  // Reserves bytes [0, need) of a region (of `copies` regions `stride` apart: the shards'
  // cells) that starts at `offset` and holds `capacity` bytes, in 16 KiB steps;
  // `reserved` is how much is reserved already. False: no space left on the filesystem.
  // A filesystem that cannot reserve (EOPNOTSUPP) is written unreserved, as before.
  bool reserve_region(std::uint64_t offset, std::uint64_t capacity, std::uint64_t& reserved,
                      std::uint64_t need, std::uint32_t copies = 1, std::uint64_t stride = 0) {
    constexpr std::uint64_t step = 16384;
    if (!reserve_ || need <= reserved) return true;
    const std::uint64_t upto = std::min(capacity, (need + step - 1) / step * step);
    for (std::uint32_t c = 0; c < copies; ++c) {
      const int rc = ::posix_fallocate(seg_.fd, static_cast<off_t>(offset + c * stride + reserved),
                                       static_cast<off_t>(upto - reserved));
      if (rc == ENOSPC) return false;  // shards reserved so far stay reserved: retried next time
      if (rc != 0) {
        reserve_ = false;
        return true;
      }
    }
    reserved = upto;
    return true;
  }

  bool alloc(std::uint64_t bytes, std::uint64_t align, std::uint32_t& off) noexcept {
    std::uint64_t start = (strings_used_ + align - 1) / align * align;
    if (start > hdr_->strings_capacity || hdr_->strings_capacity - start < bytes) return false;
    off = static_cast<std::uint32_t>(start);
    strings_used_ = start + bytes;
    return true;
  }
  bool put_string(std::string_view s, std::uint32_t& off, std::uint32_t& len) noexcept {
    if (!alloc(s.size(), 1, off)) return false;
    if (!s.empty()) std::memcpy(arena() + off, s.data(), s.size());
    len = static_cast<std::uint32_t>(s.size());
    return true;
  }
  bool put_refs(const std::vector<std::string_view>& strs, std::uint32_t& off) noexcept {
    std::vector<layout::string_ref> refs(strs.size());
    for (std::size_t i = 0; i < strs.size(); ++i)
      if (!put_string(strs[i], refs[i].off, refs[i].len)) return false;
    if (!alloc(refs.size() * sizeof(layout::string_ref), 4, off)) return false;
    if (!refs.empty())
      std::memcpy(arena() + off, refs.data(), refs.size() * sizeof(layout::string_ref));
    return true;
  }

  // The fork handlers. prepare/parent hold the list lock across fork() so that the child
  // sees a consistent list; child() makes every inherited registry inert. Only
  // async-signal-safe calls in child(): another thread may have held any lock at fork.
  // registry::create() holds the same lock while it opens the segment file, so a fork
  // never sees a lock fd that no registry_state in the list owns.
 public:
  static void install_fork_handlers() {
    static const int once = ::pthread_atfork(fork_prepare, fork_parent, fork_child);
    (void)once;
  }

 private:
  static void fork_prepare() { live_registries::get().mu.lock(); }
  static void fork_parent() { live_registries::get().mu.unlock(); }
  static void fork_child() {
    live_registries& l = live_registries::get();
    for (registry_state* r = l.head; r; r = r->next_)
      r->detach_after_fork();
    // Locked by fork_prepare in the thread that forked, which is this one: unlocked rather
    // than made anew, so that ThreadSanitizer sees it free again.
    l.mu.unlock();
  }

  // In the child: the segment stays the parent's alone. Its mapping is replaced, at the
  // same address, by private memory holding a copy of the header and the string arena
  // (histogram handles read their bounds there), so inherited handles keep working but
  // write only into this process; cells start at zero. The copy of the lock fd is closed
  // and no mapping refers to the file any more, so the parent's lifetime lock ends with
  // the parent. The heartbeat thread does not exist here; the locks are made anew.
  void detach_after_fork() noexcept {
    forked_ = true;
    new (&hb_thread_) std::thread;  // the parent's thread id means nothing here
    new (&hb_mu_) std::mutex;
    new (&hb_cv_) std::condition_variable;
    new (&mu_) std::mutex;
    if (callbacks_) {
      // The sampling thread is the parent's; its locks may have been held at fork.
      callback_set& c = *callbacks_;
      new (&c.thread) std::thread;
      new (&c.run_mu) std::recursive_mutex;
      new (&c.thread_mu) std::mutex;
      new (&c.thread_cv) std::condition_variable;
      c.depth = 0;
      c.closed = true;  // an inert registry calls nothing
    }
    if (base_) {
      const std::uint64_t arena_off = hdr_->strings_offset;
      const std::uint64_t arena_len = std::min(strings_used_, hdr_->strings_capacity);
      void* copy =
          ::mmap(nullptr, seg_.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (copy != MAP_FAILED) {
        std::memcpy(copy, base_, layout::header_size);
        std::memcpy(static_cast<char*>(copy) + arena_off, base_ + arena_off, arena_len);
        if (::mremap(copy, seg_.size, seg_.size, MREMAP_MAYMOVE | MREMAP_FIXED, base_) ==
            MAP_FAILED)
          ::munmap(copy, seg_.size);
        else
          copy = nullptr;
      }
      if (copy != nullptr)  // no memory for the copy: zeroes, still never the parent's pages
        ::mmap(base_, seg_.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
               -1, 0);
    }
    if (seg_.fd >= 0) ::close(seg_.fd);
    seg_.fd = -1;
  }

  void start_heartbeat(std::chrono::milliseconds every) {
    hb_thread_ = std::thread([this, every] {
      std::unique_lock lock(hb_mu_);
      while (!hb_stop_) {
        heartbeat();
        hb_cv_.wait_for(lock, every, [this] { return hb_stop_; });
      }
    });
  }
  void stop_heartbeat() {
    {
      std::lock_guard lock(hb_mu_);
      hb_stop_ = true;
    }
    hb_cv_.notify_all();
    if (hb_thread_.joinable()) hb_thread_.join();
  }

  mapped_segment seg_;
  bool unlink_on_close_;
  bool reserve_;  // registry_options::reserve, off once the filesystem cannot reserve
  std::chrono::milliseconds callback_every_;  // registry_options::callback_interval
  // Bytes reserved of each region (cells: of each shard), see reserve_region().
  std::uint64_t families_reserved_ = 0, series_reserved_ = 0, strings_reserved_ = 0,
                cells_reserved_ = 0;
  char* base_ = nullptr;
  layout::segment_header* hdr_ = nullptr;
  std::uint64_t instance_id_ = 0;
  std::shared_ptr<shard_pool> pool_;

  std::mutex mu_;  // guards everything below
  std::deque<family_state> families_;
  std::unordered_map<std::string, std::uint32_t> by_name_;
  std::unordered_map<std::string, std::uint32_t> exposed_;  // exposed_names() -> family index
  std::uint32_t series_count_ = 0;
  std::uint64_t series_removed_ = 0;
  std::uint64_t strings_used_ = 0;
  std::uint32_t cells_used_ = 0;

  std::shared_ptr<callback_set> callbacks_;  // created with the first callback gauge

  std::mutex hb_mu_;
  std::condition_variable hb_cv_;
  bool hb_stop_ = false;
  std::thread hb_thread_;

  bool forked_ = false;             // set in a fork() child only, before any thread exists there
  registry_state* prev_ = nullptr;  // live_registries list, under its mutex
  registry_state* next_ = nullptr;
};

}  // namespace detail

/// A gauge whose value a function computes, called by a thread of the registry every
/// registry_options::callback_interval (prometheus_client's Gauge.set_function(), and
/// what process_metrics does for its own figures). Returned by
/// gauge_family::with_callback(); move-only. Destroying it (or reset()) unregisters the
/// function: once that returns, the function is not running and is never called again.
/// The gauge keeps the last value it was set to.
///
/// The function runs off the hot path, on the sampling thread, one function at a time.
/// One that throws leaves the gauge at its previous value; the throw is counted
/// (failures(), registry_usage::callback_failures) and the others still run. Do not
/// destroy the handle, nor the registry, while holding a lock the function takes, and
/// never from the function's own thread except through reset() of a callback handle.
class callback_gauge {
 public:
  callback_gauge() = default;
  callback_gauge(std::shared_ptr<detail::callback_set> set,
                 std::shared_ptr<detail::callback_set::entry> e) noexcept
      : set_(std::move(set)), entry_(std::move(e)) {}
  callback_gauge(callback_gauge&&) noexcept = default;
  callback_gauge& operator=(callback_gauge&& o) noexcept {
    if (this != &o) {
      reset();
      set_ = std::move(o.set_);
      entry_ = std::move(o.entry_);
    }
    return *this;
  }
  callback_gauge(const callback_gauge&) = delete;
  callback_gauge& operator=(const callback_gauge&) = delete;
  ~callback_gauge() { reset(); }

  /// Unregisters the function (waits for a call of it in progress to end).
  void reset() noexcept {
    if (set_ && entry_) set_->drop(entry_);
    set_.reset();
    entry_.reset();
  }
  /// Calls of this function that threw.
  std::uint64_t failures() const noexcept {
    return entry_ ? entry_->failures.load(std::memory_order_relaxed) : 0;
  }
  explicit operator bool() const noexcept { return entry_ != nullptr; }

 private:
  std::shared_ptr<detail::callback_set> set_;
  std::shared_ptr<detail::callback_set::entry> entry_;
};

/// One family: a metric name with a type and label names. Copyable, cheap; valid while
/// its registry lives. with_labels() is the cold path that yields a hot-path handle.
template <class Handle>
class family {
 public:
  family() = default;
  family(detail::registry_state* reg, std::uint32_t index) noexcept : reg_(reg), index_(index) {}

  /// The series for these label values (in the order of the family's label names),
  /// created on first call, the same one after. Call once and keep the handle.
  /// Thread-safe: yes (takes the registry mutex). Allocates: yes. Fails:
  /// label_count_mismatch, invalid_utf8, series_full, cells_full, strings_full.
  result<Handle> with_labels(std::initializer_list<std::string_view> values) const {
    return with_labels(std::vector<std::string_view>(values));
  }
  result<Handle> with_labels(const std::vector<std::string_view>& values) const {
    if (!reg_) return error{errc::invalid_options, 0, "with_labels on an empty family"};
    auto cell = reg_->add_series(index_, values);
    if (!cell) return cell.error();
    const detail::family_state& f = reg_->family(index_);
    if constexpr (std::is_same_v<Handle, counter>) {
      return counter(reg_->pool(), *cell);
    } else if constexpr (std::is_same_v<Handle, gauge>) {
      return gauge(*cell, f.mode == gauge_mode::latest || f.mode == gauge_mode::live_latest);
    } else {
      return histogram(reg_->pool(), *cell, f.arena_bounds,
                       static_cast<std::uint32_t>(f.bounds.size()));
    }
  }

  /// Removes the series of these label values, as prometheus_client's remove() and
  /// prometheus-cpp's Family::Remove(): readers (format 1.1) and the exporter stop serving
  /// it. Handles to it stay safe: their writes go to cells nobody reads. with_labels() with
  /// the same values later creates a new series, from zero. Its record and cells are not
  /// reused (the segment is append-only): churn counts against max_series and max_cells.
  /// Returns false when the family has no such series. Fails: label_count_mismatch, forked.
  result<bool> remove(std::initializer_list<std::string_view> values) const {
    return remove(std::vector<std::string_view>(values));
  }
  result<bool> remove(const std::vector<std::string_view>& values) const {
    if (!reg_) return error{errc::invalid_options, 0, "remove on an empty family"};
    return reg_->remove_series(index_, values);
  }
  /// Removes every series of the family (prometheus_client's clear()); returns how many.
  result<std::size_t> clear() const {
    if (!reg_) return error{errc::invalid_options, 0, "clear on an empty family"};
    return reg_->clear_series(index_);
  }

  /// Gauge families: the series for these label values, its value computed by `fn` (no
  /// arguments, returns the value) on the registry's sampling thread: once now, then every
  /// registry_options::callback_interval (or at registry::sample_callbacks()). Keep the
  /// returned handle: destroying it stops the calls. Several callbacks on one series all
  /// run (the last one called wins). Fails: as with_labels(); invalid_options (empty fn),
  /// wrong_family_type (an info family).
  result<callback_gauge> with_callback(
      std::initializer_list<std::string_view> values,
      std::function<double()> fn) const requires std::is_same_v<Handle, gauge> {
    return with_callback(std::vector<std::string_view>(values), std::move(fn));
  }
  result<callback_gauge> with_callback(
      const std::vector<std::string_view>& values,
      std::function<double()> fn) const requires std::is_same_v<Handle, gauge> {
    if (reg_ && reg_->family(index_).type != metric_type::gauge)
      return error{errc::wrong_family_type, 0, name() + ": a callback needs a gauge family"};
    auto g = with_labels(values);
    if (!g) return g.error();
    auto e = reg_->add_callback(reg_->family(index_), *g, std::move(fn), reg_->callback_interval());
    if (!e) return e.error();
    return callback_gauge(reg_->callbacks(), std::move(*e));
  }

  /// The family's name as stored (counters without `_total`).
  const std::string& name() const { return reg_->family(index_).name; }
  explicit operator bool() const noexcept { return reg_ != nullptr; }

 private:
  detail::registry_state* reg_ = nullptr;
  std::uint32_t index_ = 0;
};

using counter_family = family<counter>;
using gauge_family = family<gauge>;
using histogram_family = family<histogram>;
using info_family = family<gauge>;  ///< with_labels() sets the series to 1

/// Owns this process's segment. Move-only. Create one per process (or per component)
/// and register families at start-up; handles stay valid while it lives.
///
/// Thread-safe: every member may be called from any thread. Allocates: yes (cold path).
///
/// Fork: a segment belongs to the process that created it. In a child of fork(), every
/// registry inherited from the parent is inert: handles keep working but write into
/// private memory nobody reads (so the parent's shards are never written twice, nor its
/// counts doubled), registration fails with errc::forked, the heartbeat thread is not
/// there, the child holds no lifetime lock (the parent's death stays visible) and
/// destroying the registry leaves the parent's segment alone. This holds for a fork() while
/// another thread is inside create() too: create() holds the fork handlers' lock from
/// before it opens the file until the registry is on their list. A child that records
/// metrics creates its own registry (its own segment, under its own pid). exec() drops
/// everything: the segment fd is close-on-exec. posix_spawn(), vfork() and system() run
/// no fork handlers and need none.
class registry {
 public:
  registry() = default;

  /// Creates the segment `<dir>/<prefix>.<pid>.<instance>` (mode `opt.mode`, created
  /// exclusively, symlinks never followed); see registry_options::reserve.
  /// Fails: invalid_options, segment_exists, create_failed, no_space, map_failed.
  static result<registry> create(const registry_options& opt = {}) {
    auto bad = [](const char* what) { return error{errc::invalid_options, 0, what}; };
    if (opt.dir.empty()) return bad("dir is empty");
    if (opt.prefix.empty() || opt.prefix[0] == '.')
      return bad("prefix is empty or starts with '.'");
    for (char c : opt.prefix)
      if (!(detail::is_alpha_(c) || detail::is_digit(c) || c == '-' || c == '.'))
        return bad("prefix has a character outside [A-Za-z0-9_.-]");
    if (opt.shards < 1 || opt.shards > layout::max_shards) return bad("shards must be 1..64");
    if (opt.max_families < 1 || opt.max_series < 1 || opt.max_cells < 1)
      return bad("max_families, max_series and max_cells must be >= 1");
    if (opt.string_bytes < 64 || opt.string_bytes > 0xFFFFFFF0u)
      return bad("string_bytes must be 64..4 GiB");
    if (opt.segment_bytes() > (std::uint64_t{1} << 40)) return bad("segment larger than 1 TiB");

    registry r;
    std::uint64_t instance = detail::random_instance_id();
    char name[64];
    std::snprintf(name, sizeof name, ".%d.%016llx", static_cast<int>(getpid()),
                  static_cast<unsigned long long>(instance));
    std::string path = opt.dir + (opt.dir.back() == '/' ? "" : "/") + opt.prefix + name;
    {
      // Held from before the file is opened until its state is in the list that the
      // fork handlers walk: a fork() meanwhile (another thread) waits, rather than
      // leaving the child an fd of the lifetime lock that nothing there closes (a dead
      // writer would look alive while the child lives).
      detail::registry_state::install_fork_handlers();
      std::lock_guard lock(detail::live_registries::get().mu);
      auto seg = detail::create_segment_file(path, opt.segment_bytes(), opt.mode, opt.reserve,
                                             layout::header_size);
      if (!seg) return seg.error();
      r.state_ = std::make_unique<detail::registry_state>(std::move(*seg), opt);
    }
    r.state_->init(opt, instance);
    // Moved explicitly: nvcc's front end does not apply C++20's implicit move to a
    // converting constructor, and the writer must compile from a .cu file.
    return result<registry>(std::move(r));
  }

  result<counter_family> add_counter(const counter_spec& s) {
    auto i = state_->add_family(metric_type::counter, s.name, s.help, s.unit, s.labels, {},
                                gauge_mode::sum, s.const_labels);
    if (!i) return i.error();
    return counter_family(state_.get(), *i);
  }
  result<gauge_family> add_gauge(const gauge_spec& s) {
    auto i = state_->add_family(metric_type::gauge, s.name, s.help, s.unit, s.labels, {}, s.mode,
                                s.const_labels);
    if (!i) return i.error();
    return gauge_family(state_.get(), *i);
  }
  result<histogram_family> add_histogram(const histogram_spec& s) {
    auto i = state_->add_family(metric_type::histogram, s.name, s.help, s.unit, s.labels, s.buckets,
                                gauge_mode::sum, s.const_labels, s.inf_bucket_only);
    if (!i) return i.error();
    return histogram_family(state_.get(), *i);
  }
  result<info_family> add_info(const info_spec& s) {
    auto i = state_->add_family(metric_type::info, s.name, s.help, {}, s.labels, {},
                                gauge_mode::live_max, s.const_labels);
    if (!i) return i.error();
    return info_family(state_.get(), *i);
  }

  /// Refreshes the heartbeat (CLOCK_MONOTONIC + a count). Call once per engine step if
  /// heartbeat_interval is 0; otherwise a background thread does it. Cheap: a vDSO
  /// clock read and two stores. Thread-safe.
  void heartbeat() noexcept { state_->heartbeat(); }

  /// Calls every callback gauge's function now (on this thread), as the sampling thread
  /// does every callback_interval; with callback_interval 0, the only way they run.
  void sample_callbacks() noexcept { state_->sample_callbacks(); }

  const std::string& path() const noexcept { return state_->segment().path; }
  std::uint64_t instance_id() const noexcept { return state_->instance_id(); }
  std::uint64_t segment_bytes() const noexcept { return state_->segment().size; }
  registry_usage usage() const { return state_->usage(); }
  explicit operator bool() const noexcept { return state_ != nullptr; }
  /// True in a child of fork() that inherited this registry: it is inert (see "Fork").
  bool inherited_across_fork() const noexcept { return state_ && state_->forked(); }

 private:
  friend struct detail::handle_access;

  std::unique_ptr<detail::registry_state> state_;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_REGISTRY_HPP
