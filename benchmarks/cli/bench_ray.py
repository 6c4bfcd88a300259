"""``mtf-bench bench-ray``: wall time of the paper suite with the local executor against the Ray executor with 1 and
2 workers on this machine, and Ray's per-task overhead (:mod:`benchmarks.speed.bench_ray`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_file, positive, set_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-ray", help="suite wall time: local executor vs Ray with 1 and 2 workers; Ray's "
                                         "per-task overhead (needs pip install -e \".[ray]\")")
    p.add_argument("--preset", default="smoke", help="suite preset (default smoke)")
    p.add_argument("--only", nargs="+", metavar="CELL", help="rows to run (default: every row)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the preset's)")
    p.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts (default 1,2)")
    p.add_argument("--noop-tasks", type=int, default=50, help="no-op tasks timed for the per-task overhead (default 50)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.set_defaults(func=_run, command_name="bench-ray")


def _run(args: argparse.Namespace) -> None:
    from benchmarks.suites import paper_suite
    from benchmarks.suites.ray_executor import require_ray

    paper_suite.resolve_preset(args.preset)
    paper_suite.check_only(args.only)
    seeds = paper_suite.parse_seeds(args.seeds) if args.seeds is not None else None
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise ValueError(f"--workers expects comma-separated positive integers, got {args.workers!r}") from None
    if min(workers) < 1:
        raise ValueError(f"--workers expects comma-separated positive integers, got {args.workers!r}")
    positive("--noop-tasks", args.noop_tasks)
    output_file("--out", args.out, ".json file")
    require_ray()
    set_threads(1)
    from mtf_env.files import write_json
    from benchmarks.speed.bench_ray import run_bench

    report = run_bench(args.preset, args.only, seeds, workers, args.noop_tasks)
    for name, run in report["runs"].items():
        extra = f", Ray start {run['ray_start_s']:.1f} s, same results: {run['same_results']}" if "ray_start_s" in run else ""
        print(f"{name:14s} {run['wall_s']:8.1f} s for {run['cells']} cells (load1 {run['load1_before']:.1f} -> "
              f"{run['load1_after']:.1f}{extra})")
    noop = report["noop_task"]
    print(f"no-op task round trip: median {1000 * noop['median_s']:.2f} ms, min {1000 * noop['min_s']:.2f} ms "
          f"({noop['n']} tasks, {noop['workers']} worker(s))")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, report)
