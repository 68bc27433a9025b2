#!/usr/bin/python3
"""Per-call cost from Python and the scrape of 10k series: shmetrics vs prometheus_client.

Per call (ns, best of --reps runs of --calls calls (default 21 x 100,000), timeit on a bound
method; each API in a process of its own, so that one's state never weighs on another):
  inc         counter inc() on a cached child
  labels_inc  labels("x").inc() (the lookup each time)
  observe     histogram observe() on a cached child
  set         gauge set() on a cached child
for
  native      shmetrics (the native module)
  shim        shmetrics.prometheus_client (when importable)
  pc          prometheus_client, single process
  pc_mp       prometheus_client, multiprocess mode (PROMETHEUS_MULTIPROC_DIR)

Scrape (ms, best of --reps): 4 forked Python processes each record the same 10,000
counter series (1,000 families x 10 label sets, as bench/python_mp_scrape.py); then one
scrape: shmetrics.generate_latest() (the collector library in-process), the exporter's
GET /metrics (--exporter), and prometheus_client's MultiProcessCollector +
generate_latest.

usage: bench_python.py [--quick] [--json] [--exporter PATH] [--calls N] [--reps N]
Needs the module importable (PYTHONPATH=<build>/python) and Debian's python3 (its
prometheus_client).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import timeit
import http.client

OPS = ("inc", "labels_inc", "observe", "set")
APIS = ("native", "shim", "pc", "pc_mp")
SCRAPES = ("generate_latest", "exporter", "pc_mp")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def best_ns(stmt, env, calls, reps):
    t = timeit.Timer(stmt, globals=env)
    return min(t.timeit(calls) for _ in range(reps)) / calls * 1e9


def percall_in_this_process(api, calls, reps, tmp):
    """ns per call of each op for `api`, measured in this process (a child of main())."""
    out = {}
    if api == "native":
        import shmetrics
        reg = shmetrics.Registry(tmp, "bench")
        c = reg.counter("bench_c", "c", ("a",))
        h = reg.histogram("bench_h", "h", ("a",), buckets=BUCKETS)
        g = reg.gauge("bench_g", "g", ("a",), mode="live_sum")
    else:
        if api == "pc_mp":
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tmp
        if api == "shim":
            os.environ["SHMETRICS_SHM_DIR"] = tmp
            os.environ["SHMETRICS_SHM_PREFIX"] = "bench"
            import shmetrics.prometheus_client as pc
        else:
            import prometheus_client as pc
        reg = pc.CollectorRegistry()
        c = pc.Counter("bench_c", "c", ["a"], registry=reg)
        h = pc.Histogram("bench_h", "h", ["a"], buckets=BUCKETS, registry=reg)
        g = pc.Gauge("bench_g", "g", ["a"], registry=reg, **(
            {"multiprocess_mode": "livesum"} if api != "pc" else {}))
    child = c.labels("x")
    env = {"inc": child.inc, "fam": c, "obs": h.labels("x").observe, "set": g.labels("x").set}
    out["inc"] = best_ns("inc()", env, calls, reps)
    out["labels_inc"] = best_ns("fam.labels('x').inc()", env, max(1, calls // 10), reps)
    out["observe"] = best_ns("obs(0.3)", env, calls, reps)
    out["set"] = best_ns("set(1.5)", env, calls, reps)
    if api == "native":  # the same C++ calls through pybind11's dispatcher (docs/python.md)
        pc = shmetrics._shmetrics._pybind_handle(child)
        ph = shmetrics._shmetrics._pybind_handle(h.labels("x"))
        penv = {"inc": pc.inc, "obs": ph.observe}
        out["pybind11_inc"] = best_ns("inc()", penv, calls, reps)
        out["pybind11_observe"] = best_ns("obs(0.3)", penv, calls, reps)
    return out


def percall(api, calls, reps):
    """Runs percall_in_this_process in a fresh interpreter; None when `api` is missing."""
    with tempfile.TemporaryDirectory(prefix="shmetrics-bench-py-") as tmp:
        code = ("import json, sys; sys.path.insert(0, %r); import bench_python as b; "
                "print(json.dumps(b.percall_in_this_process(%r, %d, %d, %r)))"
                % (os.path.dirname(os.path.abspath(__file__)), api, calls, reps, tmp))
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            if api == "shim" and "No module named 'shmetrics.prometheus_client'" in r.stderr:
                return None
            raise RuntimeError("per-call bench of %s failed:\n%s" % (api, r.stderr))
        return json.loads(r.stdout.strip().splitlines()[-1])


def write_series(kind, d, families, per_family):
    """In a forked child: records the scrape's series with `kind` ("shmetrics" or "pc_mp")."""
    if kind == "pc_mp":
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
        from prometheus_client import Counter
        for f in range(families):
            c = Counter("bench_family_%d" % f, "A benchmark family.", ["model_name", "engine"])
            for s in range(per_family):
                c.labels("model", str(s)).inc(f * per_family + s)
    else:
        import shmetrics
        reg = shmetrics.Registry(d, "bench", max_families=max(1024, families + 8),
                                 max_series=max(16384, families * per_family + 64))
        for f in range(families):
            c = reg.counter("bench_family_%d" % f, "A benchmark family.", ("model_name", "engine"))
            for s in range(per_family):
                c.labels("model", str(s)).inc(f * per_family + s)


def fork_writers(kind, d, procs, families, per_family):
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                write_series(kind, d, families, per_family)
                code = 0
            except BaseException as e:  # never fall back into the parent's code
                print("bench_python: writer failed: %s" % e, file=sys.stderr)
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(st) != 0:
            raise RuntimeError("a %s writer failed" % kind)


def scrape(series, procs, reps, exporter):
    families = 1000 if series >= 1000 else 10
    per_family = max(1, series // families)
    out = {"series": families * per_family, "procs": procs}
    with tempfile.TemporaryDirectory(prefix="shmetrics-bench-scrape-") as d:
        fork_writers("shmetrics", d, procs, families, per_family)
        import shmetrics
        t0 = time.perf_counter()
        body = shmetrics.generate_latest(d, "bench")
        out["generate_latest_first_ms"] = (time.perf_counter() - t0) * 1e3
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            body = shmetrics.generate_latest(d, "bench")
            ts.append((time.perf_counter() - t0) * 1e3)
        out["generate_latest_ms"] = min(ts)
        out["generate_latest_bytes"] = len(body)
        out["exporter_ms"] = None
        out["exporter_cpu_ms"] = None
        if exporter:
            p = subprocess.Popen([exporter, "--web.listen-address=127.0.0.1:0", "--shm.dir=" + d,
                                  "--shm.prefix=bench", "--log.level=error"],
                                 stdout=subprocess.PIPE, text=True)
            try:
                m = re.search(r"listening on http://([^/\s]+)(\S*)", p.stdout.readline())
                # One kept-alive connection, as Prometheus scrapes: the time is the
                # exporter's answer and the transfer, not a TCP handshake per scrape.
                conn = http.client.HTTPConnection(m.group(1), timeout=30)
                path = m.group(2) or "/metrics"

                def get():
                    conn.request("GET", path)
                    r = conn.getresponse()
                    data = r.read()
                    if r.status != 200:
                        raise RuntimeError(f"exporter answered {r.status}")
                    return data

                def cpu_ns():  # the exporter's time on a CPU (ns), summed over its threads
                    total = 0   # (its HTTP pool's threads live as long as it does)
                    for t in os.listdir(f"/proc/{p.pid}/task"):
                        try:
                            with open(f"/proc/{p.pid}/task/{t}/schedstat") as f:
                                total += int(f.read().split()[0])
                        except OSError:
                            pass  # a thread that ended between listdir and open
                    return total

                get()  # its first collection
                ts = []
                c0 = cpu_ns()
                for _ in range(reps):
                    t0 = time.perf_counter()
                    get()
                    ts.append((time.perf_counter() - t0) * 1e3)
                out["exporter_cpu_ms"] = (cpu_ns() - c0) / 1e6 / reps
                conn.close()
                out["exporter_ms"] = min(ts)
            finally:
                p.terminate()
                p.wait(10)
    with tempfile.TemporaryDirectory(prefix="shmetrics-bench-pymp-") as d:
        fork_writers("pc_mp", d, procs, families, per_family)
        code = ("import os, sys, time\n"
                "os.environ['PROMETHEUS_MULTIPROC_DIR'] = %r\n"
                "from prometheus_client import CollectorRegistry, generate_latest, multiprocess\n"
                "ts = []\n"
                "for _ in range(%d):\n"
                "    reg = CollectorRegistry()\n"
                "    multiprocess.MultiProcessCollector(reg)\n"
                "    t0 = time.perf_counter(); body = generate_latest(reg)\n"
                "    ts.append((time.perf_counter() - t0) * 1e3)\n"
                "print(min(ts), len(body))\n" % (d, reps))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
        ms, size = r.stdout.split()
        out["pc_mp_ms"] = float(ms)
        out["pc_mp_bytes"] = int(size)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few calls, 1k series: a smoke run")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--exporter", help="shmetrics-exporter binary, for the scrape figure")
    ap.add_argument("--calls", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--series", type=int, default=None)
    ap.add_argument("--procs", type=int, default=4)
    a = ap.parse_args()
    # Many short runs, the best kept: on a shared machine a quiet window is what a best-of
    # finds, and 100k calls of ~10 ns is still 1 ms a run.
    calls = a.calls or (20_000 if a.quick else 100_000)
    reps = a.reps or (2 if a.quick else 21)
    series = a.series or (1_000 if a.quick else 10_000)

    result = {"calls": calls, "reps": reps, "python": sys.version.split()[0], "per_call_ns": {}}
    for api in APIS:
        result["per_call_ns"][api] = percall(api, calls, reps)
    result["scrape"] = scrape(series, a.procs, reps, a.exporter)
    nat = result["per_call_ns"]["native"]
    ratios = {}
    for op in ("inc", "observe"):
        ratios[op + "_vs_pc"] = result["per_call_ns"]["pc"][op] / nat[op]
        ratios[op + "_vs_pc_mp"] = result["per_call_ns"]["pc_mp"][op] / nat[op]
    s = result["scrape"]
    ratios["scrape_pc_mp_vs_generate_latest"] = s["pc_mp_ms"] / s["generate_latest_ms"]
    ratios["scrape_pc_mp_vs_exporter"] = (s["pc_mp_ms"] / s["exporter_ms"]
                                          if s["exporter_ms"] else None)
    ratios["scrape_pc_mp_vs_exporter_cpu"] = (s["pc_mp_ms"] / s["exporter_cpu_ms"]
                                              if s["exporter_cpu_ms"] else None)
    result["ratios"] = ratios

    if a.json:
        print(json.dumps(result, indent=1, sort_keys=True))
        return
    head = "%-12s" % "ns/call" + "".join("%14s" % api for api in APIS)
    print("per call from Python %s (best of %d x %d calls)" % (result["python"], reps, calls))
    print(head)
    for op in OPS:
        row = "%-12s" % op
        for api in APIS:
            v = result["per_call_ns"][api]
            row += "%14s" % ("-" if v is None else "%.1f" % v[op])
        print(row)
    print("(the native hot path through pybind11 instead: inc %.1f, observe %.1f ns)"
          % (nat["pybind11_inc"], nat["pybind11_observe"]))
    print("\nscrape of %d series written by %d processes (ms, best of %d)"
          % (s["series"], s["procs"], reps))
    print("  shmetrics.generate_latest  %10.2f   (first: %.2f; %d bytes)"
          % (s["generate_latest_ms"], s["generate_latest_first_ms"], s["generate_latest_bytes"]))
    print("  shmetrics-exporter GET     %10s" % ("-" if s["exporter_ms"] is None
                                                  else "%.2f" % s["exporter_ms"]))
    print("  shmetrics-exporter CPU     %10s   (the exporter's own CPU per GET)"
          % ("-" if s["exporter_cpu_ms"] is None else "%.2f" % s["exporter_cpu_ms"]))
    print("  prometheus_client mp       %10.2f   (%d bytes)" % (s["pc_mp_ms"], s["pc_mp_bytes"]))
    print("\nratios: " + ", ".join("%s %.1fx" % (k, v) for k, v in ratios.items() if v))


if __name__ == "__main__":
    main()
