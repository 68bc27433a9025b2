// Reading each segment's values: into scratch first, so that a read that finds the file
// shrunk (or throws) keeps the last good values.
#include "impl.hpp"

SHMETRICS_BEGIN_NAMESPACE

using namespace collect_detail;

bool collector::impl::read_values(tracked& t) {
  auto fresh = t.reader.refresh();
  if (!fresh) {
    t.error = fresh.error().message();
    count_error(reason_of(fresh.code()), t.name.path, t.error);
    return false;
  }
  // Into scratch first: a read that finds the file shrunk must not replace good values.
  const std::size_t n = t.reader.series_count();
  t.scratch.resize(n);
  t.scratch_buckets.clear();  // capacity kept: no allocation in the steady state
  for (std::size_t i = 0; i < n; ++i)
    t.reader.read_values(i, t.scratch[i], t.scratch_buckets);
  if (t.reader.damaged()) {
    auto e = t.reader.refresh();  // fails `shrunk` now, with the message to show
    t.error = e ? "file shrank while mapped" : e.error().message();
    count_error("shrunk", t.name.path, t.error);
    return false;
  }
  t.values.swap(t.scratch);
  t.buckets.swap(t.scratch_buckets);
  t.families_covered = t.reader.family_count();
  t.error.clear();
  return true;
}

void collector::impl::read_values_guarded(tracked& t) {
  try {
    read_values(t);
  } catch (const std::exception& e) {
    // One segment's failure (a hostile file making the reader allocate too much, say) is
    // counted and that segment keeps its last good values; the others are read fresh.
    t.error = e.what();
    count_error(exception_reason(e), t.name.path, t.name.path + ": " + e.what());
  }
}

std::vector<family_snapshot> collector::impl::families_of(const tracked& t) const {
  std::vector<family_snapshot> out;
  out.reserve(t.families_covered);
  for (std::size_t f = 0; f < t.families_covered; ++f)
    out.push_back(t.reader.family(f));
  std::size_t off = 0;  // into t.buckets
  for (std::size_t i = 0; i < t.values.size(); ++i) {
    if (t.reader.series_removed(i)) {  // not folded into retired totals either
      off += t.reader.bucket_slots(i);
      continue;
    }
    series_snapshot& s = out[t.reader.series_family(i)].series.emplace_back();
    s.label_values = t.reader.series_labels(i).to_strings();
    if (const std::uint32_t nb = t.reader.bucket_slots(i)) {
      s.buckets.assign(t.buckets.begin() + static_cast<std::ptrdiff_t>(off),
                       t.buckets.begin() + static_cast<std::ptrdiff_t>(off + nb));
      s.sum = t.values[i].value;
      off += nb;
    } else {
      s.value = t.values[i].value;
      s.stamp_ns = t.values[i].stamp_ns;
    }
  }
  return out;
}

SHMETRICS_END_NAMESPACE
