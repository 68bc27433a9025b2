"""Helpers of the prometheus_client differential tests: the same seeded operations through
shmetrics.prometheus_client and the real prometheus_client, the bodies parsed by
prometheus_client.parser and compared sample by sample.

Each scenario runs in a fresh interpreter (scenario.py), because prometheus_client picks
its mode (single process or PROMETHEUS_MULTIPROC_DIR) once, at import.
"""
import math
import os
import random
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

GAUGE_MODES_016 = ('all', 'liveall', 'min', 'livemin', 'max', 'livemax', 'sum', 'livesum')

# Amounts and observations: dyadic where possible (sums exact in any order), plus values
# on bucket bounds (le is inclusive).
AMOUNTS = (1, 2, 0.5, 0.25, 3.75, 10, 0)
GAUGE_VALUES = (-2, -0.5, 0, 1, 2.5, 7, 100.25)
OBSERVATIONS = (0.001, 0.005, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 3, 8, 40, 1e4, -1)
LATENCY_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0]


def definitions(multiprocess):
    """(class name, kwargs) of every family of a scenario, vLLM's spellings included."""
    defs = [
        ('Counter', dict(name='vllm:prompt_tokens_total', documentation='Number of prefill tokens processed.',
                         labelnames=['model_name', 'engine'])),
        ('Counter', dict(name='vllm:num_preemptions', documentation='Cumulative number of preemption.',
                         labelnames=['engine'])),
        ('Counter', dict(name='requests', documentation='HTTP requests', namespace='app', subsystem='http',
                         labelnames=['method', 'code'])),
        ('Counter', dict(name='sent', documentation='Bytes sent', unit='bytes')),
        ('Gauge', dict(name='app_inflight', documentation='Requests in flight (default mode all)')),
        ('Gauge', dict(name='app_queue_sum', documentation='queue', multiprocess_mode='livesum')),
        ('Gauge', dict(name='app_total_sum', documentation='sum kept', multiprocess_mode='sum')),
        ('Histogram', dict(name='vllm:e2e_request_latency_seconds', documentation='Histogram of e2e request latency.',
                           labelnames=['model_name'], buckets=LATENCY_BUCKETS)),
        ('Histogram', dict(name='lat', documentation='Default buckets', unit='seconds')),
        ('Histogram', dict(name='tokens', documentation='int buckets', labelnames=['kind'],
                           buckets=[1, 2, 5, 10, 20, 50, 100])),
    ]
    for mode in GAUGE_MODES_016:
        defs.append(('Gauge', dict(name=f'vllm:gauge_{mode}', documentation=f'gauge in mode {mode}',
                                   labelnames=['engine'], multiprocess_mode=mode)))
    if not multiprocess:
        # Info does not work in prometheus_client's multiprocess mode.
        defs.append(('Info', dict(name='app_build', documentation='Build information')))
        defs.append(('Info', dict(name='vllm_cache_config', documentation='Cache config', labelnames=['engine'])))
    return defs


def make_families(pc, defs):
    return [getattr(pc, cls)(**kw) for cls, kw in defs]


def make_ops(defs, seed, n, allow_remove):
    """A seeded list of operations: (family index, labels (tuple or dict or None), method,
    args). Removed label sets are not used again (see docs/prometheus-client-compat.md)."""
    rng = random.Random(seed)
    ops = []
    removed = set()
    created = set()
    for _ in range(n):
        i = rng.randrange(len(defs))
        cls, kw = defs[i]
        labelnames = kw.get('labelnames', [])
        labels = None
        if labelnames:
            values = tuple(rng.choice(['a', 'b', 'x y', 'q"\\n', '0', 7]) for _ in labelnames)
            if (i, tuple(map(str, values))) in removed or (i, '*') in removed:
                continue
            key = (i, tuple(map(str, values)))
            if allow_remove and key in created and rng.random() < 0.03:
                ops.append((i, None, 'remove', values))
                removed.add((i, tuple(map(str, values))))
                continue
            if allow_remove and rng.random() < 0.005:
                ops.append((i, None, 'clear', ()))
                removed.add((i, '*'))
                continue
            labels = dict(zip(labelnames, values)) if rng.random() < 0.3 else values
            created.add(key)
        if cls == 'Counter':
            ops.append((i, labels, 'inc', (rng.choice(AMOUNTS),)))
        elif cls == 'Gauge':
            m = rng.choice(['set', 'inc', 'dec', 'inc1'])
            if m == 'inc1':
                ops.append((i, labels, 'inc', ()))
            else:
                ops.append((i, labels, m, (rng.choice(GAUGE_VALUES),)))
        elif cls == 'Histogram':
            ops.append((i, labels, 'observe', (rng.choice(OBSERVATIONS),)))
        elif cls == 'Info':
            ops.append((i, labels, 'info', ({'version': rng.choice(['1.0', '1.1']), 'commit': 'abc'},)))
    return ops


def apply_ops(families, ops):
    for i, labels, method, args in ops:
        fam = families[i]
        if method in ('remove', 'clear'):
            getattr(fam, method)(*args)
            continue
        if labels is None:
            target = fam
        elif isinstance(labels, dict):
            target = fam.labels(**labels)
        else:
            target = fam.labels(*labels)
        getattr(target, method)(*args)


def samples_of(text, drop_prefixes=('process_', 'python_', 'shmetrics_exporter_')):
    """{(sample name, frozenset(labels)): value} of a text body, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith(drop_prefixes) or s.name.endswith('_created'):
                continue
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f'sample {key} served twice'
            out[key] = s.value
    return out


def diff(expected, actual):
    """A readable list of differences between two sample dicts (empty when equal)."""
    lines = []
    for key in sorted(set(expected) | set(actual), key=repr):
        e, a = expected.get(key), actual.get(key)
        if e is None or a is None:
            lines.append(f'{key}: prometheus_client={e} shmetrics={a}')
        elif not (e == a or (math.isnan(e) and math.isnan(a)) or math.isclose(e, a, rel_tol=1e-12, abs_tol=1e-12)):
            lines.append(f'{key}: prometheus_client={e!r} shmetrics={a!r}')
    return lines


def run_scenario(*args, env=None, timeout=120):
    """Runs scenario.py in a fresh interpreter; returns its stdout (a JSON document)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run([sys.executable, os.path.join(HERE, 'scenario.py'), *map(str, args)],
                       capture_output=True, text=True, env=full_env, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f'scenario {args} failed ({p.returncode}):\n{p.stderr[-4000:]}')
    return p.stdout


class Exporter:
    """A real shmetrics-exporter on 127.0.0.1:0 serving one prefix (SHMETRICS_EXPORTER)."""

    def __init__(self, prefix, shm_dir='/dev/shm'):
        binary = os.environ.get('SHMETRICS_EXPORTER')
        self.proc = None
        self.url = None
        if not binary or not os.path.exists(binary):
            return
        self.proc = subprocess.Popen(
            [binary, '--shm.prefix', prefix, '--shm.dir', shm_dir, '--web.listen-address', '127.0.0.1:0'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # "listening on http://127.0.0.1:PORT/metrics"
        self.url = line.split()[2]

    def scrape(self):
        # The exporter serves a collection under a second old as is: wait for a fresh one.
        time.sleep(1.1)
        with urllib.request.urlopen(self.url, timeout=10) as r:
            return r.read().decode('utf-8')

    def close(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)
