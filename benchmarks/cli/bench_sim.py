"""``mtf-bench bench-sim``: simulator throughput, with Pendulum-v1 as the in-run reference
(:mod:`benchmarks.speed.bench_sim`)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from .common import output_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-sim", help="simulator throughput (single env, batched core, Pendulum-v1 reference)",
                       description="Time the single environment, the batched simulator core at batch sizes 1-4096 "
                                   "and Gymnasium's Pendulum-v1 (the reference), and write the figures as JSON.")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timing window per measurement, in seconds")
    p.add_argument("--out", type=Path, default=Path("results/bench_sim.json"), help="result JSON file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ValueError(f"--seconds must be a positive number, got {args.seconds}")
    output_file("--out", args.out, ".json file")
    from mtf_env.files import write_json
    from benchmarks.speed.bench_sim import bench_sim

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = bench_sim(min_seconds=args.seconds)
    write_json(args.out, result)
    print(f"load average {result['machine']['load_average_1min']:.2f} on {result['machine']['cpus']} CPUs")
    print(f"Pendulum-v1 (reference): {result['pendulum_v1_steps_per_s']:,.0f} steps/s")
    print(f"ShortVideoMTF-v0 single env: {result['single_env_steps_per_s']:,.0f} steps/s "
          f"(unwrapped {result['single_env_unwrapped_steps_per_s']:,.0f})")
    for b, row in result["vectorised"].items():
        print(f"batch {b:>5s}: {row['user_requests_per_s']:>12,.0f} user-requests/s, "
              f"{row['candidate_scorings_per_s']:>14,.0f} candidate scorings/s "
              f"({row['user_requests_per_cpu_s']:,.0f} per CPU second)")
    print(f"-> {args.out}")
