"""Run directories: ``config.json`` (what was trained) and ``metrics.csv`` (one row per logging step).

* :func:`write_run_config` / :func:`read_run_config`: ``config.json`` is ``{"algo": name, **fields}``
  with sorted keys; reading checks the ``"algo"`` tag and turns every problem into a
  :class:`agents.checkpoint.CheckpointError` naming the file. :func:`agent_run_fields` parses an
  offline agent's fields.
* :class:`MetricsLogger`: appends rows to ``metrics.csv``; a resumed run first drops the rows
  logged after its checkpoint (:func:`truncate_metrics`).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, TypeVar

from agents.checkpoint import CheckpointError
from mtf_env.files import write_json

CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"

T = TypeVar("T")


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
