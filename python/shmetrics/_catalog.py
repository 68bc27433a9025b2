"""Registration of catalog families (data/vllm_catalog.json through the catalog library).

The catalog read is $SHMETRICS_CATALOG when set, else the copy shipped in this package.
"""

import os

from . import _shmetrics


def path():
    """The catalog file in use."""
    return os.environ.get("SHMETRICS_CATALOG") or os.path.join(os.path.dirname(__file__),
                                                               "vllm_catalog.json")


def entry(name, max_model_len=0):
    if not _shmetrics.HAVE_CATALOG:
        raise RuntimeError("shmetrics was built without the catalog library (simdjson missing)")
    e = _shmetrics._catalog_entry(path(), name, max_model_len)
    if e is None:
        raise ValueError("%r is not a family of the shmetrics catalog" % (name,))
    return e


def listing():
    if not _shmetrics.HAVE_CATALOG:
        raise RuntimeError("shmetrics was built without the catalog library (simdjson missing)")
    return _shmetrics._catalog_entry(path(), "", 0)


def register(reg, e, name, labelnames=None, const_labels=None, buckets=None):
    labels = tuple(e["labels"]) if labelnames is None else tuple(labelnames)
    bounds = e["buckets"] if buckets is None else list(buckets)
    if e["type"] == "counter":
        return reg.counter(name, e["help"], labels, const_labels=const_labels)
    if e["type"] == "histogram":
        if not bounds:
            raise ValueError(
                "%s: its buckets follow max_model_len: pass max_model_len=" % name
                if e["buckets_1_2_5"] else
                "%s: the catalog has no buckets for it: pass buckets=" % name)
        return reg.histogram(name, e["help"], labels, buckets=bounds,
                             const_labels=const_labels)
    if e["type"] == "info":
        return reg.info(name, e["help"], labels, const_labels=const_labels)
    return reg.gauge(name, e["help"], labels, const_labels=const_labels, mode=e["mode"])
