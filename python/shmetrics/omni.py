"""vLLM-Omni's metric families by name, from the shmetrics catalog:

    fam = shmetrics.omni.family(reg, "vllm:omni_e2e_request_latency_s")
    fam = shmetrics.omni.family(reg, "e2e_request_latency_s", prefix="vllm_omni:")

Names are given with either prefix (the seed's "vllm:omni_" or upstream's "vllm_omni:") or
without one; the family is registered with `prefix` (default: the seed's).
"""

from . import _catalog

SEED_PREFIX = "vllm:omni_"
UPSTREAM_PREFIX = "vllm_omni:"


def _base(name):
    for p in (SEED_PREFIX, UPSTREAM_PREFIX):
        if name.startswith(p):
            return name[len(p):]
    return name


def names(prefix=SEED_PREFIX):
    """Every vLLM-Omni family name of the catalog, spelled with `prefix`."""
    return [prefix + _base(n) for n, source, _ in _catalog.listing() if source == "omni"]


def definition(name, max_model_len=0):
    if _base(name) == name and ":" in name:  # another prefix: vLLM's own, say
        raise ValueError("%r is not a vLLM-Omni family (want %r or %r names)"
                         % (name, SEED_PREFIX, UPSTREAM_PREFIX))
    e = _catalog.entry(SEED_PREFIX + _base(name), max_model_len)
    if e["source"] != "omni":
        raise ValueError("%r is not a vLLM-Omni family: use shmetrics.vllm.family" % (name,))
    return e


def family(reg, name, prefix=SEED_PREFIX, max_model_len=0, labelnames=None, const_labels=None,
           buckets=None):
    """Registers the vLLM-Omni family `name` in `reg` as `prefix` + its base name."""
    if prefix not in (SEED_PREFIX, UPSTREAM_PREFIX):
        raise ValueError("prefix %r: want %r or %r" % (prefix, SEED_PREFIX, UPSTREAM_PREFIX))
    e = definition(name, max_model_len)
    return _catalog.register(reg, e, prefix + _base(name), labelnames, const_labels,
                             buckets)
