#!/usr/bin/env python3
"""The bench test: runs `shmetrics-bench --quick --json --check-goals` and checks that it
printed one JSON object with every figure issue 9 asks for, each a finite number
(positive where a cost or a rate), and on stderr one verdict line per goal of issue 24
(met, missed or not measured). Figures are printed, not judged: this machine's noise is
no verdict, so a missed goal (exit 3) passes here too.

usage: check_bench_json.py BENCH [bench flags...]
"""

import json
import math
import os
import re
import subprocess
import sys
import time

# Costs and rates: finite and > 0.
POSITIVE = [
    "counter_inc_ns_1t", "counter_inc_ns_2t",
    "promcpp_counter_inc_ns_1t", "promcpp_counter_inc_ns_2t",
    "histogram_observe_ns_1t", "histogram_observe_ns_2t",
    "promcpp_histogram_observe_ns_1t", "promcpp_histogram_observe_ns_2t",
    "histogram_observe_random_ns_1t", "histogram_observe_random_ns_2t",
    "promcpp_histogram_observe_random_ns_1t", "promcpp_histogram_observe_random_ns_2t",
    "gauge_set_ns_1t", "with_labels_ns", "promcpp_family_add_ns", "process_metrics_sample_us",
    "plain_store_ns_1t", "relaxed_atomic_add_ns_1t", "relaxed_atomic_add_ns_2t",
    "scrape_10k_series_ms", "promcpp_scrape_10k_series_ms",
    "exporter_scrape_10k_series_ms", "exporter_scrape_10k_series_4writers_ms",
    "scrape_ms_1k_series", "scrape_ms_10k_series", "scrape_ms_100k_series",
    "promcpp_scrape_ms_1k_series", "promcpp_scrape_ms_10k_series",
    "promcpp_scrape_ms_100k_series",
    "exporter_http_scrape_ms_1k_series", "exporter_http_scrape_ms_10k_series",
    "exporter_http_scrape_ms_100k_series",
    "segment_bytes_per_series_100k", "exporter_rss_mb_100k_series",
    "engine_step_ns", "exporter_cpu_ms_per_scrape_10k_series_gzip",
    "exporter_cpu_ms_per_scrape_10k_series_gzip_static",
    "promcpp_exposer_cpu_ms_per_scrape_10k_series_gzip",
    "exporter_gzip_bytes_10k_series", "promcpp_exposer_gzip_bytes_10k_series",
]
# Differences: any finite number (noise can make a slowdown negative).
FINITE = ["hot_path_slowdown_pct_scraped_10hz", "engine_wall_slowdown_pct_scraped_10hz"]

# --check-goals: issue 24's goals, each on one line of stderr (bench.cpp's check_goals).
GOALS = [
    "histogram_observe_walk_1t", "histogram_observe_random_1t",
    "histogram_observe_walk_2t", "histogram_observe_random_2t",
    "counter_inc_vs_plain_store", "exporter_cpu_gzip_10k", "scrape_10k_vs_promcpp",
    "exporter_http_1m_warm", "exporter_rss_1m", "with_labels_vs_promcpp_add",
    "register_100k_series", "hot_path_slowdown_10hz", "engine_wall_slowdown_10hz",
]
GOAL_LINE = re.compile(r"^goal (\w+): .*: goal (>=|<=) [0-9.]+.*; measured .*: "
                       r"(met|missed|not measured \(.*\))$")
# Exit status of a run whose goals were checked and some missed.
GOALS_MISSED = 3


def check_goal_lines(stderr):
    """Problems with the goal lines: a goal without its line, twice, or an odd line."""
    seen, bad = {}, []
    for line in stderr.splitlines():
        if not line.startswith("goal "):
            continue
        m = GOAL_LINE.match(line)
        if not m:
            bad.append(f"malformed goal line: {line!r}")
            continue
        seen[m.group(1)] = seen.get(m.group(1), 0) + 1
    for g in GOALS:
        if seen.get(g, 0) != 1:
            bad.append(f"goal {g}: {seen.get(g, 0)} lines (want 1)")
    for g in sorted(set(seen) - set(GOALS)):
        bad.append(f"goal {g}: not a goal this test knows (add it to GOALS)")
    return bad


def has_python_client():
    try:
        r = subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"],
                           capture_output=True, timeout=30)
        return r.returncode == 0
    except OSError:
        return False


def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: check_bench_json.py BENCH [flags]; BENCH not executable", file=sys.stderr)
        return 2
    cmd = [sys.argv[1], "--quick", "--json", "--check-goals"] + sys.argv[2:]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - t0
    sys.stderr.write(r.stderr)
    if r.returncode not in (0, GOALS_MISSED):
        print(f"FAIL: {' '.join(cmd)} exited {r.returncode}")
        return 1
    try:
        figures = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        print(f"FAIL: stdout is not one JSON object ({e}):\n{r.stdout[:2000]}")
        return 1
    if not isinstance(figures, dict):
        print("FAIL: stdout is JSON but not an object")
        return 1

    positive = list(POSITIVE)
    if has_python_client():
        positive.append("python_mp_scrape_10k_series_ms")
    if any(os.access(os.path.join(d, "wrk"), os.X_OK)
           for d in os.environ.get("PATH", "").split(":")):
        positive += ["exporter_http_scrapes_per_s_10k_series",
                     "promcpp_exposer_http_scrapes_per_s_10k_series"]

    bad = []
    for k in positive + FINITE:
        v = figures.get(k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            bad.append(f"{k}: {v!r} (missing or not a number)")
        elif k in positive and v <= 0:
            bad.append(f"{k}: {v} (must be > 0)")
    bad += check_goal_lines(r.stderr)
    if (r.returncode == GOALS_MISSED) != any(
            line.startswith("goal ") and line.endswith(": missed") for line in r.stderr.splitlines()):
        bad.append(f"exit status {r.returncode} does not match the goal lines' verdicts")
    for k in sorted(figures):
        print(f"{k} = {figures[k]}")
    print(f"bench wall time: {wall:.1f} s")
    if bad:
        print("FAIL:\n  " + "\n  ".join(bad))
        return 1
    print(f"OK: {len(positive) + len(FINITE)} required figures present, "
          f"{len(GOALS)} goal lines printed (verdicts not judged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
