"""Wall time of the paper suite with the local executor against the Ray executor with 1 and 2 workers, and Ray's
per-task overhead.

Each configuration runs the same preset, rows and seeds into a fresh suite directory (datasets
collected again each time: they are cells too), in this order: the local executor, then for each
worker count a new Ray instance on this machine (``num_cpus`` = workers, each cell asking for one
CPU, so at most that many cells run at once; 127.0.0.1 only) whose start-up is timed apart from
the suite. Per-task overhead: the median round trip of a no-op task (``ray.get(f.remote())``, one
at a time, after a warm-up) on the 1-worker instance. The results of every configuration are
compared with the local run's (timings aside): ``same_results``. The 1-minute load average is
recorded before and after each configuration; on a shared machine the figures move with it.

Run: ``mtf-bench bench-ray --preset smoke --only bo td3 batchrl-mtf production --seeds 0 --out results/bench_ray.json``.
"""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence


def _load1() -> float:
    return float(os.getloadavg()[0])


def _timed_suite(preset: str, out: Path, only, seeds, executor) -> dict[str, Any]:
    import json

    from benchmarks.suites.runner import run_suite
    from benchmarks.suites.suite_report import strip_timing

    load_before = _load1()
    t0 = time.perf_counter()
    run_suite(preset, out, seeds=seeds, only=only, executor=executor, show_progress=False)
    wall = time.perf_counter() - t0
    result = json.loads((out / "results.json").read_text())
    return {"wall_s": wall, "cells": result["cells_done"], "load1_before": load_before, "load1_after": _load1(),
            "results": strip_timing(result)}


def noop_round_trip_s(ray, n: int = 50) -> dict[str, float]:
    """Round trip of a no-op task, one at a time: median and min seconds over ``n`` after 5 warm-up calls."""

    @ray.remote(num_cpus=1)
    def noop():
        return None

    for _ in range(5):
        ray.get(noop.remote())
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ray.get(noop.remote())
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "n": n}


def run_bench(preset: str = "smoke", only: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              workers: Sequence[int] = (1, 2), noop_tasks: int = 50, work_dir: str | Path | None = None
              ) -> dict[str, Any]:
    """Time the suite locally and with Ray at each worker count; returns the figures (JSON-able)."""
    from benchmarks.suites.executors import LocalExecutor
    from benchmarks.suites.ray_executor import RayExecutor, import_ray_local_only, local_init_kwargs

    if not workers or min(workers) < 1:
        raise ValueError(f"workers must be positive integers, got {list(workers)}")
    if noop_tasks < 1:
        raise ValueError(f"noop_tasks must be positive, got {noop_tasks}")
    ray = import_ray_local_only()
    if ray.is_initialized():
        raise ValueError("Ray is already running in this process; the benchmark starts its own instances")
    root = Path(tempfile.mkdtemp(prefix="bench_ray_", dir=work_dir))
    report: dict[str, Any] = {"preset": preset, "only": list(only) if only else None,
                              "seeds": list(seeds) if seeds is not None else None, "ray_version": ray.__version__,
                              "cpu_count": os.cpu_count(), "runs": {}}
    try:
        local = _timed_suite(preset, root / "local", only, seeds, LocalExecutor())
        expected = local.pop("results")
        report["runs"]["local"] = local
        for n in workers:
            t0 = time.perf_counter()
            ray.init(**local_init_kwargs(num_cpus=n), object_store_memory=100 * 2**20)
            start_s = time.perf_counter() - t0
            try:
                if n == min(workers):
                    report["noop_task"] = {"workers": n, **noop_round_trip_s(ray, noop_tasks)}
                run = _timed_suite(preset, root / f"ray{n}", only, seeds, RayExecutor())
            finally:
                ray.shutdown()
            run["same_results"] = run.pop("results") == expected
            report["runs"][f"ray_{n}_workers"] = {**run, "ray_start_s": start_s}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return report
