// For plain-main tests (no Catch2) of a small or full /dev/shm: EXPECT, and a check run in
// a child process inside a private mount namespace, on a tmpfs of a chosen size, without
// touching the real one. The child's exit code is the test's; 77 (skip) where mounting is
// not allowed (no root or CAP_SYS_ADMIN).
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test {

/// Checks in plain-main tests: EXPECT(cond) reports a false `cond` with its line and counts
/// it in `failures`, and the test goes on (its exit code is `failures ? 1 : 0`).
inline int failures = 0;
#define EXPECT(cond)                                                          \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
      ++::test::failures;                                                     \
    }                                                                         \
  } while (0)

/// `checks(dir)` runs in a forked child with a fresh tmpfs of `size` (e.g. "8m") mounted
/// on `dir`; returns its exit code (1 if it did not exit).
inline int run_in_private_tmpfs(const char* size, int (*checks)(const std::string& dir)) {
  char dir[] = "/tmp/shmetrics-tmpfs-XXXXXX";
  if (!::mkdtemp(dir)) return 1;
  pid_t pid = ::fork();
  if (pid == 0) {
    const std::string options = std::string("size=") + size + ",mode=0700";
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", dir, "tmpfs", 0, options.c_str()) != 0) {
      std::printf("cannot mount a private tmpfs (%s): skipped\n", std::strerror(errno));
      std::fflush(stdout);
      ::_exit(77);
    }
    int rc = checks(dir);
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(rc);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::rmdir(dir);  // the tmpfs went away with the child's mount namespace
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

}  // namespace test
