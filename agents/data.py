"""Logged transitions as training data: validation, torch tensors, minibatch indices and a fingerprint."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from mtf_env.transitions import TransitionArrays


def sample_batch_indices(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
    """Uniform indices with replacement into a buffer of ``n`` transitions."""
    return rng.integers(0, n, size=batch_size)


def data_to_tensors(data: TransitionArrays) -> dict[str, torch.Tensor]:
    """The transition arrays as float32 tensors (``not_done`` = 1 - terminal)."""
    return {
        "obs": torch.as_tensor(data.observations, dtype=torch.float32),
        "action": torch.as_tensor(data.actions, dtype=torch.float32),
        "reward": torch.as_tensor(data.rewards, dtype=torch.float32).reshape(-1, 1),
        "next_obs": torch.as_tensor(data.next_observations, dtype=torch.float32),
        "not_done": torch.as_tensor(1.0 - data.terminals.astype(np.float32)).reshape(-1, 1),
    }


def data_fingerprint(data: TransitionArrays) -> str:
    """SHA-256 hex digest of the arrays that define training (observations, actions, rewards,
    next_observations, terminals, timeouts): checkpoints store it to refuse resuming on other data."""
    digest = hashlib.sha256()
    for field in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        digest.update(np.ascontiguousarray(getattr(data, field)).tobytes())
    return digest.hexdigest()


def check_transitions(data: Any, *, actions_in_box: bool = True) -> None:
    """Refuse (``ValueError``) data an agent would silently mistrain on.

    ``data`` must be a non-empty :class:`TransitionArrays` with positive observation and action
    sizes and finite observations, actions, rewards and next observations; with
    ``actions_in_box`` its actions must lie in ``[-1, 1]`` (the policies' tanh range).
    """
    if not isinstance(data, TransitionArrays):
        raise ValueError(f"data must be a TransitionArrays, got {type(data).__name__}")
    if len(data) < 1:
        raise ValueError("data holds no transitions")
    if data.action_dim < 1 or data.obs_dim < 1:
        raise ValueError(f"data has obs_dim {data.obs_dim} and action_dim {data.action_dim}")
    if data.next_observations.shape != data.observations.shape:
        raise ValueError(
            f"next_observations have shape {data.next_observations.shape}, observations {data.observations.shape}"
        )
    for name in ("observations", "actions", "rewards", "next_observations"):
        if not np.all(np.isfinite(getattr(data, name))):
            raise ValueError(f"data.{name} holds non-finite values (NaN or infinite)")
    if actions_in_box and np.abs(data.actions).max() > 1.0:
        raise ValueError(f"data.actions must lie in [-1, 1] (the policies' tanh range), "
                         f"max |a| = {np.abs(data.actions).max()}")
