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
