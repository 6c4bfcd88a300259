"""Train any registered algorithm on a logged dataset (or online in the simulator) into a run directory.

One function, :func:`train_agent`, is used by ``mtf-bench train``, ``mtf-bench quickstart``
and the benchmark suites::

    from benchmarks.evaluation.training import train_agent
    result = train_agent("batchrl-mtf", "datasets/small", steps=20_000, seed=0,
                         out="runs/batchrl-mtf__small__0", overrides={"critic_hidden": [64, 64]})
    result.agent.act(obs)          # the trained Policy; result.run_dir loads with agents.registry.load_policy

What an algorithm class (``agents.registry.ALGOS``) must offer
-------------------------------------------------------------
* ``cls(config)``: the constructor takes a frozen config dataclass; its class is
  ``cls.config_class`` or, failing that, the dataclass named in the annotation of
  ``__init__``'s ``config`` parameter (``BatchRLMTFConfig | None``).
* ``agent.fit(data, n_steps, *, seed, out_dir, resume, show_progress)`` as in
  ``tests/agent_contract.py``; it writes ``config.json`` (with an ``"algo"`` and a ``"config"``
  entry), ``metrics.csv`` and ``checkpoint.pt`` into ``out_dir``.
* ``requires_data`` (class attribute, default ``True``): ``False`` for online methods (BO, ES,
  online SAC), which get ``data=None`` and the simulator config as ``sim_config=`` (passed to
  ``fit`` if it accepts that keyword, else to the constructor if it accepts it).
* ``fit`` keywords ``log_every`` / ``checkpoint_every`` are passed only when given and accepted.

The run directory
-----------------
``out`` must be empty or absent, unless ``resume=True``: then it must hold a run of the same
algorithm, whose saved ``config.json`` config is the base that ``overrides`` change (the agent
itself refuses a resume whose config, seed or data differ from its checkpoint). Besides the
agent's files this module writes ``train.json``: the command's inputs (dataset path and its
manifest checksums, reward, steps, seed, overrides), wall time, gradient steps per second,
torch threads, load average and the last logged metrics. Its ``overrides`` are the run's config
fields that differ from the algorithm's defaults (so a resumed run records the overrides it was
started with), ``overrides_given`` the ones passed to this call. Every input is checked --
algorithm, config keys and values, dataset -- before anything is written, so a bad call loses nothing.

Interrupted training (Ctrl-C) raises :class:`TrainingInterrupted`, a ``KeyboardInterrupt`` that
says what was kept: the run directory with its last checkpoint (resume it), or -- interrupted
before the first checkpoint of a new run -- nothing: the files this call wrote (``config.json``,
``metrics.csv``) are removed, and the directory too if this call created it, so that the same
call can simply be run again.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from agents.checkpoint import CHECKPOINT_NAME
from agents.run_dir import CONFIG_NAME
from mtf_env.files import write_json
from agents.registry import algo_class

from .configs import build_config, reward_overrides

#: The training log this module writes next to the agent's own files.
TRAIN_LOG_NAME = "train.json"
#: Run directory root of the default run names.
RUNS_ROOT = Path("runs")


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_agent` returns."""

    agent: Any
    """The trained agent (a :class:`mtf_env.policy.Policy`)."""
    run_dir: Path
    """The run directory (``config.json``, ``metrics.csv``, ``checkpoint.pt``, ``train.json``)."""
    algo: str
    """Registry name of the algorithm."""
    steps: int
    """Total gradient steps of the run (a resumed run counts the steps before the resume)."""
    steps_this_call: int
    """Gradient steps done by this call (``steps`` minus the checkpoint's step on a resume)."""
    wall_s: float
    """Seconds spent in ``fit`` by this call (replay-buffer setup included, dataset reading excluded)."""
    last_metrics: dict[str, float]
    """The last logged metrics row (window means), empty if the agent logged none."""

    @property
    def steps_per_s(self) -> float:
        """Gradient steps per second of this call."""
        return self.steps_this_call / self.wall_s if self.wall_s > 0 else float("nan")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train_agent`'s training; ``str()`` says what was kept (one line)."""

    def __init__(self, run_dir: Path, checkpoint_step: int | None, removed: bool):
        self.run_dir = run_dir
        self.checkpoint_step = checkpoint_step
        """The step of the kept checkpoint (None: no checkpoint was written)."""
        self.removed = removed
        """Whether the files of this call (and the directory, if it created it) were removed."""
        if checkpoint_step is not None:
            text = f"kept {run_dir} at step {checkpoint_step} (its last checkpoint)"
        elif removed:
            text = f"no checkpoint had been written; removed what this call wrote in {run_dir}"
        else:
            text = f"no checkpoint had been written; {run_dir} is as before"
        super().__init__(text)


# ---------------------------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------------------------
def make_agent(algo: str, overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None):
    """A fresh, untrained agent of ``algo`` with its config (see :func:`build_config`)."""
    cls = algo_class(algo)
    return cls(build_config(cls, overrides, base))


def config_changes(cls: type, config: Any) -> dict[str, Any]:
    """The fields of ``config`` that differ from the defaults of ``cls``'s config class, as JSON values."""
    defaults = json.loads(json.dumps(dataclasses.asdict(type(config)()), default=str))
    values = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    return {key: value for key, value in values.items() if defaults.get(key) != value}


# ---------------------------------------------------------------------------------------------
# Run directories
# ---------------------------------------------------------------------------------------------
def default_run_dir(algo: str, data_dir: str | Path | None, seed: int, root: str | Path = RUNS_ROOT) -> Path:
    """``runs/<algo>__<dataset>__<seed>`` (``online`` for an algorithm trained without data)."""
    dataset = Path(data_dir).resolve().name if data_dir is not None else "online"
    return Path(root) / f"{algo}__{dataset}__{seed}"


def _saved_run(out: Path, algo: str, resume: bool) -> dict[str, Any] | None:
    """Check ``out`` may be written; returns its saved ``config.json`` on a resume (None for a new run)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"run directory {out} exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not resume:
        if entries:
            raise ValueError(f"run directory {out} is not empty ({', '.join(entries[:5])}); resume that run, or "
                             "choose another run directory")
        return None
    if not entries:
        return None
    config_path = out / CONFIG_NAME
    try:
        saved = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot resume in {out}: no readable {CONFIG_NAME} ({type(exc).__name__})") from None
    if not isinstance(saved, dict) or saved.get("algo") != algo:
        raise ValueError(f"cannot resume in {out}: it holds a run of {saved.get('algo') if isinstance(saved, dict) else None!r}, "
                         f"not {algo!r}")
    return saved


def _online_world(data_dir: Path | None, reward: Any, sim_overrides: Mapping[str, Any] | None,
                  saved: Mapping[str, Any] | None):
    """The SimConfig an online method trains in: the dataset's world if a dataset is given, else
    the resumed run's, else the default; ``sim_overrides`` change it."""
    from mtf_env.config import make_config

    if data_dir is not None:
        from mtf_env.dataset import load_dataset

        base = load_dataset(data_dir, reward=reward, split="train", verify_checksums=False,
                            validate="structure").config.to_json()
    else:
        base = dict(saved) if isinstance(saved, Mapping) else {}
    return make_config(**{**base, **dict(sim_overrides or {})})


def _accepts(func, name: str) -> bool:
    params = inspect.signature(func).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _manifest_summary(data_dir: Path) -> dict[str, Any]:
    from mtf_env.dataset import dataset_manifest

    manifest = dataset_manifest(data_dir)
    return {"path": str(data_dir), "policy": manifest.get("collection", {}).get("policy"),
            "files_sha256": {f["path"]: f["sha256"] for f in manifest.get("files", [])},
            "counts": manifest.get("counts"), "split": manifest.get("split"), "created_by": manifest.get("created_by")}


# ---------------------------------------------------------------------------------------------
# Time estimate
# ---------------------------------------------------------------------------------------------
#: Steps (rounds, iterations) per second of each algorithm at its config's defaults, measured with
#: :func:`train_agent` (one torch thread, no progress bar; 100-200 gradient steps, 2 BO rounds, 2 ES
#: iterations) on the shared 2-core development machine under a 1-minute load average of 7.6-13.4:
#: pessimistic for a quiet machine. sac-online is left out: a short run stays inside its
#: ``learning_starts`` and would give a speed far above a real run's. The basis of
#: :func:`estimate_seconds` when the run has no measured speed of its own.
REFERENCE_STEPS_PER_S: dict[str, float] = {
    "batchrl-mtf": 2.4, "td3": 15.3, "uwac-td3": 4.2, "cql-sac": 0.8, "bc": 25.6, "td3-bc": 7.0, "iql": 6.1,
    "bo": 0.049, "es": 0.66,
}
REFERENCE_MACHINE = "a shared 2-core machine under load 8-13, one torch thread"


def estimate_seconds(algo: str, config: Any, run_dir: str | Path | None = None,
                     changed: bool = False) -> tuple[float | None, str]:
    """Expected seconds to train ``algo`` for ``config.n_steps`` steps, and what the figure is based on.

    With ``run_dir`` (a resume) the speed measured by that run's last call (its ``train.json``)
    is used for the steps left after its checkpoint; otherwise :data:`REFERENCE_STEPS_PER_S`
    (``changed``: the config is not the default one, so the reference speed may not apply).
    Returns ``(None, reason)`` when there is no figure to go on.
    """
    steps = int(config.n_steps)
    unit = getattr(algo_class(algo), "step_unit", "step")
    if run_dir is not None:
        try:
            log = json.loads((Path(run_dir) / TRAIN_LOG_NAME).read_text())
            speed, done = float(log["steps_per_s"]), int(log["steps"])
            if speed > 0:
                return max(steps - done, 0) / speed, (f"{speed:.3g} {unit}s/s, measured by this run's last call, "
                                                       f"for the {max(steps - done, 0):,} {unit}s left")
        except (OSError, ValueError, KeyError, TypeError):
            pass
    speed = REFERENCE_STEPS_PER_S.get(algo)
    if speed is None:
        return None, f"no reference speed for {algo}; the progress bar shows the estimate once training runs"
    basis = f"{speed:g} {unit}s/s at the default config, measured on {REFERENCE_MACHINE}"
    if changed:
        basis += "; this config differs from the default, so its speed will too"
    return steps / speed, basis


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def train_agent(
    algo: str,
    data_dir: str | Path | None,
    steps: int | None,
    seed: int,
    out: str | Path | None,
    resume: bool = False,
    reward: Any = "default",
    overrides: Mapping[str, Any] | None = None,
    show_progress: bool = True,
    *,
    sim_overrides: Mapping[str, Any] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    data=None,
    before_fit: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train ``algo`` for ``steps`` gradient steps with ``seed`` into the run directory ``out``.

    Args:
        algo: a name of :data:`agents.registry.ALGOS`.
        data_dir: logged dataset directory; its ``train`` split is the training data
            (``load_dataset(data_dir, reward=reward, split="train")``). May be None only for
            algorithms with ``requires_data = False`` (online methods).
        steps: total gradient steps of the run (None: the config's ``n_steps``, the paper's budget).
        seed: all randomness of the run.
        out: run directory (None: :func:`default_run_dir`). Must be empty or absent unless ``resume``.
        resume: continue the run in ``out`` from its last checkpoint (bitwise the same weights as
            an uninterrupted run, for agents that implement it); the saved config is the base.
        reward: reward the transitions are relabelled with: a preset name (default, time,
            integrity, interaction), 12 weights or a task -> weight mapping. Online agents
            (whose config has a ``reward`` field) are trained on it; an ``overrides`` reward
            that differs is refused.
        overrides: config field -> value (``{"critic_hidden": [64, 64], "batch_size": 128}``);
            strings from the command line are converted to the field's type.
        show_progress: tqdm progress bar of the fit loop.
        sim_overrides: SimConfig overrides for online algorithms (offline ones train in the
            dataset's world and ignore it; a dataset given to an online algorithm sets its world).
        fit_kwargs: extra ``fit`` keywords (``log_every``, ``checkpoint_every``), passed when accepted.
        data: an already loaded ``TransitionArrays`` to train on instead of reading ``data_dir``
            (``data_dir`` is then only recorded); for suites that reuse one loaded dataset.
        before_fit: called with the run's config once every input is checked and the data is
            loaded, right before training starts (the command line prints its time estimate there).

    Returns:
        :class:`TrainResult`. Raises ValueError (nothing written) for an unknown algorithm, an
        unknown config key or bad value, a missing or invalid dataset, or a non-empty ``out``
        without ``resume``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    cls = algo_class(algo)  # ValueError naming the known algorithms
    requires_data = bool(getattr(cls, "requires_data", True))
    if requires_data and data_dir is None and data is None:
        raise ValueError(f"{algo} trains on logged data: give its dataset directory")
    out = Path(out) if out is not None else default_run_dir(algo, data_dir, int(seed))
    saved = _saved_run(out, algo, resume)
    out_existed, entries_before = out.is_dir(), set(out.iterdir()) if out.is_dir() else set()
    config = build_config(cls, reward_overrides(cls, overrides, reward), base=(saved or {}).get("config"))

    # -- data (or the simulator world of an online method), all checked before writing anything
    dataset_info: dict[str, Any] | None = None
    sim_config = None
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not (data_dir / "manifest.json").is_file():
            raise ValueError(f"no dataset at {data_dir} (no manifest.json); collect one with "
                             f"`mtf-bench collect --preset small --out {data_dir}`")
        dataset_info = _manifest_summary(data_dir)
    if requires_data and data is None:
        from mtf_env.dataset import load_dataset

        ds = load_dataset(data_dir, reward=reward, split="train")
        data = ds.transitions()
        sim_config = ds.config
    elif not requires_data:
        sim_config = _online_world(data_dir, reward, sim_overrides, (saved or {}).get("sim_config"))
        data = None

    fit_kwargs = dict(fit_kwargs or {})
    if not requires_data:
        if _accepts(cls.fit, "sim_config"):
            fit_kwargs["sim_config"] = sim_config
            agent = cls(config)
        elif _accepts(cls.__init__, "sim_config"):
            agent = cls(config, sim_config=sim_config)
        else:
            raise ValueError(f"{algo} trains online (requires_data = False) but neither its fit() nor its "
                             "constructor takes a sim_config")
    else:
        agent = cls(config)
    kwargs: dict[str, Any] = dict(seed=int(seed), out_dir=out, resume=bool(resume), show_progress=show_progress)
    for key, value in fit_kwargs.items():
        if not _accepts(agent.fit, key):
            raise ValueError(f"{algo}.fit() takes no {key!r}")
        kwargs[key] = value

    start_step = 0
    if resume and (out / "checkpoint.pt").is_file():
        from agents.checkpoint import load_checkpoint

        start_step = int(load_checkpoint(out / "checkpoint.pt").get("step", 0))
    if before_fit is not None:
        before_fit(config)
    t0 = time.perf_counter()
    try:
        fit_result = agent.fit(data, steps, **kwargs)
    except KeyboardInterrupt:
        raise _interrupted(out, out_existed, entries_before) from None
    wall = time.perf_counter() - t0
    total = int(getattr(fit_result, "steps", steps or 0))
    last = dict(getattr(fit_result, "last_metrics", {}) or {})
    result = TrainResult(agent=agent, run_dir=out, algo=algo, steps=total, steps_this_call=max(total - start_step, 0),
                         wall_s=wall, last_metrics=last)
    _write_train_log(result, data_dir, dataset_info, reward, seed, config_changes(cls, config), overrides, sim_config,
                     resume, start_step, len(data) if data is not None else None)
    return result


def _interrupted(out: Path, out_existed: bool, entries_before: set[Path]) -> TrainingInterrupted:
    """After Ctrl-C in ``fit``: keep a run with a checkpoint; otherwise remove what this call wrote."""
    checkpoint = out / CHECKPOINT_NAME
    if checkpoint.is_file():
        from agents.checkpoint import load_checkpoint

        try:
            return TrainingInterrupted(out, int(load_checkpoint(checkpoint).get("step", 0)), removed=False)
        except (OSError, ValueError):
            return TrainingInterrupted(out, None, removed=False)
    if not out_existed:
        shutil.rmtree(out, ignore_errors=True)
        return TrainingInterrupted(out, None, removed=True)
    new = [p for p in out.iterdir() if p not in entries_before] if out.is_dir() else []
    for path in new:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return TrainingInterrupted(out, None, removed=bool(new))


def _write_train_log(result: TrainResult, data_dir, dataset_info, reward, seed, run_overrides, overrides, sim_config,
                     resume, start_step, n_transitions) -> None:
    import torch

    from mtf_env.dataset_io import code_version

    log_path = result.run_dir / TRAIN_LOG_NAME
    previous = []
    if resume and log_path.is_file():
        try:
            old = json.loads(log_path.read_text())
            previous = old.get("previous_calls", []) + [{k: old.get(k) for k in ("steps", "wall_s", "steps_per_s",
                                                                                    "start_step")}]
        except (OSError, json.JSONDecodeError):
            previous = []
    write_json(log_path, {
        "algo": result.algo,
        "data": dataset_info,
        "train_transitions": n_transitions,
        "reward": reward if isinstance(reward, (str, dict)) or reward is None else np.asarray(reward).tolist(),
        "seed": int(seed),
        "steps": result.steps,
        "start_step": int(start_step),
        "overrides": run_overrides,
        "overrides_given": {k: list(v) if isinstance(v, tuple) else v for k, v in (overrides or {}).items()},
        "sim_config": sim_config.to_json() if sim_config is not None else None,
        "wall_s": result.wall_s,
        "steps_per_s": result.steps_per_s if result.steps_this_call else None,
        "last_metrics": result.last_metrics,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "code_version": code_version(),
        "previous_calls": previous,
    })
