"""Simple policies: static fusion weights and Gaussian random actions.

``StaticPolicy`` plays the same fusion weights for every request (the way production
systems are usually tuned); ``GaussianPolicy`` draws ``N(mean, std^2)`` actions clipped to
the box from its own seeded generator and reports the log-density of each action.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtf_env.fusion import PRODUCTION_ALPHA, alpha_to_action, validate_action
from mtf_env.policy import check_obs_batch
from mtf_env.tasks import N_TASKS, TASK_NAMES

#: Named static weight vectors (fusion weights alpha, order of mtf_env.tasks).
STATIC_PRESETS: dict[str, np.ndarray] = {
    # the deployed, hand-tuned weights: mostly play time, some integrity, a little interaction
    "production": PRODUCTION_ALPHA,
    # rank by predicted play time alone
    "time-only": np.array([2.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], np.float32),
    # play integrity: finish and long view
    "integrity": np.array([0.3, 1.0, 1.0, -0.3, 0.1, 0, 0, 0, 0, 0, -0.3, -0.3], np.float32),
    # interactions first
    "interaction": np.array([0.2, 0.1, 0.1, -0.2, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -0.3, -0.3], np.float32),
    # avoid negative feedback first
    "cautious": np.array([0.5, 0.3, 0.3, -1.0, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, -1.0, -1.0], np.float32),
    # every task equally (all weights at the middle of their range)
    "uniform": np.array([1.0, 0.5, 0.5, -0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, -0.25, -0.25], np.float32),
}


class StaticPolicy:
    """Plays one fixed action ``(12,)`` in [-1, 1] for every request. Deterministic."""

    stochastic = False

    def __init__(self, action: np.ndarray, name: str = "static"):
        self.action = validate_action(np.asarray(action, dtype=np.float32))
        self.name = name

    @classmethod
    def from_alpha(cls, alpha: np.ndarray, name: str = "static") -> "StaticPolicy":
        return cls(alpha_to_action(alpha), name=name)

    @classmethod
    def preset(cls, name: str) -> "StaticPolicy":
        if name not in STATIC_PRESETS:
            raise ValueError(f"unknown static preset {name!r}; choose one of {sorted(STATIC_PRESETS)}")
        return cls.from_alpha(STATIC_PRESETS[name], name=f"static:{name}")

    @classmethod
    def from_json(cls, path: str | Path) -> "StaticPolicy":
        """A JSON file ``{"alpha": [12 numbers]}`` or ``{"action": [...]}`` or ``{task: alpha, ...}``."""
        path = Path(path)
        try:
            spec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read static weights from {path}: {exc}") from None
        if isinstance(spec, dict) and "action" in spec:
            return cls(np.asarray(spec["action"], np.float32), name=path.stem)
        if isinstance(spec, dict) and "alpha" in spec:
            return cls.from_alpha(np.asarray(spec["alpha"], np.float32), name=path.stem)
        if isinstance(spec, dict) and set(spec) <= set(TASK_NAMES):
            alpha = np.array([spec.get(t, 0.0) for t in TASK_NAMES], np.float32)
            return cls.from_alpha(alpha, name=path.stem)
        raise ValueError(f"{path}: expected {{'alpha': [12]}}, {{'action': [12]}} or {{task: weight}}")

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = check_obs_batch(obs)
        return np.broadcast_to(self.action, (obs.shape[0], N_TASKS)).copy()


class GaussianPolicy:
    """``clip(N(mean, std^2), -1, 1)`` actions from an own generator; stochastic.

    mean: (12,) or a callable ``obs -> (B, 12)`` (a target policy to add noise around);
    std: scalar or (12,). ``log_prob`` is the density of the unclipped Gaussian draw.
    """

    stochastic = True

    def __init__(self, mean, std, seed: int, name: str = "gaussian"):
        self.mean = mean
        self.std = np.broadcast_to(np.asarray(std, np.float32), (N_TASKS,)).copy()
        if np.any(self.std <= 0) or not np.all(np.isfinite(self.std)):
            raise ValueError("std must be positive and finite")
        self.rng = np.random.default_rng(seed)
        self.name = name
        self.last_log_prob: np.ndarray | None = None

    def _mean(self, obs: np.ndarray) -> np.ndarray:
        if callable(getattr(self.mean, "act", None)):
            return self.mean.act(obs)
        return np.broadcast_to(np.asarray(self.mean, np.float32), (obs.shape[0], N_TASKS))

    def act_with_log_prob(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions (B, 12) float32 and the log-density (B,) of each draw."""
        obs = check_obs_batch(obs)
        mean = self._mean(obs)
        noise = self.rng.standard_normal(mean.shape).astype(np.float32)
        raw = mean + noise * self.std
        log_prob = (-0.5 * noise**2 - np.log(self.std) - 0.5 * np.log(2 * np.pi)).sum(1)
        self.last_log_prob = log_prob.astype(np.float32)
        return np.clip(raw, -1.0, 1.0).astype(np.float32), self.last_log_prob

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.act_with_log_prob(obs)[0]
