#include "shmetrics/reader/mapping_guard.hpp"

#include <signal.h>    // sigaction
#include <sys/mman.h>  // mmap
#include <unistd.h>    // sysconf

#include <atomic>   // slots shared with the handler
#include <cstdint>  // uintptr_t
#include <mutex>    // one install at a time

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

namespace {

// Mappings watched at once: a segment each, far more than the file descriptors an
// exporter is allowed by default. The handler scans them only on a SIGBUS.
constexpr int slot_count = 65536;

// A slot is free when begin == 0. Lock-free: the handler only loads.
struct slot {
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::size_t> size{0};
  std::atomic<bool> damaged{false};
};
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free);

slot slots[slot_count];

// The handler that was installed before ours, chained to for faults that are not ours.
// Two copies: a re-install (a host program put its own handler in after ours) writes the
// one the handler is not reading, then flips `current_previous`.
struct sigaction previous[2];
std::atomic<int> current_previous{0};
std::mutex install_mu;
// Set while this thread is in the chained handler: a host handler that chains back to us
// must not loop. initial-exec: no allocation on first access inside a signal handler.
[[gnu::tls_model("initial-exec")]] constinit thread_local bool chaining = false;

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (slot& s : slots) {
    const std::uintptr_t b = s.begin.load(std::memory_order_acquire);
    if (b <= 1 || addr < b || addr - b >= s.size.load(std::memory_order_relaxed)) continue;
    // Ours: zero pages over the faulting page, so that the read completes.
    const std::uintptr_t page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    void* at = reinterpret_cast<void*>(addr & ~(page - 1));
    s.damaged.store(true, std::memory_order_release);
    if (::mmap(at, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED)
      return;
    break;  // cannot repair: fall through to the default
  }
  const struct sigaction& prev = previous[current_previous.load(std::memory_order_acquire)];
  if (!chaining) {
    chaining = true;
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction) {
      prev.sa_sigaction(sig, info, ctx);
      chaining = false;
      return;
    }
    if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
      prev.sa_handler(sig);
      chaining = false;
      return;
    }
    chaining = false;
  }
  // Not ours: die of SIGBUS as the process would have without us.
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

// Installs on_sigbus unless it is the handler now: at the first mapping, and again when
// a host program has installed its own handler since (that one is chained to from then
// on), so that a mapping made after it is guarded too.
void ensure_installed() {
  std::lock_guard lock(install_mu);
  struct sigaction now {};
  if (sigaction(SIGBUS, nullptr, &now) != 0) return;
  if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_sigbus) return;
  const int next = 1 - current_previous.load(std::memory_order_relaxed);
  previous[next] = now;
  current_previous.store(next, std::memory_order_release);
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace

mapping_guard::mapping_guard(const void* base, std::size_t size) noexcept {
  if (!base || size == 0) return;
  ensure_installed();
  for (int i = 0; i < slot_count; ++i) {
    std::uintptr_t expected = 0;
    // Claim with a marker first so the handler never sees a begin without its size.
    if (!slots[i].begin.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    slots[i].size.store(size, std::memory_order_relaxed);
    slots[i].damaged.store(false, std::memory_order_relaxed);
    slots[i].begin.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_release);
    slot_ = i;
    return;
  }
}

mapping_guard& mapping_guard::operator=(mapping_guard&& o) noexcept {
  if (this != &o) {
    this->~mapping_guard();
    slot_ = o.slot_;
    o.slot_ = -1;
  }
  return *this;
}

mapping_guard::~mapping_guard() {
  if (slot_ < 0) return;
  slots[slot_].begin.store(0, std::memory_order_release);
  slot_ = -1;
}

bool mapping_guard::damaged() const noexcept {
  return slot_ >= 0 && slots[slot_].damaged.load(std::memory_order_acquire);
}

}  // namespace detail
SHMETRICS_END_NAMESPACE
