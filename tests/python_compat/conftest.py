import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# One segment prefix per test process, so that tests never read each other's writers.
os.environ['SHMETRICS_SHM_PREFIX'] = f'pycompat{os.getpid()}'


def pytest_sessionfinish(session, exitstatus):
    # The segments of this test process and of the scenarios it ran (their prefixes start
    # with this process's): tests leave nothing in /dev/shm.
    import glob
    for path in glob.glob(f'/dev/shm/pycompat{os.getpid()}*') + glob.glob(f'/dev/shm/pyexample{os.getpid()}*'):
        try:
            os.unlink(path)
        except OSError:
            pass
