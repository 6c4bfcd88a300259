"""``mtf-bench ope``: the Conservative-OPEstimator's value of policies on a logged dataset's test split.

Example::

    mtf-bench ope --policy static:production --policy runs/batchrl-mtf__small__0 \\
        --data datasets/small --alpha-c 0.5e-3 --steps 5000 --seed 0 --out results/ope/ope.json

For every ``--policy`` (specs of :func:`agents.registry.load_policy`: ``static:NAME``, a
weights JSON, a trained run directory) the estimator is fitted on the dataset's **test** split
and ``V(pi_e)`` estimated (:func:`benchmarks.evaluation.estimators.run_ope`). ``--alpha-c 0``
is plain FQE. Options left out take :class:`agents.ope.ConservativeFQEConfig`'s defaults, the
paper's settings (m 512, n 5000, gamma 0.95, alpha_c 0.5e-3, K 5000, lr 1e-4); on a small
shared CPU use fewer ``--steps`` and a smaller ``--hidden``.

Writes ``--out`` (JSON: settings, dataset, one entry per policy with value, interval, fit
time) and the same name with ``.md`` (a Markdown table), and prints the table. Every argument,
spec and the dataset are checked before any fitting starts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import dataset_dir, in_unit_interval, non_negative, output_file, parse_reward, positive, widths

#: Estimator names, as benchmarks.evaluation.estimators.ESTIMATORS plus the alias ``conservative``
#: (a copy, so ``--help`` does not import the evaluation library; a test keeps them equal).
ESTIMATORS: tuple[str, ...] = ("conservative", "fqe", "conservative-fqe", "d3rlpy-fqe", "bootstrap-fqe", "model-based",
                               "tis", "sntis", "pdis", "snpdis", "dr", "sndr")
#: Option -> ConservativeFQEConfig field of the options that default to the config's value.
CONFIG_OPTIONS: dict[str, str] = {
    "alpha_c": "alpha_c", "steps": "n_steps", "batch_size": "batch_size", "lr": "learning_rate",
    "hidden": "hidden", "target_update_every": "target_update_every", "gamma": "gamma",
    "n_bootstrap": "n_bootstrap", "n_initial": "n_initial_states",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ope", help="Conservative-OPEstimator values of policies on a dataset's test split")
    p.add_argument("--policy", required=True, action="append", metavar="POLICY",
                   help="policy spec (static:NAME, weights JSON, run directory); repeat for several")
    p.add_argument("--data", required=True, type=Path, help="logged dataset directory (its test split is used)")
    p.add_argument("--alpha-c", type=float, help="CQL weight alpha_c (0: plain FQE; default 0.5e-3)")
    p.add_argument("--steps", type=int, help="gradient steps K (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="estimator seed (network init, batches, bootstrap, state draw)")
    p.add_argument("--n-initial", type=int, help="initial states n averaged for V (default 5000)")
    p.add_argument("--batch-size", type=int, help="transitions per gradient step m (default 512)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    p.add_argument("--hidden", type=widths, help="Q-network widths, e.g. 256,256 (default 256,256)")
    p.add_argument("--target-update-every", type=int, help="gradient steps between target copies (default 100)")
    p.add_argument("--gamma", type=float, help="discount (default 0.95)")
    p.add_argument("--n-bootstrap", type=int, help="bootstrap resamples of the initial states (default 1000)")
    p.add_argument("--reward", default="default", help="reward preset the transitions are relabelled with")
    p.add_argument("--estimator", choices=ESTIMATORS, default="conservative", metavar="NAME",
                   help="conservative / conservative-fqe (ours, any alpha_c), fqe (alpha_c 0), d3rlpy-fqe (needs "
                        "--alpha-c 0), bootstrap-fqe, model-based, tis, sntis, pdis, snpdis, dr, sndr "
                        "(default conservative)")
    p.add_argument("--bandwidth-scale", type=float, default=1.0,
                   help="IS family: kernel bandwidth as a multiple of Silverman's rule (default 1)")
    p.add_argument("--clip", type=float, help="IS family: cap on each step's importance ratio (default none)")
    p.add_argument("--n-members", type=int, default=5, help="bootstrap-fqe: ensemble members (default 5)")
    p.add_argument("--out", required=True, type=Path, help="results JSON file (a .md table is written next to it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    for option in ("steps", "n_initial", "batch_size", "target_update_every", "n_bootstrap"):
        positive("--" + option.replace("_", "-"), getattr(args, option))
    positive("--seed", args.seed, 0)
    non_negative("--alpha-c", args.alpha_c)
    for option, value in (("--bandwidth-scale", args.bandwidth_scale), ("--clip", args.clip)):
        non_negative(option, value)
        if value == 0:
            raise ValueError(f"{option} must be > 0, got {value}")
    positive("--n-members", args.n_members, 2)
    non_negative("--lr", args.lr)
    in_unit_interval("--gamma", args.gamma)
    reward = parse_reward(args.reward)
    dataset_dir("--data", args.data)
    output_file("--out", args.out, ".json file")
    import dataclasses

    import torch

    from agents.ope import ConservativeFQEConfig
    from benchmarks.evaluation.estimators import EstimatorSettings, markdown_table, run_ope

    # one torch thread was measured to be fastest on the shared 2-core machine
    torch.set_num_threads(1)
    given = {field: getattr(args, option) for option, field in CONFIG_OPTIONS.items()
             if getattr(args, option) is not None}
    config = dataclasses.replace(ConservativeFQEConfig(), **given)
    settings = EstimatorSettings(fqe=config, n_members=args.n_members, bandwidth_scale=args.bandwidth_scale,
                                 clip=args.clip)
    result = run_ope(args.policy, args.data, config, args.seed, args.out, estimator=args.estimator,
                     n_initial=config.n_initial_states, reward=reward, show_progress=not args.no_progress,
                     settings=settings)
    print(markdown_table(result), end="")
    print(f"results -> {args.out}, {Path(args.out).with_suffix('.md')}")
