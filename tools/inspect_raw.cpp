// shmetrics-inspect: the raw walk (see inspect_raw.hpp). It repeats the reader's
// validation (docs/segment-format.md, "Validation") but reports every fault instead of
// the first, and adds the checks only a debugger needs (overlapping cells, hot-field
// counters beyond their capacity).
#include "inspect_raw.hpp"

#include <algorithm>   // sort
#include <cerrno>      // errno
#include <cmath>       // isfinite
#include <cstdio>      // snprintf
#include <cstring>     // strerror
#include <fcntl.h>     // open
#include <pwd.h>       // getpwuid_r
#include <sys/stat.h>  // lstat
#include <unistd.h>    // pread

#include <shmetrics/detail/validate.hpp>

namespace inspect {

namespace layout = shmetrics::layout;
namespace detail = shmetrics::detail;

namespace {

// a + b <= limit, without overflow
bool fits(std::uint64_t a, std::uint64_t b, std::uint64_t limit) {
  return a <= limit && b <= limit - a;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// More records than this are not walked: no real writer has them, and a crafted header
// must not make the tool allocate without bound.
constexpr std::uint64_t max_walked_records = 1u << 24;

struct raw_file {
  int fd = -1;
  std::uint64_t size = 0;
  ~raw_file() {
    if (fd >= 0) ::close(fd);
  }
  // Reads exactly `len` bytes at `off`; false if they are not all in the file.
  bool read(std::uint64_t off, void* dst, std::uint64_t len) const {
    if (!fits(off, len, size)) return false;
    auto* p = static_cast<char*>(dst);
    while (len > 0) {
      ssize_t n = ::pread(fd, p, len, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // shrank under us, or an I/O error
      p += n;
      off += static_cast<std::uint64_t>(n);
      len -= static_cast<std::uint64_t>(n);
    }
    return true;
  }
};

// What the series walk needs to know about each family.
struct family_shape {
  layout::metric_type type{};
  std::uint32_t label_count = 0;
  std::uint32_t cells = 0;  // cells a series of this family must have; 0 if unknown
};

class walker {
 public:
  walker(const raw_file& f, walk_sink& sink, const layout::segment_header& h)
      : f_(f), sink_(sink), h_(h) {}

  void report(std::string where, std::uint64_t off, std::string what) {
    sink_.on_problem({std::move(where), true, off, std::move(what)});
  }

  // Validates the write-once header; false if the records cannot be located.
  bool header() {
    bool usable = true;
    auto bad = [&](std::uint64_t off, const char* field, std::string what, bool fatal) {
      report(std::string("header ") + field, off, std::move(what));
      if (fatal) usable = false;
    };
    if (h_.header_size < layout::header_size || h_.header_size > h_.segment_size)
      bad(12, "header_size", "header_size " + std::to_string(h_.header_size) + ", want >= 256",
          true);
    if (h_.segment_size > f_.size)
      bad(16, "segment_size",
          "truncated: file is " + std::to_string(f_.size) + " bytes, header says " +
              std::to_string(h_.segment_size),
          false);
    if (h_.shard_count < 1 || h_.shard_count > layout::max_shards)
      bad(36, "shard_count", "shard_count " + std::to_string(h_.shard_count) + ", want 1..64",
          true);
    if (h_.family_record_size < layout::family_record_size || h_.family_record_size % 8)
      bad(76, "family_record_size",
          "family_record_size " + std::to_string(h_.family_record_size) +
              ", want >= 64 and a multiple of 8",
          true);
    if (h_.series_record_size < layout::series_record_size || h_.series_record_size % 8)
      bad(92, "series_record_size",
          "series_record_size " + std::to_string(h_.series_record_size) +
              ", want >= 32 and a multiple of 8",
          true);
    if (h_.strings_capacity > 0xFFFFFFFFull)
      bad(104, "strings_capacity",
          "strings_capacity " + std::to_string(h_.strings_capacity) + " >= 4 GiB", true);
    std::uint64_t cell_bytes = 0;
    if (h_.shard_stride % 8 || h_.shard_stride / 8 < h_.cells_per_shard ||
        __builtin_mul_overflow(h_.shard_stride, std::uint64_t{h_.shard_count}, &cell_bytes))
      bad(128, "shard_stride",
          "shard_stride " + std::to_string(h_.shard_stride) + " does not hold " +
              std::to_string(h_.cells_per_shard) + " cells per shard",
          true);
    struct region {
      const char* name;
      std::uint64_t field, off, len;
    } regions[] = {
        {"families_offset", 64, h_.families_offset,
         std::uint64_t{h_.family_capacity} * h_.family_record_size},
        {"series_offset", 80, h_.series_offset,
         std::uint64_t{h_.series_capacity} * h_.series_record_size},
        {"strings_offset", 96, h_.strings_offset, h_.strings_capacity},
        {"cells_offset", 112, h_.cells_offset, cell_bytes},
    };
    std::uint64_t prev_end = std::max<std::uint64_t>(h_.header_size, layout::header_size);
    for (auto& r : regions) {
      if (r.off < prev_end || r.off % 8 || !fits(r.off, r.len, h_.segment_size))
        bad(r.field, r.name,
            "region at " + std::to_string(r.off) + "+" + std::to_string(r.len) +
                " not 8-aligned, out of order or outside the segment (" +
                std::to_string(h_.segment_size) + " bytes)",
            true);
      else
        prev_end = r.off + r.len;
    }
    // Hot fields.
    if (h_.state != 1 && h_.state != 2)
      bad(192, "state", "state " + std::to_string(h_.state) + ", want 1 (ready) or 2 (closed)",
          false);
    nf_ = h_.families_published;
    ns_ = h_.series_published;
    if (nf_ > h_.family_capacity) {
      bad(216, "families_published",
          "families_published " + std::to_string(nf_) + " exceeds family_capacity " +
              std::to_string(h_.family_capacity),
          false);
      nf_ = h_.family_capacity;
    }
    if (ns_ > h_.series_capacity) {
      bad(224, "series_published",
          "series_published " + std::to_string(ns_) + " exceeds series_capacity " +
              std::to_string(h_.series_capacity),
          false);
      ns_ = h_.series_capacity;
    }
    if (h_.strings_used > h_.strings_capacity)
      bad(232, "strings_used",
          "strings_used " + std::to_string(h_.strings_used) + " exceeds strings_capacity " +
              std::to_string(h_.strings_capacity),
          false);
    if (h_.cells_used > h_.cells_per_shard)
      bad(240, "cells_used",
          "cells_used " + std::to_string(h_.cells_used) + " exceeds cells_per_shard " +
              std::to_string(h_.cells_per_shard),
          false);
    return usable;
  }

  void records() {
    for (std::uint64_t i = 0; i < nf_; ++i) {
      if (i == max_walked_records) {
        report("families", h_.families_offset,
               "walk stopped after " + std::to_string(i) + " family records");
        break;
      }
      family(static_cast<std::uint32_t>(i));
    }
    for (std::uint64_t i = 0; i < ns_; ++i) {
      if (i == max_walked_records) {
        report("series", h_.series_offset,
               "walk stopped after " + std::to_string(i) + " series records");
        break;
      }
      series(static_cast<std::uint32_t>(i));
    }
    // Two series sharing a cell would add into each other's values.
    std::sort(cells_.begin(), cells_.end());
    for (std::size_t k = 1; k < cells_.size(); ++k) {
      const auto& a = cells_[k - 1];
      const auto& b = cells_[k];
      if (b.begin < a.end)
        report("series " + std::to_string(b.series) + " cell_index", series_offset(b.series) + 4,
               "cells " + std::to_string(b.begin) + ".." + std::to_string(b.end - 1) +
                   " overlap series " + std::to_string(a.series) + " (cells " +
                   std::to_string(a.begin) + ".." + std::to_string(a.end - 1) + ")");
    }
  }

 private:
  std::uint64_t family_offset(std::uint32_t i) const {
    return h_.families_offset + std::uint64_t{i} * h_.family_record_size;
  }
  std::uint64_t series_offset(std::uint32_t i) const {
    return h_.series_offset + std::uint64_t{i} * h_.series_record_size;
  }

  // Charges `bytes` of the arena to the walk. A writer gives every string, ref list and
  // bound array bytes of its own, so the records reference at most the arena's size in
  // all; past that (records pointing at the same bytes over and over: 65,535 refs to a
  // 1 MiB string are 64 GiB) the walk reports it once and decodes no more strings, so
  // what a file makes it read and hold stays proportional to the file.
  bool charge(std::uint64_t bytes, const std::string& where, std::uint64_t field_off) {
    if (over_budget_) return false;
    if (bytes <= h_.strings_capacity - charged_) {
      charged_ += bytes;
      return true;
    }
    over_budget_ = true;
    report(where, field_off,
           "the records would reference " + std::to_string(charged_ + bytes) +
               " arena bytes, more than the arena's " + std::to_string(h_.strings_capacity) +
               " (each arena byte belongs to one string, list or bucket bound); strings from "
               "here on are not decoded");
    return false;
  }

  // A string from the arena: inside it, readable and UTF-8. On failure reports at
  // `field_off` (the record field that points there) and returns false.
  bool string(std::uint32_t off, std::uint32_t len, const std::string& where,
              std::uint64_t field_off, std::string& out) {
    if (!fits(off, len, h_.strings_capacity)) {
      report(where, field_off,
             "string at arena " + std::to_string(off) + "+" + std::to_string(len) +
                 " outside the arena (" + std::to_string(h_.strings_capacity) + " bytes)");
      return false;
    }
    if (!charge(len, where, field_off)) return false;
    out.resize(len);
    if (!f_.read(h_.strings_offset + off, out.data(), len)) {
      report(where, h_.strings_offset + off, "short read: string beyond the end of the file");
      return false;
    }
    if (!detail::valid_utf8(out)) {
      report(where, h_.strings_offset + off, "string is not valid UTF-8");
      return false;
    }
    return true;
  }

  // `count` string refs at arena offset `off`.
  bool refs(std::uint32_t off, std::uint32_t count, const std::string& where,
            std::uint64_t field_off, std::vector<std::string>& out) {
    std::uint64_t bytes = std::uint64_t{count} * sizeof(layout::string_ref);
    if (off % 4 || !fits(off, bytes, h_.strings_capacity)) {
      report(where, field_off,
             "list of " + std::to_string(count) + " string refs at arena " + std::to_string(off) +
                 " misaligned or outside the arena");
      return false;
    }
    if (!charge(bytes, where, field_off)) return false;
    std::vector<layout::string_ref> r(count);
    if (count && !f_.read(h_.strings_offset + off, r.data(), bytes)) {
      report(where, h_.strings_offset + off, "short read: list beyond the end of the file");
      return false;
    }
    bool ok = true;
    out.assign(count, {});
    for (std::uint32_t k = 0; k < count; ++k) {
      const std::uint64_t ref_at = h_.strings_offset + off + k * sizeof(layout::string_ref);
      const std::string item = where + " " + std::to_string(k);
      // A string inside its own list: the writer puts the strings before the list.
      if (r[k].len && r[k].off < off + bytes && off < std::uint64_t{r[k].off} + r[k].len) {
        report(item, ref_at,
               "string at arena " + std::to_string(r[k].off) + "+" + std::to_string(r[k].len) +
                   " overlaps its own list (arena " + std::to_string(off) + "+" +
                   std::to_string(bytes) + ")");
        ok = false;
        continue;
      }
      ok &= string(r[k].off, r[k].len, item, ref_at, out[k]);
    }
    return ok;
  }

  void family(std::uint32_t i) {
    raw_family f;
    f.index = i;
    f.offset = family_offset(i);
    std::string who = "family " + std::to_string(i);
    family_shape shape;
    if (!f_.read(f.offset, &f.rec, sizeof f.rec)) {
      report(who, f.offset, "short read: record beyond the end of the file");
      shapes_.push_back(shape);
      return;
    }
    auto fail = [&](const std::string& field, std::uint64_t rel, std::string what) {
      report(who + " " + field, f.offset + rel, std::move(what));
      f.ok = false;
    };
    const auto& r = f.rec;
    if (string(r.name_off, r.name_len, who + " name", f.offset + 0, f.name)) {
      if (!detail::valid_metric_name(f.name))
        fail("name", 0, "invalid metric name \"" + f.name + "\"");
    } else {
      f.ok = false;
    }
    f.ok &= string(r.help_off, r.help_len, who + " help", f.offset + 8, f.help);
    f.ok &= string(r.unit_off, r.unit_len, who + " unit", f.offset + 16, f.unit);
    bool type_ok = r.type >= 1 && r.type <= 4;
    if (!type_ok) fail("type", 30, "type " + std::to_string(r.type) + ", want 1..4");
    if (r.gauge_mode > 7) fail("gauge_mode", 31, "gauge_mode " + std::to_string(r.gauge_mode));
    auto type = static_cast<layout::metric_type>(r.type);
    if (refs(r.labels_off, r.label_count, who + " label name", f.offset + 24, f.labels)) {
      for (std::size_t k = 0; k < f.labels.size(); ++k) {
        const std::string& l = f.labels[k];
        if (!detail::valid_label_name(l) || l.starts_with("__") ||
            (type == layout::metric_type::histogram && l == "le"))
          fail("label name " + std::to_string(k), 24, "invalid label name \"" + l + "\"");
        for (std::size_t j = 0; j < k; ++j)
          if (f.labels[j] == l)
            fail("label name " + std::to_string(k), 24, "duplicate label name \"" + l + "\"");
      }
    } else {
      f.ok = false;
    }
    bool bounds_ok = true;
    if (type == layout::metric_type::histogram) {
      if (r.bucket_count > 4096 || r.buckets_off % 8 ||
          !fits(r.buckets_off, std::uint64_t{r.bucket_count} * 8, h_.strings_capacity)) {
        fail("buckets", 32,
             std::to_string(r.bucket_count) + " bucket bounds at arena " +
                 std::to_string(r.buckets_off) + " misaligned, too many or outside the arena");
        bounds_ok = false;
      } else if (!charge(std::uint64_t{r.bucket_count} * 8, who + " buckets", f.offset + 32)) {
        f.ok = false;
        bounds_ok = false;
      } else {
        f.bounds.resize(r.bucket_count);
        if (r.bucket_count &&
            !f_.read(h_.strings_offset + r.buckets_off, f.bounds.data(), r.bucket_count * 8ull)) {
          fail("buckets", 32, "short read: bucket bounds beyond the end of the file");
          bounds_ok = false;
        }
        for (std::size_t k = 0; bounds_ok && k < f.bounds.size(); ++k)
          if (!std::isfinite(f.bounds[k]) || (k > 0 && !(f.bounds[k] > f.bounds[k - 1]))) {
            fail("bucket " + std::to_string(k), 32,
                 "bucket bounds not finite and strictly increasing at bound " + std::to_string(k));
            bounds_ok = false;
          }
      }
    }
    if (type_ok && bounds_ok) {
      shape.type = type;
      shape.label_count = r.label_count;
      shape.cells = layout::cells_for(type, r.bucket_count);
    }
    shapes_.push_back(shape);
    sink_.on_family(f);
  }

  void series(std::uint32_t i) {
    raw_series s;
    s.index = i;
    s.offset = series_offset(i);
    std::string who = "series " + std::to_string(i);
    if (!f_.read(s.offset, &s.rec, sizeof s.rec)) {
      report(who, s.offset, "short read: record beyond the end of the file");
      return;
    }
    auto fail = [&](const std::string& field, std::uint64_t rel, std::string what) {
      report(who + " " + field, s.offset + rel, std::move(what));
      s.ok = false;
    };
    const auto& r = s.rec;
    if (r.family_index >= shapes_.size()) {
      fail("family_index", 0, "family " + std::to_string(r.family_index) + " not published");
    } else {
      const family_shape& fs = shapes_[r.family_index];
      if (fs.cells && r.cell_count != fs.cells)
        fail("cell_count", 12,
             "cell_count " + std::to_string(r.cell_count) + ", family " +
                 std::to_string(r.family_index) + " needs " + std::to_string(fs.cells));
      if (!fits(r.cell_index, r.cell_count, h_.cells_per_shard)) {
        fail("cell_index", 4,
             "cells " + std::to_string(r.cell_index) + "+" + std::to_string(r.cell_count) +
                 " outside the shard (" + std::to_string(h_.cells_per_shard) + " cells)");
      } else if (r.cell_count > h_.cells_per_shard - cells_claimed_) {
        // Each series has cells of its own, so all of them claim at most a shard's cells.
        // Past that, series stacked on the same cells would multiply what a dump prints
        // and the overlap list holds: reported once, and no more series are listed.
        if (!cells_over_)
          fail("cell_count", 12,
               "cells " + std::to_string(r.cell_index) + "+" + std::to_string(r.cell_count) +
                   " would bring the cells claimed by series to " +
                   std::to_string(cells_claimed_ + r.cell_count) + ", more than the shard's " +
                   std::to_string(h_.cells_per_shard) + " (series do not share cells)");
        cells_over_ = true;
        s.ok = false;
      } else if (r.cell_count) {
        cells_claimed_ += r.cell_count;
        cells_.push_back({r.cell_index, std::uint64_t{r.cell_index} + r.cell_count, i});
      }
      if (fs.cells)  // label values only make sense against a sound family
        s.ok &= refs(r.labels_off, fs.label_count, who + " label value", s.offset + 8, s.values);
    }
    sink_.on_series(s);
  }

  struct cell_span {
    std::uint64_t begin, end;
    std::uint32_t series;
    bool operator<(const cell_span& o) const {
      return begin != o.begin ? begin < o.begin : series < o.series;
    }
  };

  const raw_file& f_;
  walk_sink& sink_;
  const layout::segment_header& h_;
  std::uint64_t nf_ = 0, ns_ = 0;
  std::uint64_t charged_ = 0;  // arena bytes the walked records reference (charge())
  bool over_budget_ = false;
  std::uint64_t cells_claimed_ = 0;  // cells the walked series claim in all
  bool cells_over_ = false;
  std::vector<family_shape> shapes_;
  std::vector<cell_span> cells_;
};

}  // namespace

std::string owner_of(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return "owner unknown";
  std::string who = "uid " + std::to_string(st.st_uid);
  passwd pw, *res = nullptr;
  char buf[1024];
  if (::getpwuid_r(st.st_uid, &pw, buf, sizeof buf, &res) == 0 && res)
    who += std::string(" (") + res->pw_name + ")";
  char mode[16];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return "owned by " + who + ", mode " + mode + "; you are uid " + std::to_string(::geteuid());
}

void walk_file(const std::string& path, walk_sink& sink) {
  auto whole = [&](std::string what) { sink.on_problem({"file", false, 0, std::move(what)}); };
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    whole(std::string("cannot stat: ") + std::strerror(errno));
    return;
  }
  if (S_ISLNK(st.st_mode)) {
    whole("a symbolic link: readers never follow links (O_NOFOLLOW); check its target");
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    whole("a directory, not a segment file");
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    whole("not a regular file");
    return;
  }
  raw_file f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (f.fd < 0) {
    int e = errno;
    whole(e == EACCES ? "permission denied (" + owner_of(path) + ")"
                      : std::string("cannot open: ") + std::strerror(e));
    return;
  }
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    whole("not a regular file");
    return;
  }
  f.size = static_cast<std::uint64_t>(st.st_size);
  if (f.size == 0) {
    whole("empty file (a writer that has not sized it yet, or not a segment)");
    return;
  }
  layout::segment_header h;
  if (f.size < layout::header_size || !f.read(0, &h, sizeof h)) {
    sink.on_problem(
        {"header", true, 0,
         "truncated: file is " + std::to_string(f.size) + " bytes, the header needs 256"});
    return;
  }
  if (h.magic == 0) {
    sink.on_problem({"header magic", true, 0,
                     "magic not published (writer still initializing, or not a segment)"});
    return;
  }
  if (h.magic != layout::magic) {
    sink.on_problem(
        {"header magic", true, 0, "bad magic " + hex(h.magic) + ": not a shmetrics segment"});
    return;
  }
  if (h.version_major != layout::version_major) {
    sink.on_problem({"header version_major", true, 8,
                     "segment format " + std::to_string(h.version_major) + "." +
                         std::to_string(h.version_minor) + " not supported: this reader reads " +
                         std::to_string(layout::version_major) + ".x"});
    return;
  }
  // Live segment: the header copy read families_published before series_published, the
  // reverse of the publication order. Read the family count again, now after the series
  // count, so every series the walk visits has its family covered (both only grow).
  std::uint64_t nf = 0;
  if (f.read(offsetof(layout::segment_header, families_published), &nf, sizeof nf) &&
      nf > h.families_published)
    h.families_published = nf;
  sink.on_header(h, f.size);
  walker w(f, sink, h);
  if (w.header()) w.records();
}

}  // namespace inspect
