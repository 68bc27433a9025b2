"""Sample and Exemplar, as prometheus_client.samples defines them."""
from typing import Dict, NamedTuple, Optional


class Exemplar(NamedTuple):
    labels: Dict[str, str]
    value: float
    timestamp: Optional[float] = None


class Sample(NamedTuple):
    name: str
    labels: Dict[str, str]
    value: float
    timestamp: Optional[float] = None
    exemplar: Optional[Exemplar] = None
