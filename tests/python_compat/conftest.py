import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# One segment prefix per test process, so that tests never read each other's writers.
os.environ.setdefault('SHMETRICS_SHM_PREFIX', f'pycompat{os.getpid()}')
