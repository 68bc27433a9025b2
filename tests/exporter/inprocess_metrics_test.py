#!/usr/bin/env python3
"""The in-process /metrics (examples/inprocess_metrics, the reader library's collector) and
shmetrics-exporter serve the same bytes for the same segments.

    inprocess_metrics_test.py INPROCESS_BIN EXPORTER_BIN

The example records a fixed number of engine steps (--freeze), then its values stay put.
Both servers then read the same directory and prefix; for text 0.0.4 and OpenMetrics 1.0,
plain and gzip:

  * the families from the segments (every line before the first of the collector's own
    families, `shmetrics_exporter_*` then `process_*`) are byte-identical;
  * the collector's own families have the same HELP and TYPE lines in the same order, and
    the same sample names and labels (their values are each process's own: collections,
    durations, CPU, memory);
  * OpenMetrics bodies end with `# EOF`; gzip bodies decompress to a plain body's bytes,
    with `Content-Encoding: gzip`; Content-Type and Vary headers are the same.
"""
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

OM = "application/openmetrics-text; version=1.0.0"


def start(cmd, want):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"https?://\S+?:(\d+)", line)
    if not m:
        p.kill()
        sys.exit(f"FAIL: {cmd[0]} did not say where it listens: {line!r}")
    return p, int(m.group(1))


def get(port, accept=None, gz=False):
    h = {"Accept-Encoding": "gzip" if gz else "identity"}
    if accept:
        h["Accept"] = accept
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=h)
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        hdr = {k: r.headers.get(k) for k in ("Content-Type", "Content-Encoding", "Vary")}
    if gz:
        if hdr["Content-Encoding"] != "gzip":
            sys.exit(f"FAIL: port {port} did not gzip: {hdr}")
        body = gzip.decompress(body)
    return body.decode(), hdr


SELF = re.compile(r"^# (HELP|TYPE) (shmetrics_exporter_|process_)")


def split(body):
    """(the families from the segments, the collector's own families)."""
    lines = body.splitlines(keepends=True)
    for i, l in enumerate(lines):
        if SELF.match(l):
            return "".join(lines[:i]), lines[i:]
    return body, []


def shape(self_lines):
    """The collector's own families without their values."""
    out = []
    for l in self_lines:
        if l.startswith("#"):
            out.append(l)
        else:
            out.append(l.rsplit(" ", 1)[0])
    return out


def main():
    inprocess, exporter = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="shmetrics-inprocess-")
    prefix = f"inproc{os.getpid()}"
    procs = []
    try:
        ip, ip_port = start([inprocess, "--shm.dir", tmp, "--shm.prefix", prefix,
                             "--web.listen-address", "127.0.0.1:0", "--freeze", "40"], "listening")
        procs.append(ip)
        if ip.stdout.readline().strip() != "frozen after 40 steps":
            sys.exit("FAIL: the example did not freeze")
        ex, ex_port = start([exporter, "--shm.dir", tmp, "--shm.prefix", prefix,
                             "--web.listen-address", "127.0.0.1:0", "--log.level", "error"],
                            "listening")
        procs.append(ex)
        checked = 0
        for accept in (None, OM):
            for gz in (False, True):
                a, ah = get(ip_port, accept, gz)
                b, bh = get(ex_port, accept, gz)
                what = f"{'OpenMetrics' if accept else 'text'}{' gzip' if gz else ''}"
                if ah != bh:
                    sys.exit(f"FAIL: {what}: headers differ: in-process {ah}, exporter {bh}")
                sa, ea = split(a)
                sb, eb = split(b)
                if "vllm:request_success_total" not in sa or "vllm:time_to_first_token" not in sa:
                    sys.exit(f"FAIL: {what}: the example's families are missing:\n{a}")
                if sa != sb:
                    sys.exit(f"FAIL: {what}: the segments' families differ\n--- in-process\n"
                             f"{sa}\n--- exporter\n{sb}")
                if not ea or shape(ea) != shape(eb):
                    sys.exit(f"FAIL: {what}: the collector's own families differ in shape\n"
                             f"--- in-process\n{''.join(ea)}\n--- exporter\n{''.join(eb)}")
                if accept and not (a.endswith("# EOF\n") and b.endswith("# EOF\n")):
                    sys.exit(f"FAIL: {what}: no # EOF")
                checked += 1
        # The example's counters read what it recorded: 40 steps, 8 of them `length`.
        body, _ = get(ip_port)
        for want in ('vllm:request_success_total{engine="0",finished_reason="stop",'
                     'model_name="toy-7b"} 32.0',
                     'vllm:request_success_total{engine="0",finished_reason="length",'
                     'model_name="toy-7b"} 8.0',
                     'vllm:time_to_first_token_seconds_count{engine="0",model_name="toy-7b"} 40.0'):
            if want + "\n" not in body:
                sys.exit(f"FAIL: {want!r} not in the example's body:\n{body}")
        print(f"ok: {checked} forms, the segments' families byte-identical "
              f"({len(split(body)[0])} bytes of text)")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
