"""Shared fixtures: seeded data and the rotor tool the answers are compared with."""
import os
import shutil

import numpy as np
import pytest


def pytest_report_header(config):
    import rotor
    return f"rotor {rotor.__version__} from {rotor.__file__}, simd {rotor.simd_level()}"


@pytest.fixture(scope="session")
def cli():
    """The rotor tool of the same build (ROTOR_CLI, set by ctest and
    scripts/test.sh), or the one on PATH."""
    path = os.environ.get("ROTOR_CLI") or shutil.which("rotor")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("no rotor tool to compare with: set ROTOR_CLI to the built tools' rotor")
    return path


def clustered(seed, n, d, centres=16):
    """Vectors around a few centres, so graphs and partitions have structure."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32) * 4
    lab = rng.integers(0, centres, n)
    return (c[lab] + rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)


@pytest.fixture(scope="session")
def data():
    """(base, queries): 3,000 x 32 clustered float32 vectors and 50 queries."""
    x = clustered(7, 3050, 32)
    return np.ascontiguousarray(x[:3000]), np.ascontiguousarray(x[3000:])
