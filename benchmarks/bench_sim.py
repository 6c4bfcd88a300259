"""``mtf-bench bench-sim``: simulator throughput, with Gymnasium's Pendulum-v1 as the in-run reference.

Measures, in one process:
- single env (``gym.make``, with Gymnasium's default wrappers) steps/s under the production weights;
- the batched core at batch 1, 64, 1024, 4096: user-requests/s and candidate scorings/s
  (= requests/s x K), K = ``n_candidates`` (100 by default), 12 tasks;
- ``Pendulum-v1`` steps/s (``gym.make``), so results can be compared across machines as ratios.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from mtf_env.files import write_json
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.fusion import PRODUCTION_ACTION

BATCH_SIZES = (1, 64, 1024, 4096)


def _timed(fn, min_seconds: float) -> dict[str, float]:
    """Calls fn() (which does some work and returns the units done) until min_seconds pass.

    Returns units per wall-clock second and per CPU second of this process (all its threads):
    on a shared machine the CPU rate shows what the code costs, the wall rate what it got.
    """
    fn()  # warm-up (compilation, caches)
    units, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        units += fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return {"per_s": units / elapsed, "per_cpu_s": units / max(time.process_time() - c0, 1e-9)}


def env_steps_per_s(env: gym.Env, action: np.ndarray, min_seconds: float) -> dict[str, float]:
    """Steps per second of a single Gymnasium env under a fixed action (resets included)."""
    env.reset(seed=0)

    def work() -> int:
        for _ in range(1000):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        return 1000

    return _timed(work, min_seconds)


def single_env_steps_per_s(config: dict, min_seconds: float, unwrapped: bool = False) -> dict[str, float]:
    import mtf_env  # noqa: F401  (registers the env)

    env = gym.make("ShortVideoMTF-v0", **config)
    return env_steps_per_s(env.unwrapped if unwrapped else env, PRODUCTION_ACTION, min_seconds)


def pendulum_steps_per_s(min_seconds: float) -> dict[str, float]:
    return env_steps_per_s(gym.make("Pendulum-v1"), np.zeros(1, np.float32), min_seconds)


def batched_requests_per_s(sim: Simulator, batch: int, min_seconds: float) -> dict[str, float]:
    rng = np.random.default_rng(0)
    state = sim.empty_state(batch)
    sim.start_sessions(state, np.arange(batch), None, rng)
    actions = np.tile(PRODUCTION_ACTION, (batch, 1))
    steps = max(1, 4096 // batch)

    def work() -> int:
        for _ in range(steps):
            res = sim.step(state, actions, rng)
            ended = res.terminated | res.truncated
            if ended.any():
                sim.start_sessions(state, ended, None, rng)
        return steps * batch

    return _timed(work, min_seconds)


def bench_sim(config: SimConfig = SimConfig(), min_seconds: float = 2.0, batch_sizes=BATCH_SIZES) -> dict:
    sim = Simulator(config)
    pendulum = pendulum_steps_per_s(min_seconds)
    single = single_env_steps_per_s({}, min_seconds)
    single_unwrapped = single_env_steps_per_s({}, min_seconds, unwrapped=True)
    vec = {}
    for b in batch_sizes:
        rps = batched_requests_per_s(sim, b, min_seconds)
        vec[str(b)] = {"user_requests_per_s": rps["per_s"], "candidate_scorings_per_s": rps["per_s"] * config.n_candidates,
                       "user_requests_per_cpu_s": rps["per_cpu_s"]}
    import numba

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "numba_threads": numba.get_num_threads(), "load_average_1min": load},
        "n_candidates": config.n_candidates, "n_tasks": 12, "page_size": config.page_size,
        "pendulum_v1_steps_per_s": pendulum["per_s"],
        "pendulum_v1_steps_per_cpu_s": pendulum["per_cpu_s"],
        "single_env_steps_per_s": single["per_s"],
        "single_env_steps_per_cpu_s": single["per_cpu_s"],
        "single_env_unwrapped_steps_per_s": single_unwrapped["per_s"],
        "single_env_vs_pendulum": single["per_s"] / pendulum["per_s"],
        "vectorised": vec,
        "vectorised_4096_vs_pendulum": vec.get("4096", {}).get("user_requests_per_s", float("nan")) / pendulum["per_s"],
    }


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-sim", help="simulator throughput (single env, batched core, Pendulum-v1 reference)")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timing window per measurement")
    p.add_argument("--out", type=Path, default=Path("results/bench_sim.json"))
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = bench_sim(min_seconds=args.seconds)
    write_json(args.out, result)
    print(f"load average {result['machine']['load_average_1min']:.2f} on {result['machine']['cpus']} CPUs")
    print(f"Pendulum-v1 (reference): {result['pendulum_v1_steps_per_s']:,.0f} steps/s")
    print(f"ShortVideoMTF-v0 single env: {result['single_env_steps_per_s']:,.0f} steps/s "
          f"(unwrapped {result['single_env_unwrapped_steps_per_s']:,.0f})")
    for b, row in result["vectorised"].items():
        print(f"batch {b:>5s}: {row['user_requests_per_s']:>12,.0f} user-requests/s, "
              f"{row['candidate_scorings_per_s']:>14,.0f} candidate scorings/s "
              f"({row['user_requests_per_cpu_s']:,.0f} per CPU second)")
    print(f"-> {args.out}")
