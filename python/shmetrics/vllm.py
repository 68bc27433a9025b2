"""vLLM's metric families by name, from the shmetrics catalog (data/vllm_catalog.json):

    fam = shmetrics.vllm.family(reg, "vllm:time_to_first_token_seconds")
    ttft = fam.labels("my-model", "0")       # labels as vLLM declares them

Help, label names, buckets and the gauge merge mode are the catalog's. Histograms whose
buckets follow the model length (vLLM's build_1_2_5_buckets) need max_model_len=.
"""

from . import _catalog


def names():
    """Every vLLM family name the catalog holds (deprecated and removed ones included)."""
    return [n for n, source, _ in _catalog.listing() if source == "vllm"]


def definition(name, max_model_len=0):
    """The catalog entry of `name` as a dict (type, help, labels, buckets, mode, ...)."""
    e = _catalog.entry(name, max_model_len)
    if e["source"] != "vllm":
        raise ValueError("%r is a vLLM-Omni family: use shmetrics.omni.family" % (name,))
    return e


def family(reg, name, max_model_len=0, labelnames=None, const_labels=None,
           buckets=None):
    """Registers the vLLM family `name` in `reg` (a shmetrics.Registry) with the
    catalog's help, labels, buckets and gauge mode; returns the family. labelnames,
    const_labels and buckets= override the catalog's."""
    return _catalog.register(reg, definition(name, max_model_len), name, labelnames, const_labels,
                             buckets)
