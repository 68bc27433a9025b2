"""Runs one test file of this folder with pytest; exit 77 (skipped) when the native module
or prometheus_client cannot be imported (a build without the Python module)."""
import os
import sys

try:
    import shmetrics  # noqa: F401
    import shmetrics.prometheus_client  # noqa: F401
    import prometheus_client  # noqa: F401
    import pytest
except ImportError as e:
    print(f'skipped: {e}', file=sys.stderr)
    sys.exit(77)

here = os.path.dirname(os.path.abspath(__file__))
sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-rs', '--rootdir', here, *sys.argv[1:]]))
