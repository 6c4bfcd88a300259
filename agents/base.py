"""The agent base class: ``fit`` / ``save`` / ``load`` / resume and the run directory, once.

:class:`Agent` owns what every trainable agent does the same way (the pattern of d3rlpy's
``QLearningAlgoBase``, whose algorithms only wire their modules):

* ``fit(data, n_steps, *, seed, out_dir, resume, ...)``: checks the arguments, builds the agent
  from scratch for ``seed`` (:meth:`Agent._start_fit`), resumes from ``out_dir/checkpoint.pt``
  when asked (refused for another seed, config, data or world: :func:`agents.checkpoint.check_resume`),
  writes ``config.json``, then runs :func:`agents.training_loop.fit_loop` over
  :meth:`Agent._train_step`, appending window means to ``metrics.csv`` and writing
  ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end;
* ``save(run_dir)``: ``config.json`` and ``checkpoint.pt`` (plus the agent's extra files);
* ``load(run_dir, device=None)``: reads ``config.json`` (its ``"algo"`` tag must be the class's),
  rebuilds the agent and loads ``checkpoint.pt`` with ``torch.load(weights_only=True)``.

A checkpoint holds ``format``, ``algo``, ``step``, the run identity (:meth:`Agent._run_identity`),
``config`` (:func:`agents.checkpoint.config_json`) and the algorithm's state
(:meth:`Agent._algo_state`). ``config.json`` holds ``algo``, ``config`` and
:meth:`Agent._run_config_fields`.

Two kinds of agent fill in the run identity, the ``config.json`` fields and ``_from_run_config``:
:class:`OfflineAgent` (trained on logged data: ``obs_dim``, ``action_dim``, ``seed``, the data's
fingerprint and the device type) and :class:`agents.online.OnlineAgent` (trained in the
simulator: the seed and the world). An algorithm subclasses one of them, sets ``algo_name``,
``config_class``, ``checkpoint_format``, ``checkpoint_kind`` and ``checkpoint_keys``, and
implements its hooks: ``_start_fit`` (networks, data, random streams), ``_train_step`` (one
gradient step or online round), ``_build_for_load``, ``_algo_state`` / ``_load_state`` (its
part of the checkpoint), ``_require_trained``, ``act`` and ``state_dict``.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, ContextManager

import numpy as np
import torch

from agents.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    check_checkpoint,
    check_resume,
    config_json,
    load_checkpoint,
    load_resume_checkpoint,
    save_checkpoint,
)
from agents.config import ConfigBase
from agents.run_dir import METRICS_NAME, MetricsLogger, agent_run_fields, read_run_config, write_run_config
from agents.seeding import check_seed
from agents.training_loop import FitResult, check_fit_args, fit_loop


class Agent:
    """Base of the trainable agents; after ``fit`` (or ``load``) an agent is an :class:`mtf_env.policy.Policy`."""

    algo_name: ClassVar[str]
    """Registry name, the ``"algo"`` tag of ``config.json`` and of the checkpoint."""
    config_class: ClassVar[type[ConfigBase]]
    checkpoint_format: ClassVar[str]
    """The ``"format"`` tag of the checkpoint."""
    checkpoint_kind: ClassVar[str]
    """The checkpoint in error messages ("a BatchRL-MTF checkpoint")."""
    checkpoint_keys: ClassVar[tuple[str, ...]] = ()
    """Keys the algorithm's part of a checkpoint must hold."""
    step_unit: ClassVar[str] = "step"
    """What one step of ``fit`` is, in errors ("step", "round", "env step")."""
    default_log_every: ClassVar[int] = 1000
    default_checkpoint_every: ClassVar[int] = 10_000
    requires_data: ClassVar[bool] = True
    stochastic: ClassVar[bool] = False

    def __init__(self, config: ConfigBase | None = None):
        config = self.config_class() if config is None else config
        if type(config) is not self.config_class:
            raise ValueError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.seed: int | None = None
        self.step = 0

    # ------------------------------------------------------------------ training
    def fit(
        self,
        data: Any = None,
        n_steps: int | None = None,
        *,
        seed: int,
        out_dir: str | Path | None = None,
        resume: bool = False,
        show_progress: bool = True,
        log_every: int | None = None,
        checkpoint_every: int | None = None,
        init_from: str | Path | None = None,
    ) -> FitResult:
        """Train for ``n_steps`` steps (default ``config.n_steps``) from scratch or from a checkpoint.

        Args:
            data: the logged transitions (offline agents); online agents take ``None``.
            n_steps: total steps of the run (a resumed run continues up to it).
            seed: all randomness of the run.
            out_dir: run directory for ``config.json``, ``metrics.csv`` and ``checkpoint.pt``
                (written every ``checkpoint_every`` steps and at the end); ``None`` writes nothing.
            resume: continue from ``out_dir/checkpoint.pt`` (bitwise the same result as an
                uninterrupted run); starts from scratch when there is no checkpoint yet.
                Refused (``ValueError``) when the seed, config, data or world differ.
            show_progress: tqdm progress bar.
            log_every: steps per metrics row (metrics are means over the window); default
                ``default_log_every``.
            checkpoint_every: steps between checkpoints (0: only at the end); default
                ``default_checkpoint_every``.
            init_from: warm start: a run directory of the same algorithm whose ``checkpoint.pt``
                networks replace the fresh ones before step 0 (:meth:`_warm_start`); the
                run's seed still draws the minibatches. A resume continues from the run's own
                checkpoint instead.

        Without ``resume`` every call starts from a freshly initialised agent (or ``init_from``'s weights).
        """
        log_every = self.default_log_every if log_every is None else int(log_every)
        checkpoint_every = self.default_checkpoint_every if checkpoint_every is None else int(checkpoint_every)
        n_steps = check_fit_args(n_steps, self.config.n_steps, log_every=log_every,
                                 checkpoint_every=checkpoint_every, resume=resume, out_dir=out_dir)
        self._check_fit_args(n_steps, log_every, checkpoint_every)
        out = Path(out_dir) if out_dir is not None else None
        with self._rng_scope():
            try:
                self._start_fit(data, check_seed(seed), n_steps, log_every)
                if init_from is not None:
                    self._warm_start_from(Path(init_from))
                logger = self._open_run(n_steps, out, resume)
                return self._train(n_steps, out, logger, log_every, checkpoint_every, show_progress)
            finally:
                self._end_fit()

    def _warm_start_from(self, run_dir: Path) -> None:
        """Load the networks of ``run_dir/checkpoint.pt`` (same algorithm and sizes) into the fresh agent."""
        path = run_dir / CHECKPOINT_NAME
        state = load_checkpoint(path)
        check_checkpoint(state, path, self.checkpoint_format, ("algo", *self.checkpoint_keys), self.checkpoint_kind)
        if state["algo"] != self.algo_name:
            raise CheckpointError(f"{path} holds a {state['algo']!r} checkpoint, not {self.algo_name!r}: "
                                  "a warm start needs the same algorithm")
        self._warm_start(state, path)

    def _open_run(self, n_steps: int, out: Path | None, resume: bool) -> MetricsLogger | None:
        """Resume from ``out/checkpoint.pt`` when asked and it exists, write ``config.json`` and open
        ``metrics.csv`` (continued when resuming). ``out=None`` writes nothing and gives no logger."""
        state = load_resume_checkpoint(out / CHECKPOINT_NAME if out is not None else None, resume)
        if state is not None:
            check_resume(state, self._run_identity(), self.config)
            self._restore(state, out / CHECKPOINT_NAME, training=True)
            if self.step > n_steps:
                raise ValueError(f"checkpoint is at {self.step_unit} {self.step}, beyond n_steps={n_steps}")
        if out is None:
            return None
        self._write_config(out)
        return MetricsLogger(out / METRICS_NAME, resume=state is not None, last_step=self.step)

    def _train(self, n_steps: int, out: Path | None, logger: MetricsLogger | None, log_every: int,
               checkpoint_every: int, show_progress: bool) -> FitResult:
        """:func:`fit_loop` over :meth:`_train_step` from ``self.step``, checkpointing into ``out``."""
        checkpoint = (lambda _step: self._save_checkpoint(out, training=True)) if out is not None else None
        return fit_loop(self._train_step, n_steps, start_step=self.step, log_every=log_every, logger=logger,
                        checkpoint=checkpoint, checkpoint_every=checkpoint_every, desc=self.algo_name,
                        show_progress=show_progress)

    # ------------------------------------------------------------------ save and load
    def save(self, run_dir: str | Path) -> None:
        """Write ``config.json`` and ``checkpoint.pt`` (and the agent's extra files) into ``run_dir``."""
        self._require_trained()
        run_dir = Path(run_dir)
        self._write_config(run_dir)
        self._save_checkpoint(run_dir, training=False)

    def _save_checkpoint(self, run_dir: Path, training: bool) -> None:
        """``checkpoint.pt`` (``training``: written by ``fit``, with everything a resume needs) and the
        agent's extra files."""
        save_checkpoint(run_dir / CHECKPOINT_NAME, {
            "format": self.checkpoint_format, "algo": self.algo_name, "step": self.step, **self._run_identity(),
            "config": config_json(self.config), **self._algo_state(training),
        })
        self._write_extra_files(run_dir)

    def _write_config(self, run_dir: Path) -> None:
        write_run_config(run_dir, self.algo_name, config=asdict(self.config), **self._run_config_fields())

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> "Agent":
        """The agent saved in ``run_dir`` (by ``fit(out_dir=...)`` or ``save``), ready to ``act``.

        ``device`` overrides the saved config's device (agents with one). Raises
        :class:`CheckpointError` for a missing, foreign (another algorithm's), truncated, unsafe
        (pickled code is never executed) or mismatched file.
        """
        run_dir = Path(run_dir)
        agent = read_run_config(run_dir, cls.algo_name, lambda meta: cls._from_run_config(meta, device))
        path = run_dir / CHECKPOINT_NAME
        state = load_checkpoint(path)
        with agent._rng_scope():
            agent._build_for_load()
            agent._restore(state, path, training=False)
        return agent

    def _restore(self, state: dict[str, Any], path: Path, training: bool) -> None:
        """Check a loaded checkpoint's format, keys and algorithm, load the algorithm's state and the step."""
        check_checkpoint(state, path, self.checkpoint_format, ("algo", "step", *self.checkpoint_keys),
                         self.checkpoint_kind)
        if state["algo"] != self.algo_name:
            raise CheckpointError(f"{path} holds a {state['algo']!r} checkpoint, not {self.algo_name!r}")
        self._load_state(state, path, training)
        self.step = int(state["step"])

    # ------------------------------------------------------------------ the policy
    def act(self, obs: np.ndarray) -> np.ndarray:
        """``obs (B, obs_dim) float32 -> (B, action_dim) float32`` in ``[-1, 1]`` (:class:`mtf_env.policy.Policy`)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trained weights by name (what the determinism and resume tests compare)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    def _rng_scope(self) -> ContextManager[None]:
        """Context of ``fit`` and ``load`` (a library that draws from global generators scopes them here)."""
        return contextlib.nullcontext()

    def _check_fit_args(self, n_steps: int, log_every: int, checkpoint_every: int) -> None:
        """Further checks of ``fit``'s arguments (``ValueError``)."""

    def _start_fit(self, data: Any, seed: int, n_steps: int, log_every: int) -> None:
        """Build the agent afresh for ``seed`` (networks, optimisers, random streams, data); ``step = 0``."""
        raise NotImplementedError

    def _train_step(self, step: int) -> dict[str, float]:
        """One gradient step or online round; returns its metrics; advances ``self.step`` to ``step + 1``."""
        raise NotImplementedError

    def _end_fit(self) -> None:
        """Drop what only training needs (the data, workspaces, environments)."""

    def _run_identity(self) -> dict[str, Any]:
        """What a checkpoint must share with this run to be resumed (besides the config)."""
        raise NotImplementedError

    def _run_config_fields(self) -> dict[str, Any]:
        """``config.json`` fields besides ``algo`` and ``config``."""
        raise NotImplementedError

    @classmethod
    def _from_run_config(cls, meta: dict[str, Any], device: str | None) -> "Agent":
        """The agent described by a ``config.json`` object, networks not built yet."""
        raise NotImplementedError

    def _build_for_load(self) -> None:
        """Build the networks of a loaded agent (from its ``config.json`` fields) before its state is loaded."""

    def _algo_state(self, training: bool) -> dict[str, Any]:
        """The algorithm's part of the checkpoint (weights; with ``training`` whatever a resume needs)."""
        raise NotImplementedError

    def _load_state(self, state: dict[str, Any], path: Path, training: bool) -> None:
        """Load :meth:`_algo_state`'s part of a checkpoint (``training``: for a resume)."""
        raise NotImplementedError

    def _warm_start(self, state: dict[str, Any], path: Path) -> None:
        """Load the networks of another run's checkpoint ``state`` into the freshly built agent
        (default: :meth:`_load_state` for acting, which loads the networks only)."""
        self._load_state(state, path, training=False)

    def _write_extra_files(self, run_dir: Path) -> None:
        """Files written next to every checkpoint besides ``checkpoint.pt`` (``budget.json``, ...)."""

    def _require_trained(self) -> None:
        """Raise ``RuntimeError`` when there is nothing trained to act with or save."""
        raise NotImplementedError


class OfflineAgent(Agent):
    """An agent trained on logged transitions: ``config.json`` holds ``obs_dim``, ``action_dim`` and
    ``seed``; its config has a ``device``."""

    def __init__(self, config: ConfigBase | None = None):
        super().__init__(config)
        self.obs_dim: int | None = None
        self.action_dim: int | None = None
        self._fingerprint = ""

    def _run_identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "data_fingerprint": self._fingerprint, "device_type": torch.device(self.config.device).type}

    def _run_config_fields(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "action_dim": self.action_dim, "seed": self.seed}

    @classmethod
    def _from_run_config(cls, meta: dict[str, Any], device: str | None) -> "OfflineAgent":
        config, obs_dim, action_dim, seed = agent_run_fields(meta, cls.config_class, device)
        agent = cls(config)
        agent.obs_dim, agent.action_dim, agent.seed = obs_dim, action_dim, seed
        return agent

