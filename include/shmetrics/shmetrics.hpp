// shmetrics: lock-free metrics in a shared-memory segment, served by a sidecar exporter.
// The umbrella header of the writer API: include this and nothing else.
#pragma once

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
