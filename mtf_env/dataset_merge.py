"""Concatenate logged datasets into one, in order: the days of a training window as one dataset.

The paper retrains daily on "the trajectory data collected in the past three days". The explore ->
retrain loop logs each day as its own dataset (``round_DD/data``); :func:`merge_datasets` writes
the days of a window as one dataset that every tool reading a dataset (the suite, ``mtf-bench
train``, d3rlpy export) takes as it is::

    merge_datasets([loop / "round_05/data", loop / "round_06/data", loop / "round_07/data"], out)

Sessions keep their order (source by source), so the paper's split (the first ``train_fraction``
of sessions in time order train, the rest test) makes the test split the end of the last source.
Renumbered: ``session_id``, ``first_row`` and ``time_order`` continue across sources; ``day`` is
shifted by the days of the sources before (the first source's days stay, the next start after
them). Everything else is copied as logged. The sources must share the world (``sim_config``),
the observation and page sizes and the behaviour groups; each is read with its checksums
verified. The write is atomic (:class:`~mtf_env.dataset_io.DatasetWriter`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq

from .dataset import load_dataset
from .dataset_io import (FORMAT_NAME, REQUEST_COLUMNS, SCHEMA_VERSION, SESSION_COLUMNS, DatasetError, DatasetWriter,
                         code_version, column_to_numpy, read_manifest)

#: manifest fields every source must share
_SHARED = ("sim_config", "obs_dim", "page_size", "action_dim", "task_names", "fusion")


def merge_datasets(sources: Sequence[str | Path], out: str | Path, *, train_fraction: float = 0.9,
                   overwrite: bool = False, description: str | None = None) -> Path:
    """Write the sessions of ``sources`` (dataset directories, in this order) as one dataset at ``out``.

    train_fraction: share of the merged sessions (first in order) in the train split.
    description: free text stored in the manifest's ``collection.description`` (what the merge is).
    Returns ``out``. Raises :class:`~mtf_env.dataset_io.DatasetError` naming the source that is not a
    dataset, is corrupt, or does not share the world / sizes / behaviour groups of the first;
    ValueError for no sources or a train_fraction outside (0, 1).
    """
    if not sources:
        raise ValueError("merge_datasets needs at least one source dataset")
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    paths = [Path(s) for s in sources]
    manifests = []
    for path in paths:
        load_dataset(path, split="all", verify_checksums=True, validate="full")  # corrupt sources fail here
        manifests.append(read_manifest(path))
    first = manifests[0]
    for path, manifest in zip(paths[1:], manifests[1:]):
        for key in _SHARED:
            if manifest.get(key) != first.get(key):
                raise DatasetError(f"{path}: its {key} differs from {paths[0]}'s; only datasets of one world and "
                                   "format can be merged")
        if manifest["collection"].get("groups") != first["collection"].get("groups"):
            raise DatasetError(f"{path}: behaviour groups {manifest['collection'].get('groups')} differ from "
                               f"{paths[0]}'s {first['collection'].get('groups')}")
    n_total = sum(int(m["counts"]["sessions"]) for m in manifests)
    n_train = int(np.floor(float(train_fraction) * n_total))
    version = code_version()
    sessions_done = rows_done = time_done = days_done = 0
    terminated = truncated = 0
    with DatasetWriter(Path(out), int(first["obs_dim"]), int(first["page_size"]), overwrite=overwrite) as writer:
        for path, manifest in zip(paths, manifests):
            requests = _read_table(path, manifest, "requests", REQUEST_COLUMNS)
            sessions = _read_table(path, manifest, "sessions", SESSION_COLUMNS)
            span_days = int(sessions["day"].max()) + 1
            time_span = int(requests["time_order"].max()) + 1
            for table in (requests, sessions):
                table["session_id"] += sessions_done
                table["day"] += days_done
            requests["time_order"] += time_done
            sessions["first_row"] += rows_done
            writer.write(requests, sessions)
            terminated += int(sessions["terminated"].sum())
            truncated += int(sessions["truncated"].sum())
            sessions_done += len(sessions["session_id"])
            rows_done += len(requests["session_id"])
            time_done += time_span
            days_done += span_days
        merged = {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "created_by": version,
            **{key: first[key] for key in _SHARED},
            "collection": {
                "policy": "merged",
                "description": description or f"{len(paths)} datasets concatenated in order",
                "groups": list(first["collection"].get("groups", [])),
                "group_rule": first["collection"].get("group_rule"),
                "sources": [{"path": str(path), "policy": m["collection"].get("policy"), "counts": m["counts"],
                             "files_sha256": sorted(e["sha256"] for e in m["files"])}
                            for path, m in zip(paths, manifests)],
                "config": {"n_days": days_done, "n_sessions": n_total, "train_fraction": float(train_fraction)},
            },
            "split": {"train_fraction": float(train_fraction), "train_sessions": n_train,
                      "test_sessions": n_total - n_train, "rule": "first train_fraction of sessions in the merged "
                      "order (session_id < train_sessions) train, the rest test"},
            "counts": {"sessions": n_total, "requests": rows_done, "terminated_sessions": terminated,
                       "truncated_sessions": truncated},
            "columns": {"requests": REQUEST_COLUMNS, "sessions": SESSION_COLUMNS},
        }
        json.dumps(merged)  # the manifest must be plain JSON
        return writer.finish(merged)


def _read_table(path: Path, manifest: dict[str, Any], table: str, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """All rows of one table of a (checked) dataset as numpy columns (list columns 2-D)."""
    files = sorted((e for e in manifest["files"] if e["table"] == table), key=lambda e: e["part"])
    parts = [pq.read_table(path / e["path"], columns=list(columns)) for e in files]
    return {name: np.concatenate([column_to_numpy(p.column(name)) for p in parts]) for name in columns}
