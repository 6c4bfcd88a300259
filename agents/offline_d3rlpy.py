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
``hidden_units`` sets every encoder factory of the algorithm (actor, critics, value function,
imitator) to
``VectorEncoderFactory(hidden_units)``. The test suite checks each default against the
installed d3rlpy and the settings table.

Training: one loop, :func:`agents.base.fit_loop`. Each step draws ``batch_size`` indices
uniformly with replacement from the whole dataset with a seeded ``numpy.random.Generator``,
builds a ``d3rlpy.dataset.TransitionMiniBatch`` (``s, a, r, s', terminal``; a timeout
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
read with ``torch.load(weights_only=True)`` (:func:`agents.base.load_checkpoint`); d3rlpy's
pickle-based ``save``/``load_learnable`` of whole objects is never used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import nn

from agents.base import (
    CHECKPOINT_NAME,
    CheckpointError,
    FitResult,
    agent_run_fields,
    check_checkpoint,
    check_fit_args,
    check_seed,
    check_transitions,
    config_from_dict,
    config_json,
    data_fingerprint,
    load_checkpoint,
    load_module_state,
    read_run_config,
    restoring_state,
    resume_and_fit,
    save_checkpoint,
    seed_from,
    write_run_config,
)
from agents.baseline_settings import (
    OFFLINE_BATCH_SIZE,
    OFFLINE_GAMMA,
    OFFLINE_HIDDEN_UNITS,
    UWAC_N_DROPOUT_SAMPLES,
    UWAC_WEIGHT_FORM,
)
from agents.policy import check_obs_batch
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
class OfflineAgentConfig:
    """Settings shared by every offline baseline (defaults: :mod:`agents.baseline_settings`)."""

    gamma: float = OFFLINE_GAMMA
    """Discount factor per request (the paper's 0.95, the same for every method; d3rlpy: 0.99)."""
    batch_size: int = OFFLINE_BATCH_SIZE
    """Transitions per minibatch (the paper's 256)."""
    hidden_units: tuple[int, ...] = OFFLINE_HIDDEN_UNITS
    """Hidden widths of every network of the algorithm (BCQ's 400-300; d3rlpy: 256-256)."""
    n_steps: int = 300_000
    """Gradient steps of a full run, the default of ``fit`` (BatchRL-MTF's paper budget, for comparability)."""
    device: str = "cpu"
    """Torch device ("cpu", "cuda", "cuda:1", ...); not a hyperparameter."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"{type(self).__name__}.gamma must be in [0, 1), got {self.gamma}")
        for name in ("batch_size", "n_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")
        sizes = tuple(int(h) for h in self.hidden_units)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"{type(self).__name__}.hidden_units must be non-empty positive widths, got {sizes}")
        object.__setattr__(self, "hidden_units", sizes)  # lists from JSON become tuples

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Inverse of ``dataclasses.asdict``; unknown keys raise ``ValueError``."""
        return config_from_dict(cls, values)


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


@contextlib.contextmanager
def _torch_rng_scope(device: str) -> Iterator[None]:
    """Run with torch's global generators forked: whatever is seeded inside is undone on exit."""
    dev = torch.device(device)
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield


def _torch_rng_state(device: str) -> dict[str, torch.Tensor]:
    dev = torch.device(device)
    state = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev.index or 0)
    return state


def _set_torch_rng_state(state: dict[str, torch.Tensor], device: str) -> None:
    torch.set_rng_state(state["cpu"])
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], dev.index or 0)


# --------------------------------------------------------------------------- the agent
class D3rlpyOfflineAgent:
    """An offline d3rlpy algorithm behind the agent API; subclasses name the algorithm.

    A run directory holds ``config.json`` (algo, config, obs_dim, action_dim, seed, and the
    resolved d3rlpy config), ``metrics.csv`` and ``checkpoint.pt``.
    """

    algo_name: ClassVar[str]
    config_class: ClassVar[type[OfflineAgentConfig]]
    has_critic: ClassVar[bool] = True
    stochastic: ClassVar[bool] = False

    def __init__(self, config: OfflineAgentConfig | None = None):
        config = self.config_class() if config is None else config
        if type(config) is not self.config_class:
            raise ValueError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.d3rlpy_config = self._make_d3rlpy_config()  # validates the algorithm's fields now
        self.algo = None
        self.obs_dim: int | None = None
        self.action_dim: int | None = None
        self.seed: int | None = None
        self.step = 0
        self._data: dict[str, np.ndarray] | None = None
        self._batch_rng: np.random.Generator | None = None
        self._rng_state: dict[str, torch.Tensor] | None = None
        self._fingerprint = ""
        self._log_every, self._q_stats_every, self._n_steps = 1, 1, None

    # ------------------------------------------------------------------ construction
    @classmethod
    def _d3rlpy_config_class(cls):
        raise NotImplementedError

    def _make_d3rlpy_config(self):
        """The d3rlpy config: our fields of the same names, every encoder factory with ``hidden_units``."""
        from d3rlpy.models.encoders import VectorEncoderFactory

        d3_cls = self._d3rlpy_config_class()
        d3_fields = {f.name for f in dataclasses.fields(d3_cls)}
        values = {k: v for k, v in asdict(self.config).items() if k in d3_fields}
        for name in d3_fields:
            if name.endswith("encoder_factory"):
                values[name] = VectorEncoderFactory(hidden_units=list(self.config.hidden_units))
        return d3_cls(**values)

    def _build(self, obs_dim: int, action_dim: int, seed: int) -> None:
        """Fresh d3rlpy algorithm (weights from the seeded torch generator) and minibatch generator.

        Call inside :func:`_torch_rng_scope`: it seeds torch's global generator.
        """
        self.obs_dim, self.action_dim, self.seed, self.step = int(obs_dim), int(action_dim), check_seed(seed), 0
        torch_seq, batch_seq = np.random.SeedSequence(self.seed).spawn(2)
        torch.manual_seed(seed_from(torch_seq))
        if torch.device(self.config.device).type == "cuda":
            torch.cuda.manual_seed(seed_from(torch_seq))
        self.algo = self.d3rlpy_config.create(device=_d3rlpy_device(self.config.device))
        self.algo.create_impl((self.obs_dim,), self.action_dim)
        self._batch_rng = np.random.Generator(np.random.PCG64(batch_seq))
        self._rng_state = _torch_rng_state(self.config.device)

    def _require_algo(self):
        if self.algo is None:
            raise RuntimeError(f"{type(self).__name__} has no networks yet: call fit() or load() first")
        return self.algo

    # ------------------------------------------------------------------ training
    def fit(
        self,
        data: TransitionArrays,
        n_steps: int | None = None,
        *,
        seed: int,
        out_dir: str | Path | None = None,
        resume: bool = False,
        show_progress: bool = True,
        log_every: int = 1000,
        checkpoint_every: int = 10_000,
        q_stats_every: int = 10,
    ) -> FitResult:
        """Train for ``n_steps`` gradient steps (default ``config.n_steps``) from scratch or a checkpoint.

        Args:
            data: logged transitions (rewards already relabelled); minibatches are drawn from all of it.
            n_steps: total gradient steps of the run (a resumed run continues up to it).
            seed: all randomness of the run (weights, minibatches, d3rlpy's noise and dropout).
            out_dir: run directory for ``config.json``, ``metrics.csv`` and ``checkpoint.pt``
                (every ``checkpoint_every`` steps and at the end); ``None`` writes nothing.
            resume: continue from ``out_dir/checkpoint.pt`` (bitwise the same as an
                uninterrupted run); from scratch when there is no checkpoint yet. Refused
                (``ValueError``) when the seed, config, data or observation size differ.
            show_progress: tqdm progress bar.
            log_every: steps per metrics row (metrics are means over the window).
            checkpoint_every: steps between checkpoints (0: only at the end).
            q_stats_every: steps between evaluations of the Q statistics (``train/q_*``; also on
                the last step of every logging window). They cost ~25% of a TD3 step when
                computed every step; every 10th step they cost ~2.5% and their window mean
                still averages over ``log_every / q_stats_every`` minibatches.

        Without ``resume`` every call starts from freshly initialised networks.
        """
        n_steps = check_fit_args(n_steps, self.config.n_steps, log_every=log_every,
                                 checkpoint_every=checkpoint_every, resume=resume, out_dir=out_dir)
        if q_stats_every < 1:
            raise ValueError(f"q_stats_every must be >= 1, got {q_stats_every}")
        check_transitions(data)

        def checkpoint(path: Path) -> None:
            self._rng_state = _torch_rng_state(self.config.device)
            save_checkpoint(path, self._checkpoint_state())

        with _torch_rng_scope(self.config.device):
            self._build(data.obs_dim, data.action_dim, seed)
            self._set_data(data)
            self._log_every, self._q_stats_every, self._n_steps = int(log_every), int(q_stats_every), n_steps
            try:
                result = resume_and_fit(
                    self, self._train_step, n_steps, out_dir, resume,
                    identity={"algo": self.algo_name, **self._run_identity()}, restore=self._restore,
                    checkpoint=checkpoint, log_every=log_every, checkpoint_every=checkpoint_every,
                    desc=self.algo_name, show_progress=show_progress,
                )
            finally:
                self._rng_state = _torch_rng_state(self.config.device)
                self._data = None  # a trained policy does not keep the dataset
        return result

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
        """What a checkpoint must share with this run to be resumed (besides the algorithm and config)."""
        return {"seed": self.seed, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "data_fingerprint": self._fingerprint, "device_type": torch.device(self.config.device).type}

    def _checkpoint_state(self) -> dict[str, Any]:
        modules, optimizers = self._named_modules()
        return {
            "format": CHECKPOINT_FORMAT,
            "algo": self.algo_name,
            "step": self.step,
            "grad_step": int(self.algo.grad_step),
            **self._run_identity(),
            "config": config_json(self.config),
            "modules": {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "batch_rng": self._batch_rng.bit_generator.state,
            "torch_rng": self._rng_state,
        }

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        """Load networks, optimisers, step counters and generator states from ``state``."""
        check_checkpoint(state, path, CHECKPOINT_FORMAT,
                         ("algo", "step", "grad_step", "modules", "optimizers", "batch_rng", "torch_rng"),
                         "an offline-baseline checkpoint")
        if state["algo"] != self.algo_name:
            raise CheckpointError(f"{path} holds a {state['algo']!r} checkpoint, not {self.algo_name!r}")
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
            _set_torch_rng_state(self._rng_state, self.config.device)
        self.step = int(state["step"])
        self.algo.set_grad_step(int(state["grad_step"]))

    def _write_config(self, run_dir: Path) -> None:
        import d3rlpy

        write_run_config(
            run_dir, self.algo_name, config=asdict(self.config), obs_dim=self.obs_dim, action_dim=self.action_dim,
            seed=self.seed, library={"name": "d3rlpy", "version": d3rlpy.__version__,
                                     "algorithm": type(self.algo).__name__,
                                     "config": json.loads(self.d3rlpy_config.serialize())},
        )

    def save(self, run_dir: str | Path) -> None:
        """Write ``config.json`` and ``checkpoint.pt`` (the complete training state) into ``run_dir``."""
        self._require_algo()
        self._write_config(Path(run_dir))
        save_checkpoint(Path(run_dir) / CHECKPOINT_NAME, self._checkpoint_state())

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None):
        """The agent saved in ``run_dir`` (by ``fit(out_dir=...)`` or ``save``), ready to ``act``.

        ``device`` overrides the saved config's device. Raises :class:`CheckpointError` for a
        missing, foreign (another algorithm's), truncated, unsafe (pickled code is never
        executed) or mismatched file.
        """
        run_dir = Path(run_dir)
        config, obs_dim, action_dim, seed = read_run_config(
            run_dir, cls.algo_name, lambda meta: agent_run_fields(meta, cls.config_class, device))
        state = load_checkpoint(run_dir / CHECKPOINT_NAME)
        agent = cls(config)
        with _torch_rng_scope(config.device):  # building initialises weights from the global generator
            agent._build(obs_dim, action_dim, seed)
            agent._restore(state, run_dir / CHECKPOINT_NAME)
        agent._fingerprint = str(state.get("data_fingerprint", ""))
        return agent


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
