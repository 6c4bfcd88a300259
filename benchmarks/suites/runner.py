"""Running the paper suite: datasets first (shared), then every cell through an executor, then the report.

::

    from benchmarks.suites.runner import run_suite
    run_suite("smoke", "results/suite/smoke")            # what `mtf-bench suite run --preset smoke` does

The suite directory holds ``suite.json`` (the plan: preset, seeds, rows and every cell with its
key), ``cells/`` (one result per finished cell), ``datasets/``, ``work/`` (run directories), and
the report (``report.md``, ``results.json``, figures).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from .cells import read_result
from .executors import LocalExecutor, run_all
from .paper_suite import check_only, plan_cells, plan_dataset_cells, resolve_preset, with_loop_data
from .suite_report import PLAN_NAME, write_report


def run_suite(preset_name: str, out: str | Path, seeds: Sequence[int] | None = None, only: Sequence[str] | None = None,
              device: str = "cpu", executor=None, show_progress: bool = True, log=None, workers: int = 1,
              loop_data: str | Path | None = None, loop_data_random: str | Path | None = None) -> dict[str, Any]:
    """Collect the datasets, run every cell (skipping finished ones), write the report; returns results.json's dict.

    loop_data / loop_data_random: train on the last training window of these explore -> retrain loops instead of
    the preset's ``mixed`` / ``random`` collections (:func:`~benchmarks.suites.paper_suite.with_loop_data`).

    executor: any :class:`~benchmarks.suites.executors.Executor` (default: :class:`LocalExecutor` with
    ``workers`` processes). Raises ValueError for a bad preset / row / seed / device before any work; :class:`SuiteError`
    (after the other cells finished) if cells failed.
    """
    from mtf_env.dataset_io import code_version
    from mtf_env.files import write_json

    preset = with_loop_data(resolve_preset(preset_name), loop_data, loop_data_random)
    rows = check_only(only)
    seeds = tuple(preset.seeds if seeds is None else seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    executor = executor or LocalExecutor(show_progress=False, workers=workers)
    say = log or (lambda text: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    version = code_version()

    dataset_cells = plan_dataset_cells(preset, rows, version)
    say(f"datasets: {', '.join(c['row'] for c in dataset_cells)}")
    failures = run_all(executor, dataset_cells, out, show_progress, "datasets")
    if failures:
        raise SuiteError(failures)
    datasets = {c["row"].removeprefix("dataset-"): read_result(c, out) for c in dataset_cells}
    cells = plan_cells(preset, rows, seeds, datasets, version, device)
    plan = {"preset": preset.name, "seeds": list(seeds), "rows": rows, "device": device,
            "preset_settings": json.loads(json.dumps(dataclasses.asdict(preset))),
            "code_version": version, "dataset_cells": dataset_cells, "cells": cells}
    write_json(out / PLAN_NAME, plan)
    say(f"{len(cells)} cells ({len(rows)} rows x {len(seeds)} seed(s)) into {out}")
    failures = run_all(executor, cells, out, show_progress, "cells")
    result = write_report(out)
    if failures:
        raise SuiteError(failures)
    return result


class SuiteError(RuntimeError):
    """Cells failed (the others finished); ``failures``: cell name -> one-line error."""

    def __init__(self, failures: Mapping[str, str]):
        self.failures = dict(failures)
        super().__init__(f"{len(failures)} cell(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failures.items()))
