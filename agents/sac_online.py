"""``sac-online``: stable-baselines3 SAC trained online in the simulator (the unconstrained reference).

Not a method of the paper: the reference for what free online interaction buys. SAC
(Haarnoja et al. 2018) as implemented by stable-baselines3 learns on ``n_envs`` copies of
``gym.make("ShortVideoMTF-v0", **sim_config)`` in a ``DummyVecEnv`` (each env one session at a
time, reset when the user exits or the session is cut off; cut-offs are stored as timeouts,
not terminals, by SB3's replay buffer). Every environment step is one request served to a
simulated user, so the online budget is counted in env steps.

Settings that differ from SB3's defaults (and why; recorded in :data:`agents.baseline_settings.ONLINE_SETTINGS`):

* ``gamma = 0.95`` -- the paper's discount for every method (SB3: 0.99).
* ``n_envs = 8`` with one gradient step per vector step (``train_freq = 1``,
  ``gradient_steps = 1``): 8 transitions per gradient step, to fit this 2-core machine
  (SB3's usual single env has one transition per gradient step).
* ``buffer_size = 200_000`` (SB3: 1,000,000), enough for the reduced budget; raise it with
  the budget.
* ``learning_starts = 2_000`` env steps of uniform random actions (SB3: 100).
* Everything else is SB3's: two 256-256 ReLU critics and actor, Adam 3e-4, batch 256,
  ``tau = 0.005``, automatic entropy tuning with target entropy ``-12``.

Budget: ``fit(n_steps=...)`` counts **environment steps** (requests; a multiple of
``n_envs``); ``config.n_steps = 40_000`` is the reduced default for this 2-core machine
(about 5,000 gradient steps); :data:`LARGE_BUDGET` (1,000,000 env steps, one gradient step
per env step) is the "large budget" setting for a machine with time to spare. The budget
is written to ``budget.json`` and as the cumulative ``online/*`` columns of ``metrics.csv``.

Weights are saved as the policy's state dict (actor, twin critics, target critics) plus the
entropy coefficient, loaded with ``weights_only=True`` -- never SB3's zip of pickles.
``fit`` writes ``checkpoint.pt`` every ``checkpoint_every`` env steps and at the end with the
whole training state besides (optimisers, replay buffer, the simulator sessions in flight,
SB3's counters and every random generator it draws from), as tensors and JSON strings, so
``fit(resume=True)`` continues a run exactly: the same weights as an uninterrupted run.
Training runs as one SB3 ``learn`` call per checkpoint interval (``reset_num_timesteps=False``).

Randomness: ``seed`` goes to SB3 (``set_random_seed``: Python, NumPy and torch global
generators, the action space and env ``i``'s reset seed ``seed + i``); same seed, same
weights on CPU. ``fit`` and ``load`` run inside :func:`agents.seeding.global_rng_scope`, so the
caller's global generators are as they were afterwards.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, ContextManager, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.checkpoint import CheckpointError, load_module_state, restoring_state
from agents.config import ConfigBase
from agents.run_dir import MetricsLogger
from agents.seeding import global_rng_scope
from agents.training_loop import FitResult
from agents.baseline_settings import (SAC_ONLINE_BUFFER_SIZE, SAC_ONLINE_GAMMA, SAC_ONLINE_LEARNING_STARTS,
                                      SAC_ONLINE_N_ENVS)
from agents.online import OnlineAgent, OnlineBudget, check_data, normalise_reward
from mtf_env.policy import check_obs_batch
from mtf_env.config import SimConfig
from mtf_env.core import obs_bounds
from mtf_env.tasks import N_TASKS
from mtf_env.transitions import TransitionArrays

ALGO_NAME = "sac-online"
CHECKPOINT_FORMAT = "sac-online-checkpoint/1"
ENV_ID = "ShortVideoMTF-v0"
#: Metrics SB3's SAC records per training call, logged as they are.
SB3_TRAIN_METRICS = ("train/actor_loss", "train/critic_loss", "train/ent_coef", "train/ent_coef_loss")


@dataclass(frozen=True)
class SACOnlineConfig(ConfigBase):
    """Settings of online SAC (stable-baselines3); see the module docstring for the non-defaults."""

    n_steps: int = 40_000
    """Environment steps (requests) of a full run, ``fit``'s default; reduced for a 2-core machine."""
    n_envs: int = SAC_ONLINE_N_ENVS
    """Simulator sessions stepped together (``DummyVecEnv``); each vector step adds n_envs transitions."""
    gamma: float = SAC_ONLINE_GAMMA
    """Discount per request (the paper's, for every method)."""
    learning_rate: float = 3e-4
    """Adam learning rate of actor, critics and entropy coefficient (SB3 default)."""
    buffer_size: int = SAC_ONLINE_BUFFER_SIZE
    """Replay buffer capacity in transitions."""
    learning_starts: int = SAC_ONLINE_LEARNING_STARTS
    """Env steps of uniform random actions before training starts."""
    batch_size: int = 256
    """Minibatch size (SB3 default)."""
    tau: float = 0.005
    """Polyak rate of the target critics (SB3 default)."""
    train_freq: int = 1
    """Vector steps between training calls."""
    gradient_steps: int = 1
    """Gradient steps per training call."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each critic (SB3 default)."""
    ent_coef: str | float = "auto"
    """Entropy coefficient, ``auto`` for SB3's automatic tuning (default) or a fixed float."""
    reward: Any = "default"
    """The env's reward: preset name, 12 weights or a task -> weight mapping (overrides the world's)."""
    device: str = "cpu"
    """Torch device of SB3 (``cpu``, ``cuda``)."""

    renamed_fields: ClassVar[dict[str, str]] = {"net_arch": "hidden"}

    def __post_init__(self) -> None:
        self.check_widths("hidden")
        self.check_positive_ints("n_steps", "n_envs", "buffer_size", "batch_size", "train_freq", "gradient_steps")
        self.check_positive_ints("learning_starts", minimum=0)
        self.check_range("gamma", 0.0, 1.0, high_open=True)
        self.check_range("tau", 0.0, 1.0, low_open=True)
        self.check_positive("learning_rate")
        if not (self.ent_coef == "auto" or (isinstance(self.ent_coef, (int, float)) and self.ent_coef > 0)):
            raise ValueError(f"SACOnlineConfig.ent_coef must be 'auto' or a positive number, got {self.ent_coef!r}")
        normalise_reward(self)


#: The "large budget" setting: 1M env steps, one gradient step per transition, a 1M buffer.
LARGE_BUDGET = SACOnlineConfig(n_steps=1_000_000, n_envs=1, buffer_size=1_000_000, learning_starts=10_000)


def _policy_kwargs(config: SACOnlineConfig) -> dict[str, Any]:
    """SB3 policy arguments: ``net_arch`` (actor and critic widths) is ``config.hidden``."""
    return {"net_arch": list(config.hidden)}


#: The arrays of SB3's ``ReplayBuffer`` a checkpoint keeps (their filled rows).
_BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _optimisers(model) -> dict[str, torch.optim.Optimizer]:
    """The SB3 SAC model's optimisers by name (the entropy coefficient's only when it is learnt)."""
    optimisers = {"actor": model.actor.optimizer, "critic": model.critic.optimizer}
    if model.ent_coef_optimizer is not None:
        optimisers["ent_coef"] = model.ent_coef_optimizer
    return optimisers


class _Progress:
    """SB3 callback: per-window metrics rows, the progress bar and the online budget (built lazily: SB3 import)."""

    def __new__(cls, *args, **kwargs):
        from stable_baselines3.common.callbacks import BaseCallback

        class Callback(BaseCallback):
            def __init__(self, n_steps: int, log_every: int, logger: MetricsLogger | None, budget: OnlineBudget,
                         show_progress: bool, start_step: int = 0, window: Mapping[str, float] | None = None):
                super().__init__()
                self.n_steps, self.log_every, self.metrics_logger, self.budget = n_steps, log_every, logger, budget
                self.bar = tqdm(total=n_steps, initial=start_step, desc=ALGO_NAME, unit="step",
                                disable=not show_progress, dynamic_ncols=True)
                window = window or {}
                self.window_reward = float(window.get("reward", 0.0))
                self.window_requests = int(window.get("requests", 0))
                self.window_sessions = int(window.get("sessions", 0))
                self.last_row: dict[str, float] = {}
                self.pending: int | None = None  # env step of the row to write after the next training call

            def window_state(self) -> dict[str, float]:
                """The open logging window's sums (checkpointed: a resumed run continues the window)."""
                return {"reward": self.window_reward, "requests": self.window_requests,
                        "sessions": self.window_sessions}

            def _on_step(self) -> bool:
                rewards, dones = self.locals["rewards"], self.locals["dones"]
                self.window_reward += float(np.sum(rewards))
                self.window_requests += len(rewards)
                self.window_sessions += int(np.sum(dones))
                self.budget.rounds += 1
                self.budget.requests += len(rewards)
                self.budget.sessions += int(np.sum(dones))
                self.bar.update(len(rewards))
                if self.num_timesteps % self.log_every < len(rewards) or self.num_timesteps >= self.n_steps:
                    self.pending = self.num_timesteps
                return True

            # SB3 trains after each rollout, so a row is written once that training call is done:
            # at the start of the next rollout or at the end of learning
            def _on_rollout_start(self) -> None:
                self._flush()

            def _on_training_end(self) -> None:  # end of one learn call (one checkpoint interval)
                self._flush()

            def _flush(self) -> None:
                if self.pending is None:
                    return
                values = self.model.logger.name_to_value
                row = {name: float(values[name]) if name in values else float("nan") for name in SB3_TRAIN_METRICS}
                row.update({
                    "rollout/reward_per_request": self.window_reward / max(self.window_requests, 1),
                    "rollout/sessions_finished": float(self.window_sessions),
                    "online/requests": float(self.budget.requests),
                    "online/sessions": float(self.budget.sessions),
                })
                if self.metrics_logger is not None:
                    self.metrics_logger.log(self.pending, row)
                self.last_row, self.pending = row, None
                self.window_reward, self.window_requests, self.window_sessions = 0.0, 0, 0

        return Callback(*args, **kwargs)


class SACOnline(OnlineAgent):
    """The ``sac-online`` reference; after ``fit`` (or ``load``) a deterministic :class:`mtf_env.policy.Policy`
    (the mean action of the squashed Gaussian actor).

    Usage::

        sac = SACOnline(SACOnlineConfig(), sim_config=dataset.config)
        sac.fit(n_steps=40_000, seed=0, out_dir="runs/sac-online")   # 40,000 env steps
        sac.act(obs)                                                 # (B, 12)
    """

    algo_name = ALGO_NAME
    config_class = SACOnlineConfig
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_kind = "a sac-online checkpoint"
    checkpoint_keys = ("policy", "log_ent_coef")
    step_unit = "env step"
    default_log_every = 1000
    default_checkpoint_every = 10_000
    budget_unit = "environment steps (requests)"
    budget_steps_key = "env_steps"

    def __init__(self, config: SACOnlineConfig | None = None, sim_config: SimConfig | Mapping[str, Any] | None = None):
        super().__init__(config, sim_config)
        self.obs_low, self.obs_high = obs_bounds(self.sim_config)
        self.policy = None  # stable_baselines3.sac.policies.SACPolicy
        self.log_ent_coef = torch.zeros(1)
        self._env = self._model = self._callback = None  # while fitting: SB3's vector env, model and callback
        self._window: dict[str, float] = {}

    # ------------------------------------------------------------------ environment and model
    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``gym.make(ENV_ID, ...)``: the world with this agent's reward."""
        values = self.sim_config.to_json()
        values["reward"] = self.config.reward
        return values

    def _make_vec_env(self):
        import gymnasium as gym
        from stable_baselines3.common.vec_env import DummyVecEnv

        import mtf_env  # noqa: F401  (registers ShortVideoMTF-v0)

        kwargs = self.env_kwargs()
        return DummyVecEnv([lambda: gym.make(ENV_ID, **kwargs) for _ in range(self.config.n_envs)])

    def _spaces(self):
        from gymnasium import spaces

        return (spaces.Box(self.obs_low, self.obs_high, dtype=np.float32),
                spaces.Box(-1.0, 1.0, shape=(N_TASKS,), dtype=np.float32))

    # ------------------------------------------------------------------ training (Agent's hooks)
    def _rng_scope(self) -> ContextManager[None]:
        """SB3 seeds and draws from Python's, NumPy's and torch's global generators: scoped, so the
        caller's global streams are left as they were."""
        return global_rng_scope(self.config.device)

    def _check_fit_args(self, n_steps: int, log_every: int, checkpoint_every: int) -> None:
        """``n_steps`` counts environment steps (requests served) and, like ``checkpoint_every``,
        is a multiple of ``config.n_envs``; ``log_every`` is rounded to whole vector steps."""
        if n_steps % self.config.n_envs or checkpoint_every % self.config.n_envs:
            raise ValueError(f"n_steps and checkpoint_every must be multiples of n_envs={self.config.n_envs}, "
                             f"got {n_steps} and {checkpoint_every}")

    def _start_fit(self, data: TransitionArrays | None, seed: int, n_steps: int, log_every: int) -> None:
        """A fresh SB3 SAC model on ``n_envs`` simulator envs, seeded with ``seed``."""
        from stable_baselines3 import SAC

        cfg = self.config
        check_data(data, self.obs_dim, ALGO_NAME)
        self.seed, self.budget, self.step, self._window = seed, OnlineBudget(), 0, {}
        self._env = self._make_vec_env()
        self._model = SAC("MlpPolicy", self._env, learning_rate=cfg.learning_rate, buffer_size=cfg.buffer_size,
                          learning_starts=cfg.learning_starts, batch_size=cfg.batch_size, tau=cfg.tau,
                          gamma=cfg.gamma, train_freq=cfg.train_freq, gradient_steps=cfg.gradient_steps,
                          ent_coef=cfg.ent_coef, policy_kwargs=_policy_kwargs(cfg), seed=self.seed,
                          device=cfg.device, verbose=0)

    def _train(self, n_steps: int, out: Path | None, logger: MetricsLogger | None, log_every: int,
               checkpoint_every: int, show_progress: bool) -> FitResult:
        """One SB3 ``learn`` call per checkpoint interval (``reset_num_timesteps=False``)."""
        model = self._model
        self._callback = _Progress(n_steps, log_every, logger, self.budget, show_progress, start_step=self.step,
                                   window=self._window)
        try:
            while model.num_timesteps < n_steps:
                stop = n_steps
                if checkpoint_every:
                    stop = min(n_steps, (model.num_timesteps // checkpoint_every + 1) * checkpoint_every)
                model.learn(total_timesteps=stop - model.num_timesteps, callback=self._callback, log_interval=None,
                            reset_num_timesteps=False)
                self._take_policy(model)
                if out is not None:
                    self._save_checkpoint(out, training=True)
        finally:
            self._callback.bar.close()
        return FitResult(steps=self.step, last_metrics=self._callback.last_row)

    def _end_fit(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env = self._model = self._callback = None

    def _take_policy(self, model) -> None:
        """Point the agent's policy, entropy coefficient and step at the SB3 model's."""
        self.policy = model.policy
        self.policy.set_training_mode(False)
        log_ent = getattr(model, "log_ent_coef", None)
        self.log_ent_coef = (log_ent.detach().cpu().clone() if isinstance(log_ent, torch.Tensor)
                             else torch.tensor([math.log(float(self.config.ent_coef))]))
        self.step = int(model.num_timesteps)

    def _training_state(self, model, callback) -> dict[str, Any]:
        """Everything besides the weights that the rest of a run depends on, as tensors and JSON strings.

        Optimisers; SB3's counters, last observations and episode starts; the filled part of the
        replay buffer; each env's sessions in flight and generator; the Python, NumPy and torch
        global generators and the action space's (SB3 samples warm-up actions, replay
        minibatches and actor noise from them); the open logging window.
        """
        buffer = model.replay_buffer
        filled = buffer.buffer_size if buffer.full else buffer.pos
        envs = []
        for wrapped in model.env.envs:
            env = wrapped.unwrapped
            envs.append({"state": {k: torch.from_numpy(np.array(v)) for k, v in vars(env._state).items()},
                         "rng": json.dumps(env.np_random.bit_generator.state)})
        np_state = np.random.get_state()
        return {
            "optimisers": {k: opt.state_dict() for k, opt in _optimisers(model).items()},
            "log_ent_coef": model.log_ent_coef.detach().cpu().clone() if model.ent_coef_optimizer is not None else None,
            "counters": json.dumps({"num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
                                    "episode_num": int(model._episode_num)}),
            "last_obs": torch.from_numpy(np.array(model._last_obs)),
            "last_episode_starts": torch.from_numpy(np.array(model._last_episode_starts)),
            "buffer": {"pos": int(buffer.pos), "full": bool(buffer.full),
                       **{k: torch.from_numpy(np.array(getattr(buffer, k)[:filled])) for k in _BUFFER_FIELDS}},
            "envs": envs,
            "rng": json.dumps({"python": random.getstate(),
                               "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                               "action_space": model.action_space.np_random.bit_generator.state}),
            "torch_rng": torch.get_rng_state(),
            "window": json.dumps(callback.window_state()),
        }

    def _restore_training(self, model, state: dict[str, Any], path: Path) -> dict[str, float]:
        """Put a checkpoint's weights and :meth:`_training_state` into a freshly built SB3 model (and
        this agent); returns the open logging window. :class:`CheckpointError` when it does not fit."""
        from mtf_env.core import SessionState

        if not isinstance(state.get("training"), dict):
            raise ValueError(f"cannot resume: {path} holds weights only, no training state")
        if not isinstance(state.get("policy"), dict):
            raise CheckpointError(f"{path}: 'policy' is not a state dict")
        load_module_state(model.policy, state["policy"], f"{path} policy")
        training = state["training"]
        with restoring_state(path):
            if model.ent_coef_optimizer is not None:
                model.log_ent_coef.data.copy_(training["log_ent_coef"])
            for name, optimiser in _optimisers(model).items():
                optimiser.load_state_dict(training["optimisers"][name])
            counters = json.loads(training["counters"])
            model.num_timesteps, model._n_updates = counters["num_timesteps"], counters["n_updates"]
            model._episode_num = counters["episode_num"]
            model._last_obs = training["last_obs"].numpy().copy()
            model._last_episode_starts = training["last_episode_starts"].numpy().copy()
            buffer, saved = model.replay_buffer, training["buffer"]
            for key in _BUFFER_FIELDS:
                rows = saved[key].numpy()
                getattr(buffer, key)[:len(rows)] = rows
            buffer.pos, buffer.full = int(saved["pos"]), bool(saved["full"])
            if len(training["envs"]) != len(model.env.envs):
                raise ValueError(f"{len(training['envs'])} envs saved, {len(model.env.envs)} running")
            for wrapped, saved_env in zip(model.env.envs, training["envs"]):
                wrapped.reset()  # through the wrappers (they require a reset before a step); then overwritten
                env = wrapped.unwrapped
                env._state = SessionState(**{k: v.numpy().copy() for k, v in saved_env["state"].items()})
                env.np_random.bit_generator.state = json.loads(saved_env["rng"])
            rng = json.loads(training["rng"])
            version, internal, gauss = rng["python"]
            random.setstate((version, tuple(internal), gauss))
            name, keys, *rest = rng["numpy"]
            np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
            model.action_space.np_random.bit_generator.state = rng["action_space"]
            torch.set_rng_state(training["torch_rng"])
            window = json.loads(training["window"])
        self.budget = OnlineBudget.from_json(state.get("budget", {}))
        self._take_policy(model)
        return window

    # ------------------------------------------------------------------ acting
    def _require_policy(self):
        if self.policy is None:
            raise RuntimeError("SACOnline has no policy yet: call fit() or SACOnline.load() first")
        return self.policy

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The actor's mean action ``tanh(mu(s))``: ``(B, obs_dim) float32 -> (B, 12) float32`` in [-1, 1]."""
        policy = self._require_policy()
        obs = check_obs_batch(obs, self.obs_dim)
        if not np.all(np.isfinite(obs)):
            raise ValueError("observations hold NaN or infinite values")
        tensor = torch.as_tensor(obs, device=policy.device)
        return policy.actor(tensor, deterministic=True).cpu().numpy().astype(np.float32, copy=False)

    # ------------------------------------------------------------------ state, save and load
    def state_dict(self) -> dict[str, torch.Tensor]:
        """``policy.<actor|critic|critic_target>.*`` weights and ``log_ent_coef`` (1,)."""
        policy = self._require_policy()
        out = {f"policy.{k}": v.detach().cpu().clone() for k, v in policy.state_dict().items()}
        out["log_ent_coef"] = self.log_ent_coef.clone()
        return out

    def _require_trained(self) -> None:
        self._require_policy()

    def _algo_state(self, training: bool) -> dict[str, Any]:
        """The policy's weights, the entropy coefficient and the budget; ``training`` (``fit``'s
        checkpoints) adds :meth:`_training_state`, without which a run cannot be resumed."""
        return {
            "policy": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
            "log_ent_coef": self.log_ent_coef.clone(), "budget": self.budget.to_json(),
            "training": self._training_state(self._model, self._callback) if training else None,
        }

    def _load_state(self, state: dict[str, Any], path: Path, training: bool) -> None:
        if training:
            self._window = self._restore_training(self._model, state, path)
            return
        if not isinstance(state["policy"], dict):
            raise CheckpointError(f"{path}: 'policy' is not a state dict")
        load_module_state(self.policy, state["policy"], f"{path} policy")
        self.log_ent_coef = state["log_ent_coef"]
        self.budget = OnlineBudget.from_json(state.get("budget", {}))

    def _build_for_load(self) -> None:
        self.policy = self._build_policy()

    def _build_policy(self):
        """An SB3 ``SACPolicy`` of this config's architecture (weights to be loaded), in eval mode."""
        from stable_baselines3.sac.policies import SACPolicy

        obs_space, act_space = self._spaces()
        with torch.random.fork_rng(devices=[]):  # SB3 initialises from the global generator; leave it untouched
            policy = SACPolicy(obs_space, act_space, lambda _: self.config.learning_rate, **_policy_kwargs(self.config))
        policy.set_training_mode(False)
        return policy.to(self.config.device)
