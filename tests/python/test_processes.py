"""Processes and threads: fork, spawn, 8 threads on one series, SIGKILL mid-loop."""

import multiprocessing
import os
import signal
import struct
import threading

import shmetrics
from conftest import samples, value


def _child_exit(fn):
    """Runs fn in a forked child; returns its exit status (0: every check passed)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException:  # reported through the exit status, printed for the log
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_fork_child_records_into_its_own_segment(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    fam = reg.counter("work", "Work.", ("kind",))
    ok = fam.labels("ok")
    gone = fam.labels("gone")
    temp = reg.gauge("temp", mode="sum").labels()
    lat = reg.histogram("lat", buckets=(1, 2)).labels()
    ok.inc(5)
    temp.set(1)
    lat.observe(0.5)
    fam.remove("gone")
    parent_path = reg.path

    def child():
        assert reg.path != parent_path
        assert os.path.basename(reg.path).startswith("%s.%d." % (p, os.getpid()))
        assert os.path.exists(reg.path) and os.path.exists(parent_path)
        assert ok.get() == 0 and temp.get() == 0 and lat.get() == (0, 0.0)  # from zero
        ok.inc(7)
        temp.set(2)
        lat.observe(1.5)
        fam.labels("new").inc(3)  # a label set first seen in the child
        gone.inc(100)  # removed before the fork: inert
        assert ok.get() == 7 and lat.get() == (1, 1.5)
        assert reg.usage()["families"] == 3

    assert _child_exit(child) == 0
    assert ok.get() == 5 and temp.get() == 1 and lat.get() == (1, 0.5)  # the parent's own
    assert value(d, p, "work_total", kind="ok") == 12  # both processes, merged
    assert value(d, p, "work_total", kind="new") == 3
    assert value(d, p, "work_total", kind="gone") is None
    assert value(d, p, "temp") == 3  # mode sum
    assert value(d, p, "lat_count") == 2 and value(d, p, "lat_sum") == 2.0
    assert len([f for f in os.listdir(d) if f.startswith(p + ".")]) == 2


def test_fork_twice_and_grandchild(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    c = reg.counter("n").labels()

    def child():
        c.inc()
        assert _child_exit(lambda: c.inc(10)) == 0  # a grandchild: a third segment
        assert c.get() == 1

    for _ in range(2):
        assert _child_exit(child) == 0
    assert value(d, p, "n_total") == 22
    assert len([f for f in os.listdir(d) if f.startswith(p + ".")]) == 5


def test_fork_default_registry(tmp_path):
    # The default registry (configure()) is rebound too, in a process of its own.
    from conftest import run_python
    out = run_python("""
import os, shmetrics
shmetrics.configure(dir=%r, prefix="fd")
c = shmetrics.default_registry().counter("hits").labels()
c.inc()
pid = os.fork()
if pid == 0:
    c.inc(2)
    os._exit(0 if shmetrics.default_registry().path.split(".")[1] == str(os.getpid()) else 3)
_, st = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(st) == 0
print(shmetrics.generate_latest().decode())
""" % str(tmp_path))
    assert "hits_total 3.0" in out


def _spawned(n):
    # A spawned interpreter: nothing inherited but the environment.
    import shmetrics as s
    reg = s.default_registry()
    c = reg.counter("spawned", "Spawned.", ("who",)).labels(str(os.getpid()))
    for _ in range(n):
        c.inc()


def test_spawn_reads_the_environment(tmp_path):
    d = str(tmp_path)
    # configure() puts dir and prefix in os.environ; spawn children read them there.
    old = {k: os.environ.get(k) for k in ("SHMETRICS_SHM_DIR", "SHMETRICS_SHM_PREFIX")}
    os.environ["SHMETRICS_SHM_DIR"] = d
    os.environ["SHMETRICS_SHM_PREFIX"] = "sp"
    try:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_spawned, args=(100 * (i + 1),)) for i in range(3)]
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join(60)
            assert pr.exitcode == 0
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    got = {dict(l)["who"]: v for (n, l), v in samples(d, "sp").items() if n == "spawned_total"}
    assert sorted(got.values()) == [100, 200, 300]
    assert set(got) == {str(pr.pid) for pr in procs}


def test_eight_threads_one_series_exact(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    c = reg.counter("hits").labels()
    f = reg.counter("halves").labels()
    h = reg.histogram("obs", buckets=(1,)).labels()
    g = reg.gauge("level", mode="sum").labels()
    n = 50_000
    start = threading.Barrier(8)

    def work():
        start.wait()
        for _ in range(n):
            c.inc()
            f.inc(0.5)
            h.observe(2)
            g.inc()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.get() == 8 * n and f.get() == 4 * n and h.get() == (8 * n, 16.0 * n)
    assert g.get() == 8 * n
    assert value(d, p, "hits_total") == 8 * n
    assert value(d, p, "halves_total") == 4 * n
    assert value(d, p, "obs_count") == 8 * n and value(d, p, "obs_bucket", le="1.0") == 0
    assert value(d, p, "level") == 8 * n


def test_sigkill_mid_loop_loses_nothing(shm):
    d, p = shm
    reg = shmetrics.Registry(d, p)
    c = reg.counter("progress").labels()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # counts, and after every 64 tells the parent how many it counted
        os.close(r)
        i = 0
        while True:
            c.inc()
            i += 1
            if i % 64 == 0:
                os.write(w, struct.pack("<Q", i))
    os.close(w)
    last = 0
    with os.fdopen(r, "rb") as pipe:
        while last < 200_000:
            last = struct.unpack("<Q", pipe.read(8))[0]
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for rest in iter(lambda: pipe.read(8), b""):  # what it said before the kill
            last = max(last, struct.unpack("<Q", rest)[0])
    got = value(d, p, "progress_total")
    # Every increment it reported is there (at most 63 more it had not reported yet).
    assert last <= got < last + 64, (last, got)
    # The text the exporter would serve says the same (below 1e6: Python's repr).
    assert ("progress_total %r\n" % float(got)) in shmetrics.generate_latest(d, p).decode()
