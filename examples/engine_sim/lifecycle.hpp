// Shutdown coordination between the HTTP worker threads and main().
//
// On SIGINT / SIGTERM main() sets `stopping`; every response in flight then ends at its
// next write (a stream with an error event and `data: [DONE]`, a waiting non-streamed
// response with an error body), so clients get a complete HTTP message instead of a cut
// connection. main() waits for `active_replies` to reach 0, stops the listener, waits
// for `backend_users` to reach 0 and only then destroys what the handlers use.
#pragma once

#include <atomic>       // counters
#include <chrono>       // deadlines
#include <string>       // tails
#include <string_view>  // content types
#include <thread>       // sleep

namespace engine_sim::lifecycle {

inline std::atomic<bool> stopping{false};
inline std::atomic<int> active_replies{0};  ///< responses whose body is still being sent
inline std::atomic<int> backend_users{0};   ///< handlers inside a backend call right now

/// Held around every use of the backend from an HTTP thread. Incremented before
/// `stopping` is read, so main() (which sets `stopping`, then waits for 0) never
/// destroys the backend under a user that saw `stopping == false`.
class use {
 public:
  use() noexcept { backend_users.fetch_add(1); }
  ~use() { backend_users.fetch_sub(1); }
  use(const use&) = delete;
  use& operator=(const use&) = delete;
  bool ok() const noexcept { return !stopping.load(); }
};

/// Counts one response body in flight for as long as it lives.
struct reply_token {
  reply_token() noexcept { active_replies.fetch_add(1); }
  ~reply_token() { active_replies.fetch_sub(1); }
  reply_token(const reply_token&) = delete;
  reply_token& operator=(const reply_token&) = delete;
};

/// Waits until `n` is 0 or `until` passes; true when it reached 0.
inline bool drain(const std::atomic<int>& n, std::chrono::steady_clock::time_point until) {
  while (n.load() > 0) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

inline constexpr const char* shutdown_error =
    R"({"error":{"message":"the server is shutting down","type":"ServiceUnavailableError","param":null,"code":503}})";

/// What ends a response cut short by shutdown: for an SSE stream an error event and
/// [DONE]; for a JSON body (only whitespace sent so far) the error object.
inline std::string shutdown_tail(std::string_view content_type) {
  if (content_type.starts_with("text/event-stream"))
    return std::string("data: ") + shutdown_error + "\n\ndata: [DONE]\n\n";
  return shutdown_error;
}

}  // namespace engine_sim::lifecycle
