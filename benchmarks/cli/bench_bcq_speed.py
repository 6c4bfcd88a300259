"""``mtf-bench bench-bcq-speed``: gradient steps per second of BatchRL-MTF against d3rlpy's BCQ
(:mod:`benchmarks.speed.bench_bcq_speed`)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .common import output_file, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-bcq-speed", help="gradient steps/s: BatchRL-MTF against d3rlpy's BCQ")
    p.add_argument("--steps", type=int, default=200, help="timed gradient steps per algorithm")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per algorithm first")
    p.add_argument("--blocks", type=int, default=4, help="alternating timing blocks")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the random data and the networks")
    p.add_argument("--mean-session-length", type=float, default=None,
                   help="requests per session of the random data (sets the share of terminal transitions; "
                        "default: the benchmark's)")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the result")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    for option in ("steps", "blocks", "threads"):
        positive("--" + option, getattr(args, option))
    positive("--warmup", args.warmup, 0)
    positive("--seed", args.seed, 0)
    if args.mean_session_length is not None and not (math.isfinite(args.mean_session_length)
                                                     and args.mean_session_length >= 1):
        raise ValueError(f"--mean-session-length must be a number >= 1, got {args.mean_session_length}")
    output_file("--out", args.out, ".json file")
    from benchmarks.speed.bench_bcq_speed import MEAN_SESSION_LENGTH, run

    length = MEAN_SESSION_LENGTH if args.mean_session_length is None else args.mean_session_length
    result = run(steps=args.steps, out=args.out, warmup=args.warmup, blocks=args.blocks, threads=args.threads,
                 seed=args.seed, mean_session_length=length)
    print(json.dumps({k: result[k] for k in ("d3rlpy_steps_per_s", "ours_steps_per_s", "ratio", "ratio_cpu_time",
                                              "block_ratios")}, indent=2))
