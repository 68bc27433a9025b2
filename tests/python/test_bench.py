"""bench/python/bench_python.py --quick --json: every figure is there (no timing judged)."""

import json
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "python", "bench_python.py")


def test_bench_quick_json_has_every_key():
    args = [sys.executable, BENCH, "--quick", "--json", "--calls", "2000"]
    exporter = os.environ.get("SHMETRICS_EXPORTER")
    if exporter:
        args += ["--exporter", exporter]
    r = subprocess.run(args, capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for api in ("native", "pc", "pc_mp"):
        for op in ("inc", "labels_inc", "observe", "set"):
            assert out["per_call_ns"][api][op] > 0, (api, op)
    assert out["per_call_ns"]["native"]["pybind11_inc"] > 0
    assert out["per_call_ns"]["native"]["pybind11_observe"] > 0
    assert "shim" in out["per_call_ns"]  # None until shmetrics.prometheus_client exists
    for k in ("generate_latest_ms", "generate_latest_first_ms", "generate_latest_bytes",
              "exporter_ms", "exporter_cpu_ms", "pc_mp_ms", "pc_mp_bytes", "series", "procs"):
        assert k in out["scrape"], k
    assert out["scrape"]["generate_latest_bytes"] > 0 and out["scrape"]["pc_mp_ms"] > 0
    if exporter:
        assert out["scrape"]["exporter_ms"] > 0
        assert out["scrape"]["exporter_cpu_ms"] > 0
    for k in ("inc_vs_pc", "inc_vs_pc_mp", "observe_vs_pc", "observe_vs_pc_mp",
              "scrape_pc_mp_vs_generate_latest", "scrape_pc_mp_vs_exporter"):
        assert k in out["ratios"], k
    # The table form runs too.
    r = subprocess.run(args[:2] + ["--quick", "--calls", "2000"], capture_output=True, text=True,
                       timeout=170)
    assert r.returncode == 0 and "per call from Python" in r.stdout, r.stderr
