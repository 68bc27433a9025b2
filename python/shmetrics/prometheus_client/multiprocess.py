"""multiprocess.MultiProcessCollector and mark_process_dead, for code written for
prometheus_client's multiprocess mode.

There are no per-process files to merge: every process writes its own shmetrics segment
and the merge is the exporter's (shmetrics.generate_latest() in-process). Registering a
MultiProcessCollector makes a registry serve that whole merged view. The directory
(argument or PROMETHEUS_MULTIPROC_DIR) is accepted and not used.
"""
import os


class MultiProcessCollector:
    """Makes `registry` serve the merged view of every process under the prefix."""

    _shmetrics_backed = True
    _whole_view = True

    def __init__(self, registry, path=None):
        if path is None:
            path = os.environ.get('PROMETHEUS_MULTIPROC_DIR', os.environ.get('prometheus_multiproc_dir'))
        self._path = path
        if registry:
            registry.register(self)

    def describe(self):
        # No names of its own: the families are those of the processes' metrics.
        return []

    def collect(self):
        from .registry import _merged_metrics
        return _merged_metrics()


def mark_process_dead(pid, path=None):
    """Nothing to do: the exporter tells a dead writer by its lock and drops it from the
    live* gauge modes by itself (at the first collection after it died)."""
    return None
