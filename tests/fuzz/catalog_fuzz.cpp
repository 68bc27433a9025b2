// libFuzzer target: the catalog JSON loader (catalog::parse) on arbitrary text.
//
// A catalog that loads must be one the typed API can use: every family has a valid name,
// histogram buckets are finite and increasing, and lookups find every entry.
#include <cmath>
#include <cstdint>
#include <string_view>

#include <shmetrics/catalog/catalog.hpp>
#include <shmetrics/detail/validate.hpp>

namespace {
void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto c = shmetrics::catalog::parse(json, "fuzz");
  if (!c) {
    check(!c.error().message().empty());
    return 0;
  }
  for (const auto& f : c->families()) {
    check(shmetrics::detail::valid_metric_name(f.name));
    check(c->find(f.key) != nullptr && c->find_name(f.name) != nullptr);
    for (std::size_t i = 0; i < f.buckets.size(); ++i)
      check(std::isfinite(f.buckets[i]) && (i == 0 || f.buckets[i] > f.buckets[i - 1]));
    for (const auto& l : f.labels)
      check(shmetrics::detail::valid_label_name(l));
    (void)shmetrics::deprecated_family_visible(f.deprecated_in, c->vllm_version(), "");
  }
  return 0;
}
