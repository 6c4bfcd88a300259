"""``mtf-bench quickstart``: collect a small dataset, train BatchRL-MTF briefly, A/B-test it against production.

::

    mtf-bench quickstart                                      # collect, train, A/B test: minutes
    mtf-bench quickstart --tiny --out /tmp/qs                 # seconds-long smoke variant

Runs :func:`benchmarks.evaluation.quickstart.run_quickstart` with the README's settings
(``QUICKSTART``) and prints the Table-1-shaped lift table.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .common import output_dir, positive, set_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "quickstart", help="collect a small dataset, train BatchRL-MTF briefly, A/B-test it against production",
        description="The main job on small settings (minutes on 2 CPU cores): collect a few thousand "
                    "mixed-exploration sessions, train BatchRL-MTF for a few thousand steps with reduced networks, "
                    "A/B-test it against static:production on a few thousand users x 1 day, print the lift table "
                    "and write everything under --out (settings: benchmarks.evaluation.quickstart.QUICKSTART).")
    q.add_argument("--out", type=Path, default=Path("results/quickstart"),
                   help="output directory (dataset/, run/, ab.json, ab.md, quickstart.json)")
    q.add_argument("--seed", type=int, default=0, help="seed of the collection, the training and the A/B test")
    q.add_argument("--steps", type=int, help="gradient steps (default 6000)")
    q.add_argument("--sessions", type=int, help="sessions to collect (default 4000)")
    q.add_argument("--users", type=int, help="users per A/B arm (default 4000)")
    q.add_argument("--tiny", action="store_true", help="seconds-long smoke variant (small world, tiny networks)")
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    positive("--steps", args.steps)
    positive("--sessions", args.sessions)
    positive("--users", args.users, 2)
    positive("--seed", args.seed, 0)
    output_dir("--out", args.out)
    set_threads(args.threads)
    from benchmarks.evaluation.quickstart import QUICKSTART, QUICKSTART_TINY, run_quickstart

    base = QUICKSTART_TINY if args.tiny else QUICKSTART
    changes = {k: v for k, v in (("steps", args.steps), ("sessions", args.sessions), ("users", args.users))
               if v is not None}
    settings = dataclasses.replace(base, **changes)
    summary = run_quickstart(args.out, args.seed, settings, show_progress=not args.no_progress)
    print(summary["markdown"])
    s = summary["seconds"]
    print(f"quickstart: collect {s['collect']:.0f} s, train {s['train']:.0f} s "
          f"({summary['train_steps_per_s']:.0f} steps/s), A/B test {s['ab_test']:.0f} s, total {s['total']:.0f} s "
          f"-> {args.out} (ab.md, ab.json, run/, dataset/)")
