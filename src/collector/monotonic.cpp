// Served counters, histogram buckets and _sum never read less than they last did.
#include <algorithm>      // max
#include <string_view>    // label blocks
#include <unordered_map>  // carried series

#include "impl.hpp"

SHMETRICS_BEGIN_NAMESPACE

using namespace collect_detail;

namespace {

std::string_view label_block_of(const prepared_labels::family_blocks& b, std::size_t i) {
  const std::size_t begin = i ? b.end[i - 1] : 0;
  return std::string_view(b.text).substr(begin, b.end[i] - begin);
}

// A merged value `raw` plus its offset, held at `last` (the offset growing by the
// difference) if it would read less: see keep_monotonic.
template <class T>
T held(T raw, T last, T& offset) {
  T v = raw + offset;
  if (v < last) {
    offset += last - v;
    v = last;
  }
  return v;
}

}  // namespace

void collector::impl::carry_over(const merge_plan& next) {
  // Each counter and histogram series of the next plan takes what the same series (same
  // family name and type, same label block; for buckets, the same bound) last read and
  // its offset: a plan rebuilt when writers come and go must not let a series go back.
  std::vector<carried_family> out(next.families.size());
  std::unordered_map<std::string_view, std::size_t> old_family;
  for (std::size_t f = 0; f < carried_.size(); ++f)
    old_family.emplace(plan_.families[f].name, f);
  for (std::size_t f = 0; f < next.families.size(); ++f) {
    const family_snapshot& shape = next.families[f];
    const bool hist = shape.type == layout::metric_type::histogram;
    if (shape.type != layout::metric_type::counter && !hist) continue;
    const std::size_t rows = next.series_counts[f], nb = hist ? shape.bounds.size() + 1 : 0;
    carried_family& to = out[f];
    to.last.assign(rows, 0);
    to.offset.assign(rows, 0);
    to.last_b.assign(rows * nb, 0);
    to.offset_b.assign(rows * nb, 0);
    auto it = old_family.find(shape.name);
    if (it == old_family.end()) continue;
    const family_snapshot& old = plan_.families[it->second];
    if (old.type != shape.type || old.label_names != shape.label_names) continue;
    const carried_family& from = carried_[it->second];
    const std::size_t onb = hist ? old.bounds.size() + 1 : 0;
    std::vector<std::size_t> bucket_from(nb, onb);  // onb: no such bound before
    for (std::size_t b = 0, o = 0; b + 1 < nb; ++b) {
      while (o < old.bounds.size() && old.bounds[o] < shape.bounds[b])
        ++o;
      if (o < old.bounds.size() && old.bounds[o] == shape.bounds[b]) bucket_from[b] = o;
    }
    if (nb) bucket_from[nb - 1] = onb - 1;  // +Inf: _count
    auto copy_row = [&](std::size_t r, std::size_t o) {
      to.last[r] = from.last[o];
      to.offset[r] = from.offset[o];
      for (std::size_t b = 0; b < nb; ++b)
        if (bucket_from[b] < onb) {
          to.last_b[r * nb + b] = from.last_b[o * onb + bucket_from[b]];
          to.offset_b[r * nb + b] = from.offset_b[o * onb + bucket_from[b]];
        }
    };
    const prepared_labels::family_blocks& nblocks = next.labels->families[f];
    const prepared_labels::family_blocks& oblocks = plan_.labels->families[it->second];
    const std::size_t old_rows = from.last.size();
    // Rows in the same order first (the common case: a plan rebuilt for a new series keeps
    // the others where they were), then the rest by label block.
    std::size_t r = 0;
    while (r < rows && r < old_rows && label_block_of(nblocks, r) == label_block_of(oblocks, r)) {
      copy_row(r, r);
      ++r;
    }
    if (r < rows && r < old_rows) {
      std::unordered_map<std::string_view, std::size_t> index;
      for (std::size_t o = r; o < old_rows; ++o)
        index.emplace(label_block_of(oblocks, o), o);
      for (; r < rows; ++r)
        if (auto x = index.find(label_block_of(nblocks, r)); x != index.end())
          copy_row(r, x->second);
    }
  }
  carried_ = std::move(out);
}

void collector::impl::keep_monotonic(collection& c) {
  // Merged counters, histogram buckets and _sum never read less than they last did while
  // this exporter lives. Sums of doubles depend on their order (live writers in path
  // order, retired totals last), so a writer leaving can take a few ulps off a total;
  // a family whose definition changes drops the other definition's totals. Either would
  // read as a counter reset in Prometheus (rate() jumps by the whole total). Where a
  // value reads less than last time, the difference is added to it from then on (an
  // offset): the series stays where it was and keeps counting the increments it sees.
  for (std::size_t f = 0; f < carried_.size(); ++f) {
    const family_snapshot& shape = c.families[f];
    auto& col = c.columns.families[f];
    carried_family& k = carried_[f];
    if (shape.type == layout::metric_type::counter) {
      for (std::size_t r = 0; r < col.rows; ++r)
        col.value[r] = k.last[r] = held(col.value[r], k.last[r], k.offset[r]);
    } else if (shape.type == layout::metric_type::histogram) {
      const std::size_t nb = shape.bounds.size() + 1;
      for (std::size_t r = 0; r < col.rows; ++r) {
        std::uint64_t* b = col.buckets.data() + r * nb;
        std::uint64_t* last = k.last_b.data() + r * nb;
        std::uint64_t* off = k.offset_b.data() + r * nb;
        const std::uint64_t count_before = last[nb - 1], count_offset_before = off[nb - 1];
        std::uint64_t cumulative = 0;  // buckets stay cumulative (le order) after offsets
        for (std::size_t j = 0; j < nb; ++j) {
          cumulative = std::max(cumulative, held(b[j], last[j], off[j]));
          b[j] = last[j] = cumulative;
        }
        // _sum legitimately goes down when negative values are observed (then _count
        // grew); it is held only when no new observation explains the drop.
        const bool observed = last[nb - 1] > count_before && off[nb - 1] == count_offset_before;
        col.value[r] = k.last[r] =
            observed ? col.value[r] + k.offset[r] : held(col.value[r], k.last[r], k.offset[r]);
      }
    }
  }
}

SHMETRICS_END_NAMESPACE
