"""Throughput regression of the simulator, as ratios to Gymnasium's Pendulum-v1 measured in the same run.

Run with ``pytest -m benchmark``. The stored figures (benchmarks/speed/reference/bench_sim.json) come
from ``mtf-bench bench-sim`` on the reference machine; a ratio may not fall below half of its
stored value (the tolerance absorbs machine noise, not a real regression of 2x).
"""
import json
from pathlib import Path

import pytest

from benchmarks.speed.bench_sim import bench_sim

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "speed" / "reference" / "bench_sim.json"


@pytest.mark.benchmark
def test_simulator_throughput_ratios_hold():
    ref = json.loads(REFERENCE.read_text())
    result = bench_sim(min_seconds=1.0, batch_sizes=(1, 4096))
    assert result["single_env_vs_pendulum"] >= 0.5 * ref["single_env_vs_pendulum"]
    assert result["vectorised_4096_vs_pendulum"] >= 0.5 * ref["vectorised_4096_vs_pendulum"]
