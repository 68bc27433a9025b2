#!/usr/bin/env python3
"""shmetrics-dashboard-check against a real Prometheus (docs/dashboard-check.md).

  dashboard_check_test.py TOOL ENGINE_SIM EXPORTER LOADGEN DASHBOARD FIXTURE

engine-sim (omni pipeline, --log-stats) under load from shmetrics-loadgen, its segments in a
private directory with a private prefix, served by shmetrics-exporter, scraped every second by
Prometheus (exit 77 when /usr/bin/prometheus or `prometheus` is missing). Then:
- deploy/grafana-dashboard.json: the vLLM and Omni panels have data, the image-generation,
  feature and diffusion-only panels are empty because their metrics are not served;
- the fixture: one panel per outcome (ok, syntax, metric not served, label mismatch, no data
  in range, variables in every form), each classified as expected; --var overrides; exit codes.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

tool, engine_sim, exporter, loadgen, dashboard, fixture = sys.argv[1:7]
prometheus = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
if not prometheus:
    print("SKIP: prometheus is not installed (apt-get install prometheus)")
    sys.exit(77)

failures = []


def expect(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def first_line_url(path, proc, name):
    for _ in range(100):
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                words = f.readline().split()
            if len(words) >= 3:
                return words[2]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"{name} did not start (rc {proc.poll()})")


tmp = tempfile.mkdtemp(prefix="dashcheck-")
shm = tempfile.mkdtemp(prefix="dashcheck-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
prefix = f"dashcheck{os.getpid()}"
procs = []


def start(cmd, name):
    out = open(os.path.join(tmp, name + ".out"), "w")
    err = open(os.path.join(tmp, name + ".log"), "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True)
    procs.append(p)
    return p


def run_tool(dash, *extra):
    r = subprocess.run([sys.executable, tool, dash, "--prometheus", prom_url, "--range", "40s",
                        "--scrape-interval", "1s", *extra], capture_output=True, text=True, timeout=120)
    return r


try:
    sim = start([engine_sim, "--pipeline", "omni", "--log-stats", "--port", "0", "--shm.dir", shm,
                 "--shm.prefix", prefix, "--replicas", "1,2,1"], "sim")
    exp = start([exporter, "--shm.dir", shm, "--shm.prefix", prefix,
                 "--web.listen-address", "127.0.0.1:0"], "exporter")
    sim_url = first_line_url(os.path.join(tmp, "sim.out"), sim, "engine-sim")
    exp_url = first_line_url(os.path.join(tmp, "exporter.out"), exp, "exporter")
    target = exp_url.split("//", 1)[1].split("/", 1)[0]
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dashcheck
    static_configs:
      - targets: ["{target}"]
""")
    port = free_port()
    prom = start([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
                  f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], "prometheus")
    prom_url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(prom_url + "/-/ready", timeout=1).read()
            break
        except OSError:
            if prom.poll() is not None:
                raise SystemExit(f"prometheus exited: {open(os.path.join(tmp, 'prometheus.log')).read()}")
            time.sleep(0.2)
    # Load: streamed chats with audio and plain completions side by side, 15 s.
    base = sim_url.rstrip("/")
    lg = [subprocess.Popen([loadgen, "--url", base, "--rate", "4", "--duration", "15", "--stream",
                            "--chat", "--audio", "--output-len", "16", "--seed", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
          subprocess.Popen([loadgen, "--url", base, "--rate", "4", "--duration", "15",
                            "--output-len", "16", "--seed", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    for p in lg:
        out, _ = p.communicate(timeout=90)
        expect(p.returncode == 0, f"loadgen ran (rc {p.returncode}): {out.strip()[-200:]}")
    time.sleep(3)  # the last scrapes

    # --- deploy/grafana-dashboard.json ------------------------------------------------------
    r = run_tool(dashboard, "--json")
    print(r.stderr, end="")
    rep = json.loads(r.stdout)
    status = {p["title"]: p["status"] for p in rep["panels"]}
    for p in rep["panels"]:
        print(f"  {p['status']:6} {p['title']}: " + "; ".join(
            f"{q['refId']} {q.get('reason')}: {q.get('detail')}" for q in p["queries"] if q["status"] != "ok"))
    expect(r.returncode == 1, f"deploy dashboard: exit 1 (some panels are empty), got {r.returncode}")
    expect(rep["summary"]["panels"]["error"] == 0, "deploy dashboard: no query fails to parse or run")
    expect(rep["variables"].get("model") == {"all": ".*"}, f"model variable is All (.*): {rep['variables']}")
    # The vLLM panels and the Omni pipeline's panels have data with the omni pipeline.
    must_have_data = [
        "E2E request latency", "Time to first token", "Inter-token latency", "Token throughput",
        "Scheduler state", "KV cache usage", "Prefix cache hit rate", "Finished requests by reason",
        "Prefill and decode time",
        "Omni: running and waiting (pipeline)", "Omni: e2e latency", "Omni: running per stage / replica",
        "Omni: generation tokens per stage / replica", "Omni: KV usage per stage / replica",
        "Omni: transfer size per edge", "Omni: transfer time per edge (p90)",
        "Omni: audio time to first packet", "Omni: audio real-time factor", "Omni: audio produced",
        "Images: request latency (e2e)",
        "Engine process: CPU (process_metrics)", "Engine process: memory and uptime (process_metrics)"]
    for t in must_have_data:
        expect(status.get(t) == "ok", f"deploy dashboard: {t!r} has data ({status.get(t)})")
    # The image-generation row (diffusion pipeline) and the optional features are off here:
    # empty because a metric is not served, never for another reason.
    for p in rep["panels"]:
        if p["title"].startswith("Features: ") or p["title"] in (
                "Images: images/s and pixels/s", "Images: time per denoising step",
                "Images: diffusion phases (mean)"):
            reasons = {q.get("reason") for q in p["queries"] if q["status"] != "ok"}
            expect(p["status"] == "empty" and reasons == {"metric not served"},
                   f"deploy dashboard: {p['title']!r} empty, metric not served ({p['status']}, {reasons})")
    r_text = run_tool(dashboard)
    last = r_text.stdout.strip().splitlines()[-1]
    c = rep["summary"]["panels"]
    expect(last.startswith(f"panels: {c['ok']} ok, {c['empty']} empty, 0 errors"), f"summary line: {last}")
    r_allow = run_tool(dashboard, "--allow-empty")
    expect(r_allow.returncode == 0, f"--allow-empty: exit 0 with only empty panels ({r_allow.returncode})")

    # --- the fixture: one panel per outcome ---------------------------------------------------
    r = run_tool(fixture, "--json")
    print(r.stderr, end="")
    rep = json.loads(r.stdout)
    by = {p["title"].split(" (")[0]: p for p in rep["panels"]}
    for p in rep["panels"]:
        print(f"  {p['status']:6} {p['title']}: " + "; ".join(
            f"{q['refId']} {q.get('reason')}: {q.get('detail')}" for q in p["queries"]))

    def reason(title, ref="A"):
        p = by.get(title)
        if not p:
            return None, None, None
        q = [q for q in p["queries"] if q["refId"] == ref]
        return (p["status"], q[0].get("reason"), q[0].get("detail") or "") if q else (p["status"], None, "")

    st, why, detail = reason("good")
    expect(st == "ok", f"fixture good: ok ({st} {why} {detail})")
    st, why, detail = reason("syntax")
    expect(st == "error" and why == "syntax", f"fixture syntax: error, syntax ({st} {why} {detail})")
    st, why, detail = reason("not served")
    expect(st == "empty" and why == "metric not served" and detail == "vllm:no_such_family_total",
           f"fixture not served: vllm:no_such_family_total ({st} {why} {detail})")
    st, why, detail = reason("label mismatch")
    expect(st == "empty" and why == "label mismatch" and 'stage="no-such-stage"' in detail,
           f"fixture label mismatch: names stage=\"no-such-stage\" ({st} {why} {detail})")
    st, why, detail = reason("no data in range")
    expect(st == "empty" and why == "no data in range", f"fixture no data in range ({st} {why} {detail})")
    v = by.get("variables")
    expect(v is not None and v["status"] == "ok" and len(v["queries"]) == 2,
           f"fixture variables: ok, the hidden query skipped ({v and v['status']}, {v and len(v['queries'])})")
    if v:
        a, b = v["queries"][0]["expr"], v["queries"][1]["expr"]
        model = rep["variables"]["model"]
        stages = rep["variables"]["stage"]
        expect(isinstance(model, str) and model, f"model resolved to the first value: {model!r}")
        expect(isinstance(stages, list) and len(stages) >= 2, f"stage All: every resolved value: {stages!r}")
        expect(a.startswith("histogram_quantile(0.9, ") and f'model_name="{model}"' in a and
               'stage=~"(' in a and "[40s]" in a, f"[[var]], ${{var:regex}}, $__range expanded: {a}")
        expect(b.endswith("* 0 + 40") and "|" in b, f"$var multi as (a|b), $__range_s: {b}")
        expect(v["title"] == "variables (" + "(" + "|".join(stages) + "))", f"title expanded: {v['title']}")
    expect(r.returncode == 1, f"fixture: exit 1 ({r.returncode})")
    expect(r_text.returncode == 1, f"text output: exit 1 ({r_text.returncode})")

    # --var overrides the model: the good panel's model_name="..." now selects nothing.
    r = run_tool(fixture, "--json", "--var", "model=no-such-model")
    rep = json.loads(r.stdout)
    good = [p for p in rep["panels"] if p["title"] == "good"][0]
    q = good["queries"][0]
    expect(q.get("reason") == "label mismatch" and 'model_name="no-such-model"' in q.get("detail", ""),
           f"--var model=no-such-model: label mismatch ({q.get('reason')}: {q.get('detail')})")
    r = run_tool(fixture, "--prometheus", "http://127.0.0.1:1")
    expect(r.returncode == 2, f"unreachable Prometheus: exit 2 ({r.returncode}: {r.stderr.strip()})")
finally:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(shm, ignore_errors=True)

if failures:
    print(f"{len(failures)} check(s) failed:")
    for f in failures:
        print("  " + f)
    sys.exit(1)
print("all checks passed")
