"""Offline baselines on d3rlpy 2.8.1, all behind the project's agent API.

Algorithms (registry name -> agent class -> d3rlpy algorithm):

=============  ==================  ============================================================
``td3``        :class:`TD3Agent`        ``d3rlpy.algos.TD3`` (Fujimoto et al. 2018)
``uwac-td3``   :class:`UWACTD3Agent`    :class:`agents.uwac.UWACTD3`, TD3 with uncertainty-weighted critics (Wu et al. 2021)
``cql-sac``    :class:`CQLSACAgent`     ``d3rlpy.algos.CQL``, SAC-based CQL (Kumar et al. 2020)
``bc``         :class:`BCAgent`         ``d3rlpy.algos.BC``, deterministic behaviour cloning
``td3-bc``     :class:`TD3PlusBCAgent`  ``d3rlpy.algos.TD3PlusBC`` (Fujimoto & Gu 2021)
``iql``        :class:`IQLAgent`        ``d3rlpy.algos.IQL`` (Kostrikov et al. 2021)
=============  ==================  ============================================================

Usage (the same for every algorithm, see ``tests/agent_contract.py``)::

    agent = CQLSACAgent()                                    # CQLSACAgentConfig(): the baseline settings
    agent.fit(data, 20_000, seed=0, out_dir="runs/cql-sac__small__0")
    actions = agent.act(obs)                                 # (B, 12) float32 in [-1, 1]
    agent = CQLSACAgent.load("runs/cql-sac__small__0")
    q = agent.predict_value(obs)                             # critics' Q(s, pi(s)), (B,)

Settings: every config field mirrors the d3rlpy config field of the same name and has
d3rlpy's default, except the ones listed in :mod:`agents.baseline_settings` (the discount
0.95, 400-300 networks, BC's batch 256, UWAC's weight form and dropout passes).
``hidden`` sets every encoder factory of the algorithm (actor, critics, value function,
imitator) to ``VectorEncoderFactory(hidden_units=hidden)``. The test suite checks each default
against the installed d3rlpy and the settings table.

Training: :class:`agents.base.Agent`'s ``fit`` and its one loop,
:func:`agents.training_loop.fit_loop`. Each step draws ``batch_size`` indices uniformly with
replacement from the whole dataset with a seeded ``numpy.random.Generator``, builds a ``d3rlpy.dataset.TransitionMiniBatch`` (``s, a, r, s', terminal``; a timeout
bootstraps from ``s'`` like any non-terminal row) and calls d3rlpy's own
``algo.update(batch)`` (``QLearningAlgoBase.update``: conversion to tensors, one gradient step
of the algorithm, the grad-step counter that schedules TD3's delayed actor). The rewards are
whatever the dataset loader relabelled them to.

Metrics (``metrics.csv``, window means): d3rlpy's losses, prefixed ``train/`` (e.g.
``train/critic_loss``, ``train/actor_loss``, CQL's ``train/conservative_loss``), and for the
methods with a critic, on the step's minibatch after the update: ``train/q_mean`` and
``train/q_std`` -- mean and std over the batch of the critics' Q(s, a) at the *logged*
actions (d3rlpy's ``predict_value``: the mean over the critic ensemble, dropout off), as
BatchRL-MTF logs -- and ``train/q_policy_mean``, the critics' Q(s, pi(s)) at the policy's own
actions, the value the policy believes it gets (the quantity to compare with its true value
for the overestimation figure); they are evaluated every ``q_stats_every`` steps (fit's
argument, default 10) and on the last step of each logging window. ``bc`` has no critic and
logs its loss only.

Randomness: ``fit(seed=...)`` spawns two streams with ``numpy.random.SeedSequence(seed)``:
(1) torch's global generator, which d3rlpy uses for weight initialisation, target smoothing
noise, SAC/CQL action samples and dropout -- seeded with ``torch.manual_seed`` at the start
of every ``fit`` inside ``torch.random.fork_rng``, so the caller's global torch state is left
as it was; (2) the minibatch indices (``numpy.random.Generator``). Same seed and data ->
bitwise identical weights (on one machine and device). Both generator states are saved in
the checkpoint, so ``resume`` continues bitwise like an uninterrupted run. We never call
``d3rlpy.seed``, which also reseeds numpy's and Python's global generators.

Checkpoints: ``checkpoint.pt`` holds the state dicts of every d3rlpy module and optimiser
(what d3rlpy's ``save_model`` writes, collected by us into one dict with our metadata) and is
read with ``torch.load(weights_only=True)`` (:func:`agents.checkpoint.load_checkpoint`); d3rlpy's
pickle-based ``save``/``load_learnable`` of whole objects is never used.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, ContextManager

import numpy as np
import torch
from torch import nn

from agents.base import OfflineAgent
from agents.checkpoint import CheckpointError, load_module_state, restoring_state
from agents.config import ConfigBase
from agents.data import check_transitions, data_fingerprint
from agents.seeding import seed_from, seed_torch_globals, set_torch_rng_state, torch_rng_scope, torch_rng_state
from agents.baseline_settings import (
    OFFLINE_BATCH_SIZE,
    OFFLINE_GAMMA,
    OFFLINE_HIDDEN_UNITS,
    UWAC_N_DROPOUT_SAMPLES,
    UWAC_WEIGHT_FORM,
)
from mtf_env.policy import check_obs_batch
from agents.training_loop import FitResult
from mtf_env.transitions import TransitionArrays

__all__ = [
    "OFFLINE_ALGOS", "D3rlpyOfflineAgent", "OfflineAgentConfig",
    "TD3Agent", "TD3AgentConfig", "UWACTD3Agent", "UWACTD3AgentConfig", "CQLSACAgent", "CQLSACAgentConfig",
    "BCAgent", "BCAgentConfig", "TD3PlusBCAgent", "TD3PlusBCAgentConfig", "IQLAgent", "IQLAgentConfig",
]

CHECKPOINT_FORMAT = "d3rlpy-offline-checkpoint/1"
#: States per ``predict`` call in :meth:`D3rlpyOfflineAgent.act` (bounds activation memory).
ACT_CHUNK_STATES = 65_536


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class OfflineAgentConfig(ConfigBase):
    """Settings shared by every offline baseline (defaults: :mod:`agents.baseline_settings`)."""

    gamma: float = OFFLINE_GAMMA
    """Discount factor per request (the paper's 0.95, the same for every method; d3rlpy: 0.99)."""
    batch_size: int = OFFLINE_BATCH_SIZE
    """Transitions per minibatch (the paper's 256)."""
    hidden: tuple[int, ...] = OFFLINE_HIDDEN_UNITS
    """Hidden widths of every network of the algorithm (BCQ's 400-300; d3rlpy: 256-256)."""
    n_steps: int = 300_000
    """Gradient steps of a full run, the default of ``fit`` (BatchRL-MTF's paper budget, for comparability)."""
    device: str = "cpu"
    """Torch device ("cpu", "cuda", "cuda:1", ...); not a hyperparameter."""

    renamed_fields: ClassVar[dict[str, str]] = {"hidden_units": "hidden"}

    def __post_init__(self) -> None:
        self.check_range("gamma", 0.0, 1.0, high_open=True)
        self.check_positive_ints("batch_size", "n_steps")
        self.check_widths("hidden")


@dataclass(frozen=True)
class TD3AgentConfig(OfflineAgentConfig):
    """TD3: d3rlpy's ``TD3Config`` fields and defaults (Fujimoto et al. 2018)."""

    actor_learning_rate: float = 3e-4
    """Adam learning rate of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam learning rate of the critics."""
    tau: float = 0.005
    """Soft target update rate per actor update."""
    n_critics: int = 2
    """Critics in the ensemble (the target is their minimum)."""
    target_smoothing_sigma: float = 0.2
    """Std of the Gaussian noise added to the target action."""
    target_smoothing_clip: float = 0.5
    """Clip of that noise."""
    update_actor_interval: int = 2
    """Critic steps per actor (and target) update."""


@dataclass(frozen=True)
class TD3PlusBCAgentConfig(TD3AgentConfig):
    """TD3+BC: d3rlpy's ``TD3PlusBCConfig`` fields and defaults (Fujimoto & Gu 2021)."""

    alpha: float = 2.5
    """Weight of the Q term relative to the BC term: ``lambda = alpha / mean|Q|``."""


@dataclass(frozen=True)
class UWACTD3AgentConfig(TD3AgentConfig):
    """UWAC+TD3: TD3's fields plus :class:`agents.uwac.UWACTD3Config`'s (Wu et al.'s code defaults)."""

    dropout_rate: float = 0.1
    """Dropout after every hidden layer of the critics (MC dropout)."""
    beta: float = 0.5
    """Weight scale: ``clip(beta / Var, 0, max_weight)``."""
    max_weight: float = 1.0
    """Upper clip of the weights."""
    weight_form: str = UWAC_WEIGHT_FORM
    """``"inverse"`` (the paper's beta / Var; baseline setting) or ``"exp"`` (exp(-beta Var), the code's default)."""
    n_dropout_samples: int = UWAC_N_DROPOUT_SAMPLES
    """MC-dropout passes per variance estimate (baseline setting 10; Wu et al.'s code: 100)."""
    weight_actor: bool = True
    """Also weight the actor loss by the uncertainty of Q(s, pi(s))."""


@dataclass(frozen=True)
class CQLSACAgentConfig(OfflineAgentConfig):
    """CQL (SAC-based): d3rlpy's ``CQLConfig`` fields and defaults (Kumar et al. 2020)."""

    actor_learning_rate: float = 1e-4
    """Adam learning rate of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam learning rate of the critics."""
    temp_learning_rate: float = 1e-4
    """Adam learning rate of SAC's entropy temperature."""
    alpha_learning_rate: float = 1e-4
    """Adam learning rate of the conservative-penalty multiplier (Lagrangian CQL)."""
    tau: float = 0.005
    """Soft target update rate."""
    n_critics: int = 2
    """Critics in the ensemble."""
    initial_temperature: float = 1.0
    """Initial entropy temperature."""
    initial_alpha: float = 1.0
    """Initial conservative multiplier."""
    alpha_threshold: float = 10.0
    """Lagrangian threshold of the conservative gap (d3rlpy's tau in its docs)."""
    conservative_weight: float = 5.0
    """Weight of the conservative loss."""
    n_action_samples: int = 10
    """Actions sampled per state to estimate log-sum-exp Q."""
    soft_q_backup: bool = False
    """SAC-style entropy term in the target."""
    max_q_backup: bool = False
    """Max over sampled actions in the target."""


@dataclass(frozen=True)
class BCAgentConfig(OfflineAgentConfig):
    """Behaviour cloning: d3rlpy's ``BCConfig`` fields and defaults (gamma is unused)."""

    learning_rate: float = 1e-3
    """Adam learning rate."""
    policy_type: str = "deterministic"
    """"deterministic" (MSE to the logged action) or "stochastic" (Gaussian log-likelihood)."""


@dataclass(frozen=True)
class IQLAgentConfig(OfflineAgentConfig):
    """IQL: d3rlpy's ``IQLConfig`` fields and defaults (Kostrikov et al. 2021)."""

    actor_learning_rate: float = 3e-4
    """Adam learning rate of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam learning rate of the critics and of the value function."""
    tau: float = 0.005
    """Soft target update rate."""
    n_critics: int = 2
    """Critics in the ensemble."""
    expectile: float = 0.7
    """Expectile of the value regression."""
    weight_temp: float = 3.0
    """Inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Upper clip of the advantage weights."""


# --------------------------------------------------------------------------- helpers
def _d3rlpy_device(device: str) -> str:
    """Our device string -> d3rlpy's ("cpu" -> "cpu:0", "cuda" -> "cuda:0")."""
    dev = torch.device(device)
    return f"{dev.type}:{dev.index if dev.index is not None else 0}"


# --------------------------------------------------------------------------- the agent
class D3rlpyOfflineAgent(OfflineAgent):
    """An offline d3rlpy algorithm behind the agent API; subclasses name the algorithm.

    A run directory holds ``config.json`` (algo, config, obs_dim, action_dim, seed, and the
    resolved d3rlpy config), ``metrics.csv`` and ``checkpoint.pt``. ``fit``, ``save``, ``load``
    and resuming are :class:`agents.base.Agent`'s; this class wires d3rlpy's algorithm into them.
    """

    config_class: ClassVar[type[OfflineAgentConfig]]
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_kind = "an offline-baseline checkpoint"
    checkpoint_keys = ("grad_step", "modules", "optimizers", "batch_rng", "torch_rng")
    has_critic: ClassVar[bool] = True

    def __init__(self, config: OfflineAgentConfig | None = None):
        super().__init__(config)
        self.d3rlpy_config = self._make_d3rlpy_config()  # validates the algorithm's fields now
        self.algo = None
        self._data: dict[str, np.ndarray] | None = None
        self._batch_rng: np.random.Generator | None = None
        self._rng_state: dict[str, torch.Tensor] | None = None
        self._log_every, self._q_stats_every, self._n_steps = 1, 1, None

    # ------------------------------------------------------------------ construction
    @classmethod
    def _d3rlpy_config_class(cls):
        raise NotImplementedError

    def _make_d3rlpy_config(self):
        """The d3rlpy config: our fields of the same names, every encoder factory with ``hidden`` widths."""
        from d3rlpy.models.encoders import VectorEncoderFactory

        d3_cls = self._d3rlpy_config_class()
        d3_fields = {f.name for f in dataclasses.fields(d3_cls)}
        values = {k: v for k, v in asdict(self.config).items() if k in d3_fields}
        for name in d3_fields:
            if name.endswith("encoder_factory"):
                values[name] = VectorEncoderFactory(hidden_units=list(self.config.hidden))
        return d3_cls(**values)

    def _build(self, obs_dim: int, action_dim: int, seed: int) -> None:
        """Fresh d3rlpy algorithm (weights from the seeded torch generator) and minibatch generator.

        Call inside :meth:`_rng_scope`: it seeds torch's global generator (d3rlpy initialises from it).
        """
        self.obs_dim, self.action_dim, self.seed, self.step = int(obs_dim), int(action_dim), int(seed), 0
        torch_seq, batch_seq = np.random.SeedSequence(self.seed).spawn(2)
        seed_torch_globals(seed_from(torch_seq), self.config.device)
        self.algo = self.d3rlpy_config.create(device=_d3rlpy_device(self.config.device))
        self.algo.create_impl((self.obs_dim,), self.action_dim)
        self._batch_rng = np.random.Generator(np.random.PCG64(batch_seq))
        self._rng_state = torch_rng_state(self.config.device)

    def _require_algo(self):
        if self.algo is None:
            raise RuntimeError(f"{type(self).__name__} has no networks yet: call fit() or load() first")
        return self.algo

    # ------------------------------------------------------------------ training (Agent's hooks)
    def fit(self, data: TransitionArrays, n_steps: int | None = None, *, seed: int, out_dir: str | Path | None = None,
            resume: bool = False, show_progress: bool = True, log_every: int | None = None,
            checkpoint_every: int | None = None, q_stats_every: int = 10,
            init_from: str | Path | None = None) -> FitResult:
        """:meth:`agents.base.Agent.fit`; minibatches are drawn uniformly from all of ``data`` (rewards
        already relabelled), and ``seed`` sets the weights, the minibatches and d3rlpy's noise and dropout.

        q_stats_every: steps between evaluations of the Q statistics (``train/q_*``; also on the
        last step of every logging window). They cost ~25% of a TD3 step when computed every
        step; every 10th step they cost ~2.5% and their window mean still averages over
        ``log_every / q_stats_every`` minibatches.
        """
        if q_stats_every < 1:
            raise ValueError(f"q_stats_every must be >= 1, got {q_stats_every}")
        self._q_stats_every = int(q_stats_every)
        return super().fit(data, n_steps, seed=seed, out_dir=out_dir, resume=resume, show_progress=show_progress,
                           log_every=log_every, checkpoint_every=checkpoint_every, init_from=init_from)

    def _rng_scope(self) -> ContextManager[None]:
        """torch's global generators forked: d3rlpy's seeding and draws leave the caller's state as it was."""
        return torch_rng_scope(self.config.device)

    def _start_fit(self, data: TransitionArrays, seed: int, n_steps: int, log_every: int) -> None:
        check_transitions(data)
        self._build(data.obs_dim, data.action_dim, seed)
        self._set_data(data)
        self._log_every, self._n_steps = int(log_every), n_steps

    def _end_fit(self) -> None:
        self._rng_state = torch_rng_state(self.config.device)
        self._data = None  # a trained policy does not keep the dataset

    def _set_data(self, data: TransitionArrays) -> None:
        """The dataset as d3rlpy's float32 minibatch fields, plus constant per-batch arrays."""
        b = self.config.batch_size
        self._data = {
            "observations": np.ascontiguousarray(data.observations, dtype=np.float32),
            "actions": np.ascontiguousarray(data.actions, dtype=np.float32),
            "rewards": np.asarray(data.rewards, dtype=np.float32).reshape(-1, 1),
            "next_observations": np.ascontiguousarray(data.next_observations, dtype=np.float32),
            "terminals": np.asarray(data.terminals, dtype=np.float32).reshape(-1, 1),  # timeouts bootstrap
            "next_actions": np.zeros((b, data.action_dim), np.float32),  # SARSA-only field, unused here
            "intervals": np.ones((b, 1), np.float32),  # one request between s and s'
        }
        self._fingerprint = data_fingerprint(data)

    def sample_batch(self):
        """One ``d3rlpy.dataset.TransitionMiniBatch`` of ``batch_size`` uniform draws (with replacement)."""
        from d3rlpy.dataset import TransitionMiniBatch

        d = self._data
        idx = self._batch_rng.integers(0, len(d["observations"]), size=self.config.batch_size)
        return TransitionMiniBatch(
            observations=d["observations"][idx],
            actions=d["actions"][idx],
            rewards=d["rewards"][idx],
            next_observations=d["next_observations"][idx],
            next_actions=d["next_actions"],
            terminals=d["terminals"][idx],
            intervals=d["intervals"],
            transitions=[],  # only read for returns-to-go, which none of these algorithms uses
        )

    def _train_step(self, step: int) -> dict[str, float]:
        """One gradient step (fit_loop's ``update``): d3rlpy's update, then (some steps) the Q statistics."""
        batch = self.sample_batch()
        metrics = {f"train/{k}": v for k, v in self.algo.update(batch).items()}
        done = step + 1
        window_end = done % self._log_every == 0 or done == self._n_steps  # every metrics row gets Q statistics
        if self.has_critic and (step % self._q_stats_every == 0 or window_end):
            q = self.algo.predict_value(batch.observations, batch.actions)  # (B,), critics' mean
            q_policy = self.algo.predict_value(batch.observations, self.algo.predict(batch.observations))
            metrics.update({"train/q_mean": float(q.mean()), "train/q_std": float(q.std()),
                            "train/q_policy_mean": float(q_policy.mean())})
        self.step = step + 1
        return metrics

    # ------------------------------------------------------------------ acting
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy action: ``obs (B, obs_dim) float32 -> (B, A) float32`` in ``[-1, 1]``.

        d3rlpy's ``predict`` (the tanh-squashed deterministic or mean action); deterministic.
        """
        algo = self._require_algo()
        obs = check_obs_batch(obs, self.obs_dim)
        if not np.all(np.isfinite(obs)):
            raise ValueError("observations hold NaN or infinite values")
        out = np.empty((obs.shape[0], self.action_dim), dtype=np.float32)
        for start in range(0, obs.shape[0], ACT_CHUNK_STATES):
            chunk = np.ascontiguousarray(obs[start : start + ACT_CHUNK_STATES])
            out[start : start + len(chunk)] = algo.predict(chunk)
        return np.clip(out, -1.0, 1.0, out=out)

    def predict_value(self, obs: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        """The critics' Q estimate: ``obs (B, obs_dim)``, ``actions (B, A)`` or None for the policy's
        own actions -> ``(B,)`` float32 (the mean over the critic ensemble, dropout off)."""
        algo = self._require_algo()
        if not self.has_critic:
            raise ValueError(f"{self.algo_name} has no critic")
        obs = np.ascontiguousarray(check_obs_batch(obs, self.obs_dim))
        if actions is None:
            actions = self.act(obs)
        actions = np.ascontiguousarray(actions, dtype=np.float32)
        if actions.shape != (obs.shape[0], self.action_dim):
            raise ValueError(f"actions have shape {actions.shape}, expected {(obs.shape[0], self.action_dim)}")
        return algo.predict_value(obs, actions).astype(np.float32)

    # ------------------------------------------------------------------ state, save and load
    def _named_modules(self) -> tuple[dict[str, nn.Module], dict[str, Any]]:
        """d3rlpy's checkpointed objects of this algorithm: (networks, optimiser wrappers) by name."""
        modules, optimizers = {}, {}
        for name, obj in self._require_algo().impl.modules.create_checkpointer("cpu").modules.items():
            (modules if isinstance(obj, nn.Module) else optimizers)[name] = obj
        return modules, optimizers

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat ``{"<module>.<parameter>": tensor}`` of every network, targets included."""
        modules, _ = self._named_modules()
        return {f"{name}.{k}": v for name, module in modules.items() for k, v in module.state_dict().items()}

    def _run_identity(self) -> dict[str, Any]:
        """The algorithm, seed, sizes, data and device type (besides the config)."""
        return {"algo": self.algo_name, **super()._run_identity()}

    def _run_config_fields(self) -> dict[str, Any]:
        import d3rlpy

        return {**super()._run_config_fields(),
                "library": {"name": "d3rlpy", "version": d3rlpy.__version__, "algorithm": type(self.algo).__name__,
                            "config": json.loads(self.d3rlpy_config.serialize())}}

    def _build_for_load(self) -> None:
        self._build(self.obs_dim, self.action_dim, self.seed)

    def _require_trained(self) -> None:
        self._require_algo()

    def _algo_state(self, training: bool) -> dict[str, Any]:
        """d3rlpy's modules and optimisers, its grad-step counter and both generators' states."""
        if training:
            self._rng_state = torch_rng_state(self.config.device)
        modules, optimizers = self._named_modules()
        return {
            "grad_step": int(self.algo.grad_step),
            "modules": {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "batch_rng": self._batch_rng.bit_generator.state,
            "torch_rng": self._rng_state,
        }

    def _load_state(self, state: dict[str, Any], path: Path, training: bool) -> None:
        """Load networks, optimisers, the grad-step counter and generator states (for acting too)."""
        modules, optimizers = self._named_modules()
        saved_modules, saved_optims = state["modules"], state["optimizers"]
        if not isinstance(saved_modules, dict) or set(saved_modules) != set(modules):
            raise CheckpointError(f"{path}: networks {sorted(saved_modules) if isinstance(saved_modules, dict) else '?'}"
                                  f" do not match {self.algo_name}'s {sorted(modules)}")
        for name, module in modules.items():
            load_module_state(module, saved_modules[name], f"{path} network '{name}'")
        with restoring_state(path):
            for name, opt in optimizers.items():
                opt.load_state_dict(saved_optims[name])
            self._batch_rng.bit_generator.state = state["batch_rng"]
            self._rng_state = state["torch_rng"]
            set_torch_rng_state(self._rng_state, self.config.device)
        self.algo.set_grad_step(int(state["grad_step"]))
        if not training:
            self._fingerprint = str(state.get("data_fingerprint", ""))

    def _warm_start(self, state: dict[str, Any], path: Path) -> None:
        """The networks only: this run's optimisers, generators and data fingerprint stay fresh."""
        modules, _ = self._named_modules()
        saved_modules = state["modules"]
        if not isinstance(saved_modules, dict) or set(saved_modules) != set(modules):
            raise CheckpointError(f"{path}: networks {sorted(saved_modules) if isinstance(saved_modules, dict) else '?'}"
                                  f" do not match {self.algo_name}'s {sorted(modules)}")
        for name, module in modules.items():
            load_module_state(module, saved_modules[name], f"{path} network '{name}'")


# --------------------------------------------------------------------------- the algorithms
class TD3Agent(D3rlpyOfflineAgent):
    """``td3``: d3rlpy's TD3 trained offline (no constraint: the overestimation reference)."""

    algo_name = "td3"
    config_class = TD3AgentConfig

    @classmethod
    def _d3rlpy_config_class(cls):
        from d3rlpy.algos import TD3Config

        return TD3Config


class UWACTD3Agent(D3rlpyOfflineAgent):
    """``uwac-td3``: TD3 with MC-dropout uncertainty-weighted critic and actor losses (agents/uwac.py)."""

    algo_name = "uwac-td3"
    config_class = UWACTD3AgentConfig

    @classmethod
    def _d3rlpy_config_class(cls):
        from agents.uwac import UWACTD3Config

        return UWACTD3Config


class CQLSACAgent(D3rlpyOfflineAgent):
    """``cql-sac``: d3rlpy's CQL (SAC actor, Lagrangian conservative penalty)."""

    algo_name = "cql-sac"
    config_class = CQLSACAgentConfig

    @classmethod
    def _d3rlpy_config_class(cls):
        from d3rlpy.algos import CQLConfig

        return CQLConfig


class BCAgent(D3rlpyOfflineAgent):
    """``bc``: d3rlpy's behaviour cloning (imitates the logged actions; no critic)."""

    algo_name = "bc"
    config_class = BCAgentConfig
    has_critic = False

    @classmethod
    def _d3rlpy_config_class(cls):
        from d3rlpy.algos import BCConfig

        return BCConfig


class TD3PlusBCAgent(D3rlpyOfflineAgent):
    """``td3-bc``: d3rlpy's TD3+BC (TD3 with a behaviour-cloning term in the actor loss)."""

    algo_name = "td3-bc"
    config_class = TD3PlusBCAgentConfig

    @classmethod
    def _d3rlpy_config_class(cls):
        from d3rlpy.algos import TD3PlusBCConfig

        return TD3PlusBCConfig


class IQLAgent(D3rlpyOfflineAgent):
    """``iql``: d3rlpy's implicit Q-learning (expectile value, advantage-weighted actor)."""

    algo_name = "iql"
    config_class = IQLAgentConfig

    @classmethod
    def _d3rlpy_config_class(cls):
        from d3rlpy.algos import IQLConfig

        return IQLConfig


#: Registry name -> agent class of every offline baseline in this module.
OFFLINE_ALGOS: dict[str, type[D3rlpyOfflineAgent]] = {
    cls.algo_name: cls for cls in (TD3Agent, UWACTD3Agent, CQLSACAgent, BCAgent, TD3PlusBCAgent, IQLAgent)
}
