// Compiled with -fno-exceptions -Wall -Wextra -Werror: the writer must build there.
#include <shmetrics/shmetrics.hpp>

int shmetrics_no_exceptions_probe() {
  auto reg = shmetrics::registry::create({});
  if (!reg) return 1;
  auto c = reg->add_counter({.name = "x_total", .help = "x"})->with_labels({}).value_or({});
  c.inc();
  return 0;
}
