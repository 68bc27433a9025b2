// shmetrics reader: segment validation and snapshots. Trusts nothing in the mapping.
#include "shmetrics/reader/segment_reader.hpp"

#include <bit>         // std::bit_cast
#include <cerrno>      // errno
#include <cmath>       // std::isfinite
#include <cstdio>      // snprintf
#include <cstring>     // memcpy
#include <fcntl.h>     // open
#include <sys/file.h>  // flock
#include <sys/mman.h>  // mmap
#include <sys/stat.h>  // fstat
#include <unistd.h>    // close

#include "shmetrics/detail/atomics.hpp"
#include "shmetrics/detail/validate.hpp"
#include "shmetrics/reader/mapping_guard.hpp"

SHMETRICS_BEGIN_NAMESPACE

namespace {

using detail::load_acquire;
using detail::load_relaxed;

constexpr std::uint32_t max_buckets = 4096;

// a + b <= limit, without overflow
bool fits(std::uint64_t a, std::uint64_t b, std::uint64_t limit) {
  return a <= limit && b <= limit - a;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

// What the records parsed so far may still reference of the arena. The writer gives
// every string, string-ref list and bucket-bound array bytes of its own, so all records
// together reference at most the arena's size. A segment whose records reference more
// (the same bytes many times over: 65,535 refs to one 1 MiB string would be 64 GiB of
// copies) is refused before the bytes are copied, whatever its counts and lengths
// multiply to: what one segment makes the reader hold stays proportional to its size.
struct segment_reader::arena_budget {
  std::uint64_t used, cap;
  bool take(std::uint64_t n) {
    if (n > cap - used) return false;
    used += n;
    return true;
  }
  std::string over(std::uint64_t n) const {
    return "the records would reference " + std::to_string(used + n) +
           " arena bytes, more than the arena's " + std::to_string(cap) +
           " (each arena byte belongs to one string, list or bucket bound)";
  }
};

namespace {

// Whether the string ref `r` points into its own list [list, list + list_len).
bool overlaps(const layout::string_ref& r, std::uint64_t list, std::uint64_t list_len) {
  return r.len && r.off < list + list_len && list < std::uint64_t{r.off} + r.len;
}

std::string span(std::uint64_t off, std::uint64_t len) {
  return std::to_string(off) + "+" + std::to_string(len);
}

// Validates the write-once header against the file size. Returns ok or the reason.
error check_header(const layout::segment_header& h, std::uint64_t file_size,
                   const std::string& path) {
  auto bad = [&](errc c, const std::string& what) { return error{c, 0, path + ": " + what}; };
  if (h.magic != layout::magic) return bad(errc::bad_magic, "magic " + hex(h.magic));
  if (h.version_major != layout::version_major)
    return bad(errc::unsupported_major, "segment format " + std::to_string(h.version_major) + "." +
                                            std::to_string(h.version_minor) +
                                            " not supported: this reader reads " +
                                            std::to_string(layout::version_major) + ".x");
  if (h.header_size < layout::header_size || h.header_size > h.segment_size)
    return bad(errc::corrupt_header, "header_size " + std::to_string(h.header_size));
  if (h.segment_size > file_size)
    return bad(errc::truncated, "file is " + std::to_string(file_size) + " bytes, header says " +
                                    std::to_string(h.segment_size));
  if (h.shard_count < 1 || h.shard_count > layout::max_shards)
    return bad(errc::corrupt_header, "shard_count " + std::to_string(h.shard_count));
  if (h.family_record_size < layout::family_record_size || h.family_record_size % 8)
    return bad(errc::corrupt_header, "family_record_size " + std::to_string(h.family_record_size));
  if (h.series_record_size < layout::series_record_size || h.series_record_size % 8)
    return bad(errc::corrupt_header, "series_record_size " + std::to_string(h.series_record_size));
  if (h.strings_capacity > 0xFFFFFFFFull)
    return bad(errc::corrupt_header, "strings_capacity " + std::to_string(h.strings_capacity));
  // regions: in order, inside the segment, not overlapping
  std::uint64_t fam_bytes = std::uint64_t{h.family_capacity} * h.family_record_size;
  std::uint64_t ser_bytes = std::uint64_t{h.series_capacity} * h.series_record_size;
  std::uint64_t cell_bytes;
  if (h.shard_stride % 8 || h.shard_stride / 8 < h.cells_per_shard ||
      __builtin_mul_overflow(h.shard_stride, std::uint64_t{h.shard_count}, &cell_bytes))
    return bad(errc::corrupt_header, "shard_stride " + std::to_string(h.shard_stride));
  struct region {
    const char* name;
    std::uint64_t off, len, align;
  } regions[] = {{"families", h.families_offset, fam_bytes, 8},
                 {"series", h.series_offset, ser_bytes, 8},
                 {"strings", h.strings_offset, h.strings_capacity, 8},
                 {"cells", h.cells_offset, cell_bytes, 8}};
  std::uint64_t prev_end = h.header_size;
  for (auto& r : regions) {
    if (r.off < prev_end || r.off % r.align || !fits(r.off, r.len, h.segment_size))
      return bad(errc::corrupt_header, std::string(r.name) + " region at " + std::to_string(r.off) +
                                           "+" + std::to_string(r.len) + " outside the segment (" +
                                           std::to_string(h.segment_size) + " bytes)");
    prev_end = r.off + r.len;
  }
  return {};
}

}  // namespace

result<segment_reader> segment_reader::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return error{errc::open_failed, errno, path};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return error{errc::open_failed, e, path};
  }
  auto fail = [&](errc c, const std::string& what) {
    ::close(fd);
    return error{c, 0, what.empty() ? path : path + ": " + what};
  };
  if (!S_ISREG(st.st_mode)) return fail(errc::not_a_regular_file, "");
  auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (file_size == 0) return fail(errc::not_ready, "empty file");
  if (file_size < layout::header_size)
    return fail(errc::truncated, std::to_string(file_size) + " bytes, header needs " +
                                     std::to_string(layout::header_size));
  // Map the header alone first: segment_size is not trusted until validated.
  void* hp = ::mmap(nullptr, layout::header_size, PROT_READ, MAP_SHARED, fd, 0);
  if (hp == MAP_FAILED) {
    int e = errno;
    ::close(fd);
    return error{errc::map_failed, e, path};
  }
  layout::segment_header h;
  bool header_gone;
  {
    // The file may shrink between fstat and this read.
    detail::mapping_guard hg(hp, layout::header_size);
    // acquire: pairs with the writer's release-store of magic; every write-once field
    // read below was written before it.
    std::uint64_t magic = load_acquire(static_cast<const std::uint64_t*>(hp));
    std::memcpy(&h, hp, sizeof h);
    h.magic = magic;
    header_gone = hg.damaged();
  }
  ::munmap(hp, layout::header_size);
  if (header_gone) return fail(errc::truncated, "file shrank while its header was read");
  const std::uint64_t magic = h.magic;
  if (magic == 0) return fail(errc::not_ready, "magic not yet published");
  error e = check_header(h, file_size, path);
  if (e.code != errc::ok) {
    ::close(fd);
    return e;
  }
  void* base = ::mmap(nullptr, h.segment_size, PROT_READ, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int en = errno;
    ::close(fd);
    return error{errc::map_failed, en, path};
  }
  segment_reader r;
  r.path_ = path;
  r.fd_ = fd;
  r.base_ = static_cast<const char*>(base);
  r.size_ = h.segment_size;
  r.dev_ = st.st_dev;
  r.ino_ = st.st_ino;
  r.uid_ = st.st_uid;
  r.hdr_ = h;
  r.guard_ = detail::mapping_guard(base, h.segment_size);
  return r;
}

segment_reader::segment_reader(segment_reader&& o) noexcept {
  *this = std::move(o);
}

segment_reader& segment_reader::operator=(segment_reader&& o) noexcept {
  if (this != &o) {
    guard_ = {};  // stop watching before the range can be reused
    if (base_) ::munmap(const_cast<char*>(base_), size_);
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    dev_ = o.dev_;
    ino_ = o.ino_;
    uid_ = o.uid_;
    guard_ = std::move(o.guard_);
    hdr_ = o.hdr_;
    families_ = std::move(o.families_);
    series_ = std::move(o.series_);
    label_pool_ = std::move(o.label_pool_);
    value_end_ = std::move(o.value_end_);
    arena_referenced_ = std::exchange(o.arena_referenced_, 0);
    cells_claimed_ = std::exchange(o.cells_claimed_, 0);
    removed_ = std::move(o.removed_);
    removed_count_ = std::exchange(o.removed_count_, 0);
    removed_seen_ = std::exchange(o.removed_seen_, 0);
  }
  return *this;
}

segment_reader::~segment_reader() {
  guard_ = {};
  if (base_) ::munmap(const_cast<char*>(base_), size_);
  if (fd_ >= 0) ::close(fd_);
}

error segment_reader::corrupt(errc c, std::string what) const {
  return error{c, 0, path_ + ": " + what};
}

result<std::string> segment_reader::read_string(std::uint32_t off, std::uint32_t len,
                                                const std::string& what,
                                                arena_budget& budget) const {
  if (!fits(off, len, hdr_.strings_capacity))
    return corrupt(errc::corrupt_record, what + " at arena " + span(off, len) +
                                             " outside the arena (" +
                                             std::to_string(hdr_.strings_capacity) + " bytes)");
  if (!budget.take(len))
    return corrupt(errc::corrupt_record,
                   what + " at arena " + span(off, len) + ": " + budget.over(len));
  std::string s(base_ + hdr_.strings_offset + off, len);
  if (!detail::valid_utf8(s)) return corrupt(errc::corrupt_record, what + " is not UTF-8");
  return s;
}

// Checks a list of `count` string refs at arena offset `off` and charges its bytes.
error segment_reader::check_ref_list(std::uint32_t off, std::uint32_t count,
                                     const std::string& what, arena_budget& budget) const {
  const std::uint64_t bytes = std::uint64_t{count} * sizeof(layout::string_ref);
  if (off % 4 || !fits(off, bytes, hdr_.strings_capacity))
    return corrupt(errc::corrupt_record,
                   what + " list at arena " + span(off, bytes) + " outside the arena");
  if (!budget.take(bytes))
    return corrupt(errc::corrupt_record,
                   what + " list at arena " + span(off, bytes) + ": " + budget.over(bytes));
  return {};
}

result<bool> segment_reader::parse_family(std::uint32_t index) {
  layout::family_record rec;
  std::memcpy(&rec, base_ + hdr_.families_offset + std::uint64_t{index} * hdr_.family_record_size,
              sizeof rec);
  std::string who = "family " + std::to_string(index);
  arena_budget budget{arena_referenced_, hdr_.strings_capacity};
  family_meta m;
  family_snapshot& f = m.shape;
  auto name = read_string(rec.name_off, rec.name_len, who + " name", budget);
  if (!name) return name.error();
  f.name = std::move(*name);
  who += " (" + f.name + ")";
  if (!detail::valid_metric_name(f.name))
    return corrupt(errc::corrupt_record, who + ": invalid name");
  auto help = read_string(rec.help_off, rec.help_len, who + " help", budget);
  if (!help) return help.error();
  f.help = std::move(*help);
  auto unit = read_string(rec.unit_off, rec.unit_len, who + " unit", budget);
  if (!unit) return unit.error();
  f.unit = std::move(*unit);
  if (rec.type < 1 || rec.type > 4)
    return corrupt(errc::corrupt_record, who + ": type " + std::to_string(rec.type));
  if (rec.gauge_mode > 7)
    return corrupt(errc::corrupt_record, who + ": gauge mode " + std::to_string(rec.gauge_mode));
  f.type = static_cast<layout::metric_type>(rec.type);
  f.mode = static_cast<layout::gauge_mode>(rec.gauge_mode);
  if (error e = check_ref_list(rec.labels_off, rec.label_count, who + " label name", budget);
      e.code != errc::ok)
    return e;
  f.label_names.reserve(rec.label_count);
  for (std::uint32_t i = 0; i < rec.label_count; ++i) {
    layout::string_ref ref;
    std::memcpy(&ref, base_ + hdr_.strings_offset + rec.labels_off + i * sizeof ref, sizeof ref);
    const std::string what = who + " label name " + std::to_string(i);
    if (overlaps(ref, rec.labels_off, std::uint64_t{rec.label_count} * sizeof ref))
      return corrupt(errc::corrupt_record,
                     what + " at arena " + span(ref.off, ref.len) + " overlaps its own list");
    auto l = read_string(ref.off, ref.len, what, budget);
    if (!l) return l.error();
    f.label_names.push_back(std::move(*l));
  }
  for (std::size_t i = 0; i < f.label_names.size(); ++i) {
    const std::string& l = f.label_names[i];
    if (!detail::valid_label_name(l) || l.starts_with("__") ||
        (f.type == layout::metric_type::histogram && l == "le"))
      return corrupt(errc::corrupt_record, who + ": invalid label name");
    for (std::size_t j = 0; j < i; ++j)
      if (f.label_names[j] == l)
        return corrupt(errc::corrupt_record, who + ": duplicate label name " + l);
  }
  if (f.type == layout::metric_type::histogram) {
    if (rec.bucket_count > max_buckets || rec.buckets_off % 8 ||
        !fits(rec.buckets_off, std::uint64_t{rec.bucket_count} * 8, hdr_.strings_capacity))
      return corrupt(errc::corrupt_record, who + ": bucket bounds outside the arena");
    if (!budget.take(std::uint64_t{rec.bucket_count} * 8))
      return corrupt(errc::corrupt_record,
                     who + ": " + std::to_string(rec.bucket_count) + " bucket bounds at arena " +
                         span(rec.buckets_off, std::uint64_t{rec.bucket_count} * 8) + ": " +
                         budget.over(std::uint64_t{rec.bucket_count} * 8));
    f.bounds.resize(rec.bucket_count);
    if (rec.bucket_count)
      std::memcpy(f.bounds.data(), base_ + hdr_.strings_offset + rec.buckets_off,
                  rec.bucket_count * 8);
    for (std::size_t i = 0; i < f.bounds.size(); ++i)
      if (!std::isfinite(f.bounds[i]) || (i > 0 && !(f.bounds[i] > f.bounds[i - 1])))
        return corrupt(errc::corrupt_record, who + ": bucket bounds not finite and increasing");
  }
  m.cells_per_series = layout::cells_for(f.type, static_cast<std::uint32_t>(f.bounds.size()));
  families_.push_back(std::move(m));
  arena_referenced_ = budget.used;
  return true;
}

result<bool> segment_reader::parse_series(std::uint32_t index) {
  layout::series_record rec;
  std::memcpy(&rec, base_ + hdr_.series_offset + std::uint64_t{index} * hdr_.series_record_size,
              sizeof rec);
  std::string who = "series " + std::to_string(index);
  if (rec.family_index >= families_.size())
    return corrupt(errc::corrupt_record,
                   who + ": family " + std::to_string(rec.family_index) + " not published");
  const family_meta& fm = families_[rec.family_index];
  who += " of " + fm.shape.name;
  if (rec.cell_count != fm.cells_per_series ||
      !fits(rec.cell_index, rec.cell_count, hdr_.cells_per_shard))
    return corrupt(errc::corrupt_record, who + ": cells " + std::to_string(rec.cell_index) + "+" +
                                             std::to_string(rec.cell_count) + " outside the shard");
  // The writer gives each series cells of its own, so all series together claim at most a
  // shard's cells. Series stacked on the same cells would multiply what a snapshot holds
  // (a histogram's buckets per series) without bound.
  if (rec.cell_count > hdr_.cells_per_shard - cells_claimed_)
    return corrupt(errc::corrupt_record, who + ": cells " + span(rec.cell_index, rec.cell_count) +
                                             " would bring the cells claimed by series to " +
                                             std::to_string(cells_claimed_ + rec.cell_count) +
                                             ", more than the shard's " +
                                             std::to_string(hdr_.cells_per_shard) +
                                             " cells (series do not share cells)");
  // The label values go into the reader's pool (no string per value: an exporter parses
  // millions), checked as read_string() checks them; a bad record leaves no trace.
  const std::uint32_t count = static_cast<std::uint32_t>(fm.shape.label_names.size());
  const std::string what = who + " label value";
  arena_budget budget{arena_referenced_, hdr_.strings_capacity};
  if (error e = check_ref_list(rec.labels_off, count, what, budget); e.code != errc::ok) return e;
  const char* arena = base_ + hdr_.strings_offset;
  const std::size_t pool_before = label_pool_.size(), values_before = value_end_.size();
  for (std::uint32_t i = 0; i < count; ++i) {
    layout::string_ref ref;
    std::memcpy(&ref, arena + rec.labels_off + i * sizeof ref, sizeof ref);
    auto fail = [&](const std::string& why) {
      label_pool_.resize(pool_before);
      value_end_.resize(values_before);
      return corrupt(errc::corrupt_record,
                     what + " " + std::to_string(i) + " at arena " + span(ref.off, ref.len) + why);
    };
    if (!fits(ref.off, ref.len, hdr_.strings_capacity))
      return fail(" outside the arena (" + std::to_string(hdr_.strings_capacity) + " bytes)");
    if (overlaps(ref, rec.labels_off, std::uint64_t{count} * sizeof ref))
      return fail(" overlaps its own list");
    if (!budget.take(ref.len)) return fail(": " + budget.over(ref.len));
    // Copy, then check the copy: the writer's bytes may change after we look.
    const std::size_t at = label_pool_.size();
    label_pool_.append(arena + ref.off, ref.len);
    if (!detail::valid_utf8(std::string_view(label_pool_).substr(at))) {
      label_pool_.resize(pool_before);
      value_end_.resize(values_before);
      return corrupt(errc::corrupt_record, what + " is not UTF-8");
    }
    value_end_.push_back(label_pool_.size());
  }
  series_.push_back({rec.family_index, rec.cell_index, values_before});
  arena_referenced_ = budget.used;
  cells_claimed_ += rec.cell_count;
  return true;
}

result<bool> segment_reader::refresh() {
  if (damaged()) return shrunk_error();
  struct stat st;
  if (::fstat(fd_, &st) != 0) return error{errc::open_failed, errno, path_};
  if (static_cast<std::uint64_t>(st.st_size) < size_)
    return corrupt(errc::shrunk, "file is " + std::to_string(st.st_size) + " bytes, mapped " +
                                     std::to_string(size_));
  auto* h = reinterpret_cast<const layout::segment_header*>(base_);
  // acquire, series first: a series is published after its family, so once we see the
  // series the family count we load next covers it.
  std::uint64_t ns = load_acquire(&h->series_published);
  std::uint64_t nf = load_acquire(&h->families_published);
  if (nf > hdr_.family_capacity || ns > hdr_.series_capacity)
    return corrupt(errc::corrupt_header, "published counts " + std::to_string(nf) + " families, " +
                                             std::to_string(ns) + " series exceed capacity");
  bool changed = false;
  while (families_.size() < nf) {
    auto r = parse_family(static_cast<std::uint32_t>(families_.size()));
    if (!r) return r.error();
    changed = true;
  }
  const std::size_t series_before = series_.size();
  while (series_.size() < ns) {
    auto r = parse_series(static_cast<std::uint32_t>(series_.size()));
    if (!r) return r.error();
    changed = true;
  }
  // Removals (format 1.1; the word is 0 in a 1.0 segment). acquire: pairs with the
  // writer's release of the count, stored after the records' flags it counts. The flags
  // of every parsed series are read again only when the count moved; a removal is final.
  // A series published and removed before this refresh is caught here too: its flag is
  // set before the count that the load below sees.
  if (const std::uint64_t nr = load_acquire(&h->series_removed); nr != removed_seen_) {
    removed_seen_ = nr;
    const char* records = base_ + hdr_.series_offset;
    for (std::size_t i = 0; i < series_.size(); ++i) {
      if (series_removed(i)) continue;
      const auto* rec = reinterpret_cast<const layout::series_record*>(
          records + i * std::uint64_t{hdr_.series_record_size});
      if (load_relaxed(&rec->removed) == 0) continue;
      if (removed_.size() < series_.size()) removed_.resize(series_.size());
      removed_[i] = true;
      ++removed_count_;
      changed = true;
    }
  }
  // After a big batch (the first refresh of a full segment), drop the vectors' doubling
  // slack: up to half of what they hold at 1M series. Not reserved ahead from the
  // published count, which a corrupt header may set far beyond what the records hold.
  if (series_.size() - series_before >= 4096 && series_.size() - series_before >= series_before) {
    series_.shrink_to_fit();
    value_end_.shrink_to_fit();
    label_pool_.shrink_to_fit();
  }
  if (damaged()) return shrunk_error();
  return changed;
}

segment_info segment_reader::info() const {
  segment_info i;
  i.path = path_;
  if (!base_) return i;
  auto* h = reinterpret_cast<const layout::segment_header*>(base_);
  i.version_major = hdr_.version_major;
  i.version_minor = hdr_.version_minor;
  i.segment_size = hdr_.segment_size;
  i.instance_id = hdr_.instance_id;
  i.writer_pid = hdr_.writer_pid;
  i.shard_count = hdr_.shard_count;
  i.writer_start_ticks = hdr_.writer_start_ticks;
  i.created_realtime_ns = hdr_.created_realtime_ns;
  i.created_monotonic_ns = hdr_.created_monotonic_ns;
  i.state = static_cast<layout::segment_state>(load_acquire(&h->state));
  i.heartbeat_ns = load_relaxed(&h->heartbeat_ns);
  i.heartbeat_count = load_relaxed(&h->heartbeat_count);
  i.families = families_.size();
  i.family_capacity = hdr_.family_capacity;
  i.series = series_.size();
  i.series_capacity = hdr_.series_capacity;
  i.series_removed = removed_count_;
  i.string_bytes = load_relaxed(&h->strings_used);
  i.string_capacity = hdr_.strings_capacity;
  i.cells = load_relaxed(&h->cells_used);
  i.cell_capacity = hdr_.cells_per_shard;
  i.registrations_dropped = load_relaxed(&h->registrations_dropped);
  return i;
}

bool segment_reader::writer_alive() const {
  if (fd_ < 0) return false;
  if (::flock(fd_, LOCK_SH | LOCK_NB) == 0) {
    ::flock(fd_, LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

error segment_reader::shrunk_error() const {
  return corrupt(errc::shrunk, "file shrank while mapped (a read past its end saw zeros)");
}

void segment_reader::read_values(std::size_t i, series_values& s,
                                 std::vector<std::uint64_t>& out) const {
  const series_meta& sm = series_[i];
  const family_meta& fm = families_[sm.family];
  const char* cells = base_ + hdr_.cells_offset;
  const std::uint64_t stride = hdr_.shard_stride;
  const std::uint32_t shards = hdr_.shard_count;
  auto cell = [&](std::uint32_t shard, std::uint32_t k) {
    return load_relaxed(reinterpret_cast<const std::uint64_t*>(cells + shard * stride) + k);
  };
  switch (fm.shape.type) {
    case layout::metric_type::counter: {
      std::uint64_t whole = 0;
      double frac = 0;
      for (std::uint32_t k = 0; k < shards; ++k) {
        whole += cell(k, sm.cell_index);
        frac += std::bit_cast<double>(cell(k, sm.cell_index + 1));
      }
      s.value = static_cast<double>(whole) + frac;
      break;
    }
    case layout::metric_type::gauge:
    case layout::metric_type::info: {
      // acquire the stamp first (pairs with gauge::stamp's release): the value read
      // after it is at least as new as the stamp says.
      s.stamp_ns = load_acquire(reinterpret_cast<const std::uint64_t*>(cells) + sm.cell_index + 1);
      s.value = std::bit_cast<double>(cell(0, sm.cell_index));
      break;
    }
    case layout::metric_type::histogram: {
      // One pass over one read of each bucket: cumulative counts never decrease and
      // the +Inf bucket is _count by construction.
      const auto nb = static_cast<std::uint32_t>(fm.shape.bounds.size()) + 1;
      const std::size_t at = out.size();
      out.resize(at + nb);  // zeros
      std::uint64_t* buckets = out.data() + at;
      double sum = 0;
      for (std::uint32_t k = 0; k < shards; ++k) {
        for (std::uint32_t b = 0; b < nb; ++b)
          buckets[b] += cell(k, sm.cell_index + b);
        sum += std::bit_cast<double>(cell(k, sm.cell_index + nb));
      }
      for (std::uint32_t b = 1; b < nb; ++b)
        buckets[b] += buckets[b - 1];
      s.value = sum;
      break;
    }
  }
}

void segment_reader::read_series(std::size_t i, series_snapshot& s) const {
  series_values v{s.value, s.stamp_ns};
  const bool hist = families_[series_[i].family].shape.type == layout::metric_type::histogram;
  if (hist) s.buckets.clear();  // capacity kept: no allocation once it has its size
  read_values(i, v, s.buckets);
  if (hist) {
    s.sum = v.value;
    return;
  }
  s.value = v.value;
  s.stamp_ns = v.stamp_ns;
}

result<bool> segment_reader::snapshot_into(segment_snapshot& snap) {
  auto r = refresh();
  if (!r) return r.error();
  std::size_t have = 0;
  for (const family_snapshot& f : snap.families)
    have += f.series.size();
  // A removal changes which series are in the snapshot, even where the count stays.
  const bool rebuild = snap.families.size() != families_.size() ||
                       have != series_.size() - removed_count_ ||
                       snap.info.series_removed != removed_count_;
  if (rebuild) {
    auto fresh = snapshot();
    if (!fresh) return fresh.error();
    snap = std::move(*fresh);
    return true;
  }
  snap.info = info();
  cursor_.assign(families_.size(), 0);
  for (std::size_t i = 0; i < series_.size(); ++i) {
    if (series_removed(i)) continue;
    const std::uint32_t f = series_[i].family;
    read_series(i, snap.families[f].series[cursor_[f]++]);
  }
  if (damaged()) return shrunk_error();
  return false;
}

result<segment_snapshot> segment_reader::snapshot() {
  auto r = refresh();
  if (!r) return r.error();
  segment_snapshot snap;
  snap.info = info();
  snap.families.reserve(families_.size());
  for (const family_meta& fm : families_)
    snap.families.push_back(fm.shape);
  for (std::size_t i = 0; i < series_.size(); ++i) {
    if (series_removed(i)) continue;
    series_snapshot& s = snap.families[series_[i].family].series.emplace_back();
    s.label_values = series_labels(i).to_strings();
    read_series(i, s);
  }
  if (damaged()) return shrunk_error();
  return snap;
}

SHMETRICS_END_NAMESPACE
