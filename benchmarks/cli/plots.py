"""``mtf-bench plots``: draw the baselines suite's figures from its result files (:mod:`benchmarks.suites.plots`)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plots", help="draw the baselines suite's figures (Q vs true value, actions) from its results")
    p.add_argument("results", type=Path, help="results directory of `mtf-bench suite baselines`")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    if not args.results.is_dir():
        raise ValueError(f"{args.results}: no such results directory")
    for name in ("q_curves.json", "actions.npz"):
        if not (args.results / name).is_file():
            raise ValueError(f"{args.results} holds no {name} (run `mtf-bench suite baselines` first)")
    from benchmarks.suites.plots import plot_action_distributions, plot_q_vs_true

    for path in (plot_q_vs_true(args.results), plot_action_distributions(args.results)):
        print(path)
