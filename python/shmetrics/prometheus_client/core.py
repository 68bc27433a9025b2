"""prometheus_client.core's names: the metric classes, the registry and the families for
custom collectors."""
from .metrics import Counter, Enum, Gauge, Histogram, Info, Summary  # noqa: F401
from .metrics_core import (  # noqa: F401
    CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric, UnknownMetricFamily,
    UntypedMetricFamily,
)
from .registry import CollectorRegistry, REGISTRY  # noqa: F401
from .samples import Exemplar, Sample  # noqa: F401
