"""``mtf-bench collect``: collect a logged dataset under a behaviour policy.

::

    mtf-bench collect --preset smoke                          # datasets/smoke, 2k mixed sessions
    mtf-bench collect --policy action-noise --target runs/bcq --sessions 100000 --seed 1 --out datasets/an
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import output_dir, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="collect a logged dataset under a behaviour policy",
                       description="Collect sessions on the batched simulator under a behaviour policy and write "
                                   "them as a Parquet dataset (datasets/README.md). Presets: smoke, small, paper "
                                   "(mtf_env.dataset_collect.DATASET_PRESETS).")
    p.add_argument("--preset", help="named dataset (sets the defaults below): smoke, small, paper")
    p.add_argument("--policy", help="behaviour policy: production, random[:STD], action-noise[:TARGET], "
                                    "mixed[:TARGET] (default: the preset's, else mixed)")
    p.add_argument("--target", help="target policy of action-noise / mixed: static:NAME, weights JSON or run dir "
                                    "(default static:production)")
    p.add_argument("--sessions", type=int, help="sessions to collect (default: the preset's, else 2000)")
    p.add_argument("--seed", type=int, help="root seed (default: the preset's, else 0)")
    p.add_argument("--out", type=Path, help="output directory (default datasets/PRESET or datasets/POLICY)")
    p.add_argument("--batch-size", type=int, help="sessions simulated in parallel (changes the random layout; "
                                                  "default: the preset's, else CollectConfig's)")
    p.add_argument("--n-days", type=int, help="collection days the sessions are spread over (default: the "
                                              "preset's, else CollectConfig's)")
    p.add_argument("--sim", action="append", default=[], metavar="KEY=VALUE",
                   help="SimConfig override, repeatable (e.g. --sim n_users=5000 --sim reward=time)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def collect_settings(args: argparse.Namespace) -> tuple[Path, Any, Any]:
    """Resolve command-line arguments (and the preset) to (out, SimConfig, CollectConfig); ValueError if bad."""
    from benchmarks.evaluation.configs import parse_key_values
    from mtf_env.config import make_config
    from mtf_env.dataset import DATASET_PRESETS, CollectConfig

    if args.preset is not None and args.preset not in DATASET_PRESETS:
        raise ValueError(f"unknown --preset {args.preset!r}; choose one of {sorted(DATASET_PRESETS)}")
    for option, value in (("--sessions", args.sessions), ("--batch-size", args.batch_size),
                          ("--n-days", args.n_days)):
        positive(option, value)
    positive("--seed", args.seed, 0)
    preset = DATASET_PRESETS[args.preset] if args.preset else None
    base = preset.collect if preset else CollectConfig()
    changes = {k: v for k, v in dict(policy=args.policy, target=args.target, n_sessions=args.sessions,
                                       seed=args.seed, batch_size=args.batch_size, n_days=args.n_days).items()
               if v is not None}
    collect = CollectConfig(**{**base.__dict__, **changes})
    sim = make_config(**{**(preset.sim if preset else {}), **parse_key_values(args.sim, "--sim")})
    out = args.out or Path("datasets") / (args.preset or collect.policy.split(":")[0])
    return out, sim, collect


def _run(args: argparse.Namespace) -> None:
    from benchmarks.evaluation.configs import parse_key_values
    from benchmarks.evaluation.logged_data import collect_with_log

    out, sim, collect = collect_settings(args)
    output_dir("--out", out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it")
    try:
        log = collect_with_log(out, sim, collect, sim_overrides=parse_key_values(args.sim, "--sim"),
                               overwrite=args.overwrite, show_progress=not args.no_progress)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{out} was not written (the partial collection is removed); run the command "
                                "again to collect") from None
    n_req, n_sessions, wall = log["requests"], log["sessions"], log["wall_s"]
    print(f"{log['path']}: {n_sessions} sessions, {n_req} requests ({n_req / n_sessions:.3f} per session), "
          f"{log['bytes'] / 1e6:.1f} MB in {log['files']} files; {wall:.1f} s "
          f"({n_sessions / wall:,.0f} sessions/s, {n_req / wall:,.0f} requests/s), peak RSS "
          f"{log['peak_rss_mb']:,.0f} MB, process CPU {log['process_cpu_s']:.1f} s (load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print("seconds: " + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in log["timings_s"].items())
          + " (write runs in a background thread, overlapping the rest)")
