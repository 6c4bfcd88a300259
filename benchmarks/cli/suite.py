"""``mtf-bench suite run|report|baselines|batchrl-small|ope-validation``: run a benchmark suite.

::

    mtf-bench suite run --preset smoke --out results/suite/smoke      # the paper's Table 1 and Figures 5-8
    mtf-bench suite run --preset small --seeds 0,1,2 --only batchrl-mtf bo --out results/suite/small
    mtf-bench suite report results/suite/small                         # redraw report.md, results.json, figures
    mtf-bench suite run --preset small --loop-data runs/loop/s0/batchrl-mtf --out results/suite/small-loop

    mtf-bench suite baselines --data datasets/small --steps 2000 --out results/baselines
    mtf-bench suite batchrl-small --data datasets/small --steps 20000 --seed 0 --out results/batchrl_small
    mtf-bench suite ope-validation --data datasets/small --out results/ope_validation

``suite run`` is the paper suite (:mod:`benchmarks.suites.paper_suite`: cells, executors, a report
with the paper's figures side by side); ``baselines``, ``batchrl-small`` and ``ope-validation`` are
the single-dataset, single-seed suites it grew from, kept for quick looks at one method or the
estimator. Each suite is library code in :mod:`benchmarks.suites` (what it does and writes is in its
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

    p = sub.add_parser("suite", help="run a benchmark suite (run: the paper suite; report; baselines, "
                                     "batchrl-small, ope-validation)",
                       description="Run a benchmark suite of benchmarks/suites/.")
    suites = p.add_subparsers(dest="suite", required=True, metavar="SUITE")

    r = suites.add_parser("run", help="the paper suite: Table 1, a second table and Figures 5-8 over seeds",
                          description="Collect the datasets, train and judge every cell (method x dataset x "
                                      "seed), skip finished cells, write report.md, results.json and the figures.")
    r.add_argument("--preset", required=True, help="smoke (minutes), small (hours), paper (days of CPU)")
    r.add_argument("--seeds", help="comma-separated seeds (default: the preset's: smoke 0,1,2; small and paper 0,1,2)")
    r.add_argument("--only", nargs="+", metavar="CELL", help="run only these rows (e.g. batchrl-mtf bo); "
                                                            "default: every row")
    r.add_argument("--device", default="cpu", help="cpu or cuda (agents with a device setting: BatchRL-MTF, "
                                                    "online SAC; the others run on the CPU)")
    r.add_argument("--out", type=Path, required=True, help="suite directory (created; a finished cell in it is "
                                                           "reused)")
    r.add_argument("--workers", type=int, default=1, help="cells run at the same time, in child processes with "
                                                          "one torch thread each (default 1: sequential; local "
                                                          "executor only)")
    r.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine; "
                                                          "with --executor ray: threads of each cell's task)")
    r.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: the cells in this machine's processes (default); ray: each cell a Ray "
                        "task (pip install -e \".[ray]\"; see docs/cluster.md)")
    r.add_argument("--address", help="with --executor ray: the cluster to join, auto or HOST:PORT (default: start "
                                     "a Ray instance on this machine, listening on 127.0.0.1 only)")
    r.add_argument("--cpus-per-cell", type=float, default=1.0,
                   help="with --executor ray: CPUs each cell's task requests (default 1; --device cuda adds one GPU)")
    r.add_argument("--max-retries", type=int, default=3,
                   help="with --executor ray: retries of a cell whose worker process died (a cell that raises is "
                        "not retried)")
    r.add_argument("--loop-data", type=Path, metavar="LOOP_DIR",
                   help="train on the data an explore -> retrain loop produced, as the paper did: the last finished "
                        "round's training window of this `mtf-bench loop` directory (an offline algorithm's) replaces "
                        "the preset's mixed collection for every row but -RE")
    r.add_argument("--loop-data-random", type=Path, metavar="LOOP_DIR",
                   help="with --loop-data: BatchRL-MTF-RE trains on this loop's window (a loop run with "
                        "--exploration random); default: the preset's random-exploration collection")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.set_defaults(func=_run_paper_suite, command_name="suite run")

    rep = suites.add_parser("report", help="redraw report.md, results.json and the figures of a suite directory",
                            description="Read a suite directory's finished cells (nothing is re-run) and write "
                                        "report.md, results.json and the figures.")
    rep.add_argument("dir", type=Path, help="suite directory written by `mtf-bench suite run`")
    rep.add_argument("--save-reference", type=Path, metavar="DIR",
                     help="also write the regression reference (reference.json: each cell's figures and "
                          "tolerances from the spread over seeds) and a copy of the report into DIR")
    rep.set_defaults(func=_report_paper_suite, command_name="suite report")

    e = suites.add_parser("estimate", help="measure steps/s at a preset's sizes and estimate its training hours",
                          description="Train every algorithm of the paper suite briefly at a preset's network "
                                      "sizes and settings, and multiply its steps/s out over the preset's cells.")
    e.add_argument("--preset", required=True, help="smoke, small or paper")
    e.add_argument("--data", type=Path, required=True, help="any logged dataset (e.g. datasets/smoke)")
    e.add_argument("--probe-steps", type=int, default=200, help="steps measured per algorithm")
    e.add_argument("--device", default="cpu", help="cpu or cuda")
    e.add_argument("--out", type=Path, required=True, help="directory of estimate.json and estimate.md")
    e.add_argument("--threads", type=int, default=1, help="torch threads")
    e.set_defaults(func=_estimate_paper_suite, command_name="suite estimate")

    b = suites.add_parser("baselines", help="every registered method on one dataset: true values, Q estimates, "
                                            "A/B test, action figures",
                          description=baselines.__doc__.split("\n\n")[0])
    b.add_argument("--data", type=Path, default=Path("datasets/small"), help="logged dataset (train/test splits)")
    b.add_argument("--out", type=Path, default=Path("results/baselines"), help="results (and runs/) directory")
    b.add_argument("--steps", type=int, default=2000, help="gradient steps of every offline method (paper: 300,000)")
    b.add_argument("--seed", type=int, default=0, help="seed of the training, the true values and the A/B test")
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
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.set_defaults(func=_run_baselines, command_name="suite baselines")

    s = suites.add_parser("batchrl-small", help="BatchRL-MTF on the small dataset against the production weights",
                          description=batchrl_small.__doc__.split("\n\n")[0])
    s.add_argument("--data", type=Path, default=Path("datasets/small"), help="logged dataset (train/test splits)")
    s.add_argument("--steps", type=int, default=20_000, help="gradient steps (the paper: 300,000)")
    s.add_argument("--seed", type=int, default=0, help="seed of the training, the true values and the A/B test")
    s.add_argument("--out", type=Path, default=Path("results/batchrl_small"),
                   help="results directory (result.json, result.md, ab.json, ab.md)")
    s.add_argument("--run", type=Path, help="run directory of the training (default OUT/run); resumed if it exists")
    s.add_argument("--set", dest="overrides", nargs="+", action="extend", default=None, metavar="KEY=VALUE",
                   help=f"BatchRL-MTF config overrides replacing the suite's preset {batchrl_small.SMALL_PRESET}")
    s.add_argument("--rollouts", type=int, default=4, help="sessions per test initial state (true value)")
    s.add_argument("--users", type=int, default=10_000, help="users per A/B arm")
    s.add_argument("--days", type=int, default=1, help="days per user in the A/B test")
    s.add_argument("--reward", default="default", help="training and evaluation reward preset")
    s.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    o.add_argument("--seed", type=int, default=0, help="seed of the estimator fits and the rollouts")
    o.add_argument("--no-td3", action="store_true", help="do not train the quick TD3")
    o.add_argument("--runs-per-algo", type=int, default=None,
                   help="keep at most this many trained runs per algorithm (default: all found)")
    o.add_argument("--no-sweep", action="store_true", help="skip the alpha_c sweep")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    o.add_argument("--report-only", action="store_true",
                   help="redraw result.md and the figures from OUT/result.json (no fitting)")
    o.set_defaults(func=_run_ope_validation, command_name="suite ope-validation")


def _run_paper_suite(args: argparse.Namespace) -> None:
    from benchmarks.suites import paper_suite, runner

    # -- every input is checked before any work (nothing is written on a bad input)
    paper_suite.resolve_preset(args.preset)
    seeds = paper_suite.parse_seeds(args.seeds) if args.seeds is not None else None
    paper_suite.check_only(args.only)
    if args.device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {args.device!r}")
    if args.device == "cuda" and args.executor == "local":  # with Ray: the cluster needs a GPU (checked on joining)
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available to torch")
    positive("--workers", args.workers)
    if args.loop_data_random is not None and args.loop_data is None:
        raise ValueError("--loop-data-random needs --loop-data")
    for option, loop_dir in (("--loop-data", args.loop_data), ("--loop-data-random", args.loop_data_random)):
        if loop_dir is not None:
            try:
                paper_suite.loop_dataset_spec(loop_dir)
            except (ValueError, OSError) as exc:
                raise ValueError(f"{option}: {exc}") from None
    output_dir("--out", args.out)
    positive("--threads", args.threads)
    executor = _make_executor(args)
    set_threads(args.threads)
    try:
        result = runner.run_suite(args.preset, args.out, seeds=seeds, only=args.only, device=args.device,
                                  executor=executor, show_progress=not args.no_progress,
                                  log=_progress_log("suite", not args.no_progress), workers=args.workers,
                                  loop_data=args.loop_data, loop_data_random=args.loop_data_random)
    except runner.SuiteError as exc:
        print(f"mtf-bench suite run: {exc}", flush=True)
        raise SystemExit(1) from None
    finally:
        if executor is not None and hasattr(executor, "close"):
            executor.close()
    print(f"{result['cells_done']} cells -> {args.out}/report.md, results.json and the figures")


def _make_executor(args: argparse.Namespace):
    """None (the suite's local executor) or a RayExecutor joined to its cluster; ValueError (nothing written) for
    Ray options without ``--executor ray``, a missing Ray, a cluster that cannot be reached or cannot fit a cell."""
    if args.executor == "local":
        for option, value, default in (("--address", args.address, None), ("--cpus-per-cell", args.cpus_per_cell, 1.0),
                                       ("--max-retries", args.max_retries, 3)):
            if value != default:
                raise ValueError(f"{option} needs --executor ray")
        return None
    from benchmarks.suites.ray_executor import RayExecutor, require_ray

    if args.workers != 1:
        raise ValueError("--workers is for the local executor; with --executor ray the cluster's CPUs and "
                         "--cpus-per-cell decide how many cells run at once")
    require_ray()
    if not args.cpus_per_cell > 0:
        raise ValueError(f"--cpus-per-cell must be positive, got {args.cpus_per_cell}")
    positive("--max-retries", args.max_retries, 0)
    if args.address is not None and args.address != "auto" and ":" not in args.address:
        raise ValueError(f"--address must be auto or HOST:PORT, got {args.address!r}")
    executor = RayExecutor(address=args.address, cpus_per_cell=args.cpus_per_cell,
                           gpus_per_cell=1 if args.device == "cuda" else 0, threads=args.threads,
                           max_retries=args.max_retries)
    resources = executor.cluster_resources()  # joins (or starts) Ray; ValueError if no node fits a cell
    if not args.no_progress:
        print(f"[suite] Ray: {resources.get('CPU', 0):g} CPU(s), {resources.get('GPU', 0):g} GPU(s); each cell "
              f"{args.cpus_per_cell:g} CPU(s){', 1 GPU' if args.device == 'cuda' else ''}", flush=True)
    return executor


def _report_paper_suite(args: argparse.Namespace) -> None:
    from benchmarks.suites.suite_report import write_report

    if not args.dir.is_dir():
        raise ValueError(f"{args.dir} is not a suite directory")
    if args.save_reference is not None:
        output_dir("--save-reference", args.save_reference)
    result = write_report(args.dir)
    print(f"{result['cells_done']} of {result['cells_planned']} cells -> {args.dir}/report.md, results.json")
    if args.save_reference is not None:
        from benchmarks.suites.regression import save_reference

        save_reference(args.dir, args.save_reference)
        print(f"reference -> {args.save_reference}/reference.json")


def _estimate_paper_suite(args: argparse.Namespace) -> None:
    from benchmarks.suites import estimate, paper_suite

    paper_suite.resolve_preset(args.preset)
    dataset_dir("--data", args.data)
    positive("--probe-steps", args.probe_steps)
    if args.device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {args.device!r}")
    output_dir("--out", args.out)
    set_threads(args.threads)
    estimate.estimate(args.preset, args.data, args.out, args.probe_steps, args.device)
    print((args.out / "estimate.md").read_text())


def _check_config(algo: str, overrides: dict):
    """The config of ``algo`` with ``overrides``; ValueError if they are not valid config keys and values."""
    from agents.registry import algo_class
    from benchmarks.evaluation.configs import build_config

    try:
        return build_config(algo_class(algo), overrides)
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
        config = _check_config(algo, {**baselines.network_overrides(algo, args.hidden, args.vae_hidden),
                                      **overrides.get(algo, {})})
        n_envs = getattr(config, "n_envs", None)
        if algo == "sac-online" and n_envs and args.sac_steps % n_envs:
            raise ValueError(f"--sac-steps must be a multiple of sac-online's n_envs={n_envs} (it steps {n_envs} "
                             f"simulator sessions at a time), got {args.sac_steps}")
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

    from benchmarks.evaluation.training import TrainingInterrupted

    try:
        result = batchrl_small.run(args.data, args.steps, args.seed, args.out, args.run, overrides, args.rollouts,
                                   args.users, args.days, reward, show_progress=not args.no_progress)
    except TrainingInterrupted as exc:
        again = "starts the training again" if exc.checkpoint_step is None else "continues the training"
        raise KeyboardInterrupt(f"{exc}; the same command {again}") from None
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
