// shmetrics: the writer process's own process_* families (CPU time, memory, file
// descriptors, start time), named and typed as the Prometheus client libraries export
// them.
//
//   auto pm = shmetrics::process_metrics::create(*reg);  // once per process
//   if (!pm) { fprintf(stderr, "%s\n", pm.error().message().c_str()); return 1; }
//   pm->sample_every(std::chrono::seconds(1));          // or call pm->sample() yourself
//
// Why: vLLM serves /metrics from its API server, so prometheus_client's process_*
// collector describes the serving process, and dashboards build uptime, CPU and memory
// panels on it. With a sidecar exporter, whoever serves /metrics is the exporter, and
// the exporter cannot read the engine's /proc when it runs in a PID namespace of its own.
// So the engine records its own figures into its segment; the exporter then serves those
// and leaves its own process_* families out (docs/exporter.md, "Self-metrics").
//
// Several writer processes (one segment each) merge as a serving stack: CPU seconds
// (a counter), resident and virtual memory and open fds add up over live writers; the
// start time is the oldest live writer's, max fds the smallest limit. A process has at
// most one process_metrics at a time: a second (in another registry, say) would count the
// process twice, so create() refuses it.
//
// Everything here is the cold path: sample() reads three files under /proc (tens of
// microseconds). Thread-safe: sample() may be called from any thread, concurrently with
// the sampling thread.
#ifndef SHMETRICS_PROCESS_METRICS_HPP
#define SHMETRICS_PROCESS_METRICS_HPP

#include <atomic>              // the one-per-process guard
#include <chrono>              // sampling period
#include <condition_variable>  // stopping the sampling thread
#include <iterator>            // std::size
#include <memory>              // state shared with the sampling thread
#include <mutex>               // one sample at a time
#include <thread>              // sampling thread
#include <unistd.h>            // getpid

#include "config.hpp"
#include "counter.hpp"
#include "detail/proc_self.hpp"
#include "errc.hpp"
#include "gauge.hpp"
#include "registry.hpp"

SHMETRICS_BEGIN_NAMESPACE

class process_metrics {
 public:
  /// Registers process_cpu_seconds_total, process_resident_memory_bytes,
  /// process_virtual_memory_bytes, process_open_fds, process_max_fds and
  /// process_start_time_seconds in `reg` (no labels), and takes a first sample.
  /// `reg` must outlive the returned object.
  /// @retval errc::duplicate_process_metrics another process_metrics of this process lives
  /// @retval any registration error of `reg` (segment full, a conflicting family)
  static result<process_metrics> create(registry& reg) {
    auto s = std::make_unique<state>();
    // A child of fork() inherits its parent's owner pid, which is not its own: it may
    // record its own process in a registry of its own.
    const pid_t self = getpid();
    for (pid_t seen = owner_pid().load();;) {
      if (seen == self) return error{errc::duplicate_process_metrics, 0, "process_metrics"};
      if (owner_pid().compare_exchange_weak(seen, self)) break;
    }
    s->owner = self;
    auto undo = [&](error e) {
      owner_pid().store(0);
      return e;
    };
    auto cpu = reg.add_counter({.name = "process_cpu_seconds_total",
                                .help = "Total user and system CPU time spent in seconds."});
    if (!cpu) return undo(cpu.error());
    auto c = cpu->with_labels({});
    if (!c) return undo(c.error());
    s->cpu = *c;
    struct gauge_def {
      const char* name;
      const char* help;
      gauge_mode mode;
    };
    static constexpr gauge_def gauges[] = {
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", gauge_mode::live_sum},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", gauge_mode::live_sum},
        {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
         gauge_mode::live_min},
        {"process_open_fds", "Number of open file descriptors.", gauge_mode::live_sum},
        {"process_max_fds", "Maximum number of open file descriptors.", gauge_mode::live_min},
    };
    gauge* const handles[] = {&s->virtual_bytes, &s->resident_bytes, &s->start_time, &s->open_fds,
                              &s->max_fds};  // in the order of `gauges`
    for (std::size_t i = 0; i < std::size(gauges); ++i) {
      auto fam =
          reg.add_gauge({.name = gauges[i].name, .help = gauges[i].help, .mode = gauges[i].mode});
      if (!fam) return undo(fam.error());
      auto g = fam->with_labels({});
      if (!g) return undo(g.error());
      *handles[i] = *g;
    }
    s->boot_time_s = detail::read_boot_time_s();
    process_metrics pm(std::move(s));
    pm.sample();
    return result<process_metrics>(std::move(pm));  // nvcc: no implicit move here
  }

  /// Empty: records nothing (sample() and sample_every() do nothing).
  process_metrics() = default;
  process_metrics(process_metrics&&) noexcept = default;
  process_metrics& operator=(process_metrics&& o) noexcept {
    if (this != &o) {
      release();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  process_metrics(const process_metrics&) = delete;
  process_metrics& operator=(const process_metrics&) = delete;
  ~process_metrics() { release(); }

  /// Reads /proc/self and updates the six series: the CPU counter grows by the time used
  /// since the last sample, the gauges are set. Cold: opens three files. Never fails: a
  /// figure that cannot be read keeps the value it had (0 before the first reading).
  void sample() noexcept {
    if (state_) state_->sample();
  }

  /// Starts a thread that calls sample() every `period` (a second suits any scrape
  /// interval), until this object is destroyed. Calling it again changes the period.
  void sample_every(std::chrono::milliseconds period) {
    if (!state_) return;
    state_->stop_thread();
    state_->start_thread(period);
  }

 private:
  struct state {
    counter cpu;
    gauge virtual_bytes, resident_bytes, start_time, open_fds, max_fds;
    double boot_time_s = 0;
    double cpu_recorded = 0;  // CPU seconds already added to `cpu`
    pid_t owner = 0;
    std::mutex sample_mu;
    std::mutex thread_mu;
    std::condition_variable thread_cv;
    bool stopping = false;
    std::thread thread;

    void sample() noexcept {
      detail::process_figures f = detail::read_process_figures(boot_time_s);
      std::lock_guard lock(sample_mu);
      // Clock ticks only grow; a smaller reading (none could be made) adds nothing.
      if (f.cpu_seconds > cpu_recorded) {
        cpu.add(f.cpu_seconds - cpu_recorded);
        cpu_recorded = f.cpu_seconds;
      }
      if (f.resident_bytes > 0) resident_bytes.set(f.resident_bytes);
      if (f.virtual_bytes > 0) virtual_bytes.set(f.virtual_bytes);
      if (f.start_time_s > boot_time_s) start_time.set(f.start_time_s);
      if (f.open_fds > 0) open_fds.set(f.open_fds);
      if (f.max_fds > 0) max_fds.set(f.max_fds);
    }
    void start_thread(std::chrono::milliseconds period) {
      stopping = false;
      thread = std::thread([this, period] {
        std::unique_lock lock(thread_mu);
        while (!thread_cv.wait_for(lock, period, [this] { return stopping; }))
          sample();
      });
    }
    void stop_thread() {
      {
        std::lock_guard lock(thread_mu);
        stopping = true;
      }
      thread_cv.notify_all();
      if (thread.joinable()) thread.join();
    }
  };

  explicit process_metrics(std::unique_ptr<state> s) : state_(std::move(s)) {}

  void release() noexcept {
    if (!state_) return;
    pid_t mine = state_->owner;
    if (getpid() != mine) {
      // A child of fork(): its copy of the state holds the parent's std::thread (no such
      // thread runs here: joining would wait forever, destroying would terminate) and a
      // condition variable that thread was waiting on (destroying it waits for a waiter
      // that never leaves). Leak the copy, once per child.
      owner_pid().compare_exchange_strong(mine, 0);
      (void)state_.release();
      return;
    }
    state_->stop_thread();
    owner_pid().compare_exchange_strong(mine, 0);
    state_.reset();
  }

  /// The pid whose process_metrics lives now (0: none).
  static std::atomic<pid_t>& owner_pid() noexcept {
    static std::atomic<pid_t> owner{0};
    return owner;
  }

  std::unique_ptr<state> state_;
};

SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_PROCESS_METRICS_HPP
