"""examples/python/openai_server.py under load with 4 API server processes behind one port,
scraped by a real shmetrics-exporter: vLLM's counters equal the sums of the responses'
usage exactly (prompt and generation tokens, requests by finished_reason), and more than
one worker served."""
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

import compat_util

SERVER = os.path.join(compat_util.HERE, '..', '..', 'examples', 'python', 'openai_server.py')


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers['X-Worker-Pid'], r.read().decode()


def usage_of(body, stream):
    if not stream:
        doc = json.loads(body)
        return doc['usage'], doc['choices'][0]['finish_reason']
    usage, reason = None, None
    for event in body.split('\n\n'):
        if not event.startswith('data: {'):
            continue
        doc = json.loads(event[len('data: '):])
        if doc.get('usage'):
            usage = doc['usage']
        for c in doc['choices']:
            reason = c.get('finish_reason') or reason
    assert body.rstrip().endswith('data: [DONE]')
    return usage, reason


def test_counters_equal_usage_with_four_workers():
    if not os.environ.get('SHMETRICS_EXPORTER'):
        pytest.skip('SHMETRICS_EXPORTER not set')
    prefix = f'pyexample{os.getpid()}'
    env = dict(os.environ, SHMETRICS_SHM_PREFIX=prefix)
    server = subprocess.Popen([sys.executable, SERVER, '--port', '0', '--api-server-count', '4',
                               '--shm-prefix', prefix, '--token-latency', '0.001', '--model', 'demo'],
                              stdout=subprocess.PIPE, text=True, env=env)
    exporter = None
    try:
        url = server.stdout.readline().split()[2]
        exporter = compat_util.Exporter(prefix)
        totals = collections.Counter()
        reasons = collections.Counter()
        workers = set()
        lock = threading.Lock()
        errors = []

        def client(k):
            try:
                for i in range(25):
                    n = k * 100 + i
                    stream = n % 3 == 0
                    chat = n % 2 == 0
                    words = ' '.join(f'w{(n * 7 + j) % 97}' for j in range(1 + n % 40))
                    body = {'model': 'demo', 'max_tokens': 1 + n % 24, 'stream': stream}
                    if stream:
                        body['stream_options'] = {'include_usage': True}
                    if chat:
                        body['messages'] = [{'role': 'user', 'content': words}]
                    else:
                        body['prompt'] = words
                    pid, text = post(url + ('/v1/chat/completions' if chat else '/v1/completions'), body)
                    usage, reason = usage_of(text, stream)
                    with lock:
                        workers.add(pid)
                        totals['prompt'] += usage['prompt_tokens']
                        totals['generation'] += usage['completion_tokens']
                        totals['requests'] += 1
                        reasons[reason] += 1
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert totals['requests'] == 400
        assert len(workers) > 1, f'one worker served everything: {workers}'

        samples = compat_util.samples_of(exporter.scrape())

        def total(name, **want):
            return sum(v for (n, labels), v in samples.items()
                       if n == name and all(dict(labels).get(k) == w for k, w in want.items()))

        assert total('vllm:prompt_tokens_total') == totals['prompt']
        assert total('vllm:generation_tokens_total') == totals['generation']
        for reason in ('stop', 'length', 'abort', 'error', 'repetition'):
            assert total('vllm:request_success_total', finished_reason=reason) == reasons[reason], reason
        assert total('vllm:e2e_request_latency_seconds_count') == 400
        assert total('vllm:request_prompt_tokens_sum') == totals['prompt']
        assert total('vllm:time_to_first_token_seconds_count') == 400
        engines = {dict(labels)['engine'] for (n, labels) in samples if n == 'vllm:prompt_tokens_total'}
        assert engines == {'0', '1', '2', '3'}
        # Idle again: every worker's running gauge is back to 0.
        assert total('vllm:num_requests_running') == 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if exporter:
            exporter.close()
    assert server.returncode == 0


def test_example_families_are_the_catalogs():
    """The example's families have the names, types, labels and buckets of
    data/vllm_catalog.json."""
    import importlib.util
    import shmetrics.prometheus_client as pc
    spec = importlib.util.spec_from_file_location('openai_server', SERVER)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.Metrics(pc, 'demo', 0, 4096)
    with open(os.path.join(compat_util.HERE, '..', '..', 'data', 'vllm_catalog.json')) as f:
        catalog = json.load(f)
    by_name = {fam['name']: fam for fam in catalog['families']}
    checked = 0
    for collector in list(pc.REGISTRY._collector_to_names):
        name = getattr(collector, '_name', '')
        if not name.startswith('vllm:'):
            continue
        served = name + '_total' if collector._type == 'counter' else name
        entry = by_name[served]
        assert entry['type'] == collector._type, served
        assert list(collector._labelnames) == entry['labels'], served
        if collector._type == 'histogram':
            want = (example.build_1_2_5_buckets(4096) if entry['buckets'] == '1-2-5'
                    else catalog['bucket_sets'][entry['buckets']])
            assert collector._upper_bounds[:-1] == [float(b) for b in want], served
        checked += 1
    assert checked == 10
