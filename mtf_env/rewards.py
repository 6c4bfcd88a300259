"""Reward of a request: ``r = sum_i w_i v_i`` over the page's summed feedback ``v``.

``v`` (12, order of :mod:`mtf_env.tasks`) sums the feedback of the videos the user watched
on the page: play time in seconds, and counts of finishes, long views, skips, likes,
shares, comments, follows, collects, profile visits, hates and the exit (0 or 1).
Presets follow the paper's reward variants (Section 4.4.2): ``time`` triples the play-time
weight, ``integrity`` the finish and long-view weights, ``interaction`` the six positive
interactions.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .tasks import N_TASKS, POSITIVE_INTERACTIONS, TASK_INDEX, TASK_NAMES

_DEFAULT = {
    "play_time": 0.002,  # per second: 1 minute of play ~ 0.12, about one like
    "finish": 0.2,
    "long_view": 0.1,
    "skip": -0.05,
    "like": 0.5,
    "share": 1.0,
    "comment": 0.8,
    "follow": 1.5,
    "collect": 0.5,
    "profile_visit": 0.2,
    "hate": -2.0,
    "exit": 0.0,         # the cost of an exit is the lost future reward
}


def _preset(scale: Mapping[str, float]) -> np.ndarray:
    w = np.array([_DEFAULT[name] for name in TASK_NAMES], dtype=np.float64)
    for name, factor in scale.items():
        w[TASK_INDEX[name]] *= factor
    return w.astype(np.float32)


REWARD_PRESETS: dict[str, np.ndarray] = {
    "default": _preset({}),
    "time": _preset({"play_time": 3.0}),
    "integrity": _preset({"finish": 3.0, "long_view": 3.0}),
    "interaction": _preset({name: 3.0 for name in POSITIVE_INTERACTIONS}),
}


def reward_weights(spec: str | Sequence[float] | Mapping[str, float] | np.ndarray) -> np.ndarray:
    """Resolve a reward spec to a (12,) float32 weight vector.

    spec: a preset name (``default``, ``time``, ``integrity``, ``interaction``), a sequence of
    12 weights, or a mapping task name -> weight (missing tasks get weight 0).
    """
    if isinstance(spec, str):
        if spec not in REWARD_PRESETS:
            raise ValueError(f"unknown reward preset {spec!r}; choose one of {sorted(REWARD_PRESETS)} or give 12 weights")
        return REWARD_PRESETS[spec].copy()
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(TASK_NAMES))
        if unknown:
            raise ValueError(f"unknown reward task(s) {unknown}; tasks are {list(TASK_NAMES)}")
        w = np.zeros(N_TASKS, dtype=np.float32)
        for name, value in spec.items():
            w[TASK_INDEX[name]] = float(value)
    else:
        w = np.asarray(spec, dtype=np.float32)
        if w.shape != (N_TASKS,):
            raise ValueError(f"reward weights must have shape ({N_TASKS},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("reward weights must be finite")
    return w


def compute_reward(feedback: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rewards ``r = sum_i w_i v_i`` (...,) float32 from feedback ``v`` (..., 12) and weights ``w`` (12,).

    The one reward computation of the numpy code (relabelling logged data, session returns,
    A/B metrics). Accumulates in float64 task by task, in task order, like the simulator's
    step kernel, so on a request's float32 page feedback it equals the simulator's reward
    bit for bit; ``v`` keeps its own precision (session sums are float64).
    """
    v = np.asarray(feedback)
    w = np.asarray(weights, dtype=np.float32).astype(np.float64)
    if v.shape[-1:] != (N_TASKS,) or w.shape != (N_TASKS,):
        raise ValueError(f"feedback must end in {N_TASKS} tasks and weights have shape ({N_TASKS},), "
                         f"got {v.shape} and {w.shape}")
    r = np.zeros(v.shape[:-1], np.float64)
    for t in range(N_TASKS):
        r += v[..., t].astype(np.float64) * w[t]
    return r.astype(np.float32)
