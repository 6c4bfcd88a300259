import os

import pytest

# d3rlpy imports the unmaintained `gym` package, which prints a warning at import; quiet it in tests
os.environ.setdefault("PYTHONWARNINGS", "ignore")


def pytest_configure(config):
    config.addinivalue_line("markers", "benchmark: speed / memory benchmarks (run with -m benchmark)")
    config.addinivalue_line("markers", "slow: Monte-Carlo phenomenon tests that take tens of seconds")
    config.addinivalue_line("markers", "tutorial: executes a tutorial notebook top to bottom (about a minute each)")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test: the test machines have 2 shared cores, and two OpenMP threads
    under load made the tiny fits of the tests many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def small_config():
    """A small world for fast tests (the shipped scorer works for any catalogue)."""
    from mtf_env.config import SimConfig

    return SimConfig(n_users=3000, n_items=4000)
