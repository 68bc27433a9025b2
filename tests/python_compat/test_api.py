"""shmetrics.prometheus_client as vLLM, vLLM-Omni and SGLang use it: registries, the
multiprocess registry pattern, unregister loops, serving /metrics in-process (http.server,
WSGI, ASGI), decorators and context managers, and the merged view identical to a real
shmetrics-exporter's body."""
import asyncio
import gzip
import time
import urllib.request

import pytest

import shmetrics
import shmetrics.prometheus_client as prometheus_client
from shmetrics.prometheus_client import (
    CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, REGISTRY, Summary, generate_latest,
    make_asgi_app, make_wsgi_app, multiprocess, start_http_server,
)

import compat_util


def own_families(body):
    """The families written by processes: the body up to the collector's own families."""
    text = body.decode() if isinstance(body, bytes) else body
    cut = text.find('# HELP shmetrics_exporter_')
    return text if cut == -1 else text[:cut]


def test_generate_latest_is_the_native_merged_view():
    c = Counter('api_merged_requests', 'Requests', ['route'])
    c.labels('/v1/completions').inc(3)
    assert own_families(generate_latest()) == own_families(shmetrics.generate_latest())
    assert 'api_merged_requests_total{route="/v1/completions"} 3.0' in generate_latest().decode()


def test_vllm_multiprocess_registry_pattern():
    # vllm/v1/metrics/prometheus.py: get_prometheus_registry() when PROMETHEUS_MULTIPROC_DIR is set.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    g = Gauge('api_mp_running', 'Running', ['engine'], multiprocess_mode='mostrecent')
    g.labels('0').set(4)
    assert own_families(generate_latest(registry)) == own_families(shmetrics.generate_latest())
    assert registry.get_sample_value('api_mp_running', {'engine': '0'}) == 4.0
    multiprocess.mark_process_dead(12345)  # accepted; the exporter tells dead writers itself


def test_vllm_unregister_loop_and_recreate():
    # vllm's unregister_vllm_metrics(): drop every collector whose _name has "vllm", then
    # register the same families again (a new engine in the same process).
    def make():
        return (Counter('vllm:api_test_tokens_total', 'Tokens', ['model_name']),
                Gauge('vllm:api_test_running', 'Running', ['model_name'], multiprocess_mode='mostrecent'))

    c, g = make()
    c.labels('m').inc(5)
    for collector in list(REGISTRY._collector_to_names):
        if hasattr(collector, '_name') and 'vllm' in collector._name:
            REGISTRY.unregister(collector)
    c, g = make()  # no "Duplicated timeseries"
    c.labels('m').inc(2)
    # The family stayed in the process's segment: the series continues (multiprocess mode's rule).
    assert REGISTRY.get_sample_value('vllm:api_test_tokens_total', {'model_name': 'm'}) == 7.0


def test_own_registry_serves_its_own_families():
    r = CollectorRegistry()
    mine = Counter('api_own_only', 'Mine', registry=r)
    Counter('api_not_mine', 'Not mine').inc()
    mine.inc()
    body = generate_latest(r).decode()
    assert 'api_own_only_total 1.0' in body
    assert 'api_not_mine' not in body and 'shmetrics_exporter_' not in body
    assert r.get_sample_value('api_not_mine_total') is None
    assert REGISTRY.get_sample_value('api_not_mine_total') == 1.0
    names = [m.name for m in r.collect()]
    assert names == ['api_own_only']


def test_decorators_and_context_managers():
    h = Histogram('api_dec_seconds', 'Durations', buckets=[0.5, 1])
    c = Counter('api_dec_errors', 'Errors', ['kind'])
    g = Gauge('api_dec_inprogress', 'In progress')
    seen = []

    @h.time()
    @g.track_inprogress()
    def work():
        seen.append(REGISTRY.get_sample_value('api_dec_inprogress'))

    work()
    work()
    assert seen == [1.0, 1.0]
    assert REGISTRY.get_sample_value('api_dec_inprogress') == 0.0
    assert REGISTRY.get_sample_value('api_dec_seconds_count') == 2.0
    assert work.__name__ == 'work'

    child = c.labels('value')
    with pytest.raises(ValueError):
        with child.count_exceptions(ValueError):
            raise ValueError('x')
    with child.count_exceptions(ValueError):
        pass
    with pytest.raises(KeyError):
        with child.count_exceptions(ValueError):
            raise KeyError('not counted')
    assert REGISTRY.get_sample_value('api_dec_errors_total', {'kind': 'value'}) == 1.0
    assert child._value.get() == 1.0  # as tests written for prometheus_client read it

    timed = Histogram('api_dec_labelled_seconds', 'x', ['op'])
    t = timed.time()
    t.labels('read')
    with t:
        pass
    with timed.labels('write').time():
        pass
    assert REGISTRY.get_sample_value('api_dec_labelled_seconds_count', {'op': 'read'}) == 1.0
    assert REGISTRY.get_sample_value('api_dec_labelled_seconds_count', {'op': 'write'}) == 1.0

    last = Gauge('api_dec_last_success', 'x')
    before = time.time()
    last.set_to_current_time()
    assert before <= REGISTRY.get_sample_value('api_dec_last_success') <= time.time()

    items = [1, 2, 3]
    depth = Gauge('api_dec_depth', 'x')
    depth.set_function(lambda: len(items))
    assert REGISTRY.get_sample_value('api_dec_depth') == 3.0
    items.append(4)
    assert REGISTRY.get_sample_value('api_dec_depth') == 4.0


def test_info_enum_summary():
    i = Info('api_build', 'Build')
    i.info({'version': '1.2.3', 'commit': 'abc'})
    assert REGISTRY.get_sample_value('api_build_info', {'version': '1.2.3', 'commit': 'abc'}) == 1.0
    i.info({'version': '1.2.4', 'commit': 'abd'})
    assert REGISTRY.get_sample_value('api_build_info', {'version': '1.2.3', 'commit': 'abc'}) is None
    with pytest.raises(ValueError, match='api_build'):
        i.info({'other': 'keys'})
    e = Enum('api_state', 'State', states=['starting', 'running'])
    assert REGISTRY.get_sample_value('api_state', {'api_state': 'starting'}) == 1.0
    e.state('running')
    assert REGISTRY.get_sample_value('api_state', {'api_state': 'starting'}) == 0.0
    assert REGISTRY.get_sample_value('api_state', {'api_state': 'running'}) == 1.0
    s = Summary('api_size_bytes', 'Size')
    s.observe(3)
    s.observe(4.5)
    assert REGISTRY.get_sample_value('api_size_bytes_count') == 2.0
    assert REGISTRY.get_sample_value('api_size_bytes_sum') == 7.5


def test_start_http_server_wsgi_asgi():
    Counter('api_http_hits', 'Hits').inc(2)
    server, thread = start_http_server(0, addr='127.0.0.1')
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/metrics'
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.headers['Content-Type'] == prometheus_client.CONTENT_TYPE_LATEST
            body = r.read()
        assert b'api_http_hits_total 2.0' in body
        assert own_families(body) == own_families(shmetrics.generate_latest())
        req = urllib.request.Request(url, headers={'Accept': 'application/openmetrics-text; version=1.0.0',
                                                   'Accept-Encoding': 'gzip'})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers['Content-Type'].startswith('application/openmetrics-text')
            om = gzip.decompress(r.read())
        assert om.endswith(b'# EOF\n')
        with urllib.request.urlopen(url + '?name[]=api_http_hits_total', timeout=10) as r:
            assert r.read() == b'# HELP api_http_hits_total Hits\n# TYPE api_http_hits_total counter\n' \
                               b'api_http_hits_total 2.0\n'
    finally:
        server.shutdown()

    app = make_wsgi_app()
    got = {}
    body = b''.join(app({'PATH_INFO': '/metrics', 'QUERY_STRING': ''},
                        lambda status, headers: got.update(status=status, headers=headers)))
    assert got['status'] == '200 OK' and b'api_http_hits_total 2.0' in body

    asgi = make_asgi_app()
    sent = []

    async def receive():
        return {'type': 'http.request'}

    async def send(message):
        sent.append(message)

    asyncio.run(asgi({'type': 'http', 'headers': [], 'query_string': b''}, receive, send))
    assert sent[0]['status'] == 200 and b'api_http_hits_total 2.0' in sent[1]['body']


def test_exporter_serves_what_generate_latest_serves():
    Counter('api_exp_tokens', 'Tokens', ['model_name']).labels('m').inc(11)
    Histogram('api_exp_latency_seconds', 'Latency', buckets=[0.1, 1]).observe(0.5)
    import os
    exporter = compat_util.Exporter(os.environ['SHMETRICS_SHM_PREFIX'])
    if exporter.url is None:
        pytest.skip('SHMETRICS_EXPORTER not set')
    try:
        scraped = exporter.scrape()
    finally:
        exporter.close()
    assert own_families(scraped) == own_families(generate_latest())


def test_readme_python_program_runs():
    """The README's Python section starts with a complete program: it runs as is."""
    import os
    import subprocess
    import sys
    readme = os.path.join(compat_util.HERE, '..', '..', 'README.md')
    text = open(readme).read()
    section = text[text.index('\n## Python\n'):]
    program = section[section.index('```python\n') + len('```python\n'):]
    program = program[:program.index('```')]
    prefix = os.environ['SHMETRICS_SHM_PREFIX'] + 'readme'
    out = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, SHMETRICS_SHM_PREFIX=prefix)).stdout
    assert 'app_requests_total{route="/v1/completions"} 3.0' in out
    assert 'app_latency_seconds_count 3.0' in out


def test_custom_collector_after_the_merged_families():
    from shmetrics.prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class QueueCollector:
        def collect(self):
            g = GaugeMetricFamily('api_custom_queue_depth', 'Queue depth', labels=['queue'])
            g.add_metric(['high'], 3)
            yield g
            yield CounterMetricFamily('api_custom_jobs_total', 'Jobs', value=7)

    collector = QueueCollector()
    REGISTRY.register(collector)
    try:
        body = generate_latest().decode()
        assert 'api_custom_queue_depth{queue="high"} 3.0' in body
        assert 'api_custom_jobs_total 7.0' in body
        assert REGISTRY.get_sample_value('api_custom_jobs_total') == 7.0
        prometheus_client.disable_created_metrics()
    finally:
        REGISTRY.unregister(collector)


def test_collect_parses_the_merged_view():
    """REGISTRY.collect() gives prometheus_client-style Metric objects from the merged view:
    a counter's family name without _total, escaped help and label values restored."""
    c = Counter('api_parse_requests', 'Help with \\ backslash\nand newline', ['path'])
    c.labels('a"b\\c\nd}{').inc(2)
    fams = {m.name: m for m in REGISTRY.collect()}
    m = fams['api_parse_requests']
    assert m.type == 'counter' and m.documentation == 'Help with \\ backslash\nand newline'
    assert [(s.name, s.labels, s.value) for s in m.samples] == [
        ('api_parse_requests_total', {'path': 'a"b\\c\nd}{'}, 2.0)]


def test_mixed_with_the_real_prometheus_client():
    """What prometheus_fastapi_instrumentator does in vLLM: real prometheus_client metrics
    registered in our registry, and real prometheus_client's generate_latest() run on it."""
    import prometheus_client as real
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    Counter('api_mixed_tokens', 'Tokens', ['model_name']).labels('m').inc(5)
    real_counter = real.Counter('api_mixed_http_requests', 'HTTP requests', ['handler'], registry=registry)
    real_counter.labels('/v1/completions').inc(3)
    ours = compat_util.samples_of(generate_latest(registry).decode())
    theirs = compat_util.samples_of(real.generate_latest(registry).decode())
    assert ours == theirs
    assert ours[('api_mixed_tokens_total', frozenset({('model_name', 'm')}))] == 5.0
    assert ours[('api_mixed_http_requests_total', frozenset({('handler', '/v1/completions')}))] == 3.0


FULL_SEGMENT = '''
import shmetrics
shmetrics.configure(max_series=8)
import shmetrics.prometheus_client as pc
c = pc.Counter("full_c", "x", ["i"])
for i in range(8):
    c.labels(str(i)).inc()
try:
    c.labels("8")
except shmetrics.SegmentFullError as e:
    print("labels:", e)
try:
    pc.Gauge("full_g", "x")
except shmetrics.SegmentFullError as e:
    print("gauge:", e)
c.labels("0").inc()  # the known children keep recording
print(pc.REGISTRY.get_sample_value("full_c_total", {"i": "0"}), "full_g" in pc.REGISTRY._names_to_collectors)
'''


def test_full_segment_is_an_error_at_registration():
    """A full segment: SegmentFullError from labels() or the constructor (the cold path),
    the metric is not left registered, the children already made keep recording."""
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', FULL_SEGMENT], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, SHMETRICS_SHM_PREFIX=os.environ['SHMETRICS_SHM_PREFIX'] + 'full'))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith('labels: full_c: segment full'), lines
    assert lines[1].startswith('gauge: full_g: segment full'), lines
    assert lines[2] == '2.0 False', lines
