"""Differential, 4 forked writers: prometheus_client in multiprocess mode
(MultiProcessCollector over PROMETHEUS_MULTIPROC_DIR) and shmetrics.prometheus_client
(every process its segment, merged by generate_latest() and by a real exporter) give the
same samples, every gauge mode of prometheus_client 0.16 included; after two writers die
(mark_process_dead on prometheus_client's side) the live* modes drop them the same way."""
import json
import os
import tempfile

import pytest

import compat_util


@pytest.mark.parametrize('seed', [11, 12, 13])
def test_same_samples_four_writers(seed):
    prefix = f'pycompat{os.getpid()}m{seed}'
    with tempfile.TemporaryDirectory() as d:
        out = json.loads(compat_util.run_scenario(
            'multi', seed, 400, 4, env={'SHMETRICS_SHM_PREFIX': prefix, 'PROMETHEUS_MULTIPROC_DIR': d}))
    for phase in ('alive', 'dead'):
        expected = compat_util.samples_of(out[phase]['prometheus_client'])
        assert len(expected) > 50
        # The dead writers' pids are in the live modes' series before, not after.
        pids = {str(p) for p in out['writers'][:2]}
        live_pid_series = [k for k in expected if k[0] == 'vllm:gauge_liveall' and dict(k[1]).get('pid') in pids]
        assert bool(live_pid_series) == (phase == 'alive'), (phase, live_pid_series)
        for source in ('shmetrics', 'shmetrics_registry', 'exporter'):
            if out[phase][source] is None:
                continue
            problems = compat_util.diff(expected, compat_util.samples_of(out[phase][source]))
            assert not problems, f'{phase}: {source} differs:\n' + '\n'.join(problems)
    if out['alive']['exporter'] is None:
        pytest.skip('SHMETRICS_EXPORTER not set: the exporter comparison did not run')


def test_mostrecent_modes_four_writers():
    """mostrecent / livemostrecent (prometheus_client 0.17+, not in Debian's 0.16, so checked
    against their definition): the value set last by any writer; live: by a live writer."""
    import shmetrics.prometheus_client as pc
    recent = pc.Gauge('mp_recent', 'x', ['engine'], multiprocess_mode='mostrecent')
    live_recent = pc.Gauge('mp_live_recent', 'x', ['engine'], multiprocess_mode='livemostrecent')
    children = []
    for k in range(4):
        done_r, done_w = os.pipe()
        cmd_r, cmd_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                recent.labels('0').set(10 + k)
                live_recent.labels('0').set(20 + k)
                os.write(done_w, b'd')
                os.read(cmd_r, 1)
            finally:
                os._exit(0)
        assert os.read(done_r, 1) == b'd'  # one writer after the other: k sets last
        children.append((pid, cmd_w))

    def value(name):
        return pc.REGISTRY.get_sample_value(name, {'engine': '0'})

    try:
        assert value('mp_recent') == 13.0 and value('mp_live_recent') == 23.0
        pid, cmd_w = children.pop()
        os.write(cmd_w, b'x')
        os.waitpid(pid, 0)
        # The last setter died: mostrecent keeps its value, livemostrecent the latest live one.
        assert value('mp_recent') == 13.0 and value('mp_live_recent') == 22.0
    finally:
        for pid, cmd_w in children:
            os.write(cmd_w, b'x')
            os.waitpid(pid, 0)
