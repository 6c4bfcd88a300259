"""``mtf-bench loop`` and ``mtf-bench loop-report``: the daily explore -> retrain loop (:mod:`benchmarks.evaluation.explore_loop`).

Example::

    mtf-bench ceiling --out runs/ceiling
    mtf-bench loop --algo bo --rounds 8 --users 2000 --out runs/loop/bo --ceiling runs/ceiling
    mtf-bench loop --algo batchrl-mtf --rounds 8 --users 2000 --window-days 3 --out runs/loop/batchrl-mtf \\
        --ceiling runs/ceiling --bo-dir runs/loop/bo --set actor_hidden=64,64 critic_hidden=64,64
    mtf-bench loop --algo batchrl-mtf --exploration random ...          # BatchRL-MTF-RE
    mtf-bench loop-report runs/loop/bo runs/loop/batchrl-mtf --out results/loop

A rerun of ``loop`` with the same settings skips the finished rounds (``--rounds`` may grow).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_dir, parse_reward, positive, set_threads, widths


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loop", help="daily online loop: explore around the deployed policy, retrain, deploy")
    p.add_argument("--algo", required=True, help="offline algorithm (batchrl-mtf, td3, cql-sac, iql, td3-bc, bc, "
                   "uwac-td3) or an online one at the same traffic (bo, es)")
    p.add_argument("--rounds", type=int, default=8, help="days (rounds)")
    p.add_argument("--users", type=int, default=2000, help="users (one session each) served per day")
    p.add_argument("--window-days", type=int, default=3, help="days of logged data the policy trains on")
    p.add_argument("--warm-start", action="store_true", help="start each day's training from yesterday's networks")
    p.add_argument("--exploration", default="mixed", help="mixed (random + action noise around the deployed "
                   "policy, equal groups) or random (random only: BatchRL-MTF-RE)")
    p.add_argument("--noise-std", type=float, default=0.1, help="action-noise standard deviation (paper: 0.1)")
    p.add_argument("--random-std", type=float, default=0.5, help="random-exploration standard deviation")
    p.add_argument("--steps", type=int, default=3000, help="gradient steps per round (offline algorithms)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="agent config override(s), e.g. --set critic_hidden=64,64 batch_size=128")
    p.add_argument("--seed", type=int, default=0, help="root seed of the loop")
    p.add_argument("--reward", default="default", help="reward preset (or JSON weights)")
    p.add_argument("--ceiling", type=Path, default=None, help="a `mtf-bench ceiling` directory (regret, held-out users)")
    p.add_argument("--bo-dir", type=Path, default=None, help="the BO loop to A/B test against (default OUT/bo-arm; "
                   "run or resumed as needed)")
    p.add_argument("--eval-users", type=int, default=1000, help="held-out initial states of the true value")
    p.add_argument("--eval-rollouts", type=int, default=2, help="sessions per held-out state")
    p.add_argument("--ab-users", type=int, default=2000, help="users per arm of the A/B test vs BO (0: none)")
    p.add_argument("--online-rounds-per-day", type=int, default=None, help="BO/ES rounds per day (default bo 4, es 1)")
    p.add_argument("--ope-steps", type=int, default=1000, help="Conservative-OPEstimator steps (0: none)")
    p.add_argument("--ope-hidden", type=widths, default=(64, 64), help="Conservative-OPEstimator widths, e.g. 64,64")
    p.add_argument("--config", default=None, help="SimConfig overrides: JSON file or inline JSON object")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, required=True, help="loop directory (round_DD/, report.json/md/png)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)

    r = sub.add_parser("loop-report", help="compare loops: true value and regret against cumulative users served")
    r.add_argument("loops", nargs="+", type=Path, help="loop directories")
    r.add_argument("--out", type=Path, required=True, help="output directory (compare.json, compare.md, compare.png)")
    r.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> None:
    output_dir("--out", args.out)
    positive("--threads", args.threads)
    reward = parse_reward(args.reward)
    from benchmarks.evaluation.configs import build_config, parse_key_values
    from benchmarks.evaluation.explore_loop import LoopConfig, run_loop

    from agents.algos import algo_class

    from .ab import parse_config

    overrides = parse_key_values(args.overrides, "--set")
    try:
        config = LoopConfig(algo=args.algo, rounds=args.rounds, users=args.users, window_days=args.window_days,
                            warm_start=args.warm_start, exploration=args.exploration, noise_std=args.noise_std,
                            random_std=args.random_std, steps=args.steps, overrides=overrides, seed=args.seed,
                            reward=reward, eval_users=args.eval_users, eval_rollouts=args.eval_rollouts,
                            ab_users=args.ab_users, online_rounds_per_day=args.online_rounds_per_day,
                            ope_steps=args.ope_steps, ope_hidden=args.ope_hidden)
    except ValueError as exc:  # "loop window_days must ..." -> "--window-days must ..."
        field = str(exc).split(" ")[1].rstrip(":")
        raise ValueError(str(exc).replace(f"loop {field}", "--" + field.replace("_", "-"), 1)) from None
    build_config(algo_class(args.algo), overrides)  # --set checked before any work
    for option, path in (("--ceiling", args.ceiling), ("--bo-dir", args.bo_dir)):
        if path is not None:
            output_dir(option, path)
    if args.ceiling is not None and not (args.ceiling / "ceiling.json").is_file():
        raise ValueError(f"--ceiling {args.ceiling}: no ceiling.json (run `mtf-bench ceiling --out {args.ceiling}`)")
    sim_config = parse_config(args.config) if args.config else None
    if sim_config is not None and reward != sim_config.reward:
        from dataclasses import replace

        sim_config = replace(sim_config, reward=reward)
    set_threads(args.threads)
    run_loop(config, args.out, sim_config=sim_config, ceiling_dir=args.ceiling, bo_dir=args.bo_dir,
             show_progress=not args.no_progress)
    print((args.out / "report.md").read_text())
    print(f"report -> {args.out / 'report.json'}, {args.out / 'report.md'}, {args.out / 'report.png'}")


def _report(args: argparse.Namespace) -> None:
    output_dir("--out", args.out)
    from benchmarks.evaluation.explore_loop import compare_loops

    compare_loops(args.loops, args.out)
    print((args.out / "compare.md").read_text())
    print(f"comparison -> {args.out / 'compare.json'}, {args.out / 'compare.md'}, {args.out / 'compare.png'}")
