"""Registration of catalog families (data/vllm_catalog.json through the catalog library)."""

from . import _shmetrics


def entry(name, max_model_len=0):
    if not _shmetrics.HAVE_CATALOG:
        raise RuntimeError("shmetrics was built without the catalog library (simdjson missing)")
    e = _shmetrics._catalog_entry(name, max_model_len)
    if e is None:
        raise ValueError("%r is not a family of the shmetrics catalog" % (name,))
    return e


def listing():
    if not _shmetrics.HAVE_CATALOG:
        raise RuntimeError("shmetrics was built without the catalog library (simdjson missing)")
    return _shmetrics._catalog_entry("", 0)


def register(reg, e, name, labelnames=None, const_labels=None):
    labels = tuple(e["labels"]) if labelnames is None else tuple(labelnames)
    if e["type"] == "counter":
        return reg.counter(name, e["help"], labels, const_labels=const_labels)
    if e["type"] == "histogram":
        if not e["buckets"]:
            raise ValueError("%s: its buckets follow max_model_len; pass max_model_len=" % name)
        return reg.histogram(name, e["help"], labels, buckets=e["buckets"],
                             const_labels=const_labels)
    if e["type"] == "info":
        return reg.info(name, e["help"], labels, const_labels=const_labels)
    return reg.gauge(name, e["help"], labels, const_labels=const_labels, mode=e["mode"])
