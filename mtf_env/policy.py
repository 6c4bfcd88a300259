"""The policy protocols the simulator drives: ``Policy`` (acts) and ``BehaviourPolicy`` (logs data).

A policy maps a batch of observations to a batch of actions in the action box
``[-1, 1]^12`` (the fusion weights are ``mtf_env.fusion.action_to_alpha(action)``).
Every agent, baseline and behaviour policy implements :class:`Policy`; the A/B platform,
the rollouts and the estimators accept any of them and call ``act`` once per vector step
for the whole batch. The dataset collector needs more of a policy, the log-density of
each action it took and the behaviour group of each row: :class:`BehaviourPolicy`, read
through :func:`behaviour_step`. The behaviour policies themselves are built in the agents
layer (``agents.behaviour.make_behaviour_policy``).
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


@runtime_checkable
class BehaviourPolicy(Protocol):
    """A policy that logs data: ``act_with_log_prob(obs (B, obs_dim)) -> (actions (B, 12), log_prob (B,))``.

    ``log_prob`` is the log-density of each action the policy took (nats). Optional members,
    read by :func:`behaviour_step` and the collector when present:

    - ``set_users(user_ids (B,))``: called before each ``act_with_log_prob`` with the user of
      every row (for policies that treat user groups differently);
    - ``group_ids(user_ids (B,)) -> (B,) int``: the behaviour group of every row (default all 0);
    - ``group_names``: names of the groups, index = group id (default one group named by ``spec``);
    - ``spec``: the policy's canonical name, recorded in the dataset manifest;
    - ``seed``: the int seed its generator was built from, recorded in the manifest (None: unknown).
    """

    def act_with_log_prob(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


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


def behaviour_step(policy: BehaviourPolicy, obs: np.ndarray,
                   user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of behaviour actions: ``(actions (B, 12) float32, log_prob (B,) float32, group (B,) int8)``.

    Calls ``policy.set_users(user_ids)`` when the policy has it; the policy must offer
    ``act_with_log_prob`` (deterministic policies have no log-density: wrap them in
    ``action-noise:TARGET``).
    """
    act_with_log_prob = getattr(policy, "act_with_log_prob", None)
    if act_with_log_prob is None:
        raise ValueError(f"{getattr(policy, 'name', type(policy).__name__)} reports no log-density of its actions; "
                         "log data with a behaviour policy (production, random, action-noise:TARGET, mixed)")
    set_users = getattr(policy, "set_users", None)
    if set_users is not None:
        set_users(user_ids)
    actions, log_prob = act_with_log_prob(obs)
    group_ids = getattr(policy, "group_ids", None)
    group = group_ids(user_ids) if group_ids is not None else np.zeros(len(obs), np.int8)
    return np.asarray(actions, np.float32), np.asarray(log_prob, np.float32), np.asarray(group, np.int8)
