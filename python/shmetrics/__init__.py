"""shmetrics: Python writers into shmetrics segments (docs/python.md).

    import shmetrics
    reg = shmetrics.default_registry()          # /dev/shm/shmetrics.<pid>.<instance>
    requests = reg.counter("requests", "Requests served.", labelnames=("code",))
    ok = requests.labels("200")                 # cold path: cache the child
    ok.inc()                                    # hot path: no lock, no allocation, no syscall
    print(shmetrics.generate_latest().decode()) # the merged view of every writer

A forked child records into a segment of its own without any call; a spawned child finds
the directory and prefix in SHMETRICS_SHM_DIR / SHMETRICS_SHM_PREFIX (configure() sets
them).
"""

import os as _os
import threading as _threading

from ._shmetrics import (  # noqa: F401  (re-exported)
    CounterChild,
    Error,
    Family,
    GaugeChild,
    HistogramChild,
    Registry,
    SegmentFullError,
    __version__,
)
from . import _shmetrics

__all__ = [
    "configure", "default_registry", "Registry", "Family", "CounterChild", "GaugeChild",
    "HistogramChild", "Error", "SegmentFullError", "generate_latest", "collect_samples",
    "process_metrics", "settings", "GAUGE_MODES",
]

GAUGE_MODES = ("sum", "max", "min", "latest", "live_sum", "live_max", "live_min", "live_latest")

_OPTION_NAMES = ("max_families", "max_series", "max_cells", "string_bytes", "shards",
                 "heartbeat_interval_ms", "callback_interval_ms", "unlink_on_close")

_lock = _threading.RLock()
_configured = {}       # configure()'s arguments (dir, prefix, options)
_default = None        # the default registry, made on first use


def settings():
    """The settings the default registry has or would get: a dict with dir, prefix and
    every option (argument > environment > built-in default)."""
    with _lock:
        if _default is not None:
            return _default.options
        opts = {k: v for k, v in _configured.items() if k not in ("dir", "prefix")}
        return _shmetrics._options(_configured.get("dir"), _configured.get("prefix"), **opts)


def configure(dir=None, prefix=None, **opts):
    """Settings of this process's default registry: dir (SHMETRICS_SHM_DIR, "/dev/shm"),
    prefix (SHMETRICS_SHM_PREFIX, "shmetrics") and options (max_families, max_series,
    max_cells, string_bytes, shards, heartbeat_interval_ms). An argument wins over the
    environment. dir and prefix given here are also put in os.environ, so that spawned
    children (and explicit Registry() objects) land under the same prefix. Once the
    default registry exists, different settings raise RuntimeError."""
    global _configured
    for k in opts:
        if k not in _OPTION_NAMES:
            raise TypeError("shmetrics.configure(): unknown option %r (%s)"
                            % (k, ", ".join(_OPTION_NAMES)))
    with _lock:
        new = dict(_configured)
        if dir is not None:
            new["dir"] = _os.fspath(dir)
        if prefix is not None:
            new["prefix"] = prefix
        new.update(opts)
        wanted = _shmetrics._options(new.get("dir"), new.get("prefix"),
                                     **{k: v for k, v in new.items() if k not in ("dir", "prefix")})
        if _default is not None:
            have = _default.options
            if wanted != have:
                diff = ", ".join("%s=%r (has %r)" % (k, wanted[k], have[k])
                                 for k in wanted if wanted[k] != have[k])
                raise RuntimeError("shmetrics.configure(): the default registry already exists "
                                   "(%s): configure() must come before its first use" % diff)
            return
        _configured = new
        if dir is not None:
            _os.environ["SHMETRICS_SHM_DIR"] = new["dir"]
        if prefix is not None:
            _os.environ["SHMETRICS_SHM_PREFIX"] = new["prefix"]


def default_registry():
    """This process's registry (made on first use, with configure()'s settings)."""
    global _default
    reg = _default
    if reg is not None:
        return reg
    with _lock:
        if _default is None:
            opts = {k: v for k, v in _configured.items() if k not in ("dir", "prefix")}
            _default = Registry(_configured.get("dir"), _configured.get("prefix"), **opts)
        return _default


def _where(dir, prefix):
    if dir is None or prefix is None:
        s = settings()
        dir = s["dir"] if dir is None else dir
        prefix = s["prefix"] if prefix is None else prefix
    return _os.fspath(dir), prefix


def generate_latest(dir=None, prefix=None, openmetrics=False, self_metrics=False):
    """The merged view of every writer segment under dir/prefix (default: the default
    registry's settings) as Prometheus text 0.0.4 (or OpenMetrics 1.0), bytes: what
    shmetrics-exporter serves for that prefix, collected and encoded by the same
    library. self_metrics=True appends the collector's own families (shmetrics_exporter_*,
    and process_* unless writers record theirs) as the exporter does."""
    d, p = _where(dir, prefix)
    return _shmetrics._generate_latest(d, p, openmetrics, self_metrics)


def collect_samples(dir=None, prefix=None):
    """The merged samples under dir/prefix as a list of (name, labels, value): counters
    as name_total, histograms as name_bucket (with le), name_count, name_sum."""
    d, p = _where(dir, prefix)
    return _shmetrics._collect_samples(d, p)


def process_metrics(reg=None):
    """Records this process's process_* families (CPU seconds, memory, open fds, start
    time) in reg (default: the default registry), sampled every second. Once per process."""
    reg = default_registry() if reg is None else reg
    reg.process_metrics()
    return reg


# A forked child records into a segment of its own: every registry made before the fork
# gets a new one (same dir and prefix) and every family and child is pointed at it.
def _after_fork_in_child():
    global _lock
    _lock = _threading.RLock()  # another thread may have held it at fork
    _shmetrics._after_fork_child()


_os.register_at_fork(after_in_child=_after_fork_in_child)
