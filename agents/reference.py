"""Reference policies: fusion weights as a linear function of observable features (not an agent).

A :class:`LinearFeaturePolicy` plays

    ``action(s) = clip(bias + W @ z(s) + S @ [r, r^2], -1, 1)``

with ``z(s) = (s[features] - mean) / scale`` a few standardised observation features (the
user's profile and history statistics, which are fixed within a session) and ``r`` the
request index of the session as the observation holds it (``obs[request_index]``, in
``[0, 1]``). ``W = 0`` and ``S = 0`` give static weights; ``S = 0`` weights personalised
from observable features; both give personalised weights with a schedule over the request.

These policies are *references*, found by direct search in the simulator
(``benchmarks.evaluation.ceiling``, "the ceiling"), which no real platform can run: they
measure how far a trained policy is from the best policy we can find, they are not agents
and learn nothing from logged data. They are stored as a small JSON file
(``{"format": "mtf-linear-policy/1", ...}``, no pickle) that
:func:`agents.algos.load_fixed_policy` (and so ``agents.registry.load_policy``,
``mtf-bench ab --treatment FILE``) loads.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mtf_env.files import write_json
from mtf_env.policy import check_obs_batch
from mtf_env.tasks import N_TASKS

#: The ``format`` tag of a reference policy file.
LINEAR_POLICY_FORMAT = "mtf-linear-policy/1"


class LinearFeaturePolicy:
    """``clip(bias + W z(s) + S [r, r^2])`` (see the module docstring). Deterministic.

    obs_dim: observation size; features: (F,) int observation columns of ``z``; mean, scale:
    (F,) their standardisation; bias: (12,); weights: (12, F); request_index: the observation
    column of the request index (None: no schedule); schedule: (12, 2).
    """

    stochastic = False

    def __init__(self, obs_dim: int, bias: np.ndarray, features: np.ndarray | None = None,
                 mean: np.ndarray | None = None, scale: np.ndarray | None = None, weights: np.ndarray | None = None,
                 request_index: int | None = None, schedule: np.ndarray | None = None, name: str = "reference"):
        self.obs_dim = int(obs_dim)
        self.bias = np.asarray(bias, np.float64).reshape(N_TASKS)
        self.features = np.asarray([] if features is None else features, np.int64).reshape(-1)
        f = len(self.features)
        self.mean = np.zeros(f) if mean is None else np.asarray(mean, np.float64).reshape(f)
        self.scale = np.ones(f) if scale is None else np.asarray(scale, np.float64).reshape(f)
        self.weights = np.zeros((N_TASKS, f)) if weights is None else np.asarray(weights, np.float64).reshape(N_TASKS, f)
        self.request_index = None if request_index is None else int(request_index)
        self.schedule = (np.zeros((N_TASKS, 2)) if schedule is None
                         else np.asarray(schedule, np.float64).reshape(N_TASKS, 2))
        if np.any(self.scale <= 0) or not all(np.all(np.isfinite(a)) for a in
                                              (self.bias, self.mean, self.scale, self.weights, self.schedule)):
            raise ValueError("reference policy: parameters must be finite and scales positive")
        if f and (self.features.min() < 0 or self.features.max() >= self.obs_dim):
            raise ValueError(f"reference policy: feature columns must lie in [0, {self.obs_dim})")
        if self.request_index is not None and not 0 <= self.request_index < self.obs_dim:
            raise ValueError(f"reference policy: request_index must lie in [0, {self.obs_dim})")
        self.name = name

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = check_obs_batch(obs, self.obs_dim).astype(np.float64)
        action = np.broadcast_to(self.bias, (len(obs), N_TASKS)).copy()
        if len(self.features):
            action += ((obs[:, self.features] - self.mean) / self.scale) @ self.weights.T
        if self.request_index is not None:
            r = obs[:, self.request_index:self.request_index + 1]
            action += np.concatenate([r, r * r], axis=1) @ self.schedule.T
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ file
    def to_json(self) -> dict[str, Any]:
        return {"format": LINEAR_POLICY_FORMAT, "name": self.name, "obs_dim": self.obs_dim,
                "bias": self.bias.tolist(), "features": self.features.tolist(), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "request_index": self.request_index, "schedule": self.schedule.tolist()}

    def save(self, path: str | Path, **extra: Any) -> Path:
        """Write the policy (plus ``extra`` JSON fields, e.g. how it was found) to ``path``."""
        path = Path(path)
        write_json(path, {**self.to_json(), **extra})
        return path

    @classmethod
    def from_json(cls, spec: dict[str, Any], name: str | None = None) -> "LinearFeaturePolicy":
        if not isinstance(spec, dict) or spec.get("format") != LINEAR_POLICY_FORMAT:
            raise ValueError(f"not a reference policy (format {LINEAR_POLICY_FORMAT!r})")
        try:
            return cls(spec["obs_dim"], spec["bias"], spec.get("features"), spec.get("mean"), spec.get("scale"),
                       spec.get("weights"), spec.get("request_index"), spec.get("schedule"),
                       name=name or spec.get("name", "reference"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid reference policy: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> "LinearFeaturePolicy":
        path = Path(path)
        try:
            spec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read a reference policy from {path}: {exc}") from None
        try:
            return cls.from_json(spec, name=spec.get("name") if isinstance(spec, dict) else None)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
