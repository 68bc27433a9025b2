// The merge plan: where each source series goes in the merged families, computed again
// only when the shape of the input changes; and filling a collection's values by it.
#include <malloc.h>  // malloc_trim after a big plan rebuild

#include <string_view>    // family names
#include <unordered_map>  // newest definitions

#include "impl.hpp"
#include "merge.hpp"

SHMETRICS_BEGIN_NAMESPACE

using namespace collect_detail;

void collector::impl::update_plan() {
  std::vector<plan_input> inputs;
  inputs.reserve(segments_.size());
  for (auto& [path, t] : segments_)
    inputs.push_back({t.reader.device(), t.reader.inode(), t.families_covered, t.values.size(),
                      t.reader.removed_count(), t.alive});
  if (plan_.version != 0 && inputs == plan_.inputs && retired_version_ == plan_.retired_version)
    return;
  std::size_t series_total = 0;
  {
    merge_plan p;
    p.inputs = std::move(inputs);
    p.retired_version = retired_version_;
    p.version = plan_.version + 1;
    // The plan keeps no label values: each merged series' label block is rendered once,
    // when the series is first seen, into one string per family, shared by every result.
    auto labels = std::make_shared<prepared_labels>();
    merged_set m;
    // A family that writers define differently (an upgrade changed a histogram's buckets
    // or a family's type): the newest writer's definition is served, newest by the
    // segment's creation time (retired totals by the newest writer folded into them).
    // The other definitions' series are counted as conflicts and kept (retired totals
    // too), so that they are served again if that definition wins again.
    struct newest {
      const family_snapshot* shape;
      std::uint64_t created;
      bool contested;
    };
    std::unordered_map<std::string_view, newest> winner;
    auto vote = [&](const family_snapshot& f, std::uint64_t created) {
      auto [it, fresh] = winner.try_emplace(f.name, newest{&f, created, false});
      if (fresh) return;
      newest& w = it->second;
      if (!same_definition(*w.shape, f)) w.contested = true;
      if (created > w.created) w = {&f, created, w.contested};
    };
    for (auto& [path, t] : segments_)
      for (std::size_t f = 0; f < t.families_covered; ++f)
        vote(t.reader.family(f), t.created_ns);
    for (std::size_t f = 0; f < retired_.size(); ++f)
      vote(retired_[f], retired_created_[f]);
    auto slot_of = [&](const family_snapshot& shape) {
      // The exporter's own names are the exporter's: a writer's family of that name would
      // print a second # TYPE line.
      if (shape.name.starts_with("shmetrics_exporter_")) return merged_set::no_slot;
      auto w = winner.find(shape.name);
      if (w != winner.end() && w->second.contested && !same_definition(*w->second.shape, shape))
        return merged_set::no_slot;
      std::size_t slot = m.family_slot(shape);
      while (labels->families.size() < m.families().size()) {
        const family_snapshot& added = m.families()[labels->families.size()];
        prepare_family(added, labels->families.emplace_back());
      }
      return slot;
    };
    std::vector<std::string_view> values;  // one series' label values, for rendering
    auto place = [&](std::size_t fam, const auto& label_values) {
      auto [index, fresh] = m.index_slot(fam, label_values);
      if (fresh) {
        values.resize(label_values.size());
        for (std::size_t k = 0; k < values.size(); ++k)
          values[k] = label_values[k];
        append_label_block(labels->families[fam], m.families()[fam], values.data());
      }
      return target{static_cast<std::uint32_t>(fam), static_cast<std::uint32_t>(index), fresh};
    };
    for (auto& [path, t] : segments_) {
      // Where each of this writer's families goes (not_served: conflict or a dead live_*
      // gauge).
      std::vector<std::uint32_t> family_target(t.families_covered, not_served);
      for (std::size_t f = 0; f < t.families_covered; ++f) {
        const family_snapshot& shape = t.reader.family(f);
        std::size_t slot = slot_of(shape);
        if (slot == merged_set::no_slot) {
          count_error("family_conflict", path + "\n" + shape.name,
                      "family " + shape.name + " in " + path +
                          " has a different type, labels or buckets than a newer writer's, "
                          "prints a sample name of another family or is the exporter's own; "
                          "not served from this segment");
          continue;
        }
        if (!skipped_when_dead(shape, t.alive)) family_target[f] = static_cast<std::uint32_t>(slot);
      }
      auto& targets = p.segment_targets.emplace_back(t.values.size());
      for (std::size_t i = 0; i < t.values.size(); ++i) {
        std::uint32_t fam = family_target[t.reader.series_family(i)];
        if (fam == not_served || t.reader.series_removed(i))  // removed: never served again
          targets[i] = {not_served, t.reader.bucket_slots(i), false};
        else
          targets[i] = place(fam, t.reader.series_labels(i));
      }
      series_total += t.values.size();
    }
    for (const family_snapshot& f : retired_) {
      auto& targets = p.retired_targets.emplace_back(f.series.size());
      std::size_t fam = slot_of(f);
      if (fam == merged_set::no_slot)
        count_error("family_conflict", "retired\n" + f.name,
                    "retired totals of family " + f.name +
                        " have another definition than the one served; kept, not served");
      for (std::size_t i = 0; i < f.series.size(); ++i) {
        if (fam == merged_set::no_slot)
          targets[i].family = not_served;
        else
          targets[i] = place(fam, f.series[i].label_values);
      }
      series_total += f.series.size();
    }
    for (auto& b : labels->families) {  // growth slack: up to half of each
      b.text.shrink_to_fit();
      b.end.shrink_to_fit();
      b.split.shrink_to_fit();
    }
    p.labels = std::move(labels);
    for (std::size_t f = 0; f < m.families().size(); ++f)
      p.series_counts.push_back(m.series_count(f));
    p.families = std::move(m.families());
    for (const family_snapshot& f : p.families)
      if (f.name.starts_with("process_")) p.served_names.push_back(f.name);
    carry_over(p);
    plan_ = std::move(p);
  }  // the merge index (a node per series) is freed here
#ifdef __GLIBC__
  // A big rebuild frees tens of MB of index nodes and old shapes spread over the heap;
  // give them back instead of keeping them resident until the next rebuild.
  if (series_total >= trim_after_series) ::malloc_trim(0);
#endif
}

std::shared_ptr<collection> collector::impl::take_buffer() {
  // Results come back to the pool when the last scrape holding them lets go (the
  // deleter), so a collection is only rewritten when nobody reads it. Steady state: two
  // buffers alternate, the latest and the one being filled.
  std::unique_ptr<collection> c;
  {
    std::lock_guard lock(pool_->mu);
    for (auto& b : pool_->free)
      if (b->plan_version == plan_.version) std::swap(b, pool_->free.back());
    if (!pool_->free.empty()) {
      c = std::move(pool_->free.back());
      pool_->free.pop_back();
    }
  }
  if (!c) c = std::make_unique<collection>();
  return std::shared_ptr<collection>(c.release(), [pool = pool_](collection* done) {
    std::unique_ptr<collection> owned(done);
    std::lock_guard lock(pool->mu);
    if (pool->free.size() < 2) pool->free.push_back(std::move(owned));
  });
}

void collector::impl::fill_values(collection& c) {
  if (c.plan_version != plan_.version) {
    // The shape changed: copy the families' definitions and size their value columns
    // once; the label blocks are the plan's, shared, not copied.
    c.families = plan_.families;
    c.columns.families.resize(c.families.size());
    for (std::size_t f = 0; f < c.families.size(); ++f) {
      const family_snapshot& fam = c.families[f];
      auto& col = c.columns.families[f];
      col.rows = plan_.series_counts[f];
      col.value.assign(col.rows, 0);
      col.stamp_ns.assign(fam.type == layout::metric_type::gauge ? col.rows : 0, 0);
      col.buckets.assign(
          fam.type == layout::metric_type::histogram ? col.rows * (fam.bounds.size() + 1) : 0, 0);
    }
    c.plan_version = plan_.version;
    c.labels = plan_.labels;
  } else {
    c.families.resize(plan_.families.size());  // drop the previous self-metrics
  }
  // Every served target is written (the first source of each merged series copies), so
  // nothing needs clearing between collections of one plan.
  std::size_t k = 0;
  for (auto& [path, t] : segments_) {
    const auto& targets = plan_.segment_targets[k++];
    const std::uint64_t* buckets = t.buckets.data();
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const target& to = targets[i];
      if (to.family == not_served) {
        buckets += to.series;  // its histogram counts, if any
        continue;
      }
      const family_snapshot& f = c.families[to.family];
      const std::size_t nb = f.type == layout::metric_type::histogram ? f.bounds.size() + 1 : 0;
      combine(f.type, f.mode, c.columns.families[to.family], to.series, t.values[i], buckets, nb,
              to.first);
      buckets += nb;
    }
  }
  for (std::size_t f = 0; f < retired_.size(); ++f)
    for (std::size_t i = 0; i < retired_[f].series.size(); ++i) {
      const target& to = plan_.retired_targets[f][i];
      if (to.family == not_served) continue;
      const family_snapshot& m = c.families[to.family];
      const series_snapshot& s = retired_[f].series[i];
      const bool hist = m.type == layout::metric_type::histogram;
      const std::size_t nb = hist ? m.bounds.size() + 1 : 0;
      if (hist && s.buckets.size() != nb) continue;  // cannot happen: same bounds
      combine(m.type, m.mode, c.columns.families[to.family], to.series,
              {hist ? s.sum : s.value, s.stamp_ns}, s.buckets.data(), nb, to.first);
    }
}

SHMETRICS_END_NAMESPACE
