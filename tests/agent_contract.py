"""The contract every trainable agent (BatchRL-MTF, TD3, CQL+SAC, ...) passes.

Call :func:`check_agent_contract` from an agent's own test module with a factory for tiny
agents and a small synthetic :class:`~mtf_env.transitions.TransitionArrays`.

The agent-side API the contract relies on:

* ``make_agent(seed) -> agent``: a fresh, untrained agent with tiny network sizes (the
  contract calls it several times; ``seed`` is the same value later passed to ``fit``).
* ``agent.fit(data, n_steps, seed=..., out_dir=..., show_progress=False)``: trains from
  freshly initialised weights for ``n_steps`` gradient steps, all randomness from ``seed``;
  with ``out_dir`` it writes ``config.json`` and ``metrics.csv`` (a ``step`` column first,
  then namespaced metrics such as ``train/critic_loss``; the last row is at ``n_steps``).
  ``out_dir=None`` writes nothing.
* ``agent.act(obs)``: the :class:`mtf_env.policy.Policy` protocol, ``(B, obs_dim) float32 ->
  (B, action_dim) float32`` in ``[-1, 1]``, deterministic unless ``agent.stochastic`` is
  true; ``ValueError`` for observations that are not ``(B, obs_dim)``.
* ``agent.save(run_dir)`` and ``type(agent).load(run_dir)``: the loaded agent acts identically.
* ``agent.state_dict()``: a flat ``{name: torch.Tensor}`` of every weight (targets included),
  used to compare two trainings.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mtf_env.policy import Policy
from mtf_env.tasks import N_TASKS
from mtf_env.transitions import TransitionArrays


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys(), f"state dict keys differ: {sorted(set(a) ^ set(b))[:5]}"
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"same seed gave different weights in {different[:5]}"


def check_agent_contract(
    make_agent: Callable[[int], Any],
    data: TransitionArrays,
    tmp_path: Path,
    n_steps: int = 20,
    action_dim: int = N_TASKS,
) -> None:
    """Check the contract above; raises ``AssertionError`` naming the broken clause."""
    tmp_path = Path(tmp_path)
    obs = data.observations[:7]

    # fit runs n_steps and writes its run directory
    run_dir = tmp_path / "run"
    agent = make_agent(0)
    agent.fit(data, n_steps, seed=0, out_dir=run_dir, show_progress=False)
    assert (run_dir / "config.json").is_file(), "fit(out_dir=...) wrote no config.json"
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "fit(out_dir=...) wrote no metrics rows"
    assert int(float(rows[-1]["step"])) == n_steps, f"last metrics row is at step {rows[-1]['step']}, not {n_steps}"
    metric_names = [k for k in rows[-1] if k != "step"]
    assert metric_names and all("/" in k for k in metric_names), f"metric names are not namespaced: {metric_names}"
    assert all(math.isfinite(float(rows[-1][k])) for k in metric_names), f"non-finite metrics: {rows[-1]}"

    # act: the Policy protocol
    assert isinstance(agent, Policy)
    actions = agent.act(obs)
    assert isinstance(actions, np.ndarray) and actions.dtype == np.float32, f"act returned {type(actions)}"
    assert actions.shape == (len(obs), action_dim), f"act returned shape {actions.shape}"
    assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0), "actions not finite or outside [-1, 1]"
    assert agent.act(obs[:1]).shape == (1, action_dim)
    if not getattr(agent, "stochastic", False):
        np.testing.assert_array_equal(agent.act(obs), actions, err_msg="act is not deterministic")

    # bad observation shapes
    for bad in (np.zeros((3, data.obs_dim + 1), np.float32), np.zeros(data.obs_dim, np.float32)):
        try:
            agent.act(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"act accepted observations of shape {bad.shape}")

    # save / load round trip
    saved = tmp_path / "saved"
    agent.save(saved)
    loaded = type(agent).load(saved)
    np.testing.assert_array_equal(loaded.act(obs), actions, err_msg="the loaded agent acts differently")

    # determinism: same seed -> same weights; another seed -> other weights
    again = make_agent(0)
    again.fit(data, n_steps, seed=0, out_dir=None, show_progress=False)
    _assert_same_weights(agent.state_dict(), again.state_dict())
    other = make_agent(1)
    other.fit(data, n_steps, seed=1, out_dir=None, show_progress=False)
    own, theirs = agent.state_dict(), other.state_dict()
    assert any(not torch.equal(own[k], theirs[k]) for k in own), "a different seed gave identical weights"
