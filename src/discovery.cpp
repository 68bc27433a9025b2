// shmetrics reader: segment discovery by directory scan.
#include "shmetrics/reader/discovery.hpp"

#include <algorithm>  // std::sort
#include <cerrno>     // errno
#include <dirent.h>   // opendir

SHMETRICS_BEGIN_NAMESPACE

bool parse_segment_name(const std::string& file, const std::string& prefix, segment_name& out) {
  // <prefix>.<pid>.<16 hex>
  if (file.size() < prefix.size() + 1 + 1 + 1 + 16 || file.compare(0, prefix.size(), prefix) != 0 ||
      file[prefix.size()] != '.')
    return false;
  std::size_t p = prefix.size() + 1;
  std::size_t dot = file.find('.', p);
  if (dot == std::string::npos || dot == p || dot - p > 10 || file.size() - dot - 1 != 16)
    return false;
  std::uint64_t pid = 0;
  for (std::size_t i = p; i < dot; ++i) {
    if (file[i] < '0' || file[i] > '9') return false;
    pid = pid * 10 + static_cast<std::uint64_t>(file[i] - '0');
  }
  if (pid == 0 || pid > 0xFFFFFFFFu) return false;
  std::uint64_t inst = 0;
  for (std::size_t i = dot + 1; i < file.size(); ++i) {
    char c = file[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    inst = inst << 4 | static_cast<std::uint64_t>(d);
  }
  out.file = file;
  out.pid = static_cast<std::uint32_t>(pid);
  out.instance = inst;
  return true;
}

result<std::vector<segment_name>> list_segments(const std::string& dir, const std::string& prefix) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return error{errc::open_failed, errno, dir};
  std::vector<segment_name> out;
  while (dirent* e = ::readdir(d)) {
    segment_name n;
    if (parse_segment_name(e->d_name, prefix, n)) {
      n.path = dir + (dir.ends_with('/') ? "" : "/") + n.file;
      out.push_back(std::move(n));
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.file < b.file; });
  return out;
}

SHMETRICS_END_NAMESPACE
