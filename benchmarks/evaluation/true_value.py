"""True values: the expected discounted session return of a policy from given initial states.

:func:`true_value` rolls out fresh sessions (the session-level MDP, no day model) of the
initial states' users by Monte Carlo and returns :class:`TrueValue` -- the exact value of a
policy that no real platform can know, for judging off-policy estimators.
:func:`dataset_initial_states` gives the initial states of a logged dataset's split.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.rewards import reward_weights

@dataclass(frozen=True)
class TrueValue:
    """Monte-Carlo value of a policy from given initial states.

    value: mean discounted session return over all rollouts; se: its standard error given the
    initial states (Monte-Carlo error only, from the within-state spread; needs
    n_rollouts >= 2; with one rollout per state it is the total spread, an upper bound);
    se_population: the standard error over the initial states (treating them as a sample of the
    initial-state distribution: spread of the per-state means); per_state: (n_states,) means.
    """

    value: float
    se: float
    se_population: float
    n_states: int
    n_rollouts: int
    gamma: float
    per_state: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "se": self.se, "se_population": self.se_population, "n_states": self.n_states,
                "n_rollouts": self.n_rollouts, "gamma": self.gamma}


def dataset_initial_states(dataset, split: str = "test") -> tuple[np.ndarray, SimConfig]:
    """The initial states of a logged dataset's ``split``: (user ids (n,) int64, the collection's SimConfig).

    dataset: a directory (opened with :func:`mtf_env.dataset.load_dataset`, structure checks
    only) or an already loaded ``mtf_env.dataset.Dataset`` (its own split is used). A fresh
    session of each of those users is exactly the logged initial state (datasets collect
    fresh sessions), so the true value needs only the user ids and the world.
    """
    if isinstance(dataset, (str, Path)):
        from mtf_env.dataset import load_dataset

        dataset = load_dataset(dataset, split=split, verify_checksums=False, validate="structure")
    ids = getattr(dataset, "initial_user_ids", None)
    config = getattr(dataset, "config", None)
    if ids is None or not isinstance(config, SimConfig):
        raise ValueError(f"{type(dataset).__name__} is not a dataset (no initial_user_ids / config)")
    return np.asarray(ids, dtype=np.int64), config


def true_value(policy, initial: str | Path | Sequence[int] | np.ndarray, gamma: float = 0.95, n_rollouts: int = 4,
               seed: int = 0, config: SimConfig | None = None, reward: Any = None, split: str = "test",
               block_size: int = 8192, show_progress: bool = False, sim: Simulator | None = None) -> TrueValue:
    """Expected discounted session return ``E[sum_k gamma^k r_k]`` of ``policy`` from fresh sessions.

    initial: user ids (n,) of the initial states, or a logged dataset (directory or loaded
    ``Dataset``): its ``split`` sessions' users in the dataset's own world (see
    :func:`dataset_initial_states`; a ``config`` that differs from the dataset's is refused). Each user gets ``n_rollouts`` independent
    sessions (``mtf_env.rollout.rollout_sessions``: fixed-shape draws, policy called once per
    request for the whole block). reward: preset/weights (None: ``config.reward``).
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    if not isinstance(n_rollouts, (int, np.integer)) or n_rollouts < 1:
        raise ValueError(f"n_rollouts must be a positive integer, got {n_rollouts!r}")
    from mtf_env.rollout import rollout_sessions

    if isinstance(initial, (np.ndarray, list, tuple)):
        ids = np.asarray(initial)
    else:  # a dataset: its split's users, in the world it was collected in
        ids, data_config = dataset_initial_states(initial, split)
        given = sim.config if sim is not None else config
        if given is not None and given.to_json() != data_config.to_json():
            raise ValueError("the dataset was collected with a different SimConfig than the one given; "
                             "pass config=None to use the dataset's")
        config = data_config
    if sim is None:
        sim = Simulator(config if config is not None else SimConfig())
    if ids.ndim != 1 or ids.size < 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"initial states must be a 1-D integer array of user ids, got shape {ids.shape} "
                         f"dtype {ids.dtype}")
    if n_rollouts == 1 and ids.size < 2:
        raise ValueError("need at least 2 rollouts in all to estimate a standard error")
    weights = reward_weights(sim.config.reward if reward is None else reward)
    n_states = ids.size
    rolled = rollout_sessions(sim, policy, np.tile(ids.astype(np.int64), n_rollouts),
                              seed=int(seed),
                              gamma=gamma, batch_size=block_size, show_progress=show_progress)
    returns = rolled.returns(weights, discounted=True).reshape(n_rollouts, n_states)
    per_state = returns.mean(axis=0)
    value = float(returns.mean())
    if n_rollouts >= 2:
        within = returns.var(axis=0, ddof=1).mean()
        se = float(math.sqrt(within / (n_states * n_rollouts)))
    else:
        se = float(returns.std(ddof=1) / math.sqrt(returns.size))
    se_pop = float(per_state.std(ddof=1) / math.sqrt(n_states)) if n_states > 1 else float("nan")
    return TrueValue(value=value, se=se, se_population=se_pop, n_states=n_states, n_rollouts=int(n_rollouts),
                     gamma=float(gamma), per_state=per_state)
