"""Counter, Gauge, Histogram, Summary, Info and Enum with prometheus_client's API and rules.

Names, label checks, error types and messages are prometheus_client's (0.16, plus the
`mostrecent` gauge modes of 0.17+). What differs is where values live: in the process's
shmetrics segment, through the native module. `labels()` returns the native child, and a
metric without labels has the native child's bound methods as its own `inc`/`set`/
`observe`..., so that recording costs one native call with no Python in between.
"""
import os
import sys
import threading

from . import _native
from .context_managers import ExceptionCounter, InprogressTracker, Timer
from .metrics_core import (
    Metric, METRIC_LABEL_NAME_RE, METRIC_NAME_RE, RESERVED_METRIC_LABEL_NAME_RE,
)
from .registry import Collector, REGISTRY
from .utils import INF


def _build_full_name(metric_type, name, namespace, subsystem, unit):
    full_name = ''
    if namespace:
        full_name += namespace + '_'
    if subsystem:
        full_name += subsystem + '_'
    full_name += name
    if metric_type == 'counter' and full_name.endswith('_total'):
        full_name = full_name[:-6]  # Munge to OpenMetrics.
    if unit and not full_name.endswith("_" + unit):
        full_name += "_" + unit
    if unit and metric_type in ('info', 'stateset'):
        raise ValueError('Metric name is of a type that cannot have a unit: ' + full_name)
    return full_name


def _validate_labelname(l):
    if not METRIC_LABEL_NAME_RE.match(l):
        raise ValueError('Invalid label metric name: ' + l)
    if RESERVED_METRIC_LABEL_NAME_RE.match(l):
        raise ValueError('Reserved label metric name: ' + l)


def _validate_labelnames(cls, labelnames):
    labelnames = tuple(labelnames)
    for l in labelnames:
        _validate_labelname(l)
        if l in cls._reserved_labelnames:
            raise ValueError('Reserved label metric name: ' + l)
    return labelnames


def _multiprocess_env():
    """prometheus_client's multiprocess mode is on (it then labels all/liveall gauges by pid)."""
    return bool(os.environ.get('PROMETHEUS_MULTIPROC_DIR') or os.environ.get('prometheus_multiproc_dir'))


# ---- Extra methods of the native children (count_exceptions(), time(), ...). Added to the
# native types once, so that `labels(...)` can return the native child itself.

def _child_count_exceptions(self, exception=Exception):
    return ExceptionCounter(self, exception)


def _child_track_inprogress(self):
    return InprogressTracker(self)


def _child_time_set(self):
    return Timer(self, 'set')


def _child_time_observe(self):
    return Timer(self, 'observe')


def _child_set_function(self, f):
    _native.add_function(_FunctionTarget(self), f)


class _FunctionTarget:
    """Keeps a native child for set_function (native objects may not take weak references)."""

    _keep = []

    def __init__(self, child):
        self._child = child
        _FunctionTarget._keep.append(self)

    def _function_set(self, value):
        self._child.set(value)


_patched = set()


def _patch_child_type(child, methods):
    tp = type(child)
    if tp in _patched:
        return
    _patched.add(tp)
    for name, fn in methods.items():
        if not hasattr(tp, name):
            try:
                setattr(tp, name, fn)
            except (TypeError, AttributeError):  # an immutable native type: plain recording only
                pass


# `child._value.get()`, as tests written for prometheus_client read a child's value.
_child_value = property(lambda self: self)

_COUNTER_CHILD_METHODS = {'count_exceptions': _child_count_exceptions, '_value': _child_value}
_GAUGE_CHILD_METHODS = {'track_inprogress': _child_track_inprogress, 'time': _child_time_set,
                        'set_function': _child_set_function, '_value': _child_value}
_HISTOGRAM_CHILD_METHODS = {'time': _child_time_observe}


class MetricWrapperBase(Collector):
    _type = None
    _child_methods = {}  # Python methods prometheus_client's children have (time(), ...)
    _reserved_labelnames = ()
    # Families of this class are values in the shmetrics segment (the registry collects
    # them from the merged view).
    _shmetrics_backed = True

    def _is_observable(self):
        return not self._labelnames or (self._labelnames and self._labelvalues)

    def _raise_if_not_observable(self):
        if not self._is_observable():
            raise ValueError('%s metric is missing label values' % str(self._type))

    def _is_parent(self):
        return self._labelnames and not self._labelvalues

    def _get_metric(self):
        return Metric(self._name, self._documentation, self._type, self._unit)

    def describe(self):
        return [self._get_metric()]

    def collect(self):
        from .registry import _merged_metrics
        names = set(_sample_names(self._get_metric()))
        return [m for m in _merged_metrics() if m.name == self._name or
                any(s.name in names for s in m.samples)]

    def __str__(self):
        return f"{self._type}:{self._name}"

    def __repr__(self):
        metric_type = type(self)
        return f"{metric_type.__module__}.{metric_type.__name__}({self._name})"

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=REGISTRY, _labelvalues=None):
        self._name = _build_full_name(self._type, name, namespace, subsystem, unit)
        self._labelnames = _validate_labelnames(self, labelnames)
        self._labelvalues = tuple(_labelvalues or ())
        self._kwargs = {}
        self._documentation = documentation
        self._unit = unit

        if not METRIC_NAME_RE.match(self._name):
            raise ValueError('Invalid metric name: ' + self._name)

        if self._labelvalues:
            # A Python-level child (Info, Enum): set up by the class.
            self._metrics = {}
            return

        self._lock = threading.Lock()
        self._metrics = {}
        # The registry first: a duplicate name is refused before anything is written.
        if registry:
            registry.register(self)
        try:
            self._family = self._native_family()
            if not self._labelnames:
                self._bind_single()
        except BaseException:
            if registry:
                registry.unregister(self)
            raise

    # Subclasses: the native family, and the binding of a metric without labels.
    def _native_family(self):  # pragma: no cover
        raise NotImplementedError

    def _bind_single(self):
        self._bind(self._make_child(()))

    def _bind(self, child):  # pragma: no cover
        raise NotImplementedError

    def _make_child(self, labelvalues):
        child = self._family.labels(*labelvalues)
        _patch_child_type(child, self._child_methods)
        return child

    def labels(self, *labelvalues, **labelkwargs):
        """The child for the given label values (the native child: cache it)."""
        if not labelkwargs:
            # Known label values given as str: one dict lookup (_metrics is keyed by the
            # str() of the values, and only a labelled parent has entries).
            child = self._metrics.get(labelvalues)
            if child is not None:
                return child
        if not self._labelnames:
            raise ValueError('No label names were set when constructing %s' % self)

        if self._labelvalues:
            raise ValueError('{} already has labels set ({}); can not chain calls to .labels()'.format(
                self,
                dict(zip(self._labelnames, self._labelvalues))
            ))

        if labelvalues and labelkwargs:
            raise ValueError("Can't pass both *args and **kwargs")

        if labelkwargs:
            if sorted(labelkwargs) != sorted(self._labelnames):
                raise ValueError('Incorrect label names')
            labelvalues = tuple(str(labelkwargs[l]) for l in self._labelnames)
        else:
            if len(labelvalues) != len(self._labelnames):
                raise ValueError('Incorrect label count')
            labelvalues = tuple(map(str, labelvalues))
        child = self._metrics.get(labelvalues)
        if child is None:
            with self._lock:
                child = self._metrics.get(labelvalues)
                if child is None:
                    child = self._make_child(labelvalues)
                    self._metrics[labelvalues] = child
        return child

    def remove(self, *labelvalues):
        """Remove the given labelset from the metric (its series leaves the merged view)."""
        if not self._labelnames:
            raise ValueError('No label names were set when constructing %s' % self)
        if len(labelvalues) != len(self._labelnames):
            raise ValueError('Incorrect label count (expected %d, got %s)' % (len(self._labelnames), labelvalues))
        labelvalues = tuple(str(l) for l in labelvalues)
        with self._lock:
            if labelvalues not in self._metrics:
                raise KeyError(labelvalues)  # as prometheus_client's `del self._metrics[...]`
            self._remove_native(labelvalues)
            del self._metrics[labelvalues]

    def _remove_native(self, labelvalues):
        self._family.remove(*labelvalues)

    def clear(self):
        """Remove all labelsets from the metric"""
        with self._lock:
            if self._labelnames:
                for labelvalues in list(self._metrics):
                    self._remove_native(labelvalues)
                self._metrics = {}

    # In prometheus_client, _multi_samples()/_child_samples() build samples from the
    # process's own values; here the registry reads the merged view instead.


def _sample_names(metric):
    suffixes = {
        'counter': ['_total', '_created'],
        'summary': ['_sum', '_count', '_created'],
        'histogram': ['_bucket', '_sum', '_count', '_created'],
        'info': ['_info'],
    }
    return [metric.name] + [metric.name + s for s in suffixes.get(metric.type, [])]


class Counter(MetricWrapperBase):
    """A counter: `Counter('requests_total', 'doc')` or `Counter('requests', 'doc')` both
    serve `requests_total` (prometheus_client's naming)."""
    _type = 'counter'
    _child_methods = _COUNTER_CHILD_METHODS

    def _native_family(self):
        return _native.family('counter', self._name, self._documentation, self._labelnames)

    def _bind(self, child):
        self._value = child
        # The native methods themselves: no Python frame on the hot path.
        self.inc = child.inc

    def inc(self, amount=1, exemplar=None):
        """Increment counter by the given amount (a metric with labels: on its children)."""
        self._raise_if_not_observable()

    def count_exceptions(self, exception=Exception):
        self._raise_if_not_observable()
        return ExceptionCounter(self, exception)


# prometheus_client's multiprocess_mode -> the exporter's gauge merge. all/liveall keep
# one series per process, by a `pid` label, as MultiProcessCollector does; without
# PROMETHEUS_MULTIPROC_DIR (prometheus_client's single-process mode, where a process
# serves its own value and no pid label) they are the latest value of the live writers.
_MODE_MAP = {
    'all': 'sum',          # + pid label
    'liveall': 'live_sum',  # + pid label
    'min': 'min',
    'livemin': 'live_min',
    'max': 'max',
    'livemax': 'live_max',
    'sum': 'sum',
    'livesum': 'live_sum',
    'mostrecent': 'latest',
    'livemostrecent': 'live_latest',
}


def _bind_gauge(target, child):
    target._value = child
    target.set = child.set
    target.inc = child.inc
    target.dec = child.dec
    target.set_to_current_time = child.set_to_current_time


class _PidGaugeChild:
    """A child of an all/liveall gauge in multiprocess mode: its native series carries the
    process's pid; the bound methods are native ones, rebound after a fork."""

    def __init__(self, family, labelvalues):
        self._family = family
        self._labelvalues = labelvalues
        self._rebind()
        _native.track_pid_bound(self)

    def _rebind(self):
        child = self._family.labels(*self._labelvalues, str(os.getpid()))
        _patch_child_type(child, _GAUGE_CHILD_METHODS)
        _bind_gauge(self, child)

    def _remove_native(self):
        self._family.remove(*self._labelvalues, str(os.getpid()))

    def get(self):
        return self._value.get()

    def track_inprogress(self):
        return InprogressTracker(self)

    def time(self):
        return Timer(self, 'set')

    def set_function(self, f):
        _native.add_function(self, f)

    def _function_set(self, value):
        self._value.set(value)


class Gauge(MetricWrapperBase):
    _type = 'gauge'
    _child_methods = _GAUGE_CHILD_METHODS
    _MULTIPROC_MODES = frozenset(('all', 'liveall', 'min', 'livemin', 'max', 'livemax', 'sum', 'livesum',
                                  'mostrecent', 'livemostrecent'))

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=REGISTRY, _labelvalues=None, multiprocess_mode='all'):
        self._multiprocess_mode = multiprocess_mode
        if multiprocess_mode not in self._MULTIPROC_MODES:
            raise ValueError('Invalid multiprocess mode: ' + multiprocess_mode)
        self._pid_label = multiprocess_mode in ('all', 'liveall') and _multiprocess_env()
        super().__init__(
            name=name, documentation=documentation, labelnames=labelnames, namespace=namespace,
            subsystem=subsystem, unit=unit, registry=registry, _labelvalues=_labelvalues,
        )
        self._kwargs['multiprocess_mode'] = self._multiprocess_mode

    def _native_mode(self):
        if self._multiprocess_mode in ('all', 'liveall') and not self._pid_label:
            return 'live_latest'
        return _MODE_MAP[self._multiprocess_mode]

    def _native_family(self):
        labelnames = self._labelnames + (('pid',) if self._pid_label else ())
        return _native.family('gauge', self._name, self._documentation, labelnames,
                              mode=self._native_mode())

    def _make_child(self, labelvalues):
        if self._pid_label:
            return _PidGaugeChild(self._family, labelvalues)
        return super()._make_child(labelvalues)

    def _remove_native(self, labelvalues):
        if self._pid_label:
            self._metrics[labelvalues]._remove_native()
        else:
            self._family.remove(*labelvalues)

    def _bind_single(self):
        child = self._make_child(())
        if self._pid_label:
            self._single = child
            _native.track_pid_bound(self)
            _bind_gauge(self, child._value)
        else:
            _bind_gauge(self, child)

    def _rebind(self):
        # After a fork: the series labelled with the child's pid.
        self._single._rebind()
        _bind_gauge(self, self._single._value)

    def inc(self, amount=1):
        """Increment gauge by the given amount."""
        self._raise_if_not_observable()

    def dec(self, amount=1):
        """Decrement gauge by the given amount."""
        self._raise_if_not_observable()

    def set(self, value):
        """Set gauge to the given value."""
        self._raise_if_not_observable()

    def set_to_current_time(self):
        """Set gauge to the current unixtime."""
        self._raise_if_not_observable()

    def track_inprogress(self):
        self._raise_if_not_observable()
        return InprogressTracker(self)

    def time(self):
        return Timer(self, 'set')

    def set_function(self, f):
        """The gauge's value is f(), read about every second (SHMETRICS_FUNCTION_INTERVAL)
        and before each in-process collection."""
        self._raise_if_not_observable()
        _native.add_function(self, f)

    def _function_set(self, value):
        self._value.set(value)


class Summary(MetricWrapperBase):
    """A summary (count and sum), recorded as a histogram with the single bucket +Inf:
    `_count` and `_sum` as prometheus_client serves them, plus `_bucket{le="+Inf"}`."""
    _type = 'summary'
    _child_methods = _HISTOGRAM_CHILD_METHODS
    _reserved_labelnames = ['quantile']

    def _native_family(self):
        try:
            return _native.family('histogram', self._name, self._documentation, self._labelnames,
                                  buckets=(INF,))
        except ValueError:
            # A native module that takes no +Inf-only histogram: one bucket no observation
            # passes (served as le="1.7976931348623157e+308", the same count as +Inf).
            return _native.family('histogram', self._name, self._documentation, self._labelnames,
                                  buckets=(sys.float_info.max,))

    def _bind(self, child):
        self._value = child
        self.observe = child.observe

    def observe(self, amount):
        self._raise_if_not_observable()

    def time(self):
        return Timer(self, 'observe')


class Histogram(MetricWrapperBase):
    _type = 'histogram'
    _child_methods = _HISTOGRAM_CHILD_METHODS
    _reserved_labelnames = ['le']
    DEFAULT_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0, INF)

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=REGISTRY, _labelvalues=None, buckets=DEFAULT_BUCKETS):
        self._prepare_buckets(buckets)
        super().__init__(
            name=name, documentation=documentation, labelnames=labelnames, namespace=namespace,
            subsystem=subsystem, unit=unit, registry=registry, _labelvalues=_labelvalues,
        )
        self._kwargs['buckets'] = buckets

    def _prepare_buckets(self, source_buckets):
        buckets = [float(b) for b in source_buckets]
        if buckets != sorted(buckets):
            # This is probably an error on the part of the user,
            # so raise rather than sorting for them.
            raise ValueError('Buckets not in sorted order')
        if buckets and buckets[-1] != INF:
            buckets.append(INF)
        if len(buckets) < 2:
            raise ValueError('Must have at least two buckets')
        self._upper_bounds = buckets

    def _native_family(self):
        return _native.family('histogram', self._name, self._documentation, self._labelnames,
                              buckets=tuple(self._upper_bounds[:-1]))

    def _bind(self, child):
        self._value = child
        self.observe = child.observe

    def observe(self, amount, exemplar=None):
        """Observe the given amount."""
        self._raise_if_not_observable()

    def time(self):
        return Timer(self, 'observe')


class _PyChildMixin:
    """Info and Enum: their children are Python objects (not a hot path); values go into a
    native gauge family whose label names are the metric's plus the Info keys / the state."""

    def _init_py(self, parent):
        self._parent = parent
        self._lock = threading.Lock()

    def _make_child(self, labelvalues):
        child = self.__class__(
            self._name,
            documentation=self._documentation,
            labelnames=self._labelnames,
            unit=self._unit,
            _labelvalues=labelvalues,
            **self._kwargs
        )
        child._init_py(self)
        child._metric_init()
        return child

    def _bind_single(self):
        self._init_py(self)
        self._metric_init()


class Info(_PyChildMixin, MetricWrapperBase):
    """Info: key-value pairs, served as `<name>_info{...} 1` (a gauge, union of the
    processes' series). The keys of the first info() call are the family's label names."""
    _type = 'info'

    def _native_family(self):
        return None  # registered at the first info(): its label names are the keys

    def _metric_init(self):
        self._labelname_set = set(self._labelnames)
        self._value = {}
        self._series = None

    def info(self, val):
        """Set info metric."""
        if self._labelname_set.intersection(val.keys()):
            raise ValueError('Overlapping labels for Info metric, metric: {} child: {}'.format(
                self._labelnames, val))
        parent = self._parent
        keys = tuple(sorted(val))
        with parent._lock:
            if parent._family is None:
                parent._info_keys = keys
                parent._family = _native.family(
                    'gauge', self._name + '_info', self._documentation, self._labelnames + keys,
                    mode='live_max')
            elif parent._info_keys != keys:
                raise ValueError('Info metric {} was first set with the keys {}; shmetrics cannot '
                                 'change the label names of a family: {}'.format(
                                     self._name, list(parent._info_keys), sorted(val)))
            values = self._labelvalues + tuple(str(val[k]) for k in keys)
            if self._series is not None and self._series != values:
                parent._family.remove(*self._series)
            parent._family.labels(*values).set(1)
            self._series = values
            self._value = dict(val)

    def _remove_native(self, labelvalues):
        child = self._metrics.get(labelvalues)
        if child is not None and child._series is not None:
            self._family.remove(*child._series)


class Enum(_PyChildMixin, MetricWrapperBase):
    """Enum: which of a set of states is true (`name{name="state"}` 1 or 0, a gauge)."""
    _type = 'stateset'

    def __init__(self, name, documentation, labelnames=(), namespace='', subsystem='', unit='',
                 registry=REGISTRY, _labelvalues=None, states=None):
        self._states = states
        super().__init__(
            name=name, documentation=documentation, labelnames=labelnames, namespace=namespace,
            subsystem=subsystem, unit=unit, registry=registry, _labelvalues=_labelvalues,
        )
        if name in labelnames:
            raise ValueError(f'Overlapping labels for Enum metric: {name}')
        if not states:
            raise ValueError(f'No states provided for Enum metric: {name}')
        self._kwargs['states'] = self._states = states

    def _native_family(self):
        if not self._states or self._name in self._labelnames:
            return None  # the checks after registration raise
        return _native.family('gauge', self._name, self._documentation,
                              self._labelnames + (self._name,), mode='live_max')

    def _bind_single(self):
        if self._family is not None:
            super()._bind_single()

    def _metric_init(self):
        self._value = 0
        self._write()

    def _write(self):
        fam = self._parent._family
        for i, s in enumerate(self._states):
            fam.labels(*self._labelvalues, str(s)).set(1 if i == self._value else 0)

    def state(self, state):
        """Set enum metric state."""
        self._raise_if_not_observable()
        with self._lock:
            self._value = self._states.index(state)
            self._write()

    def _remove_native(self, labelvalues):
        for s in self._states:
            self._family.remove(*labelvalues, str(s))
