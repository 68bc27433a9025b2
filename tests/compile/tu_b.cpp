#include <shmetrics/shmetrics.hpp>

int tu_b() {
  return shmetrics::to_string(shmetrics::errc::ok) == "ok" ? 0 : 1;
}
