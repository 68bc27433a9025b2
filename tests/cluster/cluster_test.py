#!/usr/bin/env python3
"""scripts/cluster-demo end to end (docs/cluster.md): 3 nodes (engine-sim + exporter + a
Prometheus agent each) remote_writing into a central Prometheus.

1. Under load, the central Prometheus never reads more than the exporters do.
2. Load stopped and the engines idle, the exporters' values no longer change; the central
   Prometheus's `sum by (model_name) (vllm:request_success_total)` (and per node) then
   equals the sum of the exporters' values exactly, once the agents have shipped.
3. Under load again, one node's engine is SIGKILLed: the other nodes' series stay present
   at every step and keep increasing; the dead node's counters in the central Prometheus
   never decrease (query_range, 1 s steps), across its exporter folding the dead writer's
   segment into its retired totals (--gc-dead-after 3s), and end equal to its exporter's.
4. SIGTERM to cluster-demo: every process it started is gone, its shm dirs and network
   namespaces are removed.

Exit 77 (skipped) without prometheus or curl. Real processes, real HTTP, no mocks.
usage: cluster_test.py --cluster-demo P --engine-sim P --exporter P --loadgen P [--netns off]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
T0 = time.monotonic()


def log(msg):
    print("[%5.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def fail(msg):
    raise AssertionError(msg)


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def scrape(url, name):
    """{frozenset(labels): value} of family `name` from an exporter's /metrics."""
    out = {}
    for line in get(url).splitlines():
        m = SERIES.match(line)
        if m and m.group(1) == name:
            out[frozenset(LABEL.findall(m.group(2) or ""))] = float(m.group(3))
    return out


def by_model(series):
    out = {}
    for labels, v in series.items():
        m = dict(labels)["model_name"]
        out[m] = out.get(m, 0.0) + v
    return out


class Central:
    def __init__(self, url):
        self.url = url

    def api(self, path, **params):
        r = json.loads(get(self.url + path + "?" + urllib.parse.urlencode(params)))
        if r.get("status") != "success":
            fail("%s %s: %s" % (path, params, r))
        return r["data"]["result"]

    def query(self, q, at=None):
        """{tuple of (label, value) sorted: value} of an instant query."""
        kw = {"query": q}
        if at is not None:
            kw["time"] = "%.3f" % at
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in self.api("/api/v1/query", **kw)}

    def by(self, q, label, at=None):
        return {dict(k)[label]: v for k, v in self.query(q, at).items()}

    def range(self, q, start, end, step=1):
        return self.api("/api/v1/query_range", query=q, start="%.3f" % start, end="%.3f" % end, step=step)


def wait_for(what, pred, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = pred()
        if ok:
            return last
        time.sleep(interval)
    fail("timed out after %ss waiting for %s; last: %s" % (timeout, what, last))


def main():
    ap = argparse.ArgumentParser()
    for f in ("--cluster-demo", "--engine-sim", "--exporter", "--loadgen"):
        ap.add_argument(f, required=True)
    ap.add_argument("--netns", default="auto", help="auto, on or off (ports of 127.0.0.1)")
    a = ap.parse_args()
    for tool in ("prometheus", "curl"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed" % tool)
            return 77

    work = tempfile.mkdtemp(prefix="cluster-test.")
    state_file = os.path.join(work, "state")
    demo_log = open(os.path.join(work, "cluster-demo.log"), "w+")
    demo = subprocess.Popen(
        [a.cluster_demo, "--nodes", "3", "--duration", "0", "--no-load", "--no-build",
         "--scrape-interval", "1s", "--time-scale", "0.25", "--gc-dead-after", "3s",
         "--netns", a.netns,
         "--state", state_file, "--engine-sim", a.engine_sim, "--exporter", a.exporter,
         "--loadgen", a.loadgen],
        stdout=demo_log, stderr=subprocess.STDOUT)
    loadgens = []

    def load(nodes, seconds):
        for n in nodes:
            loadgens.append(subprocess.Popen(
                [a.loadgen, "--url", n["engine"], "--rate", "6", "--duration", str(seconds),
                 "--drain", "20", "--stream", "--prompt-len", "100", "--output-len", "20",
                 "--seed", n["node"]],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def exporters_total(nodes):
        return {n["node"]: scrape(n["exporter"], "vllm:request_success_total") for n in nodes}

    nodes = []
    try:
        deadline = time.monotonic() + 90
        while not os.path.exists(state_file):
            if demo.poll() is not None or time.monotonic() > deadline:
                demo_log.seek(0)
                fail("cluster-demo did not start (rc %s):\n%s" % (demo.poll(), demo_log.read()))
            time.sleep(0.2)
        central = None
        for line in open(state_file):
            w = line.split()
            if w[0] == "central":
                central = Central(w[1])
            elif w[0] == "mode":
                log("network: " + w[1])
            elif w[0] == "node":
                nodes.append(dict(zip(w[0::2], w[1::2])))
        if len(nodes) != 3 or central is None:
            fail("state file: %s" % open(state_file).read())
        log("cluster up: central %s, nodes %s" % (central.url, [n["engine"] for n in nodes]))

        # 1. Under load: the central Prometheus lags, never leads.
        load(nodes, 8)
        time.sleep(4)
        for _ in range(3):
            c = central.by("sum by (model_name) (vllm:request_success_total)", "model_name")
            e = {}
            for s in exporters_total(nodes).values():
                for m, v in by_model(s).items():
                    e[m] = e.get(m, 0.0) + v
            for m, v in c.items():
                if v > e.get(m, 0.0):
                    fail("under load, central %s = %s > the exporters' %s read after it" % (m, v, e.get(m)))
            time.sleep(1)
        log("under load: central <= exporters: %s <= %s" % (c, e))

        # 2. Freeze: load over, engines idle, exporters unchanged for longer than a scrape
        # interval; then the central Prometheus must reach exactly their sum.
        for p in loadgens:
            if p.wait(timeout=60) != 0:
                fail("loadgen exited %s" % p.returncode)
        loadgens.clear()

        def idle():
            busy = 0.0
            for n in nodes:
                for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
                    busy += sum(scrape(n["exporter"], name).values())
            first = exporters_total(nodes)
            time.sleep(1.5)
            return busy == 0 and exporters_total(nodes) == first, (busy, first)

        frozen = wait_for("idle engines and unchanging exporters", idle, 30)[1]
        expect_model, expect_node = {}, {}
        for node, s in frozen.items():
            for m, v in by_model(s).items():
                expect_model[m] = expect_model.get(m, 0.0) + v
                expect_node[("node-" + node, m)] = expect_node.get(("node-" + node, m), 0.0) + v
        if len(expect_model) != 2 or min(expect_model.values()) < 5:
            fail("too little load to compare: %s" % expect_model)

        def caught_up():
            c = central.by("sum by (model_name) (vllm:request_success_total)", "model_name")
            return c == expect_model, c

        c = wait_for("central == sum of the exporters %s" % expect_model, caught_up, 30)
        time.sleep(2.5)  # two more scrapes and batches: it stays equal (nothing counted twice)
        again = central.by("sum by (model_name) (vllm:request_success_total)", "model_name")
        if again != expect_model:
            fail("central moved from the exporters' frozen sum %s to %s" % (expect_model, again))
        per_node = {(dict(k).get("node"), dict(k)["model_name"]): v for k, v in central.query(
            "sum by (node, model_name) (vllm:request_success_total)").items()}
        if per_node != expect_node:
            fail("per node, central %s != exporters %s" % (per_node, expect_node))
        log("frozen: central sum by (model_name) == exporters' sum: %s; per node too" % c)
        rules = ("model_name:vllm_request_success:rate1m", "model_name:vllm_tokens:rate1m",
                 'model_name:vllm_time_to_first_token_seconds:quantile_rate1m{quantile="0.99"}',
                 'model_name:vllm_e2e_request_latency_seconds:quantile_rate1m{quantile="0.5"}',
                 "model_name:vllm_kv_cache_usage_perc:avg")
        for r in rules:
            wait_for("recording rule %s for both models" % r,
                     lambda r=r: (set(central.by(r, "model_name")) == set(expect_model), central.query(r)), 20)
        log("recording rules evaluated for both models")

        # 3. One node's engine dies under load.
        load(nodes, 14)
        start = time.time()
        time.sleep(4)
        victim = nodes[1]
        os.kill(int(victim["engine_pid"]), signal.SIGKILL)
        killed = time.time()
        dead = "node-" + victim["node"]
        alive = ["node-" + n["node"] for n in nodes if n is not victim]
        log("SIGKILLed %s's engine (pid %s)" % (dead, victim["engine_pid"]))
        time.sleep(8)  # several scrapes, and the exporter's 3 s gc of the dead segments

        def folded():
            r = scrape(victim["exporter"], "shmetrics_exporter_retired_segments_total")
            return sum(r.values()) >= 1, r

        wait_for("%s's exporter to fold the dead engine's segments" % dead, folded, 20)
        time.sleep(3)
        end = time.time()
        at_kill = central.by("sum by (node) (vllm:request_success_total)", "node", at=killed)
        now = central.by("sum by (node) (vllm:request_success_total)", "node", at=end)
        for n in alive:
            if not now.get(n, 0) > at_kill.get(n, 0):
                fail("%s did not keep increasing after %s died: %s -> %s" % (n, dead, at_kill.get(n), now.get(n)))
        steps = int(end - start) + 1
        for s in central.range("sum by (node) (vllm:request_success_total)", start, end):
            n = s["metric"]["node"]
            if len(s["values"]) != steps:
                fail("%s has %d of %d steps from %.0f to %.0f: a gap" % (n, len(s["values"]), steps, start, end))
        dead_series = central.range('vllm:request_success_total{node="%s"}' % dead, start, end)
        if not dead_series:
            fail("no series of %s in the central Prometheus" % dead)
        for s in dead_series + central.range('sum(vllm:request_success_total{node="%s"})' % dead, start, end):
            vals = [float(v) for _, v in s["values"]]
            for i in range(1, len(vals)):
                if vals[i] < vals[i - 1]:
                    fail("%s's %s decreased at step %d: %s -> %s (all: %s)" % (
                        dead, s["metric"], i, vals[i - 1], vals[i], vals))
            if len(vals) != steps:
                fail("%s's %s has %d of %d steps: a gap" % (dead, s["metric"], len(vals), steps))
        exp_dead = by_model(scrape(victim["exporter"], "vllm:request_success_total"))
        c_dead = central.by('sum by (model_name) (vllm:request_success_total{node="%s"})' % dead, "model_name")
        if c_dead != exp_dead:
            fail("%s: central %s != its exporter's %s" % (dead, c_dead, exp_dead))
        log("after the kill: %s increased %s -> %s; %s monotonic over %d steps, equal to its exporter: %s" % (
            alive, {k: at_kill.get(k) for k in alive}, {k: now.get(k) for k in alive}, dead, steps, c_dead))

        # 4. A clean stop.
        for p in loadgens:
            p.kill()
            p.wait()
        loadgens.clear()
        demo.send_signal(signal.SIGTERM)
        rc = demo.wait(timeout=60)
        if rc != 143:
            fail("cluster-demo exited %s on SIGTERM (want 143)" % rc)
        for n in nodes:
            for k in ("engine_pid", "exporter_pid", "agent_pid"):
                try:
                    os.kill(int(n[k]), 0)
                    fail("%s %s (pid %s) still runs after cluster-demo stopped" % (n["node"], k, n[k]))
                except ProcessLookupError:
                    pass
            if os.path.exists(n["shm"]):
                fail("%s's shm dir %s is left" % (n["node"], n["shm"]))
            if n["ns"] != "-" and os.path.exists("/run/netns/" + n["ns"]):
                fail("network namespace %s is left" % n["ns"])
        log("stopped cleanly: no process, shm dir or namespace left")
        print("PASS")
        return 0
    except AssertionError as e:
        print("FAIL: %s" % e)
        demo_log.flush()
        demo_log.seek(0)
        print("---- cluster-demo output\n" + demo_log.read()[-4000:])
        return 1
    finally:
        for p in loadgens:
            p.kill()
            p.wait()
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
