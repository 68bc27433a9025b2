"""One differential scenario in a fresh interpreter; prints a JSON document.

    scenario.py single SEED N        one process, both libraries, N operations
    scenario.py multi SEED N W       W forked writers (prometheus_client in multiprocess
                                     mode: PROMETHEUS_MULTIPROC_DIR set by the caller)

Phases of `multi`: "alive" once every writer is done; "dead" after writers 0 and 1 exited
(os._exit: no cleanup, their segments stay as a crash leaves them) and were given to
prometheus_client's mark_process_dead. Each phase has the prometheus_client body
(MultiProcessCollector), shmetrics.prometheus_client.generate_latest() and, when
SHMETRICS_EXPORTER names the binary, a real exporter's /metrics.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compat_util  # noqa: E402


def single(seed, n):
    import prometheus_client as real
    import shmetrics.prometheus_client as shm
    defs = compat_util.definitions(multiprocess=False)
    ops = compat_util.make_ops(defs, seed, n, allow_remove=True)
    real_fams = compat_util.make_families(real, defs)
    shm_fams = compat_util.make_families(shm, defs)
    compat_util.apply_ops(real_fams, ops)
    compat_util.apply_ops(shm_fams, ops)
    out = {'prometheus_client': real.generate_latest().decode(),
           'shmetrics': shm.generate_latest().decode(),
           'get_sample_value': []}
    # get_sample_value on both registries, for every sample prometheus_client serves.
    for key in compat_util.samples_of(out['prometheus_client']):
        name, labels = key[0], dict(key[1])
        out['get_sample_value'].append([name, labels, real.REGISTRY.get_sample_value(name, labels),
                                        shm.REGISTRY.get_sample_value(name, labels)])
    exporter = compat_util.Exporter(os.environ['SHMETRICS_SHM_PREFIX'])
    try:
        out['exporter'] = exporter.scrape() if exporter.url else None
    finally:
        exporter.close()
    return out


def multi(seed, n, writers):
    import prometheus_client as real
    from prometheus_client import multiprocess as real_mp
    import shmetrics.prometheus_client as shm
    defs = compat_util.definitions(multiprocess=True)
    real_fams = compat_util.make_families(real, defs)
    shm_fams = compat_util.make_families(shm, defs)

    children = []
    for k in range(writers):
        done_r, done_w = os.pipe()
        cmd_r, cmd_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(done_r)
                os.close(cmd_w)
                ops = compat_util.make_ops(defs, seed * 100 + k, n, allow_remove=False)
                compat_util.apply_ops(real_fams, ops)
                compat_util.apply_ops(shm_fams, ops)
                os.write(done_w, b'd')
                os.read(cmd_r, 1)
            finally:
                os._exit(0)
        os.close(done_w)
        os.close(cmd_r)
        children.append((pid, done_r, cmd_w))
    for pid, done_r, _ in children:
        assert os.read(done_r, 1) == b'd', f'writer {pid} failed'

    exporter = compat_util.Exporter(os.environ['SHMETRICS_SHM_PREFIX'])

    def phase():
        registry = real.CollectorRegistry()
        real_mp.MultiProcessCollector(registry)
        shm_registry = shm.CollectorRegistry()
        shm.multiprocess.MultiProcessCollector(shm_registry)
        return {'prometheus_client': real.generate_latest(registry).decode(),
                'shmetrics': shm.generate_latest().decode(),
                'shmetrics_registry': shm.generate_latest(shm_registry).decode(),
                'exporter': exporter.scrape() if exporter.url else None}

    try:
        out = {'writers': [c[0] for c in children], 'alive': phase()}
        for pid, _, cmd_w in children[:2]:
            os.write(cmd_w, b'x')
            os.waitpid(pid, 0)
            real_mp.mark_process_dead(pid)
            shm.multiprocess.mark_process_dead(pid)
        out['dead'] = phase()
    finally:
        exporter.close()
        for pid, _, cmd_w in children[2:]:
            os.write(cmd_w, b'x')
            os.waitpid(pid, 0)
    return out


if __name__ == '__main__':
    what = sys.argv[1]
    if what == 'single':
        result = single(int(sys.argv[2]), int(sys.argv[3]))
    elif what == 'multi':
        result = multi(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(f'unknown scenario {what}')
    json.dump(result, sys.stdout)
