"""``bo``: Bayesian optimisation of static fusion weights, each evaluation an online A/B round.

The paper's first baseline (Section 4.4.1): the way fusion weights are tuned in production
before RL -- one weight vector for every user and request, searched online. Here:

* Search space: the action box ``[-1, 1]^12`` (fusion weights ``alpha`` through
  :func:`mtf_env.fusion.action_to_alpha`).
* One *round* = one online A/B bucket: ``n_users`` fresh users (drawn without replacement
  per round, :func:`agents.online.draw_users`) each get one fresh session under the
  candidate weights (:func:`mtf_env.rollout.rollout_sessions`); the objective is the mean
  session return under ``reward`` (``objective="session"``; ``"discounted"`` for the
  discounted return with ``gamma``). Rounds use different users, as live traffic would, so
  the objective is noisy; the GP's white-noise term models that.
* Surrogate: scikit-learn ``GaussianProcessRegressor`` with kernel
  ``C * Matern(nu=2.5, one length scale per weight) + White`` on standardised returns
  (``normalize_y``), hyperparameters by maximum marginal likelihood (``gp_restarts``
  restarts of L-BFGS-B). The settings that differ from scikit-learn's defaults are recorded in
  :data:`agents.baseline_settings.ONLINE_SETTINGS`.
* Initial design: ``n_init`` rounds -- the production weights first
  (``include_production``), then uniform random points of the box.
* Acquisition: upper confidence bound ``mu(x) + kappa * sigma(x)`` maximised over
  ``n_candidates`` seeded random points: a ``1 - local_fraction`` share uniform in the box,
  the rest ``N(incumbent, local_std^2)`` clipped to the box (random candidates alone are too
  sparse in 12 dimensions to refine a good point).
* Result: the *incumbent* -- the evaluated point with the highest GP posterior mean (more
  robust than the highest noisy observation) -- played as a
  :class:`agents.static.StaticPolicy`.

``fit(n_steps=...)``: ``n_steps`` is the number of online rounds (initial design included).
The online budget (rounds, sessions and requests served) is written to ``budget.json`` and
as the cumulative ``online/sessions`` and ``online/requests`` columns of ``metrics.csv``.

Randomness: each round's design point, users, rollout seed and GP restarts come from
``SeedSequence([seed, stream, round])`` (:func:`agents.online.round_rng`), so a run is a
function of its seed and a resumed run is identical to an uninterrupted one.

Run directory: ``config.json`` (algo, config, sim_config, obs_dim, seed), ``metrics.csv``,
``checkpoint.pt`` (observed points and values, budget, selected action; ``weights_only``),
``policy.json`` (``{"action": [...], "alpha": [...]}``, readable by
:meth:`agents.static.StaticPolicy.from_json`) and ``budget.json``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.checkpoint import CheckpointError
from agents.config import ConfigBase
from agents.baseline_settings import BO_N_RESTARTS_OPTIMIZER, BO_NORMALIZE_Y
from agents.online import (OnlineAgent, OnlineBudget, draw_users, normalise_reward, rollout_objective, round_rng)
from mtf_env.policy import check_obs_batch
from agents.static import StaticPolicy
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.files import write_json
from mtf_env.fusion import PRODUCTION_ALPHA, action_to_alpha, alpha_to_action
from mtf_env.rewards import reward_weights
from mtf_env.rollout import rollout_sessions
from mtf_env.tasks import N_TASKS
from mtf_env.transitions import TransitionArrays

ALGO_NAME = "bo"
CHECKPOINT_FORMAT = "bo-checkpoint/1"
POLICY_NAME = "policy.json"
# random streams of a round (agents.online.round_rng)
_STREAM_DESIGN, _STREAM_USERS, _STREAM_ROLLOUT, _STREAM_GP, _STREAM_CANDIDATES = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class BOConfig(ConfigBase):
    """Settings of Bayesian optimisation over static fusion weights."""

    n_steps: int = 60
    """Online rounds of a full run (``fit``'s default ``n_steps``), initial design included."""
    n_users: int = 2000
    """Fresh users (one session each) per online round."""
    n_init: int = 10
    """Rounds of the initial design before the GP chooses points."""
    include_production: bool = True
    """The first design point is the production weights (what a platform would start from)."""
    kappa: float = 2.0
    """UCB exploration weight: ``mu + kappa * sigma``."""
    n_candidates: int = 4096
    """Random candidates over which the acquisition is maximised per round."""
    local_fraction: float = 0.5
    """Share of the candidates drawn around the incumbent instead of uniformly."""
    local_std: float = 0.15
    """Standard deviation (action units) of the candidates around the incumbent."""
    gp_restarts: int = BO_N_RESTARTS_OPTIMIZER
    """Extra random restarts of the GP hyperparameter optimiser."""
    matern_nu: float = 2.5
    """Smoothness of the Matern kernel."""
    reward: Any = "default"
    """Reward of the objective: preset name, 12 weights or a task -> weight mapping."""
    objective: str = "session"
    """``session`` (mean session return) or ``discounted`` (mean discounted session return)."""
    gamma: float = 0.95
    """Discount of the ``discounted`` objective (and recorded with every return)."""
    rollout_batch: int = 8192
    """Sessions simulated together in a round (speed only; results depend on it through CRN blocks)."""

    def __post_init__(self) -> None:
        self.check_positive_ints("n_steps", "n_init", "n_candidates", "rollout_batch")
        self.check_positive_ints("n_users", minimum=2)  # the objective's standard error is over users
        self.check_positive_ints("gp_restarts", minimum=0)
        self.check_range("kappa", 0.0, float("inf"))
        self.check_positive("local_std")
        self.check_range("local_fraction", 0.0, 1.0)
        if self.objective not in ("session", "discounted"):
            raise ValueError(f"BOConfig.objective must be 'session' or 'discounted', got {self.objective!r}")
        self.check_range("gamma", 0.0, 1.0, low_open=True)
        normalise_reward(self)


def _gp_regressor(config: BOConfig, random_state: int):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = (ConstantKernel(1.0, (1e-2, 1e2))
              * Matern(length_scale=np.ones(N_TASKS), length_scale_bounds=(0.05, 50.0), nu=config.matern_nu)
              + WhiteKernel(0.1, (1e-6, 1.0)))
    return GaussianProcessRegressor(kernel, normalize_y=BO_NORMALIZE_Y, n_restarts_optimizer=config.gp_restarts,
                                    random_state=random_state)


def _seed_int(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


class BayesianOptimisation(OnlineAgent):
    """The ``bo`` baseline; after ``fit`` (or ``load``) a static :class:`mtf_env.policy.Policy`.

    Usage::

        bo = BayesianOptimisation(BOConfig(), sim_config=dataset.config)
        bo.fit(n_steps=60, seed=0, out_dir="runs/bo")   # 60 online rounds
        bo.act(obs)                                      # (B, 12), the same weights for every row
        bo.budget                                        # OnlineBudget(rounds, sessions, requests, ...)
    """

    algo_name = ALGO_NAME
    config_class = BOConfig
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_kind = "a bo checkpoint"
    checkpoint_keys = ("action", "observed_actions", "observed_values", "observed_se", "budget")
    budget_unit = "online A/B rounds of fresh sessions"

    def __init__(self, config: BOConfig | None = None, sim_config: SimConfig | dict[str, Any] | None = None):
        super().__init__(config, sim_config)
        self.action: np.ndarray | None = None
        self._reset_history()

    def _reset_history(self) -> None:
        self.observed_actions = np.zeros((0, N_TASKS))  # (n, 12) evaluated points
        self.observed_values = np.zeros(0)              # (n,) objective of each round
        self.observed_se = np.zeros(0)                  # (n,) its standard error over users
        self.budget = OnlineBudget(users_per_round=self.config.n_users)
        self._gp = None

    # ------------------------------------------------------------------ the rounds
    def _fit_gp(self):
        """GP on the rounds so far (None with fewer than 2); its restarts seeded by the round count."""
        n = len(self.observed_values)
        if n < 2:
            return None
        gp = _gp_regressor(self.config, _seed_int(round_rng(self.seed, _STREAM_GP, n)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at a bound is expected with few points
            gp.fit(self.observed_actions, self.observed_values)
        return gp

    def _incumbent(self) -> tuple[np.ndarray, float]:
        """The evaluated point with the highest posterior mean (the only point before a GP exists)."""
        if self._gp is None:
            best = int(np.argmax(self.observed_values))
            return self.observed_actions[best], float(self.observed_values[best])
        mean = self._gp.predict(self.observed_actions)
        best = int(np.argmax(mean))
        return self.observed_actions[best], float(mean[best])

    def _propose(self, round_index: int) -> tuple[np.ndarray, float]:
        """The point of round ``round_index`` (12,) and its acquisition value (NaN in the initial design)."""
        cfg = self.config
        if round_index < cfg.n_init or self._gp is None:
            if round_index == 0 and cfg.include_production:
                return alpha_to_action(PRODUCTION_ALPHA).astype(np.float64), float("nan")
            return round_rng(self.seed, _STREAM_DESIGN, round_index).uniform(-1.0, 1.0, N_TASKS), float("nan")
        rng = round_rng(self.seed, _STREAM_CANDIDATES, round_index)
        n_local = int(round(cfg.n_candidates * cfg.local_fraction))
        incumbent, _ = self._incumbent()
        candidates = np.concatenate([
            rng.uniform(-1.0, 1.0, (cfg.n_candidates - n_local, N_TASKS)),
            np.clip(incumbent + cfg.local_std * rng.standard_normal((n_local, N_TASKS)), -1.0, 1.0),
        ])
        mean, std = self._gp.predict(candidates, return_std=True)
        ucb = mean + cfg.kappa * std
        best = int(np.argmax(ucb))
        return candidates[best], float(ucb[best])

    def _evaluate_point(self, sim: Simulator, point: np.ndarray, round_index: int) -> tuple[float, float]:
        """The online A/B round of ``point`` (12,): fresh users, one session each; (objective, its SE)."""
        cfg = self.config
        users = draw_users(round_rng(self.seed, _STREAM_USERS, round_index), cfg.n_users, sim.config.n_users)
        rollout_seed = _seed_int(round_rng(self.seed, _STREAM_ROLLOUT, round_index))
        policy = StaticPolicy(point.astype(np.float32), name=f"bo-round-{round_index}")
        rolled = rollout_sessions(sim, policy, users, seed=rollout_seed, gamma=cfg.gamma, batch_size=cfg.rollout_batch)
        self.budget.add_rollout(rolled)
        return rollout_objective(rolled, reward_weights(cfg.reward), cfg.objective)

    def _train_step(self, round_index: int) -> dict[str, float]:
        """One online round: propose, evaluate on fresh users, refit the GP (fit_loop's ``update``)."""
        if self._gp is None:
            self._gp = self._fit_gp()  # after a resume
        point, acquisition = self._propose(round_index)
        value, se = self._evaluate_point(self._sim, point, round_index)
        self.observed_actions = np.vstack([self.observed_actions, point[None]])
        self.observed_values = np.append(self.observed_values, value)
        self.observed_se = np.append(self.observed_se, se)
        self._gp = self._fit_gp()
        incumbent, incumbent_mean = self._incumbent()
        self.action = incumbent.astype(np.float32)
        self.step = round_index + 1
        metrics = {
            "bo/objective": value,
            "bo/objective_se": se,
            "bo/best_observed": float(self.observed_values.max()),
            "bo/incumbent_mean": incumbent_mean,
            "online/sessions": float(self.budget.sessions),
            "online/requests": float(self.budget.requests),
            "bo/ucb": acquisition,  # NaN in the initial design
        }
        return metrics

    # ------------------------------------------------------------------ training (Agent's hooks)
    def _start_fit(self, data: TransitionArrays | None, seed: int, n_steps: int, log_every: int) -> None:
        """Fresh history; ``fit(n_steps=...)`` counts online rounds, initial design included."""
        super()._start_fit(data, seed, n_steps, log_every)
        self.action = None
        self._reset_history()

    # ------------------------------------------------------------------ acting
    def _require_action(self) -> np.ndarray:
        if self.action is None:
            raise RuntimeError("BayesianOptimisation has no weights yet: call fit() or BayesianOptimisation.load()")
        return self.action

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The selected static action for every row: ``(B, obs_dim) -> (B, 12)`` float32 in [-1, 1]."""
        action = self._require_action()
        obs = check_obs_batch(obs, self.obs_dim)
        return np.broadcast_to(action, (obs.shape[0], N_TASKS)).copy()

    def policy(self) -> StaticPolicy:
        """The result as a plain :class:`StaticPolicy`."""
        return StaticPolicy(self._require_action(), name=ALGO_NAME)

    # ------------------------------------------------------------------ state, save and load
    def state_dict(self) -> dict[str, torch.Tensor]:
        """``action`` (12,), ``observed_actions`` (n, 12), ``observed_values`` (n,), ``observed_se`` (n,)."""
        return {
            "action": torch.as_tensor(self._require_action().copy()),
            "observed_actions": torch.as_tensor(self.observed_actions.copy()),
            "observed_values": torch.as_tensor(self.observed_values.copy()),
            "observed_se": torch.as_tensor(self.observed_se.copy()),
        }

    def _require_trained(self) -> None:
        self._require_action()

    def _algo_state(self, training: bool) -> dict[str, Any]:
        return {"budget": self.budget.to_json(), **self.state_dict()}

    def _write_extra_files(self, run_dir: Path) -> None:
        """``policy.json`` (the selected weights) and ``budget.json``."""
        write_json(run_dir / POLICY_NAME,
                   {"action": self.action.tolist(), "alpha": action_to_alpha(self.action).tolist()})
        super()._write_extra_files(run_dir)

    def _load_state(self, state: dict[str, Any], path: Path, training: bool) -> None:
        try:
            action = state["action"].numpy().astype(np.float32)
            xs, ys = state["observed_actions"].numpy(), state["observed_values"].numpy()
            ses = state["observed_se"].numpy()
        except AttributeError:
            raise CheckpointError(f"{path}: the saved arrays are not tensors") from None
        if action.shape != (N_TASKS,) or xs.shape != (len(ys), N_TASKS) or ses.shape != ys.shape:
            raise CheckpointError(f"{path}: arrays have shapes {action.shape}, {xs.shape}, {ys.shape}, {ses.shape}")
        self.action, self.observed_actions, self.observed_values, self.observed_se = action, xs, ys, ses
        self.budget = OnlineBudget.from_json(state["budget"])
        self._gp = None  # refit from the history on the next round
