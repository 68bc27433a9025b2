"""Differential, one process: the same seeded operations through shmetrics.prometheus_client
and prometheus_client give the same samples (names, labels, values), read from
generate_latest(), from REGISTRY.get_sample_value() and from a real shmetrics-exporter."""
import json
import os

import pytest

import compat_util


@pytest.mark.parametrize('seed', [1, 2, 3, 4, 5])
def test_same_samples_single_process(seed):
    prefix = f'pycompat{os.getpid()}s{seed}'
    out = json.loads(compat_util.run_scenario('single', seed, 600, env={'SHMETRICS_SHM_PREFIX': prefix}))
    expected = compat_util.samples_of(out['prometheus_client'])
    assert len(expected) > 50, 'the scenario recorded too little to compare'
    problems = compat_util.diff(expected, compat_util.samples_of(out['shmetrics']))
    assert not problems, 'generate_latest() differs:\n' + '\n'.join(problems)
    for name, labels, real_value, shm_value in out['get_sample_value']:
        assert real_value == shm_value or abs(real_value - shm_value) <= 1e-12 * abs(real_value), \
            (name, labels, real_value, shm_value)
    if out['exporter'] is None:
        pytest.skip('SHMETRICS_EXPORTER not set: the exporter comparison did not run')
    problems = compat_util.diff(expected, compat_util.samples_of(out['exporter']))
    assert not problems, 'shmetrics-exporter differs:\n' + '\n'.join(problems)
