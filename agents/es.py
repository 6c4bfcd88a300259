"""``es``: an evolution strategy over a small network mapping the state to fusion weights.

The paper's second baseline (Section 4.4.1): a personalised fusion policy searched online
by perturbing its parameters, optimising the *immediate* reward of the request (no
long-term credit). Here:

* Policy: ``obs (B, obs_dim) -> tanh(W2 tanh(W1 obs + b1) + b2) (B, 12)``, one hidden layer
  of ``hidden = (32,)`` tanh units by default (:func:`agents.nets.mlp`); the action is the
  output, in ``[-1, 1]``. With ``init="production"`` the output layer starts at zero weights
  and ``b2 = atanh(production action)``, so the search starts from the production weights
  for every user (where a platform would start); ``init="random"`` keeps the default
  initialisation.
* One *iteration*: ``n_pairs`` antithetic Gaussian perturbations ``theta +- sigma * eps_i``
  of the flat parameter vector ``theta``; each of the ``2 * n_pairs`` candidates is evaluated
  online on ``n_users`` fresh users, one fresh session each
  (:func:`mtf_env.rollout.rollout_sessions`). With ``common_random_numbers`` (default) all
  candidates of an iteration serve the same users with the same random numbers -- a
  simulator-only variance reduction; ``False`` gives every candidate its own users, as
  separate traffic buckets would on a live platform.
* Fitness (``objective``): ``immediate`` (default, the paper's) -- the mean immediate reward
  per request over all requests of the candidate's sessions; ``session`` -- the mean session
  return; ``discounted`` -- the mean discounted session return (``gamma``).
* Step: fitnesses are replaced by their centred ranks ``u in [-0.5, 0.5]`` (rank
  normalisation, Salimans et al. 2017), the search gradient is
  ``g = sum_i (u_i+ - u_i-) eps_i / (2 n_pairs sigma)`` and ``theta <- theta + lr * g``: for
  an isotropic Gaussian search distribution of fixed ``sigma`` this plain step on the mean
  is the natural-gradient step of NES (Wierstra et al. 2014), with fitness shaping by ranks.
  No Adam and no weight decay, unlike OpenAI's ES code (differences recorded in
  :data:`agents.baseline_settings.ONLINE_SETTINGS`).

``fit(n_steps=...)``: ``n_steps`` is the number of ES iterations; each serves
``2 * n_pairs * n_users`` sessions. The online budget (candidate evaluations, sessions,
requests) is written to ``budget.json`` and as cumulative ``online/*`` columns of
``metrics.csv``.

Randomness: the initial weights come from ``SeedSequence(seed)``; each iteration's
perturbations, users and rollout seeds from ``SeedSequence([seed, stream, iteration])``, so
a resumed run is identical to an uninterrupted one.

Run directory: ``config.json``, ``metrics.csv``, ``checkpoint.pt`` (``theta``, step, budget;
``weights_only``) and ``budget.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from agents.checkpoint import CheckpointError
from agents.config import ConfigBase
from agents.baseline_settings import ES_SIGMA
from agents.nets import mlp
from agents.online import (OBJECTIVES, OnlineAgent, OnlineBudget, draw_users, normalise_reward, rollout_objective,
                           round_rng)
from agents.seeding import seed_from
from mtf_env.policy import check_obs_batch
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.fusion import PRODUCTION_ALPHA, alpha_to_action
from mtf_env.rewards import reward_weights
from mtf_env.rollout import rollout_sessions
from mtf_env.tasks import N_TASKS
from mtf_env.transitions import TransitionArrays

ALGO_NAME = "es"
CHECKPOINT_FORMAT = "es-checkpoint/1"
# random streams of an iteration (agents.online.round_rng)
_STREAM_NOISE, _STREAM_USERS, _STREAM_ROLLOUT = 1, 2, 3
#: Largest |action| the production initialisation puts through atanh (keeps the bias finite).
_ATANH_CLIP = 0.999


@dataclass(frozen=True)
class ESConfig(ConfigBase):
    """Settings of the evolution strategy."""

    n_steps: int = 100
    """ES iterations of a full run (``fit``'s default ``n_steps``)."""
    hidden: tuple[int, ...] = (32,)
    """Hidden layer widths of the state -> weights network (tanh units)."""
    n_pairs: int = 8
    """Antithetic perturbation pairs per iteration (``2 * n_pairs`` candidates)."""
    sigma: float = ES_SIGMA
    """Standard deviation of the parameter perturbations."""
    lr: float = 0.01
    """Step size of the (rank-shaped) natural-gradient step on the parameters."""
    n_users: int = 500
    """Fresh users (one session each) per candidate evaluation."""
    objective: str = "immediate"
    """Fitness: ``immediate`` (mean reward per request, the paper's), ``session`` or ``discounted`` return."""
    common_random_numbers: bool = True
    """All candidates of an iteration serve the same users with the same random numbers (simulator-only)."""
    init: str = "production"
    """``production``: start at the production weights for every state; ``random``: default initialisation."""
    reward: Any = "default"
    """Reward of the fitness: preset name, 12 weights or a task -> weight mapping."""
    gamma: float = 0.95
    """Discount of the ``discounted`` objective."""
    rollout_batch: int = 8192
    """Sessions simulated together (speed only)."""

    def __post_init__(self) -> None:
        self.check_widths("hidden")
        self.check_positive_ints("n_steps", "n_pairs", "rollout_batch")
        self.check_positive_ints("n_users", minimum=2)
        self.check_positive("sigma", "lr")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"ESConfig.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.init not in ("production", "random"):
            raise ValueError(f"ESConfig.init must be 'production' or 'random', got {self.init!r}")
        self.check_range("gamma", 0.0, 1.0, low_open=True)
        normalise_reward(self)


def centred_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks of ``values`` (n,) scaled to ``[-0.5, 0.5]`` (ties broken by position); n = 1 gives 0."""
    n = len(values)
    ranks = np.empty(n)
    ranks[np.argsort(values, kind="stable")] = np.arange(n)
    return ranks / max(n - 1, 1) - 0.5


class _FlatMLP:
    """The tanh MLP as a function of a flat parameter vector (torch's ``Linear`` layout, float32).

    ``shapes``: [(out, in), ...] of the weight matrices; the vector holds each layer's weight
    (row-major) then bias, layer by layer (``torch.nn.utils.parameters_to_vector`` order).
    """

    def __init__(self, theta: np.ndarray, shapes: list[tuple[int, int]]):
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        at = 0
        theta = np.asarray(theta, dtype=np.float32)
        for out_dim, in_dim in shapes:
            w = theta[at:at + out_dim * in_dim].reshape(out_dim, in_dim)
            at += out_dim * in_dim
            b = theta[at:at + out_dim]
            at += out_dim
            self.layers.append((np.ascontiguousarray(w.T), b))
        if at != len(theta):
            raise ValueError(f"parameter vector has {len(theta)} entries, the network needs {at}")

    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs (B, obs_dim) float32 -> actions (B, 12) float32 in [-1, 1]."""
        h = obs
        for w, b in self.layers:
            h = np.tanh(h @ w + b)
        return h.astype(np.float32, copy=False)


class EvolutionStrategy(OnlineAgent):
    """The ``es`` baseline; after ``fit`` (or ``load``) a deterministic :class:`mtf_env.policy.Policy`.

    Usage::

        es = EvolutionStrategy(ESConfig(), sim_config=dataset.config)
        es.fit(n_steps=100, seed=0, out_dir="runs/es")   # 100 iterations
        es.act(obs)                                       # (B, 12) per-state fusion weights
        es.budget                                         # OnlineBudget(rounds, sessions, requests, ...)
    """

    algo_name = ALGO_NAME
    config_class = ESConfig
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_kind = "an es checkpoint"
    checkpoint_keys = ("theta", "budget")
    step_unit = "iteration"
    budget_unit = "candidate evaluations of fresh sessions"
    budget_steps_key = "iterations"

    def __init__(self, config: ESConfig | None = None, sim_config: SimConfig | Mapping[str, Any] | None = None):
        super().__init__(config, sim_config)
        self.theta: np.ndarray | None = None  # (n_params,) float32
        self.budget = OnlineBudget(users_per_round=self.config.n_users)
        # the network's layout: a template module (its weights are never used, theta is)
        self._net = self._make_net(torch.Generator().manual_seed(0))
        self._shapes = [tuple(m.weight.shape) for m in self._net if isinstance(m, nn.Linear)]

    def _make_net(self, generator: torch.Generator) -> nn.Sequential:
        return mlp(self.obs_dim, self.config.hidden, N_TASKS, generator=generator, activation=nn.Tanh,
                   output_activation=nn.Tanh)

    def _initial_theta(self, seed: int) -> np.ndarray:
        net = self._make_net(torch.Generator().manual_seed(seed_from(np.random.SeedSequence(seed))))
        if self.config.init == "production":
            out = [m for m in net if isinstance(m, nn.Linear)][-1]
            production = np.clip(alpha_to_action(PRODUCTION_ALPHA), -_ATANH_CLIP, _ATANH_CLIP)
            with torch.no_grad():
                out.weight.zero_()
                out.bias.copy_(torch.as_tensor(np.arctanh(production)))
        return torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().astype(np.float32)

    @property
    def n_params(self) -> int:
        return sum(o * i + o for o, i in self._shapes)

    # ------------------------------------------------------------------ one iteration
    def _evaluate(self, sim: Simulator, theta: np.ndarray, users: np.ndarray, rollout_seed: int) -> float:
        cfg = self.config
        rolled = rollout_sessions(sim, _FlatMLP(theta, self._shapes), users, seed=rollout_seed, gamma=cfg.gamma,
                                  batch_size=cfg.rollout_batch)
        self.budget.add_rollout(rolled)
        return rollout_objective(rolled, reward_weights(cfg.reward), cfg.objective)[0]

    def _train_step(self, t: int) -> dict[str, float]:
        """Evaluate ``2 * n_pairs`` antithetic candidates online and step theta (fit_loop's ``update``)."""
        cfg, sim = self.config, self._sim
        eps = round_rng(self.seed, _STREAM_NOISE, t).standard_normal((cfg.n_pairs, self.n_params))  # (n, P)
        theta = self.theta.astype(np.float64)
        candidates = np.concatenate([theta + cfg.sigma * eps, theta - cfg.sigma * eps])  # (2n, P): + then -
        users_rng, seeds_rng = round_rng(self.seed, _STREAM_USERS, t), round_rng(self.seed, _STREAM_ROLLOUT, t)
        shared_users = draw_users(users_rng, cfg.n_users, sim.config.n_users)
        shared_seed = int(seeds_rng.integers(0, 2**31 - 1))
        fitness = np.empty(len(candidates))
        for c, candidate in enumerate(candidates):
            if cfg.common_random_numbers:
                users, seed = shared_users, shared_seed
            else:  # each candidate its own bucket of users and random numbers
                users = draw_users(users_rng, cfg.n_users, sim.config.n_users)
                seed = int(seeds_rng.integers(0, 2**31 - 1))
            fitness[c] = self._evaluate(sim, candidate, users, seed)
        shaped = centred_ranks(fitness)
        grad = (shaped[:cfg.n_pairs] - shaped[cfg.n_pairs:]) @ eps / (2 * cfg.n_pairs * cfg.sigma)  # (P,)
        self.theta = (theta + cfg.lr * grad).astype(np.float32)
        self.step = t + 1
        return {
            "es/fitness_mean": float(fitness.mean()),
            "es/fitness_max": float(fitness.max()),
            "es/fitness_min": float(fitness.min()),
            "es/pair_diff_mean": float(np.abs(fitness[:cfg.n_pairs] - fitness[cfg.n_pairs:]).mean()),
            "es/grad_norm": float(np.linalg.norm(grad)),
            "es/theta_norm": float(np.linalg.norm(self.theta)),
            "online/sessions": float(self.budget.sessions),
            "online/requests": float(self.budget.requests),
        }

    # ------------------------------------------------------------------ training (Agent's hooks)
    def _start_fit(self, data: TransitionArrays | None, seed: int, n_steps: int, log_every: int) -> None:
        """The initial weights of ``seed``; ``fit(n_steps=...)`` counts ES iterations."""
        super()._start_fit(data, seed, n_steps, log_every)
        self.theta = self._initial_theta(self.seed)
        self.budget = OnlineBudget(users_per_round=self.config.n_users)

    # ------------------------------------------------------------------ acting
    def _require_theta(self) -> np.ndarray:
        if self.theta is None:
            raise RuntimeError("EvolutionStrategy has no weights yet: call fit() or EvolutionStrategy.load()")
        return self.theta

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Per-state fusion weights: ``(B, obs_dim) float32 -> (B, 12) float32`` in [-1, 1]. Deterministic."""
        theta = self._require_theta()
        obs = check_obs_batch(obs, self.obs_dim)
        if not np.all(np.isfinite(obs)):
            raise ValueError("observations hold NaN or infinite values")
        return _FlatMLP(theta, self._shapes).act(obs)

    # ------------------------------------------------------------------ state, save and load
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's parameters ``{"0.weight": (32, obs_dim), "0.bias": ..., "2.weight": ..., ...}``."""
        theta = torch.as_tensor(self._require_theta().copy())
        torch.nn.utils.vector_to_parameters(theta, self._net.parameters())
        return {k: v.detach().clone() for k, v in self._net.state_dict().items()}

    def _run_config_fields(self) -> dict[str, Any]:
        return {**super()._run_config_fields(), "n_params": self.n_params}

    def _require_trained(self) -> None:
        self._require_theta()

    def _algo_state(self, training: bool) -> dict[str, Any]:
        return {"budget": self.budget.to_json(), "theta": torch.as_tensor(self.theta.copy())}

    def _load_state(self, state: dict[str, Any], path: Path, training: bool) -> None:
        theta = state["theta"]
        if not isinstance(theta, torch.Tensor) or tuple(theta.shape) != (self.n_params,):
            raise CheckpointError(f"{path}: 'theta' has shape {tuple(getattr(theta, 'shape', ()))}, "
                                  f"expected ({self.n_params},)")
        self.theta = theta.numpy().astype(np.float32)
        self.budget = OnlineBudget.from_json(state["budget"])
