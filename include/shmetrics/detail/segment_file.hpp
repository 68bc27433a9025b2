// shmetrics::detail: creating the writer's segment file (cold path, POSIX).
//
// Why not Boost.Interprocess shared_memory_object: it always lives in /dev/shm, cannot
// open with O_NOFOLLOW in a directory of our choosing, and the writer needs the fd for
// its lifetime lock (flock), which readers probe to tell a dead writer from a live one
// across PID namespaces. So this is open/ftruncate/fallocate/mmap, and nothing more.
#ifndef SHMETRICS_DETAIL_SEGMENT_FILE_HPP
#define SHMETRICS_DETAIL_SEGMENT_FILE_HPP

#include <cerrno>      // errno
#include <cstdint>     // sizes
#include <string>      // path
#include <fcntl.h>     // open, posix_fallocate
#include <sys/file.h>  // flock
#include <sys/mman.h>  // mmap
#include <sys/stat.h>  // fchmod
#include <unistd.h>    // ftruncate, close, unlink

#include "../config.hpp"
#include "../errc.hpp"

SHMETRICS_BEGIN_NAMESPACE
namespace detail {

struct mapped_segment {
  int fd = -1;
  void* base = nullptr;
  std::size_t size = 0;
  std::string path;
};

/// Creates `path` exclusively (never follows a symlink, never opens an existing file),
/// with `mode` exactly, sized, and with its first `reserve_bytes` reserved (all of it by
/// default; the registry reserves the rest as registrations reach it) so that a full
/// /dev/shm fails with no_space rather than as SIGBUS on the hot path later. Holds
/// flock(LOCK_EX) for the writer's life.
inline result<mapped_segment> create_segment_file(const std::string& path, std::size_t size,
                                                  unsigned mode, bool reserve,
                                                  std::size_t reserve_bytes = SIZE_MAX) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0)
    return error{errno == EEXIST ? errc::segment_exists : errc::create_failed, errno, path};
  auto fail = [&](errc c, int e) {
    ::close(fd);
    ::unlink(path.c_str());
    return error{c, e, path};
  };
  if (::fchmod(fd, mode) != 0)
    return fail(errc::create_failed, errno);  // umask must not widen or narrow it
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) return fail(errc::create_failed, errno);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0)
    return fail(errno == ENOSPC ? errc::no_space : errc::create_failed, errno);
  if (reserve) {
    int rc =
        ::posix_fallocate(fd, 0, static_cast<off_t>(reserve_bytes < size ? reserve_bytes : size));
    if (rc == ENOSPC) return fail(errc::no_space, rc);
    // EOPNOTSUPP/EINVAL: the filesystem cannot reserve; carry on unreserved.
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail(errc::map_failed, errno);
  return mapped_segment{fd, base, size, path};
}

}  // namespace detail
SHMETRICS_END_NAMESPACE

#endif  // SHMETRICS_DETAIL_SEGMENT_FILE_HPP
