// shmetrics: lock-free metrics in a shared-memory segment, served by a sidecar exporter.
// The umbrella header of the writer API: include this and nothing else.
#ifndef SHMETRICS_SHMETRICS_HPP
#define SHMETRICS_SHMETRICS_HPP

#include "config.hpp"
#include "version.hpp"
#include "errc.hpp"
#include "segment_layout.hpp"
#include "counter.hpp"
#include "gauge.hpp"
#include "histogram.hpp"
#include "scoped_timer.hpp"
#include "registry.hpp"
#include "process_metrics.hpp"

#endif  // SHMETRICS_SHMETRICS_HPP
