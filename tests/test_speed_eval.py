"""Tiny smoke run of the evaluation throughput benchmark (torch MLP policy vs static)."""
import numpy as np
import pytest

from benchmarks.speed.bench_eval import MLPPolicy, run_bench
from mtf_env.config import SimConfig


def test_mlp_policy_is_batched_and_bounded():
    policy = MLPPolicy(obs_dim=10, seed=0)
    obs = np.random.default_rng(0).standard_normal((7, 10)).astype(np.float32)
    act = policy.act(obs)
    assert act.shape == (7, 12) and act.dtype == np.float32 and np.all(np.abs(act) <= 1)
    assert np.array_equal(act, MLPPolicy(obs_dim=10, seed=0).act(obs))
    with pytest.raises(ValueError, match="features"):
        policy.act(np.zeros((3, 9), np.float32))


@pytest.mark.benchmark
def test_bench_eval_smoke():
    report = run_bench(users=96, days=1, seed=0, config=SimConfig(n_users=3000, n_items=4000), block_size=64,
                       repeats=2)
    static, mlp = report["runs"]["static"], report["runs"]["mlp"]
    assert len(static) == len(mlp) == len(report["ratios"]) == 2
    assert all(run["requests_per_s"] > 0 for run in static + mlp)
    assert static[0]["requests"] == static[1]["requests"] > 96 and 0 < mlp[0]["policy_share"] < 1
    assert min(report["ratios"]) <= report["mlp_over_static"] <= max(report["ratios"])
    with pytest.raises(ValueError, match="repeats"):
        run_bench(users=8, repeats=0)
