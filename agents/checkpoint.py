"""Checkpoint files (``checkpoint.pt``): atomic save, safe load, format and resume checks.

A checkpoint is a nested dict of tensors, numbers and strings written with ``torch.save`` and
read with ``torch.load(weights_only=True)``: nothing in the file is executed.

* :func:`save_checkpoint` / :func:`load_checkpoint`; :func:`check_checkpoint` (format tag and keys);
* :func:`check_resume` refuses resuming a checkpoint of another seed, data or config (the
  config is stored as :func:`config_json`); :func:`load_resume_checkpoint` finds the one to resume;
* :func:`load_module_state` and :func:`restoring_state`: shape and state errors as :class:`CheckpointError`.
"""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch

from mtf_env.files import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint file is not one of ours (wrong format, truncated, unsafe or mismatched)."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a nested dict of tensors / numbers / strings atomically with ``torch.save``."""
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
    the first differing value, or every differing config field. A stored config that uses a
    field's old name (``config.renamed_fields``) is compared under the new name.
    """
    for key, value in expected.items():
        if state.get(key) != value:
            raise ValueError(f"cannot resume: checkpoint has {key}={state.get(key)!r}, this run has {value!r}")
    try:
        saved = {k: v for k, v in json.loads(state["config"]).items() if k != "n_steps"}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError("checkpoint has no readable 'config'") from None
    for old, new in getattr(config, "renamed_fields", {}).items():
        if old in saved and new not in saved:
            saved[new] = saved.pop(old)
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
