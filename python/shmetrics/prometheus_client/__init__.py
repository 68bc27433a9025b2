"""A drop-in for prometheus_client whose values live in shmetrics segments.

    import shmetrics.prometheus_client as prometheus_client

is meant to be the whole change in an engine written for prometheus_client (vLLM,
vLLM-Omni, SGLang): same classes, arguments, names, label rules and exceptions; values
recorded by the native writer (no lock, no file, no Python on the hot path); every
process writes its own segment and generate_latest() / shmetrics-exporter serve their
merged view. See docs/prometheus-client-compat.md for what is supported and what differs.
"""
from . import core, exposition, metrics, metrics_core, multiprocess, registry
from .exposition import (
    CONTENT_TYPE_LATEST, generate_latest, make_asgi_app, make_wsgi_app, MetricsHandler,
    start_http_server, start_wsgi_server, write_to_textfile,
)
from .metrics import Counter, Enum, Gauge, Histogram, Info, Summary
from .metrics_core import Metric
from .registry import CollectorRegistry, REGISTRY


class _ServedByTheExporter:
    """prometheus_client's default process/platform/GC collectors: registered in REGISTRY so
    that `REGISTRY.unregister(PROCESS_COLLECTOR)` works; they add nothing (the exporter and
    the collector serve `process_*` themselves)."""

    def __init__(self, name):
        self._name = name

    def collect(self):
        return []

    def __repr__(self):
        return f'<{self._name}: served by shmetrics>'


def disable_created_metrics():
    """Accepted: shmetrics serves no `_created` samples."""


def enable_created_metrics():
    """Accepted: shmetrics serves no `_created` samples."""


PROCESS_COLLECTOR = _ServedByTheExporter('ProcessCollector')
PLATFORM_COLLECTOR = _ServedByTheExporter('PlatformCollector')
GC_COLLECTOR = _ServedByTheExporter('GCCollector')
for _c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_c)
del _c

__all__ = (
    'CollectorRegistry',
    'REGISTRY',
    'Metric',
    'Counter',
    'Gauge',
    'Summary',
    'Histogram',
    'Info',
    'Enum',
    'CONTENT_TYPE_LATEST',
    'generate_latest',
    'MetricsHandler',
    'make_wsgi_app',
    'make_asgi_app',
    'start_http_server',
    'start_wsgi_server',
    'write_to_textfile',
    'PROCESS_COLLECTOR',
    'PLATFORM_COLLECTOR',
    'GC_COLLECTOR',
    'disable_created_metrics',
    'enable_created_metrics',
)
