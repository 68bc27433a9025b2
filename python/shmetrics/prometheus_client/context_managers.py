"""time(), count_exceptions() and track_inprogress(): context managers and decorators.

As prometheus_client's, without its dependency on the `decorator` package:
functools.wraps keeps the name, docstring and signature (inspect.signature
follows __wrapped__).
"""
import functools
from timeit import default_timer


def _decorate(f, manager_factory):
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        with manager_factory():
            return f(*args, **kwargs)
    return wrapped


class ExceptionCounter:
    def __init__(self, counter, exception):
        self._counter = counter
        self._exception = exception

    def __enter__(self):
        pass

    def __exit__(self, typ, value, traceback):
        if isinstance(value, self._exception):
            self._counter.inc()
        return False

    def __call__(self, f):
        return _decorate(f, lambda: self)


class InprogressTracker:
    def __init__(self, gauge):
        self._gauge = gauge

    def __enter__(self):
        self._gauge.inc()

    def __exit__(self, typ, value, traceback):
        self._gauge.dec()

    def __call__(self, f):
        return _decorate(f, lambda: self)


class Timer:
    def __init__(self, metric, callback_name):
        self._metric = metric
        self._callback_name = callback_name

    def _new_timer(self):
        return self.__class__(self._metric, self._callback_name)

    def __enter__(self):
        self._start = default_timer()
        return self

    def __exit__(self, typ, value, traceback):
        # Time can go backwards.
        duration = max(default_timer() - self._start, 0)
        callback = getattr(self._metric, self._callback_name)
        callback(duration)

    def labels(self, *args, **kw):
        self._metric = self._metric.labels(*args, **kw)

    def __call__(self, f):
        # A new timer per call: thread safe and reentrant.
        return _decorate(f, self._new_timer)
