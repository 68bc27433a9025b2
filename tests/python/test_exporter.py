"""generate_latest() against a real shmetrics-exporter serving the same prefix."""

import os

import shmetrics
from prometheus_client.utils import floatToGoString
from conftest import Exporter  # noqa: F401  (the fixture's class)

SELF = b"# HELP shmetrics_exporter_build_info "


def _fill(d, p):
    reg = shmetrics.Registry(d, p)
    c = reg.counter("vllm:prompt_tokens_total", "Prompt tokens.", ("model_name", "engine"))
    c.labels("m", "0").inc(128)
    c.labels('we"ird\\\nname', "1").inc(2.5)
    g = reg.gauge("vllm:num_requests_running", "Running.", ("model_name",), mode="live_sum")
    g.labels("m").set(3)
    h = reg.histogram("vllm:e2e_request_latency_seconds", "E2E.", ("model_name",),
                      buckets=(0.1, 1, 10))
    for v in (0.05, 0.5, 5, 50):
        h.labels("m").observe(v)
    reg.info("build_info", "Build.", ("version",)).labels("1.0")
    reg.process_metrics()
    return reg, c.labels("m", "0")


def test_byte_identical_to_the_exporter(shm, exporter):
    d, p = shm
    reg, tokens = _fill(d, p)
    pid = os.fork()  # a second writer: its own segment, merged by both
    if pid == 0:
        tokens.inc(1000)
        os._exit(0)
    os.waitpid(pid, 0)
    ours = shmetrics.generate_latest(d, p)
    body = exporter.get()
    assert b'vllm:prompt_tokens_total{engine="0",model_name="m"} 1128.0' in ours
    # The exporter's body is ours, then the collector's own families (shmetrics_exporter_*:
    # its collection count and duration differ from ours by nature).
    assert body[:len(ours)] == ours
    assert body[len(ours):].startswith(SELF)
    assert shmetrics.generate_latest(d, p, self_metrics=True).startswith(ours + SELF)
    om = shmetrics.generate_latest(d, p, openmetrics=True)
    body = exporter.get(accept="application/openmetrics-text; version=1.0.0")
    assert om.endswith(b"# EOF\n")
    stem = om[:-len(b"# EOF\n")]
    assert body[:len(stem)] == stem and body[len(stem):].startswith(b"# TYPE shmetrics_exporter")
    reg.close()


def test_collect_samples_match_the_exporter(shm, exporter):
    d, p = shm
    reg, _ = _fill(d, p)
    text = exporter.get().decode()
    got = shmetrics.collect_samples(d, p)
    names = {n for n, _, _ in got}
    assert {"vllm:prompt_tokens_total", "vllm:e2e_request_latency_seconds_bucket",
            "vllm:e2e_request_latency_seconds_count", "vllm:e2e_request_latency_seconds_sum",
            "vllm:num_requests_running", "build_info"} <= names
    esc = lambda v: v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    for name, labels, value in got:
        if name.startswith("process_"):  # sampled every second: may move between the reads
            continue
        block = ",".join('%s="%s"' % (k, esc(v)) for k, v in sorted(labels.items()))
        line = "%s%s %s\n" % (name, "{%s}" % block if block else "", floatToGoString(value))
        assert line in text, line
    reg.close()
