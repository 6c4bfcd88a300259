"""``mtf-bench bench-eval``: throughput of the A/B platform's ``evaluate`` with a torch MLP policy vs a
static one (:mod:`benchmarks.speed.bench_eval`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_file, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench-eval", help="A/B platform throughput: torch MLP policy vs static policy")
    p.add_argument("--users", type=int, default=32768, help="simulated users per timed run")
    p.add_argument("--days", type=int, default=1, help="days per user")
    p.add_argument("--seed", type=int, default=0, help="seed of the users and sessions")
    p.add_argument("--block-size", type=int, default=None, help="users simulated together (default 4096)")
    p.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads of the MLP policy")
    p.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each policy (median ratio)")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    positive("--users", args.users, 2)
    for option in ("days", "block_size", "torch_threads", "repeats"):
        positive("--" + option.replace("_", "-"), getattr(args, option))
    positive("--seed", args.seed, 0)
    output_file("--out", args.out, ".json file")
    from mtf_env.files import write_json
    from benchmarks.speed.bench_eval import run_bench

    extra = {} if args.block_size is None else {"block_size": args.block_size}
    report = run_bench(args.users, args.days, args.seed, torch_threads=args.torch_threads, show_progress=False,
                       repeats=args.repeats, **extra)
    for name, runs in report["runs"].items():
        for run in runs:
            print(f"{name:7s} {run['requests_per_s']:>12,.0f} user-requests/s  ({run['requests']:,} requests in "
                  f"{run['wall_s']:.2f} s, policy {100 * run['policy_share']:.1f}% of the time)")
    print(f"mlp / static per repeat: {', '.join(f'{r:.3f}' for r in report['ratios'])}; median "
          f"{report['mlp_over_static']:.3f} (target >= 0.5: {'met' if report['target_met'] else 'NOT met'})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, report)
