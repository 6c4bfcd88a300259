"""``mtf-bench suite baselines|batchrl-small|ope-validation``: run a benchmark suite.

::

    mtf-bench suite baselines --data datasets/small --steps 2000 --out results/baselines
    mtf-bench suite batchrl-small --data datasets/small --steps 20000 --seed 0 --out results/batchrl_small
    mtf-bench suite ope-validation --data datasets/small --out results/ope_validation

Each suite is library code in :mod:`benchmarks.suites` (what it does and writes is in its
module docstring); this module parses and checks every argument -- paths, numbers, algorithm
names, config overrides, reward -- before any work starts, then runs the suite and prints
its table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import dataset_dir, output_dir, parse_reward, positive, set_threads, widths


def add_parser(sub: argparse._SubParsersAction) -> None:
    from benchmarks.suites import baselines, batchrl_small, ope_validation

    p = sub.add_parser("suite", help="run a benchmark suite (baselines, batchrl-small, ope-validation)",
                       description="Run a benchmark suite of benchmarks/suites/.")
    suites = p.add_subparsers(dest="suite", required=True, metavar="SUITE")

    b = suites.add_parser("baselines", help="every registered method on one dataset: true values, Q estimates, "
                                            "A/B test, action figures",
                          description=baselines.__doc__.split("\n\n")[0])
    b.add_argument("--data", type=Path, default=Path("datasets/small"), help="logged dataset (train/test splits)")
    b.add_argument("--out", type=Path, default=Path("results/baselines"), help="results (and runs/) directory")
    b.add_argument("--steps", type=int, default=2000, help="gradient steps of every offline method (paper: 300,000)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--algos", nargs="+", help="methods to run (default: every registered algorithm)")
    b.add_argument("--bo-steps", type=int, default=baselines.ONLINE_STEPS["bo"], help="BO online rounds")
    b.add_argument("--es-steps", type=int, default=baselines.ONLINE_STEPS["es"], help="ES iterations")
    b.add_argument("--sac-steps", type=int, default=baselines.ONLINE_STEPS["sac-online"], help="online SAC env steps")
    b.add_argument("--hidden", type=widths, default=baselines.DEFAULT_HIDDEN,
                   help="offline networks' widths, e.g. 400,300")
    b.add_argument("--vae-hidden", type=widths, default=baselines.DEFAULT_VAE_HIDDEN, help="BatchRL-MTF's VAE widths")
    b.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="ALGO:KEY=VALUE",
                   help="config override of one method, e.g. bo:n_users=500")
    b.add_argument("--rollouts", type=int, default=2, help="sessions per test initial state (true value)")
    b.add_argument("--users", type=int, default=10_000, help="users per A/B arm")
    b.add_argument("--days", type=int, default=1, help="days per user in the A/B test")
    b.add_argument("--action-states", type=int, default=2000, help="test-split states of the action figure")
    b.add_argument("--q-checkpoints", type=int, default=10,
                   help="training chunks of each offline critic, each followed by its Q(s0, pi(s0)) estimate")
    b.add_argument("--reward", default="default", help="training and evaluation reward preset")
    b.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_run_baselines, command_name="suite baselines")

    s = suites.add_parser("batchrl-small", help="BatchRL-MTF on the small dataset against the production weights",
                          description=batchrl_small.__doc__.split("\n\n")[0])
    s.add_argument("--data", type=Path, default=Path("datasets/small"), help="logged dataset (train/test splits)")
    s.add_argument("--steps", type=int, default=20_000, help="gradient steps (the paper: 300,000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=Path("results/batchrl_small"))
    s.add_argument("--run", type=Path, help="run directory (default runs/batchrl-mtf__DATASET__SEED); resumed")
    s.add_argument("--set", dest="overrides", nargs="+", action="extend", default=None, metavar="KEY=VALUE",
                   help=f"BatchRL-MTF config overrides replacing the suite's preset {batchrl_small.SMALL_PRESET}")
    s.add_argument("--rollouts", type=int, default=4, help="sessions per test initial state (true value)")
    s.add_argument("--users", type=int, default=10_000, help="users per A/B arm")
    s.add_argument("--days", type=int, default=1, help="days per user in the A/B test")
    s.add_argument("--reward", default="default", help="training and evaluation reward preset")
    s.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_run_batchrl_small, command_name="suite batchrl-small")

    d = ope_validation.DEFAULT_SETTINGS
    o = suites.add_parser("ope-validation", help="the Conservative-OPEstimator judged against true values on a "
                                                 "policy zoo", description=ope_validation.__doc__.split("\n")[0])
    o.add_argument("--data", type=Path, default=None,
                   help="one logged dataset directory; without it the grid runs: datasets of several seeds and "
                        "explorations are collected under OUT/data and every estimator is compared")
    o.add_argument("--estimators", default=None,
                   help="comma-separated estimator names (grid default: "
                        f"{','.join(ope_validation.GRID_ESTIMATORS)}; one dataset: conservative,fqe,d3rlpy-fqe)")
    o.add_argument("--seeds", default=None, help="grid: dataset seeds of the mixed-exploration table (default 0,1,2)")
    o.add_argument("--explorations", default=None,
                   help="grid: behaviour policies (default mixed,random,action-noise)")
    o.add_argument("--exploration-seeds", default=None,
                   help="grid: dataset seeds of the explorations other than mixed (default 0)")
    o.add_argument("--sessions", type=int, default=None, help="grid: sessions per collected dataset (default 4000)")
    o.add_argument("--out", type=Path, default=Path("results/ope_validation"), help="output directory")
    o.add_argument("--runs", action="append", default=None,
                   help=f"directory searched for trained runs, repeatable (default "
                        f"{' '.join(ope_validation.DEFAULT_RUN_ROOTS)}; '' for none)")
    o.add_argument("--paper", action="store_true", help="the paper's estimator settings (slow on a small CPU)")
    o.add_argument("--steps", type=int, default=None, help=f"gradient steps K (default {d.n_steps})")
    o.add_argument("--lr", type=float, default=None, help=f"learning rate (default {d.learning_rate})")
    o.add_argument("--rollouts", type=int, default=None, help=f"sessions per initial state (default {d.n_rollouts})")
    o.add_argument("--n-initial", type=int, default=None, help=f"initial states (default {d.n_initial})")
    o.add_argument("--td3-steps", type=int, default=None, help=f"steps of the quick TD3 (default {d.td3_steps})")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--no-td3", action="store_true", help="do not train the quick TD3")
    o.add_argument("--runs-per-algo", type=int, default=None,
                   help="keep at most this many trained runs per algorithm (default: all found)")
    o.add_argument("--no-sweep", action="store_true", help="skip the alpha_c sweep")
    o.add_argument("--no-progress", action="store_true")
    o.add_argument("--report-only", action="store_true",
                   help="redraw result.md and the figures from OUT/result.json (no fitting)")
    o.set_defaults(func=_run_ope_validation, command_name="suite ope-validation")


def _check_config(algo: str, overrides: dict) -> None:
    """Raise ValueError if ``overrides`` are not valid config keys and values of ``algo``."""
    from agents.registry import algo_class
    from benchmarks.evaluation.configs import build_config

    try:
        build_config(algo_class(algo), overrides)
    except ValueError as exc:
        raise ValueError(f"{algo}: {exc}") from None


def _progress_log(name: str, show: bool):
    return (lambda text: print(f"[{name}] {text}", flush=True)) if show else None


def _run_baselines(args: argparse.Namespace) -> None:
    from benchmarks.suites import baselines

    # -- every input is checked before any training
    dataset_dir("--data", args.data)
    output_dir("--out", args.out)
    for option in ("steps", "bo_steps", "es_steps", "sac_steps", "rollouts", "days", "action_states",
                   "q_checkpoints", "threads"):
        positive("--" + option.replace("_", "-"), getattr(args, option))
    positive("--users", args.users, 2)
    positive("--seed", args.seed, 0)
    reward = parse_reward(args.reward)
    names = baselines.suite_algos(args.algos)
    overrides = baselines.parse_method_overrides(args.overrides)
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"--set names algorithm(s) not in this run: {unknown}")
    for algo in names:
        _check_config(algo, {**baselines.network_overrides(algo, args.hidden, args.vae_hidden),
                             **overrides.get(algo, {})})
    set_threads(args.threads)

    online = {"bo": args.bo_steps, "es": args.es_steps, "sac-online": args.sac_steps}
    baselines.run(args.data, args.out, steps=args.steps, seed=args.seed, algos=names, online_steps=online,
                  hidden=args.hidden, vae_hidden=args.vae_hidden, overrides=overrides, rollouts=args.rollouts,
                  users=args.users, days=args.days, action_states=args.action_states,
                  q_checkpoints=args.q_checkpoints, reward=reward, show_progress=not args.no_progress,
                  log=_progress_log("baselines", not args.no_progress))
    print((Path(args.out) / "results.md").read_text())


def _run_batchrl_small(args: argparse.Namespace) -> None:
    from benchmarks.evaluation.configs import parse_key_values
    from benchmarks.suites import batchrl_small

    dataset_dir("--data", args.data)
    output_dir("--out", args.out)
    if args.run is not None:
        output_dir("--run", args.run)
    for option in ("steps", "rollouts", "days", "threads"):
        positive("--" + option, getattr(args, option))
    positive("--users", args.users, 2)
    positive("--seed", args.seed, 0)
    reward = parse_reward(args.reward)
    overrides = parse_key_values(args.overrides) if args.overrides is not None else None
    _check_config("batchrl-mtf", batchrl_small.SMALL_PRESET if overrides is None else overrides)
    set_threads(args.threads)

    result = batchrl_small.run(args.data, args.steps, args.seed, args.out, args.run, overrides, args.rollouts,
                               args.users, args.days, reward, show_progress=not args.no_progress)
    print((Path(args.out) / "result.md").read_text())
    d = result["true_value_difference"]
    print(f"beats production: {result['beats_production']} (difference {d['mean']:+.4f}, "
          f"CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]); seconds {result['seconds']}")


def _run_ope_validation(args: argparse.Namespace) -> None:
    import dataclasses

    from benchmarks.suites import ope_validation as ov

    output_dir("--out", args.out)
    if args.report_only:
        if not (args.out / "result.json").is_file() and (args.out / "runs").is_dir():  # a grid stopped early
            ov.aggregate_finished_runs(args.out)
            print(f"report of the finished datasets -> {args.out}/result.md, result.json")
            return
        try:
            result = json.loads((args.out / "result.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read {args.out / 'result.json'}: {exc}") from None
        if result.get("suite") == "ope_validation_grid":
            (args.out / "result.md").write_text(ov.grid_markdown(result))
            ov.grid_scatter(result, args.out / "scatter.png")
            print(f"report -> {args.out}/result.md, scatter.png")
            return
        ov.write_report(result, args.out)
        print(f"report -> {args.out}/result.md, scatter.png, alpha_sweep.png")
        return
    if args.data is not None:
        dataset_dir("--data", args.data)
    for option in ("steps", "rollouts", "n_initial", "td3_steps", "runs_per_algo"):
        positive("--" + option.replace("_", "-"), getattr(args, option))
    positive("--seed", args.seed, 0)
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    roots = ov.DEFAULT_RUN_ROOTS if args.runs is None else [r for r in args.runs if r]
    for root in roots if args.runs is not None else ():
        if not Path(root).is_dir():
            raise ValueError(f"--runs {root}: no such directory")
    base = ov.PAPER_SETTINGS if args.paper else ov.DEFAULT_SETTINGS
    changes = {k: v for k, v in {"n_steps": args.steps, "learning_rate": args.lr, "n_rollouts": args.rollouts,
                                 "n_initial": args.n_initial, "td3_steps": args.td3_steps, "seed": args.seed}.items()
               if v is not None}
    positive("--sessions", args.sessions, 20)
    from benchmarks.evaluation.estimators import ESTIMATOR_ALIASES, ESTIMATORS

    estimators = None
    if args.estimators is not None:
        estimators = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
        bad = [e for e in estimators if e not in ESTIMATORS and e not in ESTIMATOR_ALIASES]
        if bad or not estimators:
            raise ValueError(f"--estimators: unknown {bad or 'none given'}; choose from {', '.join(ESTIMATORS)}")

    def int_list(option: str, text: str | None) -> tuple[int, ...] | None:
        if text is None:
            return None
        try:
            values = tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"{option} must be comma-separated integers, got {text!r}") from None
        if not values or min(values) < 0:
            raise ValueError(f"{option} must be comma-separated integers >= 0, got {text!r}")
        return values

    if args.data is None:
        from agents.behaviour import is_behaviour_spec

        grid = ov.GridSettings()
        explorations = None
        if args.explorations is not None:
            explorations = tuple(e.strip() for e in args.explorations.split(",") if e.strip())
            bad = [e for e in explorations if e not in ("mixed", "random", "action-noise") and not is_behaviour_spec(e)]
            if bad or not explorations:
                raise ValueError(f"--explorations: unknown behaviour policies {bad or 'none given'}")
        grid_changes = {k: v for k, v in {"seeds": int_list("--seeds", args.seeds),
                                          "exploration_seeds": int_list("--exploration-seeds", args.exploration_seeds),
                                          "explorations": explorations, "n_sessions": args.sessions}.items()
                        if v is not None}
        base_v = dataclasses.replace(grid.validation, **changes) if not args.paper else dataclasses.replace(
            ov.PAPER_SETTINGS, n_initial=grid.validation.n_initial, n_random=grid.validation.n_random,
            sweep_alphas=(), **changes)
        grid = dataclasses.replace(grid, validation=base_v, **grid_changes)
        result = ov.run_grid(args.out, grid, estimators=estimators or ov.GRID_ESTIMATORS,
                             run_roots=() if args.runs is None else roots, train_td3=not args.no_td3,
                             show_progress=not args.no_progress)
        print(ov.grid_markdown(result))
        print(f"results -> {args.out}/result.json, result.md, scatter.png, runs/*/")
        return
    settings = dataclasses.replace(base, **changes)  # ValidationSettings checks its values

    result = ov.run_validation(args.data, args.out, settings, run_roots=roots, train_td3=not args.no_td3,
                               sweep=not args.no_sweep, show_progress=not args.no_progress,
                               runs_per_algo=args.runs_per_algo,
                               **({"estimators": estimators} if estimators else {}))
    print(ov.markdown_report(result))
    print(f"results -> {args.out}/result.json, result.md, scatter.png, alpha_sweep.png")
