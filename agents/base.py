"""Shared machinery of the trainable agents and estimators: fit loop, run directories, checkpoints.

There is no agent base class: each agent (``agents/batchrl_mtf.py``, ``agents/offline_d3rlpy.py``,
the online baselines, the estimator in ``agents/ope.py``) implements the agent API of
``tests/agent_contract.py`` itself and builds it from these pieces:

* :func:`fit_loop` -- the one training loop: calls ``update(step) -> dict[str, float]`` for
  each gradient step, averages the metrics over logging windows, writes them to a
  :class:`MetricsLogger` (``metrics.csv``), shows a tqdm bar and calls the checkpoint hook.
* ``fit`` arguments and run directories (``config.json``, ``metrics.csv``, ``checkpoint.pt``):
  :func:`check_fit_args`; :func:`write_run_config` / :func:`read_run_config` with
  :func:`agent_run_fields` and :func:`config_from_dict` (the ``"algo"`` tag and the agent's
  config dataclass); ``MetricsLogger(path, resume=True, last_step=step)`` (drops the rows
  logged after the checkpoint a run resumes from).
* Checkpoints: :func:`save_checkpoint` / :func:`load_checkpoint` (``torch.load(weights_only=True)``:
  nothing in the file is executed), :func:`check_checkpoint` (format and keys),
  :func:`load_resume_checkpoint` and :func:`check_resume` (refuse resuming another seed, data
  or config; the config is stored as :func:`config_json`), :func:`restoring_state`
  (optimiser / generator state errors as :class:`CheckpointError`), :func:`load_module_state`.
* Seeds and data: :func:`check_seed`, :func:`seed_from` (a torch seed from a
  ``numpy.random.SeedSequence``), :func:`set_torch_seed`, :func:`data_fingerprint`,
  :func:`check_transitions`, :func:`data_to_tensors`, :func:`sample_batch_indices`.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from mtf_env.transitions import TransitionArrays

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint file is not one of ours (wrong format, truncated, unsafe or mismatched)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a nested dict of tensors / numbers / strings atomically with ``torch.save``."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``: nothing in the file is executed.

    Raises :class:`CheckpointError` naming the problem for a missing, truncated, non-torch or
    unsafe (pickled code) file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a torch checkpoint of this project (not a torch zip archive; truncated or foreign file)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path} holds objects other than weights and was refused unread: {exc}") from None
    except Exception as exc:  # zip/record errors from a damaged archive
        raise CheckpointError(f"{path} could not be read as a checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict`` with a clear error for missing keys or wrong shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{what}: state dict does not match (missing {missing[:5]}, unexpected {unexpected[:5]})")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape:
            shape = getattr(value, "shape", type(value).__name__)
            raise CheckpointError(f"{what}: '{key}' has shape {tuple(shape)}, expected {tuple(own[key].shape)}")
    module.load_state_dict(state)


def check_checkpoint(state: dict[str, Any], path: Path, fmt: str, required: tuple[str, ...], what: str) -> None:
    """Refuse (:class:`CheckpointError`) a loaded checkpoint that lacks a ``required`` key or has
    another ``"format"`` than ``fmt``; ``what`` names the expected kind ("a BatchRL-MTF checkpoint")."""
    for key in ("format", *required):
        if key not in state:
            raise CheckpointError(f"{path} is not {what} (no '{key}')")
    if state["format"] != fmt:
        raise CheckpointError(f"{path} has format {state['format']!r}, expected {fmt!r}")


def config_json(config: Any) -> str:
    """A config dataclass as JSON with sorted keys: how checkpoints store it (see :func:`check_resume`)."""
    return json.dumps(asdict(config), sort_keys=True)


def check_resume(state: dict[str, Any], expected: dict[str, Any], config: Any) -> None:
    """Refuse (``ValueError``) to resume from a checkpoint ``state`` of another run.

    expected: values the checkpoint must hold unchanged, checked in order (``seed``,
    ``obs_dim``, ``data_fingerprint``, ...); config: this run's config dataclass, compared field
    by field with the checkpoint's ``"config"`` (a :func:`config_json` string) except ``n_steps``,
    which is only ``fit``'s default (the run length is ``fit``'s argument). The message names
    the first differing value, or every differing config field.
    """
    for key, value in expected.items():
        if state.get(key) != value:
            raise ValueError(f"cannot resume: checkpoint has {key}={state.get(key)!r}, this run has {value!r}")
    try:
        saved = {k: v for k, v in json.loads(state["config"]).items() if k != "n_steps"}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError("checkpoint has no readable 'config'") from None
    current = {k: v for k, v in json.loads(config_json(config)).items() if k != "n_steps"}
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ValueError(f"cannot resume: the config differs from the checkpoint's in {changed}")


@contextlib.contextmanager
def restoring_state(path: Path) -> Iterator[None]:
    """Context for loading optimiser and generator states from the checkpoint at ``path``: the
    errors they raise on a state of another shape or kind become :class:`CheckpointError`."""
    try:
        yield
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{path}: optimiser or generator state does not fit ({exc})") from None


def load_resume_checkpoint(checkpoint_path: Path | None, resume: bool) -> dict[str, Any] | None:
    """The checkpoint a ``fit(resume=True)`` continues from, or ``None`` when not resuming or when
    ``checkpoint_path`` does not exist yet (the run then starts from scratch)."""
    if not resume or checkpoint_path is None or not Path(checkpoint_path).exists():
        return None
    return load_checkpoint(checkpoint_path)


class MetricsLogger:
    """Appends one row of metrics per logging step to ``metrics.csv`` (columns fixed on first row).

    ``path=None`` logs nothing. A new logger deletes an existing file, unless ``resume``: then it
    appends to it, and with ``last_step`` it first drops the rows logged after that step (the
    rows a crashed run wrote after the checkpoint it resumes from), so no step appears twice.
    """

    def __init__(self, path: Path | None, resume: bool = False, last_step: int | None = None):
        self.path = Path(path) if path is not None else None
        self._fields: list[str] | None = None
        if self.path is not None and resume and self.path.exists():
            if last_step is not None:
                truncate_metrics(self.path, last_step)
            with open(self.path, newline="") as fh:
                header = next(csv.reader(fh), None)
            self._fields = header
        elif self.path is not None and self.path.exists():
            self.path.unlink()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.path is None:
            return
        row = {"step": step, **metrics}
        new = self._fields is None
        if new:
            self._fields = list(row)
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the rows of the metrics CSV at ``path`` whose step is after ``last_step`` (header kept)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and int(float(row[0])) <= last_step]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(kept)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys, atomically (numpy values and dataclasses allowed)."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_run_config(run_dir: Path, algo: str, **fields: Any) -> None:
    """Create ``run_dir`` and write its ``config.json``: ``{"algo": algo, **fields}`` with sorted keys.

    The ``"algo"`` tag is the registry name that :func:`read_run_config` and
    ``agents.registry.load_policy`` check; ``fields`` are the agent's (its ``config`` dataclass,
    ``obs_dim``, ``action_dim``, ``seed``, ...).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG_NAME, {"algo": algo, **fields})


def read_run_config(run_dir: Path, expected_algo: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """``parse(meta)`` of the ``config.json`` in ``run_dir``, a run of ``expected_algo``.

    ``parse`` turns the JSON object into what the caller needs (e.g. :func:`agent_run_fields`).
    Raises :class:`CheckpointError` naming the file when it is a run of another algorithm, and
    when it is missing, not JSON, not a JSON object, or ``parse`` raises ``KeyError``,
    ``ValueError``, ``TypeError`` or ``OSError`` (a missing field, an invalid config value).
    """
    config_path = Path(run_dir) / CONFIG_NAME
    try:
        meta = json.loads(config_path.read_text())
        if not isinstance(meta, dict):
            raise TypeError(f"it holds a JSON {type(meta).__name__}, not an object")
        if meta.get("algo") != expected_algo:
            raise CheckpointError(f"{config_path} is for algo {meta.get('algo')!r}, not {expected_algo!r}")
        return parse(meta)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{config_path} is not a {expected_algo} run config ({type(exc).__name__}: {exc})"
        ) from None


def agent_run_fields(meta: dict[str, Any], config_class: type, device: str | None = None) -> tuple[Any, int, int, int]:
    """``(config, obs_dim, action_dim, seed)`` of an offline agent's ``config.json`` object.

    ``config`` is ``config_class.from_dict(meta["config"])``, with its ``device`` field replaced
    by ``device`` unless that is ``None``.
    """
    values = dict(meta["config"])
    if device is not None:
        values["device"] = device
    return config_class.from_dict(values), int(meta["obs_dim"]), int(meta["action_dim"]), int(meta["seed"])


def config_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """A config dataclass from its ``dataclasses.asdict``; unknown keys raise ``ValueError``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}")
    return cls(**values)


def check_fit_args(
    n_steps: int | None,
    default_n_steps: int,
    *,
    log_every: int,
    checkpoint_every: int,
    resume: bool,
    out_dir: str | Path | None,
) -> int:
    """The run length of an agent's ``fit``: ``n_steps``, or ``default_n_steps`` (its config's) when ``None``.

    Refuses (``ValueError``) ``n_steps < 1``, ``log_every < 1``, ``checkpoint_every < 0`` and
    ``resume`` without the ``out_dir`` that holds the checkpoint.
    """
    n_steps = default_n_steps if n_steps is None else int(n_steps)
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if log_every < 1 or checkpoint_every < 0:
        raise ValueError(f"log_every must be >= 1 and checkpoint_every >= 0, got {log_every}, {checkpoint_every}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir holding the checkpoint")
    return n_steps


@dataclass
class FitResult:
    """What :func:`fit_loop` returns: the step count reached and the last logging window's metric means."""

    steps: int
    last_metrics: dict[str, float]


def fit_loop(
    update: Callable[[int], dict[str, float]],
    n_steps: int,
    *,
    start_step: int = 0,
    log_every: int = 100,
    logger: MetricsLogger | None = None,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 0,
    desc: str = "train",
    show_progress: bool = True,
) -> FitResult:
    """Run ``update(step)`` for steps ``start_step .. n_steps - 1``.

    Metrics returned by ``update`` are averaged over each ``log_every`` window and logged
    with the step count; ``checkpoint(step_done)`` is called every ``checkpoint_every``
    steps and at the end. The same loop serves every gradient-based agent.
    """
    window: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    bar = tqdm(total=n_steps, initial=start_step, desc=desc, disable=not show_progress, dynamic_ncols=True)
    for step in range(start_step, n_steps):
        metrics = update(step)
        for k, v in metrics.items():
            window.setdefault(k, []).append(float(v))
        done = step + 1
        if done % log_every == 0 or done == n_steps:
            last = {k: float(np.mean(v)) for k, v in window.items()}
            window = {}
            if logger is not None:
                logger.log(done, last)
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in list(last.items())[:3]})
        if checkpoint is not None and checkpoint_every and done % checkpoint_every == 0 and done != n_steps:
            checkpoint(done)
        bar.update(1)
    bar.close()
    if checkpoint is not None and n_steps > start_step:
        checkpoint(n_steps)
    return FitResult(steps=n_steps, last_metrics=last)


def open_run(
    agent: Any,
    n_steps: int,
    out_dir: str | Path | None,
    resume: bool,
    *,
    identity: dict[str, Any],
    restore: Callable[[dict[str, Any], Path], None],
    unit: str = "step",
) -> tuple[bool, MetricsLogger | None]:
    """The start every agent's ``fit`` shares once its networks, data and random streams are built.

    With ``resume`` and a checkpoint in ``out_dir``: refuse it unless its run identity equals
    ``identity`` and its config ``agent.config`` (:func:`check_resume`), load it with
    ``restore(state, path)`` (which advances ``agent.step``) and refuse one beyond ``n_steps``.
    Then write ``config.json`` (``agent._write_config``) and open ``metrics.csv`` (continued when
    resuming) in ``out_dir``. Returns (resumed, logger); ``out_dir=None`` writes nothing and
    gives no logger. ``unit`` names a step in errors (``step``, ``round``, ``env step``).
    """
    out = Path(out_dir) if out_dir is not None else None
    path = out / CHECKPOINT_NAME if out is not None else None
    state = load_resume_checkpoint(path, resume)
    if state is not None:
        check_resume(state, identity, agent.config)
        restore(state, path)
        if agent.step > n_steps:
            raise ValueError(f"checkpoint is at {unit} {agent.step}, beyond n_steps={n_steps}")
    logger = None
    if out is not None:
        agent._write_config(out)
        logger = MetricsLogger(out / METRICS_NAME, resume=state is not None, last_step=agent.step)
    return state is not None, logger


def resume_and_fit(
    agent: Any,
    update: Callable[[int], dict[str, float]],
    n_steps: int,
    out_dir: str | Path | None,
    resume: bool,
    *,
    identity: dict[str, Any],
    restore: Callable[[dict[str, Any], Path], None],
    checkpoint: Callable[[Path], None],
    log_every: int,
    checkpoint_every: int,
    desc: str,
    show_progress: bool,
    unit: str = "step",
) -> FitResult:
    """:func:`open_run`, then :func:`fit_loop` from ``agent.step``, calling ``checkpoint(path)``
    (``path`` = ``out_dir/checkpoint.pt``) every ``checkpoint_every`` steps and at the end."""
    _, logger = open_run(agent, n_steps, out_dir, resume, identity=identity, restore=restore, unit=unit)
    path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    return fit_loop(update, n_steps, start_step=agent.step, log_every=log_every, logger=logger,
                    checkpoint=(lambda _step: checkpoint(path)) if path is not None else None,
                    checkpoint_every=checkpoint_every, desc=desc, show_progress=show_progress)


def check_seed(seed: Any) -> int:
    """A non-negative int seed (numpy integers accepted, bools refused), or ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def seed_from(seq: np.random.SeedSequence) -> int:
    """A torch seed from a ``SeedSequence``: 64 bits of its state shifted into ``[0, 2**63)``."""
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def set_torch_seed(seed: int) -> torch.Generator:
    """Seed torch's global RNG (module initialisation) and return a dedicated generator."""
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def sample_batch_indices(rng: np.random.Generator, n: int, batch_size: int) -> np.ndarray:
    """Uniform indices with replacement into a buffer of ``n`` transitions."""
    return rng.integers(0, n, size=batch_size)


def data_to_tensors(data: TransitionArrays) -> dict[str, torch.Tensor]:
    """The transition arrays as float32 tensors (``not_done`` = 1 - terminal)."""
    return {
        "obs": torch.as_tensor(data.observations, dtype=torch.float32),
        "action": torch.as_tensor(data.actions, dtype=torch.float32),
        "reward": torch.as_tensor(data.rewards, dtype=torch.float32).reshape(-1, 1),
        "next_obs": torch.as_tensor(data.next_observations, dtype=torch.float32),
        "not_done": torch.as_tensor(1.0 - data.terminals.astype(np.float32)).reshape(-1, 1),
    }


def data_fingerprint(data: TransitionArrays) -> str:
    """SHA-256 hex digest of the arrays that define training (observations, actions, rewards,
    next_observations, terminals, timeouts): checkpoints store it to refuse resuming on other data."""
    digest = hashlib.sha256()
    for field in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        digest.update(np.ascontiguousarray(getattr(data, field)).tobytes())
    return digest.hexdigest()


def check_transitions(data: Any, *, actions_in_box: bool = True) -> None:
    """Refuse (``ValueError``) data an agent would silently mistrain on.

    ``data`` must be a non-empty :class:`TransitionArrays` with positive observation and action
    sizes and finite observations, actions, rewards and next observations; with
    ``actions_in_box`` its actions must lie in ``[-1, 1]`` (the policies' tanh range).
    """
    if not isinstance(data, TransitionArrays):
        raise ValueError(f"data must be a TransitionArrays, got {type(data).__name__}")
    if len(data) < 1:
        raise ValueError("data holds no transitions")
    if data.action_dim < 1 or data.obs_dim < 1:
        raise ValueError(f"data has obs_dim {data.obs_dim} and action_dim {data.action_dim}")
    if data.next_observations.shape != data.observations.shape:
        raise ValueError(
            f"next_observations have shape {data.next_observations.shape}, observations {data.observations.shape}"
        )
    for name in ("observations", "actions", "rewards", "next_observations"):
        if not np.all(np.isfinite(getattr(data, name))):
            raise ValueError(f"data.{name} holds non-finite values (NaN or infinite)")
    if actions_in_box and np.abs(data.actions).max() > 1.0:
        raise ValueError(f"data.actions must lie in [-1, 1] (the policies' tanh range), "
                         f"max |a| = {np.abs(data.actions).max()}")
