"""Throughput of the A/B platform's :func:`~benchmarks.evaluation.days.evaluate` with a torch MLP policy vs a static one.

A trained agent's policy is a torch network; the platform calls it once per vector step
for the whole batch of active users, so its cost is one batched forward pass per request
wave. This benchmark builds a 2 x 256 ReLU MLP (``obs -> 256 -> 256 -> tanh 12``, seeded
weights) and measures user-requests per second of ``evaluate`` with it and with the static
``production`` policy, in the same process, on the same users and seed, alternating the two
``repeats`` times; the reported ratio (MLP / static) is the median of the per-repeat ratios.
The target is a ratio of at least 0.5.

Run: ``mtf-bench bench-eval --users 32768 --repeats 3 --out results/bench_eval.json``.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from agents.nets import mlp
from mtf_env.policy import check_obs_batch
from agents.static import StaticPolicy
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.tasks import N_TASKS

from benchmarks.evaluation.days import DEFAULT_BLOCK_SIZE, evaluate


class MLPPolicy:
    """A batched torch policy: ``tanh(MLP(obs))``, ``(B, obs_dim) -> (B, 12)`` in [-1, 1]. Deterministic."""

    stochastic = False

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256), seed: int = 0, name: str = "mlp"):
        gen = torch.Generator().manual_seed(seed)
        self.obs_dim = obs_dim
        self.net = mlp(obs_dim, hidden, N_TASKS, generator=gen, output_activation=torch.nn.Tanh).eval()
        self.name = name

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = check_obs_batch(obs, self.obs_dim)
        with torch.inference_mode():
            return self.net(torch.from_numpy(np.ascontiguousarray(obs))).numpy()


def run_bench(users: int = 32768, days: int = 1, seed: int = 0, config: SimConfig | None = None,
              block_size: int = DEFAULT_BLOCK_SIZE, torch_threads: int = 1, show_progress: bool = False,
              repeats: int = 3) -> dict[str, Any]:
    """Measure ``evaluate`` throughput (user-requests/s) with the static production policy and the MLP policy.

    A short warm-up run (numba compilation, torch start-up) precedes the timed runs; then the
    two policies run alternately ``repeats`` times. Returns a JSON-ready dict with every run
    (throughput, share of time in the policy), the per-repeat ratios and their median.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    torch.set_num_threads(torch_threads)
    sim = Simulator(config if config is not None else SimConfig())
    policies = {"static": StaticPolicy.preset("production"), "mlp": MLPPolicy(sim.obs_dim, seed=seed)}
    for policy in policies.values():  # warm-up
        evaluate(policy, min(users, 256), 1, seed + 1, show_progress=False, sim=sim)
    out: dict[str, Any] = {"users": users, "days": days, "seed": seed, "block_size": block_size,
                           "torch_threads": torch_threads, "repeats": repeats, "config": sim.config.to_json(),
                           "runs": {name: [] for name in policies}}
    for _ in range(repeats):
        for name, policy in policies.items():
            t0 = time.perf_counter()
            res = evaluate(policy, users, days, seed, block_size=block_size, show_progress=show_progress, sim=sim)
            out["runs"][name].append({"requests": int(res.requests.sum()), "wall_s": res.wall_s,
                                      "requests_per_s": res.requests_per_s, "policy_s": res.policy_s,
                                      "policy_calls": res.policy_calls, "policy_share": res.policy_s / res.wall_s,
                                      "total_s": time.perf_counter() - t0})
    out["ratios"] = [m["requests_per_s"] / s["requests_per_s"] for m, s in zip(out["runs"]["mlp"], out["runs"]["static"])]
    out["mlp_over_static"] = float(np.median(out["ratios"]))
    out["target_met"] = bool(out["mlp_over_static"] >= 0.5)
    return out
