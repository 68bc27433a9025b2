"""The same mistakes raise the same exceptions (type and message) in
shmetrics.prometheus_client as in prometheus_client, and names come out the same
(`_total` with or without, namespace/subsystem/unit, vLLM's colons)."""
import itertools

import prometheus_client as real
import pytest

import shmetrics.prometheus_client as shm

_n = itertools.count()


def outcome(fn):
    try:
        return ('ok', fn())
    except Exception as e:  # the comparison is the point
        return (type(e).__name__, str(e))


def both(make):
    """Runs make(pc, registry, suffix) on both libraries with fresh registries and a fresh
    name suffix; returns the two outcomes."""
    k = next(_n)
    return (outcome(lambda: make(real, real.CollectorRegistry(), f'_{k}')),
            outcome(lambda: make(shm, shm.CollectorRegistry(), f'_{k}')))


CASES = {
    'invalid metric name': lambda pc, r, s: pc.Counter('bad name' + s, 'd', registry=r),
    'invalid name via namespace': lambda pc, r, s: pc.Gauge('x' + s, 'd', namespace='9ns', registry=r),
    'invalid label name': lambda pc, r, s: pc.Counter('c' + s, 'd', ['bad-label'], registry=r),
    'reserved label __': lambda pc, r, s: pc.Gauge('g' + s, 'd', ['__x'], registry=r),
    'reserved label le': lambda pc, r, s: pc.Histogram('h' + s, 'd', ['le'], registry=r),
    'reserved label quantile': lambda pc, r, s: pc.Summary('s' + s, 'd', ['quantile'], registry=r),
    'buckets not sorted': lambda pc, r, s: pc.Histogram('h' + s, 'd', buckets=[1, 0.5], registry=r),
    'one bucket': lambda pc, r, s: pc.Histogram('h' + s, 'd', buckets=[float('inf')], registry=r),
    'no buckets': lambda pc, r, s: pc.Histogram('h' + s, 'd', buckets=[], registry=r),
    'invalid gauge mode': lambda pc, r, s: pc.Gauge('g' + s, 'd', multiprocess_mode='avg', registry=r),
    'info with unit': lambda pc, r, s: pc.Info('i' + s, 'd', unit='bytes', registry=r),
    'enum without states': lambda pc, r, s: pc.Enum('e' + s, 'd', registry=r),
    'duplicate name': lambda pc, r, s: (pc.Counter('dup' + s, 'd', registry=r), pc.Gauge('dup' + s, 'd', registry=r)),
    'duplicate counter with and without _total': lambda pc, r, s: (
        pc.Counter('t' + s + '_total', 'd', registry=r), pc.Counter('t' + s, 'd', registry=r)),
    'gauge named like a counter sample': lambda pc, r, s: (
        pc.Counter('c' + s, 'd', registry=r), pc.Gauge('c' + s + '_total', 'd', registry=r)),
    'histogram beside its _count': lambda pc, r, s: (
        pc.Histogram('h' + s, 'd', registry=r), pc.Gauge('h' + s + '_count', 'd', registry=r)),
    'info beside _info': lambda pc, r, s: (pc.Info('i' + s, 'd', registry=r), pc.Gauge('i' + s + '_info', 'd', registry=r)),
    'labels() without label names': lambda pc, r, s: pc.Counter('c' + s, 'd', registry=r).labels('a'),
    'wrong label count': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a', 'b'], registry=r).labels('x'),
    'too many labels': lambda pc, r, s: pc.Gauge('g' + s, 'd', ['a'], registry=r).labels('x', 'y'),
    'wrong label names': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a', 'b'], registry=r).labels(a='1', c='2'),
    'args and kwargs': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a', 'b'], registry=r).labels('1', b='2'),
    'inc on a parent': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a'], registry=r).inc(),
    'set on a parent': lambda pc, r, s: pc.Gauge('g' + s, 'd', ['a'], registry=r).set(1),
    'observe on a parent': lambda pc, r, s: pc.Histogram('h' + s, 'd', ['a'], registry=r).observe(1),
    'count_exceptions on a parent': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a'], registry=r).count_exceptions(),
    'track_inprogress on a parent': lambda pc, r, s: pc.Gauge('g' + s, 'd', ['a'], registry=r).track_inprogress(),
    'negative counter increment': lambda pc, r, s: pc.Counter('c' + s, 'd', registry=r).inc(-1),
    'negative increment on a child': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a'], registry=r).labels('x').inc(-1),
    'remove with a wrong count': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a', 'b'], registry=r).remove('x'),
    'remove of an unknown label set': lambda pc, r, s: pc.Counter('c' + s, 'd', ['a'], registry=r).remove('x'),
    'remove without labels': lambda pc, r, s: pc.Counter('c' + s, 'd', registry=r).remove('x'),
    'unregister twice': lambda pc, r, s: [r.unregister(c) for c in [pc.Counter('c' + s, 'd', registry=r)] * 2],
    'info overlapping labels': lambda pc, r, s: pc.Info('i' + s, 'd', ['a'], registry=r).labels('1').info({'a': '2'}),
    'enum unknown state': lambda pc, r, s: pc.Enum('e' + s, 'd', states=['a', 'b'], registry=r).state('c'),
    'enum overlapping label': lambda pc, r, s: pc.Enum('e' + s, 'd', ['e' + s], states=['a'], registry=r),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_same_exception(case):
    real_outcome, shm_outcome = both(CASES[case])
    assert real_outcome[0] != 'ok', f'{case}: prometheus_client accepted it'
    if case in TYPE_ONLY:
        assert shm_outcome[0] == real_outcome[0], (real_outcome, shm_outcome)
    else:
        assert shm_outcome == real_outcome


# The message is the collector's repr, which names the module (prometheus_client.metrics
# vs shmetrics.prometheus_client.metrics).
TYPE_ONLY = {'unregister twice'}


NAMES = [
    ('Counter', dict(name='vllm:prompt_tokens_total'), 'vllm:prompt_tokens_total'),
    ('Counter', dict(name='vllm:num_preemptions'), 'vllm:num_preemptions_total'),
    ('Counter', dict(name='requests', namespace='app', subsystem='http'), 'app_http_requests_total'),
    ('Counter', dict(name='sent_total', unit='bytes'), 'sent_bytes_total'),
    ('Counter', dict(name='sent_bytes_total', unit='bytes'), 'sent_bytes_total'),
    ('Gauge', dict(name='vllm:kv_cache_usage_perc'), 'vllm:kv_cache_usage_perc'),
    ('Gauge', dict(name='queue_total'), 'queue_total'),
    ('Histogram', dict(name='lat', unit='seconds'), 'lat_seconds_count'),
    ('Info', dict(name='vllm:build'), 'vllm:build_info'),
]


@pytest.mark.parametrize('cls,kw,sample', NAMES, ids=[n[2] for n in NAMES])
def test_same_names(cls, kw, sample):
    k = next(_n)
    kw = dict(kw, documentation='d')
    kw['name'] = kw['name'].replace(':', f':n{k}_', 1) if ':' in kw['name'] else f'n{k}_' + kw['name']
    sample = sample.replace(':', f':n{k}_', 1) if ':' in sample else (
        f'app_http_n{k}_requests_total' if sample.startswith('app_http') else f'n{k}_' + sample)
    values = {}
    for pc in (real, shm):
        r = pc.CollectorRegistry()
        m = getattr(pc, cls)(registry=r, **kw)
        if cls == 'Info':
            m.info({'v': '1'})
        elif cls == 'Histogram':
            m.observe(1)
        else:
            m.inc(2)
        values[pc.__name__] = (m._name, r.get_sample_value(sample, {'v': '1'} if cls == 'Info' else {}),
                               sorted(r._names_to_collectors))
    assert values['prometheus_client'] == values['shmetrics.prometheus_client']
    assert values['prometheus_client'][1] is not None
