"""The link to the native module: families in this process's segment, the merged view.

Every metric of shmetrics.prometheus_client records into the process's default native
registry (shmetrics.default_registry(): one segment per process, a forked child gets its
own), whichever CollectorRegistry it is registered with, as prometheus_client's
multiprocess mode writes every metric into the process's files. A family registered twice
with the same definition (two CollectorRegistry objects, or a metric created again after
REGISTRY.unregister) is the same native family.
"""
import os
import threading
import weakref

import shmetrics

_lock = threading.Lock()
_families = {}  # name -> (definition, native family)


def family(kind, name, documentation, labelnames, **extra):
    """The native family `name`, registered in the process's default registry once."""
    definition = (kind, tuple(labelnames), tuple(sorted(extra.items())))
    with _lock:
        known = _families.get(name)
        if known is not None and known[0] == definition:
            return known[1]
        reg = shmetrics.default_registry()
        make = getattr(reg, kind)
        fam = make(name, documentation, tuple(labelnames), **extra)
        _families[name] = (definition, fam)
        return fam


def generate_latest(openmetrics=False, self_metrics=False):
    refresh_functions()
    return shmetrics.generate_latest(openmetrics=openmetrics, self_metrics=self_metrics)


def collect_samples():
    refresh_functions()
    return shmetrics.collect_samples()


# ---- Gauge.set_function(): the value is f(), read every interval and before each
# in-process collection (the exporter reads the segment, it cannot call Python).

_functions = []  # (weakref to the gauge object, f)
_functions_lock = threading.Lock()
_thread = None
_interval = float(os.environ.get('SHMETRICS_FUNCTION_INTERVAL', '1.0'))


def refresh_functions():
    with _functions_lock:
        items = list(_functions)
    dead = False
    for ref, f in items:
        target = ref()
        if target is None:
            dead = True
            continue
        try:
            target._function_set(float(f()))
        except Exception:  # as prometheus_client's collect would fail; keep the last value
            pass
    if dead:
        with _functions_lock:
            _functions[:] = [(r, f) for r, f in _functions if r() is not None]


def _loop():
    import time
    while True:
        time.sleep(_interval)
        refresh_functions()


def add_function(target, f):
    global _thread
    with _functions_lock:
        _functions[:] = [(r, g) for r, g in _functions if r() is not None and r() is not target]
        _functions.append((weakref.ref(target), f))
        if _thread is None:
            _thread = threading.Thread(target=_loop, name='shmetrics-gauge-functions', daemon=True)
            _thread.start()
    refresh_functions()


# ---- Gauges of multiprocess_mode all/liveall carry a pid label (as prometheus_client's
# MultiProcessCollector adds one): after a fork, the child's handles are rebound to
# series labelled with the child's pid.

_pid_bound = weakref.WeakSet()


def track_pid_bound(obj):
    _pid_bound.add(obj)


def _after_fork_in_child():
    global _thread, _functions_lock, _lock
    _lock = threading.Lock()
    _functions_lock = threading.Lock()
    _thread = None
    for obj in list(_pid_bound):
        obj._rebind()
    if _functions:
        with _functions_lock:
            _thread = threading.Thread(target=_loop, name='shmetrics-gauge-functions', daemon=True)
            _thread.start()


os.register_at_fork(after_in_child=_after_fork_in_child)
