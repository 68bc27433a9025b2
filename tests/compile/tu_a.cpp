// Two translation units include the writer and link together: every non-template
// function in the headers must be inline (no ODR violation, no duplicate symbol).
#include <shmetrics/shmetrics.hpp>

int tu_b();

int main() {
  shmetrics::registry_options o;
  o.prefix = "shmtest-two-tu";
  o.max_cells = 64;
  o.max_series = 8;
  o.max_families = 4;
  o.string_bytes = 1024;
  auto reg = shmetrics::registry::create(o);
  if (!reg) return 1;
  auto c = reg->add_counter({.name = "a_total", .help = "a"})->with_labels({}).value_or({});
  c.inc();
  return tu_b();
}
