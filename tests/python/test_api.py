"""The native API call by call: registries, families, children, errors, the catalog."""

import os
import time

import pytest

import shmetrics
import shmetrics.omni
import shmetrics.vllm
from conftest import run_python, samples, value


def test_registry_segment_and_usage(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p, max_series=100, shards=4)
    assert os.path.dirname(reg.path) == d
    assert os.path.basename(reg.path).startswith("%s.%d." % (p, os.getpid()))
    assert os.path.exists(reg.path)
    assert reg.dir == d and reg.prefix == p and not reg.closed
    assert reg.options["max_series"] == 100 and reg.options["shards"] == 4
    u = reg.usage()
    assert u["families"] == 0 and u["series_capacity"] == 100
    reg.counter("a").labels().inc()
    u = reg.usage()
    assert u["families"] == 1 and u["series"] == 1
    path = reg.path
    reg.close()
    assert reg.closed and not os.path.exists(path)
    reg.close()  # twice is fine


def test_counter(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    fam = reg.counter("requests", "Requests served.", labelnames=("code", "method"))
    assert fam.name == "requests" and fam.labelnames == ("code", "method")
    assert fam.type == "counter" and fam.documentation == "Requests served."
    ok = fam.labels("200", "GET")
    assert fam.labels("200", "GET") is ok  # cached
    assert fam.labels(code="200", method="GET") is ok
    assert fam.labels(200, "GET") is ok  # str() of values, as prometheus_client
    assert ok.labelvalues == ("200", "GET") and ok.family is fam and ok.live
    ok.inc()
    ok.inc(2)
    ok.inc(0.25)
    ok.inc(amount=3)
    ok.inc(1, exemplar={"trace_id": "abc"})
    ok.inc(True)
    ok.inc(2**70)  # past int64: the float path
    assert ok.get() == 1 + 2 + 0.25 + 3 + 1 + 1 + 2.0**70
    fam.labels("500", "GET").inc(5)
    assert value(d, p, "requests_total", code="500", method="GET") == 5
    assert value(d, p, "requests_total", code="200", method="GET") == ok.get()
    with pytest.raises(ValueError, match="Counters can only be incremented by non-negative"):
        ok.inc(-1)
    with pytest.raises(ValueError, match="non-negative"):
        ok.inc(-0.5)
    with pytest.raises(TypeError):
        ok.inc("x")
    with pytest.raises(TypeError, match="unexpected keyword"):
        ok.inc(foo=1)
    with pytest.raises(TypeError):
        ok.inc(1, 2, 3)


def test_counter_name_with_total_and_colons(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    c = reg.counter("vllm:prompt_tokens_total", "Prompt tokens.", ("model_name", "engine"))
    c.labels("m", "0").inc(128)
    g = reg.gauge("vllm:num_requests_running", "Running.", ("model_name", "engine"),
                  mode="live_sum")
    g.labels("m", "0").set(3)
    text = shmetrics.generate_latest(d, p).decode()
    assert 'vllm:prompt_tokens_total{engine="0",model_name="m"} 128.0' in text
    assert 'vllm:num_requests_running{engine="0",model_name="m"} 3.0' in text
    # "x" and "x_total" are one counter family: a duplicate.
    with pytest.raises(ValueError, match="vllm:prompt_tokens"):
        reg.counter("vllm:prompt_tokens", "Prompt tokens.", ("model_name", "engine"))


def test_gauge(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    fam = reg.gauge("temperature", "T.", ("room",))
    assert fam.mode == "latest"
    g = fam.labels("a")
    g.set(10)
    g.inc()
    g.inc(2.5)
    g.dec()
    g.dec(amount=0.5)
    assert g.get() == 12.0
    g.set(value=-3)
    assert g.get() == -3
    g.set(float("nan"))
    assert g.get() != g.get()
    before = time.time()
    g.set_to_current_time()
    assert before - 1 <= g.get() <= time.time() + 1
    g.set(7)
    assert value(d, p, "temperature", room="a") == 7
    for mode in shmetrics.GAUGE_MODES:
        assert reg.gauge("g_" + mode, mode=mode).mode == mode
    with pytest.raises(ValueError, match="gauge mode 'mostrecent'"):
        reg.gauge("bad_mode", mode="mostrecent")
    with pytest.raises(TypeError):
        g.set()


def test_histogram(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    fam = reg.histogram("latency_seconds", "Latency.", ("op",), buckets=(0.1, 1, 10))
    assert fam.buckets == [0.1, 1.0, 10.0]
    h = fam.labels("read")
    for v in (0.05, 0.5, 0.5, 5, 50):
        h.observe(v)
    h.observe(amount=1)
    h.observe(2, exemplar=None)
    assert h.get() == (7, 0.05 + 0.5 + 0.5 + 5 + 50 + 1 + 2)
    assert h.buckets() == [1, 3, 2, 1]
    s = samples(d, p)
    le = lambda b: ("latency_seconds_bucket", frozenset({"op": "read", "le": b}.items()))
    assert [s[le(b)] for b in ("0.1", "1.0", "10.0", "+Inf")] == [1, 4, 6, 7]
    assert s[("latency_seconds_count", frozenset({"op": "read"}.items()))] == 7
    default = reg.histogram("d_seconds")
    assert default.buckets[0] == 0.005 and default.buckets[-1] == 10.0
    with pytest.raises(TypeError):
        h.observe()
    with pytest.raises(TypeError):
        h.observe("slow")


def test_info(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    fam = reg.info("build_info", "Build.", ("version",))
    fam.labels("1.2")
    assert value(d, p, "build_info", version="1.2") == 1


def test_no_labels_family_and_const_labels(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    c = reg.counter("plain")
    assert c.labels() is c.labels()
    c.labels().inc(4)
    k = reg.counter("tagged", labelnames=("a",), const_labels={"engine": 0})
    k.labels("x").inc()
    assert value(d, p, "plain_total") == 4
    assert value(d, p, "tagged_total", a="x", engine="0") == 1


def test_remove_and_clear(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    fam = reg.counter("c", labelnames=("a",))
    x, y = fam.labels("x"), fam.labels("y")
    x.inc()
    y.inc()
    assert fam.remove("x") is True
    assert fam.remove("x") is False
    assert not x.live
    x.inc()  # a removed child stays safe to use: it writes where nobody reads
    assert value(d, p, "c_total", a="x") is None
    x2 = fam.labels("x")
    assert x2 is not x and x2.get() == 0
    assert fam.clear() == 2
    assert value(d, p, "c_total", a="y") is None
    with pytest.raises(ValueError, match="c.remove"):
        fam.remove()


def test_errors_name_the_thing(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    fam = reg.counter("jobs", labelnames=("queue", "state"))
    with pytest.raises(ValueError, match=r"jobs\.labels\(\).*got 1 value.*want 2 \(queue, state\)"):
        fam.labels("q")
    with pytest.raises(ValueError, match=r"jobs\.labels\(\): incorrect label names"):
        fam.labels(queue="q", nope="x")
    with pytest.raises(ValueError, match="bad-name"):
        reg.counter("bad-name")
    with pytest.raises(ValueError, match="2x"):
        reg.gauge("2x")
    with pytest.raises(ValueError, match="label 'bad-label'"):
        reg.counter("ok1", labelnames=("bad-label",))
    with pytest.raises(ValueError, match="label 'le'"):
        reg.histogram("h_le", labelnames=("le",), buckets=(1,))
    with pytest.raises(ValueError, match="label '__x'"):
        reg.counter("ok2", labelnames=("__x",))
    with pytest.raises(ValueError, match="label 'a'.*duplicate"):
        reg.counter("ok3", labelnames=("a", "a"))
    with pytest.raises(ValueError, match=r"hb: invalid bucket.*buckets \(2, 1\)"):
        reg.histogram("hb", buckets=(2, 1))
    with pytest.raises(ValueError, match=r"hn: bucket 'x' is not a number"):
        reg.histogram("hn", buckets=(1, "x"))
    with pytest.raises(ValueError, match="he: no finite bucket"):
        reg.histogram("he", buckets=())
    with pytest.raises(ValueError, match="labelnames must be a sequence"):
        reg.counter("ok4", labelnames="ab")
    reg.counter("dup")
    with pytest.raises(ValueError, match="duplicated family name 'dup'"):
        reg.counter("dup")
    with pytest.raises(ValueError, match="dup"):
        reg.gauge("dup")
    with pytest.raises(TypeError, match="unknown registry option 'max_serie'"):
        shmetrics.Registry(d, p, max_serie=1)
    with pytest.raises(ValueError, match="shards must be 1..64"):
        shmetrics.Registry(d, p, shards=0)
    with pytest.raises(shmetrics.Error, match="cannot create segment"):
        shmetrics.Registry(os.path.join(d, "missing"), p)
    c = fam.labels("q", "s")
    reg.close()
    c.inc()  # inert, not a crash
    with pytest.raises(RuntimeError, match="closed"):
        fam.labels("q", "t")
    with pytest.raises(RuntimeError, match="closed"):
        reg.counter("late")


def test_full_segment(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p, max_series=2, max_families=2)
    fam = reg.counter("c", labelnames=("a",))
    a, b = fam.labels("a"), fam.labels("b")
    with pytest.raises(shmetrics.SegmentFullError, match="no free series record"):
        fam.labels("c")
    assert issubclass(shmetrics.SegmentFullError, RuntimeError)
    reg.gauge("g")
    with pytest.raises(shmetrics.SegmentFullError, match="no free family record"):
        reg.gauge("g2")
    a.inc()
    b.inc(2)  # the hot path is unaffected
    assert value(d, p, "c_total", a="b") == 2
    cells = shmetrics.Registry(d, p + "x", max_cells=4)
    h = cells.histogram("h", buckets=(1, 2, 3, 4))
    with pytest.raises(shmetrics.SegmentFullError, match="no free value cells"):
        h.labels()


def test_generate_latest_formats(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    reg.counter("c", "C.").labels().inc()
    text = shmetrics.generate_latest(d, p)
    assert isinstance(text, bytes)
    assert text == b"# HELP c_total C.\n# TYPE c_total counter\nc_total 1.0\n"
    om = shmetrics.generate_latest(d, p, openmetrics=True).decode()
    assert "# TYPE c counter" in om and "c_total 1" in om and om.endswith("# EOF\n")
    full = shmetrics.generate_latest(d, p, self_metrics=True)
    assert full.startswith(text) and b"shmetrics_exporter_build_info" in full
    assert shmetrics.generate_latest(d, "nobody") == b""


def test_process_metrics(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    assert shmetrics.process_metrics(reg) is reg
    reg.process_metrics()  # once per registry
    s = samples(d, p)
    assert s[("process_cpu_seconds_total", frozenset())] >= 0
    assert s[("process_resident_memory_bytes", frozenset())] > 0
    other = shmetrics.Registry(d, p + "2")
    with pytest.raises(shmetrics.Error, match="already recorded for this process"):
        other.process_metrics()
    reg.close()  # lets another registry record them
    other.process_metrics()


def test_vllm_catalog(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    names = shmetrics.vllm.names()
    assert "vllm:time_to_first_token_seconds" in names and len(names) > 20
    ttft = shmetrics.vllm.family(reg, "vllm:time_to_first_token_seconds")
    e = shmetrics.vllm.definition("vllm:time_to_first_token_seconds")
    assert ttft.type == "histogram" and ttft.labelnames == tuple(e["labels"])
    assert ttft.buckets == e["buckets"] and ttft.documentation == e["help"]
    ttft.labels(*["x"] * len(ttft.labelnames)).observe(0.2)
    running = shmetrics.vllm.family(reg, "vllm:num_requests_running")
    assert running.mode == shmetrics.vllm.definition("vllm:num_requests_running")["mode"]
    for n in names:  # every family registers (those that follow max_model_len with one)
        e = shmetrics.vllm.definition(n, max_model_len=4096)
        if n in ("vllm:time_to_first_token_seconds", "vllm:num_requests_running"):
            continue
        try:
            shmetrics.vllm.family(reg, n, max_model_len=4096)
        except ValueError as err:  # a histogram the catalog gives no buckets
            assert "no buckets" in str(err), err
    shmetrics.vllm.family(reg, "vllm:request_priority", buckets=(1, 2))
    with pytest.raises(ValueError, match="'vllm:nope' is not a family"):
        shmetrics.vllm.family(reg, "vllm:nope")


def test_omni_catalog(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    names = shmetrics.omni.names()
    assert names and all(n.startswith("vllm:omni_") for n in names)
    seed = shmetrics.omni.family(reg, names[0])
    assert seed.name == names[0]
    up = shmetrics.omni.family(reg, names[1], prefix="vllm_omni:")
    assert up.name == "vllm_omni:" + names[1][len("vllm:omni_"):]
    assert shmetrics.omni.names("vllm_omni:")[1] == up.name
    with pytest.raises(ValueError, match="prefix"):
        shmetrics.omni.family(reg, names[2], prefix="x:")
    with pytest.raises(ValueError, match="not a vLLM-Omni family"):
        shmetrics.omni.family(reg, "vllm:num_requests_running")


def test_configure_and_default_registry(tmp_path):
    out = run_python("""
import os, shmetrics
shmetrics.configure(dir=%r, prefix="cfg", max_series=64)
assert os.environ["SHMETRICS_SHM_DIR"] == %r and os.environ["SHMETRICS_SHM_PREFIX"] == "cfg"
reg = shmetrics.default_registry()
assert shmetrics.default_registry() is reg
assert reg.options["max_series"] == 64 and reg.prefix == "cfg"
shmetrics.configure(dir=%r, prefix="cfg", max_series=64)  # the same: fine
try:
    shmetrics.configure(prefix="other")
except RuntimeError as e:
    print("refused:", e)
reg.counter("c").labels().inc(3)
print(shmetrics.generate_latest().decode())
""" % (str(tmp_path), str(tmp_path), str(tmp_path)))
    assert "refused: shmetrics.configure(): the default registry already exists (prefix='other'" \
        in out
    assert "c_total 3.0" in out
    with pytest.raises(TypeError, match="unknown option 'bogus'"):
        shmetrics.configure(bogus=1)


def test_env_resolution(tmp_path):
    out = run_python("""
import shmetrics
reg = shmetrics.default_registry()
print(reg.dir, reg.prefix, shmetrics.settings()["prefix"])
""", env={"SHMETRICS_SHM_DIR": str(tmp_path), "SHMETRICS_SHM_PREFIX": "fromenv"})
    assert out.split() == [str(tmp_path), "fromenv", "fromenv"]
    # An argument wins over the environment.
    out = run_python("""
import shmetrics
shmetrics.configure(prefix="arg")
print(shmetrics.default_registry().prefix)
""", env={"SHMETRICS_SHM_DIR": str(tmp_path), "SHMETRICS_SHM_PREFIX": "fromenv"})
    assert out.split() == ["arg"]
    # Neither: /dev/shm and shmetrics.
    env = {k: "" for k in ("SHMETRICS_SHM_DIR", "SHMETRICS_SHM_PREFIX")}
    out = run_python("import shmetrics; s = shmetrics.settings(); print(s['dir'], s['prefix'])",
                     env=env)
    assert out.split() == ["/dev/shm", "shmetrics"]
