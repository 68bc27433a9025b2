"""Shared pieces of the Python module's tests (docs/python.md, "Tests").

Run by meson (tests/python/meson.build) as `/usr/bin/python3 -m pytest -q <file>` with
PYTHONPATH=<build>/python, SHMETRICS_CATALOG=<src>/data/vllm_catalog.json and
SHMETRICS_EXPORTER=<build>/exporter/shmetrics-exporter. Real segments in a private
directory (tmp_path), real processes, real HTTP.
"""

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

try:
    import shmetrics  # noqa: F401
except ImportError as e:  # the module was not built: skipped, never passed
    print("shmetrics module not importable (%s): skipped" % e)
    pytest.exit("shmetrics module not built", returncode=77)


@pytest.fixture
def shm(tmp_path):
    """(dir, prefix): a private segment directory and a prefix for this test."""
    return str(tmp_path), "t"


def samples(d, prefix):
    """{(name, frozenset(labels.items())): value} of the merged view."""
    return {(n, frozenset(l.items())): v for n, l, v in shmetrics.collect_samples(d, prefix)}


def value(d, prefix, name, **labels):
    return samples(d, prefix).get((name, frozenset(labels.items())))


def run_python(code, env=None, timeout=60):
    """Runs `code` in a fresh interpreter (this one's PYTHONPATH); returns stdout."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, "child failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    return r.stdout


class Exporter:
    """A real shmetrics-exporter on 127.0.0.1:<free port>, serving dir/prefix."""

    def __init__(self, d, prefix):
        exe = os.environ.get("SHMETRICS_EXPORTER", "")
        if not exe or not os.access(exe, os.X_OK):
            pytest.exit("SHMETRICS_EXPORTER not set or not executable: skipped", returncode=77)
        self.proc = subprocess.Popen(
            [exe, "--web.listen-address=127.0.0.1:0", "--shm.dir=" + d, "--shm.prefix=" + prefix,
             "--log.level=warn"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)(/\S*)", line)
        assert m, "exporter said %r" % line
        self.url = "http://127.0.0.1:%s%s" % (m.group(1), m.group(2))

    def get(self, accept=None):
        req = urllib.request.Request(self.url)
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def exporter(shm):
    e = Exporter(*shm)
    yield e
    e.close()


def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()
