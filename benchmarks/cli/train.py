"""``mtf-bench train``: train an algorithm on a logged dataset (or online) into a run directory.

::

    mtf-bench train --algo batchrl-mtf --data datasets/small --steps 20000 --seed 0 \\
        --set critic_hidden=64,64 actor_hidden=64,64 vae_hidden=128,128
    mtf-bench train --algo batchrl-mtf --data datasets/small --steps 40000 --seed 0 \\
        --out runs/batchrl-mtf__small__0 --resume            # continue the run to 40k steps
    mtf-bench train --algo bo --reward time --steps 20        # online: trains on the time reward

Works for every algorithm of :data:`agents.registry.ALGOS`; see
:func:`benchmarks.evaluation.training.train_agent` for what it writes and checks.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import parse_reward, positive, set_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train an algorithm on a logged dataset (or online) into a run directory",
        description="Train an algorithm of agents/registry.py. Writes config.json, metrics.csv, checkpoint.pt "
                    "and train.json into the run directory (default runs/ALGO__DATASET__SEED), which loads "
                    "as a policy (e.g. `mtf-bench ab --treatment RUN_DIR`).")
    p.add_argument("--algo", required=True, help="algorithm name (agents.registry.ALGOS, e.g. batchrl-mtf)")
    p.add_argument("--data", type=Path, help="logged dataset directory (its train split); not needed by online "
                                             "algorithms")
    p.add_argument("--steps", type=int, help="total gradient steps of the run (default: the config's n_steps, "
                                             "the paper's 300,000 for batchrl-mtf)")
    p.add_argument("--seed", type=int, default=0, help="seed of all randomness of the run")
    p.add_argument("--out", type=Path, help="run directory (default runs/ALGO__DATASET__SEED); must be empty "
                                            "unless --resume")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--reward", default="default",
                   help="reward preset the data is relabelled with, and the online algorithms' reward (default, "
                        "time, integrity, interaction), or a JSON list of 12 weights / object task -> weight")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config override(s), e.g. --set critic_hidden=64,64 batch_size=128 rho=0.1")
    p.add_argument("--sim", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="SimConfig override(s) for online algorithms trained without --data")
    p.add_argument("--log-every", type=int, help="gradient steps per metrics row (agent default if omitted)")
    p.add_argument("--checkpoint-every", type=int, help="gradient steps between checkpoints (agent default)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: measured fastest on a shared 2-core machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    from benchmarks.evaluation.configs import parse_key_values

    reward = parse_reward(args.reward)
    overrides = parse_key_values(args.overrides, "--set")
    sim_overrides = parse_key_values(args.sim, "--sim")
    for option, value in (("--steps", args.steps), ("--log-every", args.log_every),
                          ("--checkpoint-every", args.checkpoint_every), ("--threads", args.threads)):
        positive(option, value)
    positive("--seed", args.seed, 0)
    set_threads(args.threads)
    from benchmarks.evaluation.training import default_run_dir, train_agent

    fit_kwargs = {k: v for k, v in (("log_every", args.log_every), ("checkpoint_every", args.checkpoint_every))
                  if v is not None}
    out = args.out or default_run_dir(args.algo, args.data, args.seed)
    result = train_agent(args.algo, args.data, args.steps, args.seed, out, resume=args.resume, reward=reward,
                         overrides=overrides, show_progress=not args.no_progress, sim_overrides=sim_overrides,
                         fit_kwargs=fit_kwargs)
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.last_metrics.items())
    print(f"{result.algo}: {result.steps} steps ({result.steps_this_call} in this call, {result.wall_s:.1f} s, "
          f"{result.steps_per_s:.1f} steps/s) -> {result.run_dir}")
    if metrics:
        print(f"last metrics: {metrics}")
