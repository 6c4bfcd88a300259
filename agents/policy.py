"""The one ``Policy`` protocol every agent, baseline and behaviour policy implements.

A policy maps a batch of observations to a batch of actions in the action box
``[-1, 1]^12`` (the fusion weights are ``mtf_env.fusion.action_to_alpha(action)``).
The A/B platform, the dataset collector and the estimator accept any ``Policy`` and call
``act`` once per vector step for the whole batch.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """``act(obs: (B, obs_dim) float32) -> (B, 12) float32 in [-1, 1]``.

    Deterministic unless the policy says otherwise (``stochastic = True``); a stochastic
    policy draws from its own seeded generator. ``reset(batch_mask)`` is optional and is
    called with a ``(B,)`` bool mask of the rows whose session just started.
    """

    def act(self, obs: np.ndarray) -> np.ndarray: ...


def check_obs_batch(obs: np.ndarray, obs_dim: int | None = None) -> np.ndarray:
    """Validate a ``(B, obs_dim)`` observation batch; returns it as float32."""
    obs = np.asarray(obs)
    if obs.ndim != 2:
        raise ValueError(f"observations must have shape (B, obs_dim), got shape {obs.shape}")
    if obs_dim is not None and obs.shape[1] != obs_dim:
        raise ValueError(f"observations have {obs.shape[1]} features, the policy expects {obs_dim}")
    return obs.astype(np.float32, copy=False)


def reset_policy(policy: object, batch_mask: np.ndarray) -> None:
    """Call ``policy.reset(batch_mask)`` if the policy has one."""
    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset(batch_mask)
