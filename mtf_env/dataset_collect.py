"""Collect a logged dataset on the batched simulator under a behaviour policy.

Sessions are collected in *waves* of ``batch_size`` fresh sessions (``carry=False``): the
wave's users are drawn uniformly from the population with a seeded generator, every session
of the wave steps together on the batched :class:`~mtf_env.core.Simulator`, and rows whose
session ended are dropped from the batch (so the simulator only serves live sessions). When
the whole wave has ended, its rows are reordered session by session and handed to the
writer thread, which streams them into Parquet while the next wave runs. Memory stays
bounded by a few waves whatever the dataset size.

Time order: session ids are assigned in collection order (wave by wave, row by row inside a
wave); the ``day`` of a session is ``session_id * n_days // n_sessions`` (equal shares of the
collection per day); ``time_order`` numbers requests in the order they were served (step
``t`` of all live sessions of a wave, then step ``t + 1``, ...). The paper's split (first 90%
of sessions in time order for training) is therefore a prefix of the session ids.

Initial states: a fresh session's initial observation is a deterministic function of the
user id (profile and history features of the user), so the stored ``user_id`` reproduces
the initial state of every logged session (the A/B platform uses this for true values).

Randomness: ``SeedSequence(seed).spawn(3)`` gives the streams of the users, of the simulator
and of the behaviour policy, so the same seed and ``batch_size`` give the same bytes.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .config import SimConfig
from .core import Simulator
from .dataset_io import (FORMAT_NAME, REQUEST_COLUMNS, SCHEMA_VERSION, SESSION_COLUMNS, DatasetWriter,
                         code_version, pack_video_feedback)
from .drive import drive
from .fusion import ALPHA_HIGH, ALPHA_LOW, BETA, action_to_alpha
from .policy import BehaviourPolicy, behaviour_step
from .tasks import N_TASKS, TASK_NAMES


@dataclass(frozen=True)
class CollectConfig:
    """How to collect a logged dataset (the simulator itself is configured by :class:`SimConfig`)."""

    policy: str = "mixed"
    """Behaviour policy spec, recorded in the manifest (built by agents.behaviour.collection_policy):
    production, random[:STD], action-noise[:TARGET], mixed[:TARGET]."""
    n_sessions: int = 2000
    """Sessions to collect."""
    seed: int = 0
    """Root seed of the users, the simulator and the behaviour policy (SeedSequence(seed).spawn(3))."""
    target: str | None = None
    """Target policy spec of action-noise / mixed (default static:production); also settable in ``policy``."""
    batch_size: int = 8192
    """Sessions simulated in parallel (a wave). Part of the random stream layout: changing it changes the data."""
    n_days: int = 7
    """Collection days; session i belongs to day i * n_days // n_sessions."""
    train_fraction: float = 0.9
    """Share of sessions (first in time order) in the train split; the rest is the test split (paper: 0.9)."""
    rows_per_part: int = 2_000_000
    """A new part file starts after this many request rows (at a wave boundary)."""
    compression: str = "zstd"
    """Parquet compression codec (zstd, lz4, snappy, none)."""
    compression_level: int | None = 1
    """Codec level (zstd 1 is fast and still compresses about 1.6x); None for the codec default."""

    def __post_init__(self) -> None:
        for name in ("n_sessions", "batch_size", "n_days", "rows_per_part"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"CollectConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"CollectConfig.seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"CollectConfig.train_fraction must lie in (0, 1), got {self.train_fraction!r}")


@dataclass(frozen=True)
class DatasetPreset:
    """A named dataset of the benchmark (its card lives in ``datasets/cards/NAME.json``)."""

    name: str
    """Preset name, also the default output directory ``datasets/NAME``."""
    collect: CollectConfig
    """How it is collected."""
    sim: dict[str, Any] = field(default_factory=dict)
    """SimConfig overrides (empty: the default simulator)."""
    description: str = ""
    """One line for the card and ``--help``."""


#: The named datasets. ``paper`` has the paper's 3.142M sessions under mixed exploration.
DATASET_PRESETS: dict[str, DatasetPreset] = {
    "smoke": DatasetPreset("smoke", CollectConfig(policy="mixed", n_sessions=2000, seed=0, n_days=1,
                                                  batch_size=2048),
                           description="2k sessions of mixed exploration for smoke tests (seconds)"),
    "small": DatasetPreset("small", CollectConfig(policy="mixed", n_sessions=50_000, seed=0, n_days=7,
                                                  batch_size=8192),
                           description="50k sessions of mixed exploration for quick experiments"),
    "paper": DatasetPreset("paper", CollectConfig(policy="mixed", n_sessions=3_142_000, seed=0, n_days=7,
                                                  batch_size=16384),
                           description="the paper's scale: 3.142M sessions of mixed exploration"),
}


def collection_seeds(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence, int]:
    """The random streams of a collection: ``(users, simulator, policy seed)``.

    ``SeedSequence(seed).spawn(3)`` gives the streams of the users and of the simulator and,
    as the first word of the third stream's state, the int seed of the behaviour policy
    (``agents.behaviour.collection_policy`` builds the policy with it).
    """
    users, simulator, policy = np.random.SeedSequence(seed).spawn(3)
    return users, simulator, int(policy.generate_state(1)[0])


def _collect_wave(sim: Simulator, policy: BehaviourPolicy, users: np.ndarray, rng_sim: np.random.Generator,
                  first_session: int, first_row: int, first_time: int, n_sessions_total: int,
                  n_days: int, timings: dict[str, float]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run fresh sessions for ``users`` to their end; returns (request columns, session columns).

    Adds the seconds spent in the policy and in the simulator to ``timings``.
    """
    w = len(users)
    state = sim.empty_state(w)
    sim.start_sessions(state, np.arange(w), users, rng_sim, carry=False)
    final_obs = np.empty((w, sim.obs_dim), np.float32)
    n_requests = np.zeros(w, np.int16)
    s_terminated = np.zeros(w, bool)
    s_truncated = np.zeros(w, bool)
    session_group = np.zeros(w, np.int8)
    steps: list[dict[str, np.ndarray]] = []
    for req in drive(sim, state, policy, rng=rng_sim, act=lambda obs, user_ids: behaviour_step(policy, obs, user_ids),
                      compact="always", max_steps=sim.config.max_requests):
        _, log_prob, group = req.policy_output
        res, local = req.result, req.index
        if req.t == 0:
            session_group[:] = group
        timings["policy_s"] += req.policy_s
        timings["simulator_s"] += req.simulator_s
        play_time, flags = pack_video_feedback(res.feedback, res.watched)
        steps.append(dict(local=local, obs=req.obs, action=req.actions, log_prob=log_prob, group=group,
                          reward=res.reward, terminated=res.terminated, truncated=res.truncated,
                          request_feedback=res.request_feedback, items=res.items, play_time=play_time, flags=flags))
        done = req.ended
        ended = local[done]
        final_obs[ended] = req.state.obs[done]
        n_requests[ended] = req.t + 1
        s_terminated[ended] = res.terminated[done]
        s_truncated[ended] = res.truncated[done]
    # served order (step-major) -> session-major: a stable sort by session keeps steps in order
    cat = {k: np.concatenate([s[k] for s in steps]) for k in steps[0]}
    n = len(cat["local"])
    time_order = first_time + np.arange(n, dtype=np.int64)
    order = np.argsort(cat["local"], kind="stable")
    local_sorted = cat["local"][order]
    session_id = first_session + local_sorted.astype(np.int64)
    starts = np.zeros(w, np.int64)
    starts[1:] = np.cumsum(n_requests[:-1], dtype=np.int64)
    step = (np.arange(n, dtype=np.int64) - starts[local_sorted]).astype(np.int16)
    day = (session_id * n_days // n_sessions_total).astype(np.int16)
    action = cat["action"][order]
    requests = {
        "session_id": session_id, "user_id": users[local_sorted].astype(np.int32), "day": day,
        "time_order": time_order[order], "step": step, "observation": cat["obs"][order], "action": action,
        "fusion_weights": action_to_alpha(action), "behaviour_log_prob": cat["log_prob"][order],
        "behaviour_group": cat["group"][order], "reward": cat["reward"][order],
        "terminated": cat["terminated"][order], "truncated": cat["truncated"][order],
        "request_feedback": cat["request_feedback"][order], "video_ids": cat["items"][order].astype(np.int32),
        "video_play_time_s": cat["play_time"][order], "video_flags": cat["flags"][order],
    }
    sids = first_session + np.arange(w, dtype=np.int64)
    sessions = {
        "session_id": sids, "user_id": users.astype(np.int32),
        "day": (sids * n_days // n_sessions_total).astype(np.int16), "behaviour_group": session_group,
        "n_requests": n_requests, "first_row": first_row + starts, "terminated": s_terminated,
        "truncated": s_truncated, "final_observation": final_obs,
    }
    return requests, sessions


def collect_dataset(out: str | Path, sim_config: SimConfig, collect: CollectConfig, policy: BehaviourPolicy, *,
                    overwrite: bool = False, progress: bool = True, timings: dict[str, float] | None = None) -> Path:
    """Collect ``collect.n_sessions`` sessions under the behaviour ``policy`` and write them to ``out``.

    policy: the behaviour policy (:class:`~mtf_env.policy.BehaviourPolicy`), for example
    ``agents.behaviour.collection_policy(collect)``, which builds ``collect.policy`` with the
    seed the cards were collected with. The write is atomic (see
    :class:`~mtf_env.dataset_io.DatasetWriter`). Returns the dataset directory.

    timings: if given, filled with wall seconds: ``setup_s`` (simulator construction),
    ``policy_s``, ``simulator_s`` (request steps), ``write_s`` (Parquet encoding, compression
    and hashing in the writer thread, overlapping the rest), ``write_cpu_s`` (the writer
    thread's CPU time) and ``total_s``. They are not
    stored in the dataset, whose bytes depend only on the inputs.
    """
    if not callable(getattr(policy, "act_with_log_prob", None)):
        raise ValueError(f"collect_dataset needs a behaviour policy object with act_with_log_prob, got "
                         f"{type(policy).__name__} (build one with agents.behaviour.collection_policy(collect))")
    out = Path(out)
    users_seed, sim_seed, _ = collection_seeds(collect.seed)
    rng_users, rng_sim = np.random.default_rng(users_seed), np.random.default_rng(sim_seed)
    policy_seed = getattr(policy, "seed", None)
    policy_seed = None if policy_seed is None else int(policy_seed)
    spec = getattr(policy, "spec", None) or getattr(policy, "name", type(policy).__name__)
    groups = list(getattr(policy, "group_names", (spec,)))
    timings = {} if timings is None else timings
    timings.update(setup_s=0.0, policy_s=0.0, simulator_s=0.0, write_s=0.0, write_cpu_s=0.0, total_s=0.0)
    t_start = time.perf_counter()
    version = code_version()  # the code as the collection starts (the tree may change while it runs)
    sim = Simulator(sim_config)
    timings["setup_s"] = time.perf_counter() - t_start
    n_total, bsz = int(collect.n_sessions), int(collect.batch_size)
    n_train = int(np.floor(collect.train_fraction * n_total))
    rows = 0
    terminated = truncated = 0
    bar = tqdm(total=n_total, desc=f"collect {spec}", unit="session", disable=not progress, dynamic_ncols=True)
    with DatasetWriter(out, sim.obs_dim, sim_config.page_size, rows_per_part=collect.rows_per_part,
                       compression=collect.compression, compression_level=collect.compression_level,
                       overwrite=overwrite) as writer:
        for first in range(0, n_total, bsz):
            w = min(bsz, n_total - first)
            users = rng_users.integers(0, sim.population.n_users, size=w)
            requests, sessions = _collect_wave(sim, policy, users, rng_sim, first, rows, rows, n_total,
                                               collect.n_days, timings)
            rows += len(requests["session_id"])
            terminated += int(sessions["terminated"].sum())
            truncated += int(sessions["truncated"].sum())
            writer.write(requests, sessions)
            bar.update(w)
            bar.set_postfix(requests=rows)
        bar.close()
        manifest = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "created_by": version,
            "sim_config": sim_config.to_json(),
            "collection": {
                "policy": spec,
                "requested_policy": collect.policy,
                "target": collect.target,
                "groups": groups,
                "group_rule": ("mixed: behaviour_group = user_id % 2 (0 random, 1 action-noise)"
                               if len(groups) > 1 else "one group"),
                "config": dataclasses.asdict(collect),
                "seeds": {"root": int(collect.seed), "derivation": "SeedSequence(root).spawn(3) -> users, simulator, "
                          "policy (policy seed = first word of the third stream's state; null: a policy of unknown seed)",
                          "policy_seed": policy_seed},
                "sessions": "fresh (carry=False); users drawn uniformly from the population per wave",
            },
            "split": {"train_fraction": collect.train_fraction, "train_sessions": n_train,
                      "test_sessions": n_total - n_train, "rule": "first train_fraction of sessions in time order "
                      "(session_id < train_sessions) train, the rest test"},
            "counts": {"sessions": n_total, "requests": rows, "terminated_sessions": terminated,
                       "truncated_sessions": truncated},
            "obs_dim": sim.obs_dim,
            "page_size": sim_config.page_size,
            "action_dim": N_TASKS,
            "task_names": list(TASK_NAMES),
            "fusion": {"alpha_low": ALPHA_LOW.tolist(), "alpha_high": ALPHA_HIGH.tolist(), "beta": BETA.tolist()},
            "columns": {"requests": REQUEST_COLUMNS, "sessions": SESSION_COLUMNS},
        }
        path = writer.finish(manifest)
        timings["write_s"] = writer.write_seconds
        timings["write_cpu_s"] = writer.write_cpu_seconds
        timings["total_s"] = time.perf_counter() - t_start
        return path
