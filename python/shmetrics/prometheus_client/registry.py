"""CollectorRegistry and REGISTRY: prometheus_client's registration rules, shmetrics' values.

A registry keeps prometheus_client's bookkeeping (names, duplicates, unregister,
`_collector_to_names`, `_names_to_collectors`). What it collects is the merged view of
every writer under the configured prefix (shmetrics.generate_latest(), the exporter's
body):
- REGISTRY, and any registry holding a MultiProcessCollector: the whole merged view;
- a CollectorRegistry() of your own: the families of its own metrics in that view.
Collectors of your own (objects with collect()) are added after the merged families.
"""
from abc import ABC, abstractmethod
import copy
from threading import Lock

from .metrics_core import Metric


class Collector(ABC):
    @abstractmethod
    def collect(self):
        pass


class _EmptyCollector(Collector):
    def collect(self):
        return []


def _is_shmetrics_backed(collector):
    return getattr(collector, '_shmetrics_backed', False)


class CollectorRegistry(Collector):
    """Metric collector registry (see the module's docstring for what it collects)."""

    def __init__(self, auto_describe=False, target_info=None):
        self._collector_to_names = {}
        self._names_to_collectors = {}
        self._auto_describe = auto_describe
        self._lock = Lock()
        self._target_info = {}
        self._whole_view = False
        self.set_target_info(target_info)

    def register(self, collector):
        """Add a collector to the registry."""
        with self._lock:
            names = self._get_names(collector)
            duplicates = set(self._names_to_collectors).intersection(names)
            if duplicates:
                raise ValueError(
                    'Duplicated timeseries in CollectorRegistry: {}'.format(
                        duplicates))
            for name in names:
                self._names_to_collectors[name] = collector
            self._collector_to_names[collector] = names
            if getattr(collector, '_whole_view', False):
                self._whole_view = True

    def unregister(self, collector):
        """Remove a collector from the registry. A metric's family stays in the process's
        segment (as prometheus_client's multiprocess files keep it): the same metric
        created again continues its series."""
        with self._lock:
            for name in self._collector_to_names[collector]:
                del self._names_to_collectors[name]
            del self._collector_to_names[collector]
            if getattr(collector, '_whole_view', False):
                self._whole_view = self is REGISTRY or any(
                    getattr(c, '_whole_view', False) for c in self._collector_to_names)

    def _get_names(self, collector):
        """Get names of timeseries the collector produces and clashes with."""
        desc_func = None
        try:
            desc_func = collector.describe
        except AttributeError:
            pass
        if not desc_func and self._auto_describe:
            desc_func = collector.collect

        if not desc_func:
            return []

        result = []
        type_suffixes = {
            'counter': ['_total', '_created'],
            'summary': ['_sum', '_count', '_created'],
            'histogram': ['_bucket', '_sum', '_count', '_created'],
            'gaugehistogram': ['_bucket', '_gsum', '_gcount'],
            'info': ['_info'],
        }
        for metric in desc_func():
            result.append(metric.name)
            for suffix in type_suffixes.get(metric.type, []):
                result.append(metric.name + suffix)
        return result

    # ---- what the registry serves

    def _snapshot(self):
        with self._lock:
            collectors = copy.copy(self._collector_to_names)
            ti = self._target_info_metric() if self._target_info else None
            whole = self._whole_view
            names = set()
            for c, ns in collectors.items():
                if _is_shmetrics_backed(c):
                    names.update(ns)
        own = [c for c in collectors if not _is_shmetrics_backed(c)]
        return whole, names, ti, own

    def _text(self, openmetrics=False):
        """The registry's body in the text format (or OpenMetrics): the merged view
        (filtered to this registry's families unless it serves the whole view), then
        target_info and the collectors of your own."""
        from . import _native
        from .exposition import _render_metrics, _filter_text
        whole, names, ti, own = self._snapshot()
        if whole or names:
            # The whole view is the exporter's body: its own families (shmetrics_exporter_*,
            # process_*) included, as prometheus_client's REGISTRY serves process_*.
            body = _native.generate_latest(openmetrics=openmetrics, self_metrics=whole)
            if not whole:
                body = _filter_text(body, family_names=names)
        else:
            body = b'# EOF\n' if openmetrics else b''
        extra = ([ti] if ti else [])
        for c in own:
            extra.extend(c.collect())
        if not extra:
            return body
        rendered = _render_metrics(extra, openmetrics)
        if openmetrics and body.endswith(b'# EOF\n'):
            return body[:-len(b'# EOF\n')] + rendered + b'# EOF\n'
        return body + rendered

    def collect(self):
        """Yields the merged families (Metric objects, parsed from the merged view), then
        the target_info and your own collectors' families."""
        whole, names, ti, own = self._snapshot()
        if ti:
            yield ti
        if whole or names:
            for m in _merged_metrics():
                if whole or m.name in names or any(s.name in names for s in m.samples):
                    yield m
        for collector in own:
            yield from collector.collect()

    def restricted_registry(self, names):
        """Returns object that only collects some metrics (samples with the given names)."""
        names = set(names)
        return RestrictedRegistry(names, self)

    def set_target_info(self, labels):
        with self._lock:
            if labels:
                if not self._target_info and 'target_info' in self._names_to_collectors:
                    raise ValueError('CollectorRegistry already contains a target_info metric')
                self._names_to_collectors['target_info'] = _EmptyCollector()
            elif self._target_info:
                self._names_to_collectors.pop('target_info', None)
            self._target_info = labels

    def get_target_info(self):
        with self._lock:
            return self._target_info

    def _target_info_metric(self):
        m = Metric('target', 'Target metadata', 'info')
        m.add_sample('target_info', self._target_info, 1)
        return m

    def get_sample_value(self, name, labels=None):
        """Returns the sample value in the merged view (every process under the prefix), or
        None if not found. Meant for tests, as prometheus_client's."""
        from . import _native
        if labels is None:
            labels = {}
        whole, names, ti, own = self._snapshot()
        if whole or name in names:
            for sname, slabels, value in _native.collect_samples():
                if sname == name and slabels == labels:
                    return value
        extra = ([ti] if ti else [])
        for c in own:
            extra.extend(c.collect())
        for metric in extra:
            for s in metric.samples:
                if s.name == name and s.labels == labels:
                    return s.value
        return None


class RestrictedRegistry:
    def __init__(self, names, registry):
        self._name_set = set(names)
        self._registry = registry

    def collect(self):
        for metric in self._registry.collect():
            m = metric._restricted_metric(self._name_set)
            if m:
                yield m

    def _text(self, openmetrics=False):
        from .exposition import _filter_text
        return _filter_text(self._registry._text(openmetrics), sample_names=self._name_set)


def _merged_metrics():
    """The merged view as Metric objects (parsed from shmetrics.generate_latest())."""
    from . import _native
    from .exposition import _parse_text
    return _parse_text(_native.generate_latest().decode('utf-8'))


REGISTRY = CollectorRegistry(auto_describe=True)
REGISTRY._whole_view = True
