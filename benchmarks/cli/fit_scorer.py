"""``mtf-bench fit-scorer``: train the PLE scorer on ground-truth impressions and report it
(:mod:`benchmarks.evaluation.scorer_fit`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_file, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-scorer", help="train the PLE multi-task scorer on ground-truth impressions",
                       description="Simulate impressions with their ground-truth feedback, train the PLE multi-task "
                                   "scorer on them and report per-task AUC and calibration on held-out impressions.")
    p.add_argument("--impressions", type=int, default=800_000, help="simulated impressions to train on")
    p.add_argument("--test-impressions", type=int, default=200_000,
                   help="held-out impressions of the report (AUC, calibration)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated impressions and the training")
    p.add_argument("--out", type=Path, default=None, help="weights .npz (default: replaces the shipped weights, "
                                                          "mtf_env/assets)")
    p.add_argument("--report", type=Path, default=Path("results/scorer_report.json"),
                   help="report JSON (per-task AUC, mean prediction and label, calibration error)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    positive("--impressions", args.impressions)
    positive("--test-impressions", args.test_impressions)
    positive("--seed", args.seed, 0)
    output_file("--out", args.out, ".npz file")
    output_file("--report", args.report, ".json file")
    from benchmarks.evaluation.scorer_fit import fit_scorer
    from mtf_env.score_table import DEFAULT_SCORER

    out = args.out if args.out is not None else DEFAULT_SCORER
    args.report.parent.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = fit_scorer(args.impressions, args.test_impressions, args.seed, out, args.report)
    print(f"{'task':14s} {'AUC':>6s} {'mean pred':>10s} {'mean label':>10s} {'ECE':>8s}")
    for name, row in report["test"]["tasks"].items():
        auc = "  n/a" if row.get("auc") is None else f"{row['auc']:.3f}"
        print(f"{name:14s} {auc:>6s} {row['mean_pred']:10.4f} {row['mean_label']:10.4f} {row['ece']:8.4f}")
    print(f"weights -> {out}; report -> {args.report}")
