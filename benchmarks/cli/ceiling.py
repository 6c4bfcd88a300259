"""``mtf-bench ceiling``: reference policies by direct search in the simulator (:mod:`benchmarks.evaluation.ceiling`).

Example::

    mtf-bench ceiling --out runs/ceiling                 # the small search (minutes on 2 cores)
    mtf-bench ceiling --preset large --out runs/ceiling-large
    mtf-bench ab --control static:production --treatment runs/ceiling/best_policy.json --out results/ab

The references (best static weights; weights personalised from observable features; the same
plus a schedule over the request index) are searched with CMA-ES on one half of the users and
judged on the other. They are references, not agents. A rerun with the same settings reuses
the cached result (by configuration hash).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_dir, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ceiling", help="reference policies by direct search in the simulator (regret to the ceiling)")
    p.add_argument("--out", type=Path, required=True, help="output directory (ceiling.json, ceiling.md, *.json policies)")
    p.add_argument("--preset", default="small", help="search budget: small (default, minutes) or large")
    p.add_argument("--users", type=int, default=None, help="users per half (search and judgement; preset's default)")
    p.add_argument("--generations", type=int, nargs=3, default=None, metavar=("STATIC", "PERSONALISED", "SCHEDULED"),
                   help="CMA-ES generations per stage (0 skips the personalised or scheduled stage)")
    p.add_argument("--popsize", type=int, default=None, help="CMA-ES population (preset's default)")
    p.add_argument("--seed", type=int, default=0, help="users, rollouts and CMA-ES")
    p.add_argument("--config", default=None, help="SimConfig overrides: JSON file or inline JSON object")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    from dataclasses import replace

    output_dir("--out", args.out)
    positive("--users", args.users, 2)
    positive("--popsize", args.popsize, 2)
    positive("--seed", args.seed, 0)
    from benchmarks.evaluation.ceiling import CEILING_PRESETS, find_ceiling

    from .ab import parse_config

    if args.preset not in CEILING_PRESETS:
        raise ValueError(f"--preset: choose one of {sorted(CEILING_PRESETS)}, got {args.preset!r}")
    changes = {k: v for k, v in (("n_users", args.users), ("popsize", args.popsize), ("seed", args.seed),
                                 ("generations", tuple(args.generations) if args.generations else None))
               if v is not None}
    try:
        config = replace(CEILING_PRESETS[args.preset], **changes)
    except ValueError as exc:
        raise ValueError(f"--generations/--users/--popsize: {exc}") from None
    sim_config = parse_config(args.config)
    ceiling = find_ceiling(args.out, config, sim_config, show_progress=not args.no_progress)
    print((ceiling.directory / "ceiling.md").read_text())
    print(f"best reference: {ceiling.best} -> {ceiling.directory / 'best_policy.json'} (a reference, not an agent)")
