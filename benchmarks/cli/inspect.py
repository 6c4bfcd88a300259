"""``mtf-bench inspect``: statistics and the action-distribution figure of a logged dataset.

::

    mtf-bench inspect datasets/smoke                          # stats JSON + action figure in datasets/smoke/inspect

Writes ``stats.json`` (sessions, transitions, session lengths, reward statistics under every
reward preset, action coverage per dimension, per behaviour group) and ``actions.png`` (the
distribution of each action dimension per behaviour group, like the paper's Figures 6 and 7)
with :func:`benchmarks.evaluation.logged_data.inspect_dataset`; ``--card`` also writes the
dataset card.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("inspect", help="statistics and action-distribution figure of a logged dataset")
    q.add_argument("path", type=Path, help="dataset directory")
    q.add_argument("--out", type=Path, help="where stats.json and actions.png go (default PATH/inspect)")
    q.add_argument("--split", default="all", choices=("train", "test", "all"), help="which split to describe")
    q.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of the data files")
    q.add_argument("--card", metavar="PRESET",
                   help="also write the dataset card datasets/cards/PRESET.{json,md} from this dataset")
    q.add_argument("--cards-dir", type=Path, default=Path("datasets/cards"), help=argparse.SUPPRESS)
    q.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    from benchmarks.evaluation.logged_data import inspect_dataset, write_card
    from mtf_env.dataset import DATASET_PRESETS

    if args.card is not None and args.card not in DATASET_PRESETS:
        raise ValueError(f"unknown --card preset {args.card!r}; choose one of {sorted(DATASET_PRESETS)}")
    if not args.path.is_dir():
        raise ValueError(f"{args.path}: no such dataset directory")
    output_dir("--out", args.out if args.out is not None else args.path / "inspect")
    out = args.out or args.path / "inspect"
    stats = inspect_dataset(args.path, out, split=args.split, verify=not args.no_verify)
    length = stats["session_length"]
    print(f"{args.path} ({stats['policy']}, split {stats['split']}): {stats['sessions']:,} sessions, "
          f"{stats['transitions']:,} transitions, {length['mean']:.3f} requests per session "
          f"(max {length['max']:.0f}); terminated {stats['terminated_share']:.3f}, "
          f"truncated {stats['truncated_share']:.3f}")
    print(f"{'reward':12s} {'mean r':>9s} {'std r':>9s} {'mean return':>12s}")
    for preset, row in stats["rewards"].items():
        print(f"{preset:12s} {row['per_transition']['mean']:9.4f} {row['per_transition']['std']:9.4f} "
              f"{row['session_return']['mean']:12.4f}")
    print(f"{'task':14s} {'mean':>7s} {'std':>6s} {'q01':>7s} {'q99':>7s} {'bounds':>7s} {'covered':>8s}")
    for row in stats["action_coverage"]:
        print(f"{row['task']:14s} {row['mean']:7.3f} {row['std']:6.3f} {row['q01']:7.3f} {row['q99']:7.3f} "
              f"{row['at_bounds']:7.3f} {row['covered_bins']:8.2f}")
    for name, g in stats["groups"].items():
        print(f"group {name}: {g['sessions']:,} sessions, mean length {g['mean_session_length']:.3f}, "
              f"mean return (default) {g['mean_session_return_default']:.4f}")
    print(f"stats -> {out / 'stats.json'}; figure -> {out / 'actions.png'}")
    if args.card:
        json_path, md_path = write_card(args.path, stats, args.card, args.cards_dir)
        print(f"card -> {json_path}, {md_path}")
