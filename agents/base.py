"""Shared machinery of the trainable agents: the one fit loop, metric logging, checkpoints.

An agent (BatchRL-MTF, TD3, ...) subclasses :class:`Agent` and implements
``update(batch) -> dict[str, float]`` (one gradient step), ``act`` and
``state_dict`` / ``load_state_dict``. :func:`fit` owns the loop: batch sampling from a
seeded generator, progress bar, metrics CSV, periodic checkpoints and ``resume``.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from mtf_env.transitions import TransitionArrays

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"


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


class MetricsLogger:
    """Appends one row of metrics per logging step to ``metrics.csv`` (columns fixed on first row)."""

    def __init__(self, path: Path | None, resume: bool = False):
        self.path = Path(path) if path is not None else None
        self._fields: list[str] | None = None
        if self.path is not None and resume and self.path.exists():
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


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass
class FitResult:
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
