import os

import pytest

# d3rlpy imports the unmaintained `gym` package, which prints a warning at import; quiet it in tests
os.environ.setdefault("PYTHONWARNINGS", "ignore")


def pytest_configure(config):
    config.addinivalue_line("markers", "benchmark: speed / memory benchmarks (run with -m benchmark)")
    config.addinivalue_line("markers", "slow: Monte-Carlo phenomenon tests that take tens of seconds")


@pytest.fixture(scope="session")
def small_config():
    """A small world for fast tests (the shipped scorer works for any catalogue)."""
    from mtf_env.config import SimConfig

    return SimConfig(n_users=3000, n_items=4000)
