"""Model-based off-policy estimator: a learned one-step model of the logged transitions, rolled out.

The model is an MLP ``f(s, a) -> (mean of s' - s, mean of r, logit of P(done))`` fitted on the
logged transitions (mean squared error on the standardised state change and reward, binary
cross-entropy on ``terminal``). It does not depend on the evaluated policy, so it is fitted once
per dataset; :meth:`ModelBasedOPE.estimate` then rolls it out under ``pi_e`` from the initial
states for ``horizon`` steps (the longest logged session: sessions end at the request limit):

    V(s_0) = sum_{t < H} gamma^t * alive_t * r_hat(s_t, pi_e(s_t)),
    alive_{t+1} = alive_t * (1 - P_hat(done | s_t, pi_e(s_t))),  s_{t+1} = s_t + delta_hat(s_t, pi_e(s_t))

(the expected model return with a deterministic mean state, the common "mean rollout" of
model-based OPE, e.g. Voloshin et al. 2021). Its error is the model's error on the states and
actions the target policy visits: off the data nothing bounds it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.config import ConfigBase
from agents.data import check_transitions, sample_batch_indices
from agents.ope import OBS_STD_EPS, _bootstrap_seed, bootstrap_summary, check_initial_observations, policy_actions
from agents.run_dir import MetricsLogger
from agents.seeding import torch_rng_scope
from agents.training_loop import fit_loop
from mtf_env.policy import Policy
from mtf_env.transitions import TransitionArrays


@dataclass(frozen=True)
class ModelBasedConfig(ConfigBase):
    """Settings of :class:`ModelBasedOPE`."""

    hidden: tuple[int, ...] = (128, 128)
    """Hidden widths of the dynamics MLP (ReLU)."""
    n_steps: int = 2000
    """Adam steps of the model fit."""
    batch_size: int = 256
    """Transitions per step."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    gamma: float = 0.95
    """Discount of the rollout."""
    horizon: int = 0
    """Rollout steps; 0: the longest session in the fitted data."""
    n_bootstrap: int = 200
    """Bootstrap resamples of the initial states for the estimate's interval."""
    ci_level: float = 0.95
    """Two-sided level of that interval."""
    policy_batch_size: int = 65536
    """Rows per ``policy.act`` call."""

    def __post_init__(self) -> None:
        self.check_positive_ints("n_steps", "batch_size", "n_bootstrap", "policy_batch_size")
        self.check_range("gamma", 0.0, 1.0, high_open=True)
        self.check_positive("learning_rate")
        self.check_range("ci_level", 0.0, 1.0, low_open=True, high_open=True)
        self.check_widths("hidden")
        if not isinstance(self.horizon, (int, np.integer)) or self.horizon < 0:
            raise ValueError(f"ModelBasedConfig.horizon must be an integer >= 0, got {self.horizon!r}")


class DynamicsModel(nn.Module):
    """``(B, obs_dim), (B, action_dim) -> (delta (B, obs_dim), reward (B,), done_logit (B,))`` in data units.

    Inputs are standardised and outputs de-standardised with stored buffers.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        for name, size in (("obs_mean", obs_dim), ("obs_std", obs_dim), ("delta_mean", obs_dim),
                           ("delta_std", obs_dim), ("rew_mean", 1), ("rew_std", 1)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))
        layers: list[nn.Module] = []
        width = obs_dim + action_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, obs_dim + 2))
        self.mlp = nn.Sequential(*layers)

    def raw(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Standardised outputs ``(B, obs_dim + 2)``: delta, reward, done logit."""
        return self.mlp(torch.cat([(obs - self.obs_mean) / self.obs_std, action], dim=1))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.raw(obs, action)
        delta = out[:, : self.obs_dim] * self.delta_std + self.delta_mean
        reward = out[:, self.obs_dim] * self.rew_std[0] + self.rew_mean[0]
        return delta, reward, out[:, self.obs_dim + 1]


class ModelBasedOPE:
    """Fit :class:`DynamicsModel` once on logged transitions; estimate any policy by a mean rollout.

    Usage: ``est = ModelBasedOPE(ModelBasedConfig(), seed=0); est.fit(data); est.estimate(s0, policy)``.
    Same seed and data give the same model and estimates.
    """

    def __init__(self, config: ModelBasedConfig | None = None, seed: int = 0):
        self.config = config if config is not None else ModelBasedConfig()
        self.seed = int(seed)
        self.model: DynamicsModel | None = None
        self.horizon = 0
        self.fit_stats: dict[str, float] = {}

    def fit(self, data: TransitionArrays, *, show_progress: bool = False) -> None:
        cfg = self.config
        check_transitions(data, actions_in_box=False)
        starts = np.flatnonzero(np.asarray(data.episode_starts, dtype=bool))
        lengths = np.diff(np.append(starts, len(data)))
        self.horizon = int(cfg.horizon or lengths.max())
        obs = np.asarray(data.observations, dtype=np.float64)
        delta = np.asarray(data.next_observations, dtype=np.float64) - obs
        rew = np.asarray(data.rewards, dtype=np.float64).reshape(-1)
        # a terminal row's next observation is not a state the session reaches: no delta target there
        live = ~np.asarray(data.terminals, dtype=bool)
        with torch_rng_scope():
            torch.manual_seed(self.seed)
            model = DynamicsModel(data.obs_dim, data.action_dim, cfg.hidden)
        for name, value in (("obs_mean", obs.mean(0)), ("obs_std", obs.std(0) + OBS_STD_EPS),
                            ("delta_mean", delta[live].mean(0) if live.any() else np.zeros(data.obs_dim)),
                            ("delta_std", (delta[live].std(0) if live.any() else np.zeros(data.obs_dim)) + OBS_STD_EPS),
                            ("rew_mean", [rew.mean()]), ("rew_std", [rew.std() + OBS_STD_EPS])):
            getattr(model, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        act_t = torch.as_tensor(np.asarray(data.actions, dtype=np.float32))
        delta_z = torch.as_tensor((delta - model.delta_mean.numpy()) / model.delta_std.numpy(), dtype=torch.float32)
        rew_z = torch.as_tensor((rew - rew.mean()) / (rew.std() + OBS_STD_EPS), dtype=torch.float32)
        done_t = torch.as_tensor(np.asarray(data.terminals, dtype=np.float32))
        live_t = torch.as_tensor(live.astype(np.float32))
        optim = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x30DE1]))
        bce = nn.BCEWithLogitsLoss()

        def update(step: int) -> dict[str, float]:
            idx = torch.from_numpy(sample_batch_indices(rng, len(data), cfg.batch_size))
            out = model.raw(obs_t[idx], act_t[idx])
            d_loss = ((out[:, : data.obs_dim] - delta_z[idx]).pow(2).mean(1) * live_t[idx]).mean()
            r_loss = (out[:, data.obs_dim] - rew_z[idx]).pow(2).mean()
            t_loss = bce(out[:, data.obs_dim + 1], done_t[idx])
            loss = d_loss + r_loss + t_loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            return {"model/delta_loss": d_loss.item(), "model/reward_loss": r_loss.item(), "model/done_loss": t_loss.item()}

        t0 = time.perf_counter()
        fit_loop(update, cfg.n_steps, log_every=max(1, min(100, cfg.n_steps)), logger=MetricsLogger(None),
                 desc="ope/model", show_progress=show_progress)
        model.eval()
        self.model = model
        self.fit_stats = {"train_s": time.perf_counter() - t0}

    def rollout_values(self, initial_observations: np.ndarray, policy: Policy) -> np.ndarray:
        """``(n,)`` model returns from each initial observation (n, obs_dim) under ``policy``."""
        if self.model is None:
            raise ValueError("the estimator is not fitted: call fit() first")
        obs = check_initial_observations(initial_observations, self.model.obs_dim)
        cfg = self.config
        s = torch.from_numpy(np.array(obs, dtype=np.float32))
        alive = torch.ones(len(obs), dtype=torch.float64)
        value = torch.zeros(len(obs), dtype=torch.float64)
        with torch.no_grad():
            for t in range(self.horizon):
                a = policy_actions(policy, s.numpy(), self.model.action_dim, cfg.policy_batch_size, "pi_e(s_t) [model]")
                delta, reward, done_logit = self.model(s, torch.from_numpy(a))
                value += cfg.gamma**t * alive * reward.double()
                alive = alive * (1.0 - torch.sigmoid(done_logit).double())
                s = s + delta
        return value.numpy()

    def estimate(self, initial_observations: np.ndarray, policy: Policy) -> dict[str, Any]:
        """Mean model return over the initial states with a percentile bootstrap interval over the states."""
        values = self.rollout_values(initial_observations, policy)
        return bootstrap_summary(values, self.config.n_bootstrap, self.config.ci_level, _bootstrap_seed(self.seed))
