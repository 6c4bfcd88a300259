"""Plain transition arrays ``(s, a, r, s', terminal)`` for our own agents and estimators."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TransitionArrays:
    """N transitions of the session MDP.

    observations: (N, obs_dim) float32; actions: (N, 12) float32 in [-1, 1];
    rewards: (N,) float32; next_observations: (N, obs_dim) float32;
    terminals: (N,) bool, True where the user exited (no bootstrap);
    timeouts: (N,) bool, True where the session was cut off at the request limit
    (bootstrap from next_observations); episode_starts: (N,) bool, True on the first
    request of each session (the initial states used by the estimator).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_starts: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.observations)
        for name in ("actions", "rewards", "next_observations", "terminals", "timeouts", "episode_starts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"TransitionArrays.{name} has length {len(getattr(self, name))}, expected {n}")
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise ValueError("observations and actions must be 2-D (N, dim)")
        if np.any(self.terminals & self.timeouts):
            raise ValueError("a transition cannot be both terminal and a timeout")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def initial_observations(self) -> np.ndarray:
        """(n_sessions, obs_dim) observations at the start of each session."""
        return self.observations[self.episode_starts]
