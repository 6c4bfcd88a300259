"""Gradient steps per second: BatchRL-MTF (``agents.batchrl_mtf``) against d3rlpy's BCQ.

Both algorithms train on the same random dataset, in the same process, with the same
torch thread count, the same hyperparameters and the same number of timed steps; warm-up
steps are excluded. The timed steps are split into blocks run alternately
(d3rlpy, ours, ours, d3rlpy, d3rlpy, ours, ...), so that load from other processes on a
shared machine hits both about equally; the JSON keeps the per-block rates so the noise
is visible.

What one timed step is:

* d3rlpy: ``dataset.sample_transition_batch(batch_size)`` then ``algo.update(batch)`` --
  the body of d3rlpy's own ``fit`` loop without its logging.
* ours: ``agent.train_step()`` -- minibatch sampling and the VAE, critic and actor updates
  (target updates every L steps), the body of ``BatchRLMTF.fit``'s loop.

Settings matched (d3rlpy 2.8.1 ``BCQConfig``): batch size; gamma; the three learning rates;
hidden sizes through ``VectorEncoderFactory`` (actor / critic 400-300, VAE 750-750 for both
encoder and decoder); latent size ``2 * action_dim`` (fixed in d3rlpy); ``beta`` = KL
weight 0.5; ``action_flexibility`` = rho; ``lam = 1.0`` (plain minimum of the twin
critics); ``rl_start_step = 0``; ``n_critics = 2``; ``update_actor_interval = 1``.

Differences that cannot be removed, and how they were handled:

* Target updates: d3rlpy soft-updates the target critics and target policy every step with
  ``tau``; ours every L = 10 steps with eta_t = 0.05. d3rlpy gets
  ``tau = 1 - (1 - eta_t) ** (1 / L)`` (about 0.0051), the same decay per L steps. A soft update
  of the about 0.45M target parameters costs well under 1% of a step either way.
* Sampled actions: d3rlpy's ``n_action_samples`` serves both the critic target and action
  selection; it is set to our ``n_target_samples`` (10), since only training is timed.
* d3rlpy's VAE decoder returns the decoder output without tanh (its ``with_squash`` flag
  is inverted in 2.8.1); ours applies tanh (BCQ's code). Negligible cost.
* Work ours skips by construction, with identical mathematics: the observation part of each
  first layer is computed once per state rather than once per sampled action; the actor step
  builds no gradients for the decoder or the critic weights and evaluates Q1 only (d3rlpy
  evaluates both critics and back-propagates into the decoder and Q1 weights, then discards
  those gradients); the critic target is evaluated only for non-terminal transitions (it is
  multiplied by ``not_done = 0`` elsewhere; about 28% of the rows of session data with 3.55
  requests per session, as in this benchmark's dataset); fused Adam; the buffer is indexed
  as tensors instead of being gathered per transition in Python.

Usage::

    mtf-bench bench-bcq-speed --steps 200 --out results/bench_bcq_speed.json
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from mtf_env.files import write_json
from agents.batchrl_mtf import BatchRLMTF, BatchRLMTFConfig
from mtf_env.transitions import TransitionArrays


#: Mean requests per session in the paper's data (11.155M transitions / 3.142M sessions).
MEAN_SESSION_LENGTH = 3.55


def make_dataset(n_transitions: int, obs_dim: int, action_dim: int, seed: int,
                 mean_session_length: float = MEAN_SESSION_LENGTH) -> TransitionArrays:
    """Random transitions laid out like the logged session data.

    N(0, 1) observations and rewards, U(-1, 1) actions; sessions of
    ``1 + Poisson(mean_session_length - 1)`` requests (default 3.55 as in the paper), each
    ending in a terminal transition (the user exits), so about 28% of the transitions are
    terminal by default, as in the logged data; the last,
    unfinished session ends in a timeout. Inside a session ``next_observations[i] ==
    observations[i + 1]``, which is what d3rlpy's ``MDPDataset`` assumes.
    """
    rng = np.random.default_rng(seed)
    if mean_session_length < 1:
        raise ValueError(f"mean_session_length must be >= 1, got {mean_session_length}")
    lengths = 1 + rng.poisson(mean_session_length - 1.0, size=n_transitions)
    ends = np.cumsum(lengths)
    ends = ends[ends < n_transitions] - 1
    terminals = np.zeros(n_transitions, dtype=bool)
    terminals[ends] = True
    timeouts = np.zeros(n_transitions, dtype=bool)
    timeouts[-1] = not terminals[-1]
    starts = np.zeros(n_transitions, dtype=bool)
    starts[0] = True
    starts[ends[ends + 1 < n_transitions] + 1] = True
    observations = rng.standard_normal((n_transitions, obs_dim), dtype=np.float32)
    next_observations = np.empty_like(observations)
    next_observations[:-1] = observations[1:]
    episode_ends = terminals | timeouts
    next_observations[episode_ends] = rng.standard_normal((int(episode_ends.sum()), obs_dim), dtype=np.float32)
    return TransitionArrays(
        observations=observations,
        actions=rng.uniform(-1.0, 1.0, (n_transitions, action_dim)).astype(np.float32),
        rewards=rng.standard_normal(n_transitions, dtype=np.float32),
        next_observations=next_observations,
        terminals=terminals,
        timeouts=timeouts,
        episode_starts=starts,
    )


def d3rlpy_bcq_config(config: BatchRLMTFConfig, action_dim: int):
    """d3rlpy's ``BCQConfig`` with the same settings as ``config`` (see the module docstring)."""
    from d3rlpy.algos import BCQConfig
    from d3rlpy.models.encoders import VectorEncoderFactory

    if config.latent_dim not in (None, 2 * action_dim):
        raise ValueError(f"d3rlpy's BCQ fixes the latent size to 2 * action_dim; got latent_dim={config.latent_dim}")
    return BCQConfig(
        batch_size=config.batch_size,
        gamma=config.gamma,
        actor_learning_rate=config.lr_perturbation,
        critic_learning_rate=config.lr_critic,
        imitator_learning_rate=config.lr_vae,
        actor_encoder_factory=VectorEncoderFactory(hidden_units=list(config.actor_hidden)),
        critic_encoder_factory=VectorEncoderFactory(hidden_units=list(config.critic_hidden)),
        imitator_encoder_factory=VectorEncoderFactory(hidden_units=list(config.vae_hidden)),
        tau=1.0 - (1.0 - config.eta_t) ** (1.0 / config.target_update_every),
        n_critics=2,
        update_actor_interval=1,
        lam=1.0,
        n_action_samples=config.n_target_samples,
        action_flexibility=config.rho,
        rl_start_step=0,
        beta=config.kl_weight,
    )


def _timed(step: Callable[[], Any], n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for ``n`` calls of ``step``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(
    steps: int = 200,
    out: str | Path | None = None,
    *,
    warmup: int = 10,
    blocks: int = 4,
    threads: int = 1,
    n_transitions: int = 20_000,
    obs_dim: int = 60,
    action_dim: int = 12,
    seed: int = 0,
    mean_session_length: float = MEAN_SESSION_LENGTH,
    config: BatchRLMTFConfig | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Measure gradient steps/s of d3rlpy's BCQ and of BatchRL-MTF; write JSON to ``out`` if given.

    Args:
        steps: timed gradient steps per algorithm (split into ``blocks`` alternating blocks).
        warmup: untimed steps per algorithm first (allocator, lazy initialisation).
        threads: ``torch.set_num_threads`` for the whole measurement (restored afterwards).
        mean_session_length: requests per session of the random data; ours skips the critic
            target on terminal transitions, so this sets part of the speed-up (3.55: paper's data).
        config: hyperparameters for both (default: the paper's, ``BatchRLMTFConfig()``).

    Returns a dict with ``d3rlpy_steps_per_s``, ``ours_steps_per_s``, ``ratio`` (ours / d3rlpy),
    per-block rates, the settings and the machine.
    """
    import d3rlpy

    if steps < 1 or blocks < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need steps >= 1, blocks >= 1, warmup >= 0, threads >= 1; got {steps}, {blocks}, {warmup}, "
                         f"{threads}")
    blocks = min(blocks, steps)
    config = config if config is not None else BatchRLMTFConfig()
    config = dataclasses.replace(config, device="cpu")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    try:
        data = make_dataset(n_transitions, obs_dim, action_dim, seed, mean_session_length)
        d3_dataset = d3rlpy.dataset.MDPDataset(
            observations=data.observations, actions=data.actions, rewards=data.rewards,
            terminals=data.terminals.astype(np.float32), timeouts=data.timeouts.astype(np.float32),
        )
        d3rlpy.seed(seed)  # d3rlpy draws from the global numpy / torch generators
        algo = d3rlpy_bcq_config(config, action_dim).create(device="cpu:0")
        algo.build_with_dataset(d3_dataset)

        def d3rlpy_step() -> None:
            algo.update(d3_dataset.sample_transition_batch(config.batch_size))

        agent = BatchRLMTF(config).prepare(data, seed)
        ours_step = agent.train_step

        _timed(d3rlpy_step, warmup)
        _timed(ours_step, warmup)
        sizes = [steps // blocks + (1 if i < steps % blocks else 0) for i in range(blocks)]
        d3_times, ours_times = [], []
        bar = tqdm(total=2 * steps, desc="bench bcq speed", disable=not show_progress, dynamic_ncols=True)
        for i, size in enumerate(sizes):
            order = [("d3rlpy", d3rlpy_step), ("ours", ours_step)]
            for name, step in order if i % 2 == 0 else order[::-1]:  # ABBA order cancels drift in load
                (d3_times if name == "d3rlpy" else ours_times).append(_timed(step, size))
                bar.update(size)
        bar.close()
    finally:
        torch.set_num_threads(previous_threads)
    d3_wall, d3_cpu = (np.array(t) for t in zip(*d3_times))
    ours_wall, ours_cpu = (np.array(t) for t in zip(*ours_times))
    d3_rate, ours_rate = steps / d3_wall.sum(), steps / ours_wall.sum()
    result = {
        "benchmark": "bcq_gradient_steps_per_second",
        "d3rlpy_steps_per_s": d3_rate,
        "ours_steps_per_s": ours_rate,
        "ratio": ours_rate / d3_rate,
        # CPU seconds of the process per step: less sensitive to other processes on a shared machine
        "d3rlpy_steps_per_cpu_s": steps / d3_cpu.sum(),
        "ours_steps_per_cpu_s": steps / ours_cpu.sum(),
        "ratio_cpu_time": d3_cpu.sum() / ours_cpu.sum(),
        "block_steps": sizes,
        "d3rlpy_block_steps_per_s": (np.array(sizes) / d3_wall).tolist(),
        "ours_block_steps_per_s": (np.array(sizes) / ours_wall).tolist(),
        "block_ratios": (d3_wall / ours_wall).tolist(),
        "block_ratios_cpu_time": (d3_cpu / ours_cpu).tolist(),
        "steps": steps,
        "warmup": warmup,
        "threads": threads,
        "n_transitions": n_transitions,
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "seed": seed,
        "mean_session_length": mean_session_length,
        "terminal_fraction": float(data.terminals.mean()),
        "config": dataclasses.asdict(config),
        "d3rlpy_tau": 1.0 - (1.0 - config.eta_t) ** (1.0 / config.target_update_every),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "torch": torch.__version__,
            "d3rlpy": d3rlpy.__version__,
        },
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(out), result)
    return result
