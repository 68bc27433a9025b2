#!/usr/bin/env python3
"""vLLM's own metrics test, run against shmetrics-engine-sim + shmetrics-exporter.

A port (our code, vLLM's assertions) of vLLM's tests/entrypoints/openai/test_metrics.py,
V1 engine, reading the exporter's /metrics (what Prometheus scrapes); engine-sim's own
/metrics on the API port, where vLLM's test reads it, must serve the same samples:

  counts  vLLM's test_metrics_counts: 10 completions of max_tokens=10, then every
          "expected values" relationship (histogram _sum/_count, counter _total) holds
          exactly; done twice, non-streamed (text prompt, our tokenizer's count from
          `usage`) and streamed (a token-id prompt, as vLLM sends);
  exist   vLLM's test_metrics_exist: every name of EXPECTED_METRICS_V1 is served
          (the hidden deprecated ones are skipped, as vLLM does without
          --show-hidden-metrics-for-version; our spec marks them removed, so they must
          be absent), every vllm:* series carries model_name = the served model;
  mm      test_metrics_exist with vLLM's multimodal model: a chat with an image_url part
          (inline as a data URL: vLLM's test serves the JPEG over http, which engine-sim
          does not fetch), then EXPECTED_METRICS_V1 + EXPECTED_METRICS_MM; and vLLM's
          tests/entrypoints/llm/test_mm_cache_stats.py: images A, B, A give
          (mm_cache_queries, mm_cache_hits) = (1, 0), (2, 0), (3, 1);
  abort   vLLM's test_abort_metrics_reset: long requests (3 non-streamed as vLLM, 3
          streamed) are started, their connections dropped, and num_requests_running,
          num_requests_waiting and kv_cache_usage_perc go back to 0 before a deadline;
  api     engine-sim's GET /metrics (the API port) == the exporter's, every vllm:* sample;
  lint    `promtool check metrics` on the exposition (skipped without promtool).

    vllm_test_metrics.py ENGINE_SIM_BIN EXPORTER_BIN

Exit 0: pass; 1: a check failed (the message names the metric or relationship);
77: a required tool (prometheus_client, a binary) is missing.
"""

import base64
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import struct
import time
import zlib

SKIP = 77
MODEL = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"  # vLLM's test model; the served name
PROMPT = "Hello my name is Robert and I love magic"
# A token-id prompt of the length TinyLlama's tokenizer gives PROMPT (BOS + 9 tokens);
# the ids themselves are illustrative: engine-sim takes any id below its vocabulary.
PROMPT_IDS = [1, 15043, 590, 1024, 338, 4755, 322, 306, 5360, 15709]
NUM_REQUESTS = 10
MAX_TOKENS = 10

# vLLM's EXPECTED_METRICS_V1: family names (counters without _total) and sample names.
EXPECTED_METRICS_V1 = [
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:num_requests_waiting_by_reason",  # in newer vLLM's list
    "vllm:gpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_queries",
    "vllm:gpu_prefix_cache_hits",
    "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:iteration_tokens_total",
    "vllm:cache_config_info",
    "vllm:request_success_total",
] + [
    f"vllm:{h}_{s}"
    for h in (
        "request_prompt_tokens",
        "request_generation_tokens",
        "request_params_n",
        "request_params_max_tokens",
        "time_per_output_token_seconds",
        "time_to_first_token_seconds",
        "inter_token_latency_seconds",
        "e2e_request_latency_seconds",
        "request_queue_time_seconds",
        "request_inference_time_seconds",
        "request_prefill_time_seconds",
        "request_decode_time_seconds",
    )
    for s in ("sum", "bucket", "count")
]
# vLLM's EXPECTED_METRICS_MM (its multimodal model's extra names); current in our spec
# and registered for every model, so checked here too.
EXPECTED_METRICS_MM = ["vllm:mm_cache_queries", "vllm:mm_cache_hits"]
# vLLM's HIDDEN_DEPRECATED_METRICS: checked by vLLM only with
# --show-hidden-metrics-for-version; ../shared/reference/vllm_metric_catalog.json (our
# spec) has them `removed` by the emulated version, so they must not be served.
HIDDEN_DEPRECATED_METRICS = [
    "vllm:gpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_queries",
    "vllm:gpu_prefix_cache_hits",
    "vllm:time_per_output_token_seconds_sum",
    "vllm:time_per_output_token_seconds_bucket",
    "vllm:time_per_output_token_seconds_count",
]
# vLLM's cache_config_info has no model_name label (CacheConfig fields + engine).
NO_MODEL_NAME = {"vllm:cache_config_info"}


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def expected_values(n, prompt_tokens, max_tokens):
    """vLLM's {family: [(suffix, value)]} after n requests of prompt_tokens and
    max_tokens each. vLLM's time_per_output_token_seconds (hidden, removed in our
    spec) is checked through its successor, inter_token_latency_seconds."""
    return {
        "vllm:time_to_first_token_seconds": [("_count", n)],
        "vllm:inter_token_latency_seconds": [("_count", n * (max_tokens - 1))],
        "vllm:e2e_request_latency_seconds": [("_count", n)],
        "vllm:request_queue_time_seconds": [("_count", n)],
        "vllm:request_inference_time_seconds": [("_count", n)],
        "vllm:request_prefill_time_seconds": [("_count", n)],
        "vllm:request_decode_time_seconds": [("_count", n)],
        "vllm:request_prompt_tokens": [("_sum", n * prompt_tokens), ("_count", n)],
        "vllm:request_generation_tokens": [("_sum", n * max_tokens), ("_count", n)],
        "vllm:request_params_n": [("_count", n)],
        "vllm:request_params_max_tokens": [("_sum", n * max_tokens), ("_count", n)],
        "vllm:iteration_tokens_total": [
            ("_sum", n * (prompt_tokens + max_tokens)),
            ("_count", n * max_tokens),
        ],
        "vllm:prompt_tokens": [("_total", n * prompt_tokens)],
        "vllm:generation_tokens": [("_total", n * max_tokens)],
        "vllm:request_success": [("_total", n)],
    }


# --- processes -----------------------------------------------------------------------


class Proc:
    """A child whose first stdout line is `listening on http://HOST:PORT[/path]`."""

    def __init__(self, argv, logdir, name):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".stderr")
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log)
        try:
            self.first = self._line(20)
            check("listening on http://" in self.first,
                  f"{name} did not start: first line {self.first!r}; stderr: {self.stderr()}")
            hostport = self.first.split("://", 1)[1].split("/", 1)[0]
            self.port = int(hostport.rsplit(":", 1)[1])
        except BaseException:
            self.stop()
            raise

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.p.stdout.fileno()
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                b = os.read(fd, 1)
                if not b:
                    break
                buf += b
        return buf.decode(errors="replace").strip()

    def stderr(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p.stdout.close()
        self.log.close()


class Stack:
    """engine-sim (--pipeline llm, vLLM's test arguments) + an exporter on its segments."""

    def __init__(self, sim_bin, exp_bin, shm_dir, prefix, time_scale):
        self.shm_dir, self.prefix = shm_dir, prefix
        self.sim = Proc([sim_bin, "--pipeline", "llm", "--host", "127.0.0.1", "--port", "0",
                         f"--time-scale={time_scale}", "--shm.dir", shm_dir,
                         "--shm.prefix", prefix, "--model", MODEL,
                         "--max-model-len", "1024", "--max-num-seqs", "128"],
                        shm_dir, prefix + "-sim")
        try:
            self.exp = Proc([exp_bin, "--web.listen-address", "127.0.0.1:0",
                             "--shm.dir", shm_dir, "--shm.prefix", prefix,
                             "--log.level", "warn"], shm_dir, prefix + "-exporter")
        except BaseException:
            self.sim.stop()
            raise

    def stop(self):
        self.exp.stop()
        self.sim.stop()

    def metrics_text(self, port=None):
        """/metrics of the exporter, or of engine-sim's API port (as vLLM's test reads it)."""
        c = http.client.HTTPConnection("127.0.0.1", port or self.exp.port, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        check(r.status == 200, f"/metrics on port {port or self.exp.port} answered {r.status}")
        return body

    def families(self):
        text = self.metrics_text()
        return text, {f.name: f for f in text_string_to_metric_families(text)}

    def post(self, path, body):
        c = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=30)
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read().decode()
        c.close()
        check(r.status == 200, f"POST {path} answered {r.status}: {data[:300]}")
        return json.loads(data)

    def post_stream(self, path, body):
        """A streamed request; returns (deltas, usage) once `data: [DONE]` arrived."""
        c = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=30)
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        check(r.status == 200, f"streamed POST {path} answered {r.status}")
        deltas, usage, done = 0, None, False
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue  # blank separators, `: keep-alive` comments
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            ev = json.loads(data)
            check("error" not in ev, f"stream error event: {data}")
            if ev.get("usage"):
                usage = ev["usage"]
            deltas += sum(1 for ch in ev.get("choices", []) if ch.get("finish_reason") is None)
        c.close()
        check(done, f"stream of {path} ended without data: [DONE]")
        check(usage is not None, "stream_options.include_usage gave no usage chunk")
        return deltas, usage


def sample_sums(families):
    """(family name, sample name) -> value summed over label sets (one per engine)."""
    out = {}
    for fam in families.values():
        for s in fam.samples:
            if s.name.endswith("_bucket") or s.name.endswith("_created"):
                continue
            key = (fam.name, s.name)
            out[key] = out.get(key, 0.0) + s.value
    return out


# --- vLLM's tests --------------------------------------------------------------------


def check_expected(before, families, expect, what):
    """vLLM's loop over EXPECTED_VALUES: the family exists, each suffixed sample exists
    and (its growth since `before`) equals the expected value exactly."""
    after = sample_sums(families)
    for family, suffixes in expect.items():
        check(family in families, f"{what}: did not find family {family} in /metrics")
        for suffix, value in suffixes:
            name = family + suffix
            check((family, name) in after, f"{what}: did not find {name} in /metrics")
            got = after[(family, name)] - before.get((family, name), 0.0)
            check(got == value,
                  f"{what}: {name} grew by {got:g}, vLLM expects {value:g} "
                  f"({NUM_REQUESTS} requests, max_tokens={MAX_TOKENS})")


def test_metrics_counts(st):
    # Non-streamed, as vLLM sends them (sequentially, max_tokens=10); our tokenizer
    # differs from TinyLlama's, so the prompt length is what `usage` reports.
    _, fams = st.families()
    before = sample_sums(fams)
    prompt_lens = set()
    for _ in range(NUM_REQUESTS):
        resp = st.post("/v1/completions",
                       {"model": MODEL, "prompt": PROMPT, "max_tokens": MAX_TOKENS})
        u = resp["usage"]
        prompt_lens.add(u["prompt_tokens"])
        check(u["completion_tokens"] == MAX_TOKENS,
              f"a completion gave {u['completion_tokens']} tokens, vLLM's counts assume "
              f"max_tokens={MAX_TOKENS}")
    check(len(prompt_lens) == 1, f"one prompt, several prompt_tokens: {prompt_lens}")
    _, fams = st.families()
    check_expected(before, fams, expected_values(NUM_REQUESTS, prompt_lens.pop(), MAX_TOKENS),
                   "counts (non-streamed)")

    # The same, streamed, with vLLM's token-id prompt.
    before = sample_sums(fams)
    for _ in range(NUM_REQUESTS):
        deltas, u = st.post_stream("/v1/completions", {
            "model": MODEL, "prompt": PROMPT_IDS, "max_tokens": MAX_TOKENS, "stream": True,
            "stream_options": {"include_usage": True}})
        check(u["prompt_tokens"] == len(PROMPT_IDS),
              f"usage.prompt_tokens {u['prompt_tokens']} != {len(PROMPT_IDS)} token ids")
        # A chunk holds what is new since the last one (several tokens when the client
        # reads slower than the engine steps), so the deltas are at most the tokens.
        check(1 <= deltas <= MAX_TOKENS and u["completion_tokens"] == MAX_TOKENS,
              f"a stream gave {deltas} deltas / {u['completion_tokens']} tokens, "
              f"vLLM's counts assume max_tokens={MAX_TOKENS}")
    _, fams = st.families()
    check_expected(before, fams, expected_values(NUM_REQUESTS, len(PROMPT_IDS), MAX_TOKENS),
                   "counts (streamed)")


def test_api_port_metrics(st):
    """vLLM's tests read /metrics on the API server's port: engine-sim serves the same
    vllm:* samples there as the exporter (both read the segments; no load in between)."""
    def vllm_samples(text):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) if f.name.startswith("vllm:")
                for s in f.samples}
    api = vllm_samples(st.metrics_text(st.sim.port))
    exp = vllm_samples(st.metrics_text())
    check(len(api) > 100, f"api port: only {len(api)} vllm:* samples on engine-sim's /metrics")
    for key in sorted(set(api) | set(exp)):
        check(key in api, f"api port: {key} is served by the exporter, not on the API port")
        check(key in exp, f"api port: {key} is on the API port, not served by the exporter")
        check(api[key] == exp[key],
              f"api port: {key} is {api[key]} on the API port, {exp[key]} on the exporter")


def test_metrics_exist(st):
    st.post("/v1/completions",
            {"model": MODEL, "prompt": "Hello, my name is", "max_tokens": 5, "temperature": 0.0})
    text, fams = st.families()
    served = {f.name for f in fams.values()} | {s.name for f in fams.values() for s in f.samples}
    for metric in EXPECTED_METRICS_V1 + EXPECTED_METRICS_MM:
        if metric in HIDDEN_DEPRECATED_METRICS:
            check(metric not in served,
                  f"exist: {metric} is served, but the spec says it was removed")
            continue
        check(metric in text, f"exist: {metric} is not in /metrics")  # vLLM's check
        check(metric in served, f"exist: no family or sample named {metric} in /metrics")
    for fam in fams.values():
        if not fam.name.startswith("vllm:"):
            continue
        for s in fam.samples:
            if fam.name in NO_MODEL_NAME:
                check("model_name" not in s.labels,
                      f"exist: {s.name} has a model_name label; vLLM's has none")
            else:
                check(s.labels.get("model_name") == MODEL,
                      f"exist: {s.name}{s.labels} has model_name "
                      f"{s.labels.get('model_name')!r}, not the served model {MODEL!r}")


def png_data_url(width, height, seed):
    """A real RGB PNG (deflated rows of a pattern from `seed`) as a base64 data URL."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data)))
    raw = b"".join(b"\x00" + bytes((x * 7 + y * 3 + seed * 31) & 255 for x in range(width * 3))
                   for y in range(height))
    png = (b"\x89PNG\r\n\x1a\n" +
           chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_chat(url):
    """vLLM's multimodal request of test_metrics_exist (its image inline)."""
    return {"model": MODEL, "max_tokens": 5, "temperature": 0.0, "messages": [{
        "role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What's in this image?"}]}]}


def mm_cache_stats(st):
    sums = sample_sums(st.families()[1])
    return (sums.get(("vllm:mm_cache_queries", "vllm:mm_cache_queries_total"), 0.0),
            sums.get(("vllm:mm_cache_hits", "vllm:mm_cache_hits_total"), 0.0))


def test_metrics_exist_multimodal(st):
    before = mm_cache_stats(st)
    resp = st.post("/v1/chat/completions", image_chat(png_data_url(448, 448, 0)))
    check(resp["usage"]["prompt_tokens"] > 256,
          f"mm: a 448x448 image (256 placeholder tokens) gave a prompt of "
          f"{resp['usage']['prompt_tokens']} tokens")
    text, fams = st.families()
    served = {f.name for f in fams.values()} | {s.name for f in fams.values() for s in f.samples}
    for metric in EXPECTED_METRICS_V1 + EXPECTED_METRICS_MM:
        if metric in HIDDEN_DEPRECATED_METRICS:
            continue
        check(metric in text and metric in served, f"mm: {metric} is not in /metrics")
    queries, hits = mm_cache_stats(st)
    check((queries - before[0], hits - before[1]) == (1, 0),
          f"mm: one new image gave mm_cache (queries, hits) growth "
          f"({queries - before[0]:g}, {hits - before[1]:g}), not (1, 0)")


def test_mm_cache_stats(st):
    """vLLM's test_mm_cache_stats: A, B, A -> (1, 0), (2, 0), (3, 1)."""
    before = mm_cache_stats(st)
    urls = [png_data_url(224, 224, 1), png_data_url(224, 224, 2)]
    for url, want in ((urls[0], (1, 0)), (urls[1], (2, 0)), (urls[0], (3, 1))):
        st.post("/v1/chat/completions", image_chat(url))
        q, h = mm_cache_stats(st)
        got = (q - before[0], h - before[1])
        check(got == want, f"mm cache: (queries, hits) grew by {got}, vLLM expects {want}")


def running_metrics(st):
    """vLLM's _get_running_metrics_from_api: (running, waiting, kv_cache_usage)."""
    _, fams = st.families()
    out = []
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                 "vllm:kv_cache_usage_perc"):
        vals = [s.value for s in fams.get(name).samples if s.name == name] if name in fams else []
        check(vals, f"abort: {name} is not in /metrics")
        out.append(sum(vals))
    return tuple(out)


def aborts(st):
    _, fams = st.families()
    return sum(s.value for s in fams["vllm:request_success"].samples
               if s.name == "vllm:request_success_total"
               and s.labels.get("finished_reason") == "abort")


def test_abort_metrics_reset(st):
    running, waiting, kv = running_metrics(st)
    check((running, waiting, kv) == (0, 0, 0),
          f"abort: before any request running={running} waiting={waiting} kv={kv}, not 0")
    # Long requests (vLLM: max_tokens=100, ~2 s at engine-sim's real-time speed):
    # 3 non-streamed as vLLM sends them, 3 streamed; a client going away aborts them.
    socks = []
    for stream in (False, False, False, True, True, True):
        body = {"model": MODEL, "prompt": PROMPT_IDS, "max_tokens": 100, "temperature": 0.0}
        if stream:
            body["stream"] = True
        data = json.dumps(body).encode()
        s = socket.create_connection(("127.0.0.1", st.sim.port), timeout=10)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " +
                  str(len(data)).encode() + b"\r\n\r\n" + data)
        socks.append(s)
    time.sleep(0.5)  # vLLM's wait for the requests to start
    running, waiting, kv = running_metrics(st)
    check(running > 0, f"abort: vllm:num_requests_running is {running} with 6 requests in flight")
    check(kv > 0, f"abort: vllm:kv_cache_usage_perc is {kv} with requests running")
    check(running + waiting == 6, f"abort: running {running} + waiting {waiting} != 6")
    for s in socks:  # the clients go away
        s.close()
    # vLLM sleeps 1 s and checks once; poll the same condition with a deadline.
    deadline = time.monotonic() + 10
    while True:
        running, waiting, kv = running_metrics(st)
        if (running, waiting, kv) == (0, 0, 0) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    check(running == 0, f"abort: expected 0 running requests after abort, got {running}")
    check(waiting == 0, f"abort: expected 0 waiting requests after abort, got {waiting}")
    check(kv == 0, f"abort: expected 0% KV cache usage after abort, got {kv}")
    n = aborts(st)
    check(n == 6, f"abort: vllm:request_success_total{{finished_reason=\"abort\"}} is {n}, "
                  f"not 6: the requests were not aborted by the disconnects")


ALLOWED_LINT = (
    "metric names should not contain ':'",  # vLLM's names are recording-rule style
    # vLLM's own name: a histogram called vllm:iteration_tokens_total (spec note).
    'vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix',
)


def test_promtool(st, tmpdir):
    promtool = shutil.which("promtool")
    if not promtool:
        print("lint: promtool not found, skipped")
        return
    path = os.path.join(tmpdir, "metrics.prom")
    with open(path, "w") as f:
        f.write(st.metrics_text())
    with open(path) as f:
        r = subprocess.run([promtool, "check", "metrics"], stdin=f, capture_output=True,
                           text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    check(r.returncode in (0, 3), f"lint: promtool check metrics exit {r.returncode}: {out}")
    for line in out.splitlines():
        check(any(a in line for a in ALLOWED_LINT), f"lint: promtool: {line}")


def main(argv):
    global text_string_to_metric_families
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-4], file=sys.stderr)
        return 2
    sim_bin, exp_bin = argv[1], argv[2]
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        print(f"SKIP: prometheus_client is not importable by {sys.executable} "
              "(Debian: python3-prometheus-client)")
        return SKIP
    for b in (sim_bin, exp_bin):
        if not os.access(b, os.X_OK):
            print(f"SKIP: {b} is not an executable")
            return SKIP

    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmpdir = tempfile.mkdtemp(prefix="vllm-test-metrics-", dir=base)
    prefix = f"vtm{os.getpid()}"
    stacks = []
    t0 = time.monotonic()
    try:
        # vLLM's server fixture: one server for the module; counts runs first.
        st = Stack(sim_bin, exp_bin, tmpdir, prefix + "a", 0.02)
        stacks.append(st)
        for name, fn in (("counts", test_metrics_counts), ("exist", test_metrics_exist),
                         ("exist (multimodal)", test_metrics_exist_multimodal),
                         ("mm cache", test_mm_cache_stats),
                         ("api port", test_api_port_metrics)):
            fn(st)
            print(f"ok: {name} ({time.monotonic() - t0:.1f} s)")
        test_promtool(st, tmpdir)
        print(f"ok: lint ({time.monotonic() - t0:.1f} s)")
        # The abort test needs requests that last: vLLM's max_tokens=100 at real-time
        # speed (--time-scale 1, ~20 ms a step) runs ~2 s, as on vLLM's GPU.
        ab = Stack(sim_bin, exp_bin, tmpdir, prefix + "b", 1)
        stacks.append(ab)
        test_abort_metrics_reset(ab)
        print(f"ok: abort ({time.monotonic() - t0:.1f} s)")
    except Failure as e:
        print(f"FAIL: {e}")
        for s in stacks:
            err = s.sim.stderr().strip()
            if err:
                print(f"--- {s.prefix} engine-sim stderr (tail):\n{err}")
        return 1
    finally:
        for s in stacks:
            s.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
    print(f"PASS: vLLM's test_metrics (counts, exist, mm, mm cache, api port, abort, lint) in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
