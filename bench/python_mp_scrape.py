#!/usr/bin/python3
"""Python prometheus_client in multiprocess mode (what vLLM runs), for shmetrics-bench.

Several writer processes (vLLM's API servers) each record the same 10,000 counter series
(1,000 families x 10 label sets, the shape shmetrics-bench uses); then this process times
one scrape: MultiProcessCollector + generate_latest, which reads and merges every
process's .db files. Prints "key value" lines for shmetrics-bench to read:

    python_mp_scrape_ms <best of --reps>
    python_mp_scrape_bytes <exposition size>
    python_mp_write_s <wall seconds to write every process's series>

usage: python_mp_scrape.py [--series 10000] [--procs 4] [--reps 3]
"""

import argparse
import os
import sys
import tempfile
import time


def writer(directory, families, per_family):
    # The environment variable must be set before prometheus_client creates a metric:
    # it picks the multiprocess value class from it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    from prometheus_client import Counter

    for f in range(families):
        c = Counter(
            f"bench_family_{f}", "A benchmark family.", ["model_name", "engine"]
        )
        for s in range(per_family):
            c.labels("model", str(s)).inc(f * per_family + s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    families = 1000
    per_family = max(1, a.series // families)

    with tempfile.TemporaryDirectory(prefix="shmetrics-bench-pymp-") as d:
        t0 = time.monotonic()
        pids = []
        for _ in range(a.procs):
            pid = os.fork()
            if pid == 0:
                try:
                    writer(d, families, per_family)
                    os._exit(0)
                except BaseException as e:  # report, never fall back into the parent's code
                    print(f"python_mp_scrape: writer failed: {e}", file=sys.stderr)
                    os._exit(1)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            if status != 0:
                print("python_mp_scrape: a writer process failed", file=sys.stderr)
                return 1
        write_s = time.monotonic() - t0

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = d
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        best = float("inf")
        size = 0
        for _ in range(a.reps):
            t0 = time.monotonic()
            registry = CollectorRegistry()
            MultiProcessCollector(registry, d)
            out = generate_latest(registry)
            best = min(best, (time.monotonic() - t0) * 1000.0)
            size = len(out)
        series = out.count(b"\nbench_family_")
        if series < a.series:
            print(
                f"python_mp_scrape: expected {a.series} series, got {series}",
                file=sys.stderr,
            )
            return 1
    print(f"python_mp_scrape_ms {best:.3f}")
    print(f"python_mp_scrape_bytes {size}")
    print(f"python_mp_write_s {write_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
