"""Metric (a family and its samples) and the name rules, as prometheus_client.metrics_core."""
import re

from .samples import Sample

METRIC_NAME_RE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
METRIC_LABEL_NAME_RE = re.compile(r'^[a-zA-Z_][a-zA-Z0-9_]*$')
RESERVED_METRIC_LABEL_NAME_RE = re.compile(r'^__.*$')

METRIC_TYPES = (
    'counter', 'gauge', 'summary', 'histogram',
    'gaugehistogram', 'unknown', 'info', 'stateset',
)


class Metric:
    """A family: name (a counter's without `_total`), documentation, type and samples."""

    def __init__(self, name, documentation, typ, unit=''):
        if unit and not name.endswith("_" + unit):
            name += "_" + unit
        if not METRIC_NAME_RE.match(name):
            raise ValueError('Invalid metric name: ' + name)
        self.name = name
        self.documentation = documentation
        self.unit = unit
        if typ == 'untyped':
            typ = 'unknown'
        if typ not in METRIC_TYPES:
            raise ValueError('Invalid metric type: ' + typ)
        self.type = typ
        self.samples = []

    def add_sample(self, name, labels, value, timestamp=None, exemplar=None):
        self.samples.append(Sample(name, labels, value, timestamp, exemplar))

    def __eq__(self, other):
        return (isinstance(other, Metric)
                and self.name == other.name
                and self.documentation == other.documentation
                and self.type == other.type
                and self.unit == other.unit
                and self.samples == other.samples)

    def __repr__(self):
        return "Metric({}, {}, {}, {}, {})".format(
            self.name, self.documentation, self.type, self.unit, self.samples)

    def _restricted_metric(self, names):
        samples = [s for s in self.samples if s.name in names]
        if samples:
            m = Metric(self.name, self.documentation, self.type)
            m.samples = samples
            return m
        return None


class _Family(Metric):
    """Families for custom collectors (prometheus_client.core's): a value or label names."""

    _type = 'unknown'

    def __init__(self, name, documentation, value=None, labels=None, unit=''):
        Metric.__init__(self, name, documentation, self._type, unit)
        if labels is not None and value is not None:
            raise ValueError('Can only specify at most one of value and labels.')
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels, value, timestamp=None):
        self.samples.append(Sample(self.name, dict(zip(self._labelnames, labels)), value, timestamp))


class UnknownMetricFamily(_Family):
    _type = 'unknown'


UntypedMetricFamily = UnknownMetricFamily


class GaugeMetricFamily(_Family):
    _type = 'gauge'


class CounterMetricFamily(_Family):
    _type = 'counter'

    def __init__(self, name, documentation, value=None, labels=None, created=None, unit=''):
        if name.endswith('_total'):
            name = name[:-6]
        _Family.__init__(self, name, documentation, None, labels, unit)
        if labels is not None and value is not None:
            raise ValueError('Can only specify at most one of value and labels.')
        if value is not None:
            self.add_metric([], value, created)

    def add_metric(self, labels, value, created=None, timestamp=None):
        labels = dict(zip(self._labelnames, labels))
        self.samples.append(Sample(self.name + '_total', labels, value, timestamp))
        if created is not None:
            self.samples.append(Sample(self.name + '_created', labels, created, timestamp))


class InfoMetricFamily(_Family):
    _type = 'info'

    def __init__(self, name, documentation, value=None, labels=None):
        _Family.__init__(self, name, documentation, None, labels)
        if labels is not None and value is not None:
            raise ValueError('Can only specify at most one of value and labels.')
        if value is not None:
            self.add_metric([], value)

    def add_metric(self, labels, value, timestamp=None):
        self.samples.append(Sample(self.name + '_info', dict(dict(zip(self._labelnames, labels)), **value),
                                   1, timestamp))
