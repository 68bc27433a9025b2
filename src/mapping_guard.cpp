#include "shmetrics/reader/mapping_guard.hpp"

#include <signal.h>    // sigaction
#include <sys/mman.h>  // mmap
#include <unistd.h>    // sysconf

#include <atomic>   // slots shared with the handler
#include <cstdint>  // uintptr_t
#include <mutex>    // call_once

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

namespace {

constexpr int slot_count = 4096;

// A slot is free when begin == 0. Lock-free: the handler only loads.
struct slot {
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::size_t> size{0};
  std::atomic<bool> damaged{false};
};
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free);

slot slots[slot_count];
struct sigaction previous;
std::once_flag installed;

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
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction) return previous.sa_sigaction(sig, info, ctx);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    return previous.sa_handler(sig);
  }
  // Not ours: die of SIGBUS as the process would have without us.
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

void install() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &previous);
}

}  // namespace

mapping_guard::mapping_guard(const void* base, std::size_t size) noexcept {
  if (!base || size == 0) return;
  std::call_once(installed, install);
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
