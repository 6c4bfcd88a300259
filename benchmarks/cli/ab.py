"""``mtf-bench ab``: an online A/B test of policies on the simulator (:mod:`benchmarks.evaluation.ab`).

Example::

    mtf-bench ab --control static:production --treatment static:time-only --treatment runs/bcq \\
        --users 10000 --days 1 --seed 0 --out results/ab

POLICY specs are resolved by :func:`agents.registry.load_policy`: ``static:NAME``, a JSON file
of weights, or a trained run directory. Writes ``ab.json`` and ``ab.md`` into ``--out`` and
prints the Markdown table. An ``--out`` that holds anything is refused before the test runs;
``--overwrite`` replaces the results of an earlier ``ab`` there (a folder holding other files
is never written into).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import in_unit_interval, output_dir, parse_reward, positive


def parse_config(text: str | None):
    """``--config``: a JSON file or an inline JSON object of SimConfig overrides (None: defaults)."""
    from mtf_env.config import SimConfig, make_config

    if not text:
        return SimConfig()
    path = Path(text)
    try:
        overrides = json.loads(path.read_text()) if path.is_file() else json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config is neither a JSON file nor inline JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ValueError("--config must be a JSON object of SimConfig fields")
    return make_config(**overrides)


#: The files an A/B test writes into its output directory.
AB_FILES: frozenset[str] = frozenset({"ab.json", "ab.md"})


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that cannot be written, holds files of something else, or holds an earlier
    A/B test's results without ``--overwrite``."""
    output_dir("--out", out)
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    foreign = [name for name in entries if name not in AB_FILES]
    if foreign:
        raise ValueError(f"--out {out} holds files that no A/B test wrote ({', '.join(foreign[:3])}); "
                         "choose another --out")
    if not overwrite:
        raise ValueError(f"--out {out} holds an earlier A/B test ({', '.join(entries)}); pass --overwrite to "
                         "replace it, or choose another --out")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ab", help="online A/B test with common random numbers: ADTime, UPIRate, session return lifts")
    p.add_argument("--control", required=True, metavar="POLICY", help="control policy spec (e.g. static:production)")
    p.add_argument("--treatment", required=True, action="append", metavar="POLICY",
                   help="treatment policy spec; repeat for several treatments")
    p.add_argument("--users", type=int, default=10_000, help="users per arm (drawn with --seed)")
    p.add_argument("--days", type=int, default=1, help="days per user")
    p.add_argument("--seed", type=int, default=0, help="random streams (the same in every arm)")
    p.add_argument("--reward", default=None, help="evaluation reward preset (default: the config's)")
    p.add_argument("--gamma", type=float, default=0.95, help="discount of the discounted session return")
    p.add_argument("--config", default=None, help="SimConfig overrides: JSON file or inline JSON object")
    p.add_argument("--block-size", type=int, default=None, help="users simulated together (default 4096)")
    p.add_argument("--ceiling", type=Path, default=None, help="a `mtf-bench ceiling` directory: also report each "
                   "arm's regret to the best reference (paired, on the ceiling's judgement users) in regret.json")
    p.add_argument("--out", type=Path, default=Path("results/ab"), help="output directory (ab.json, ab.md)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier A/B test in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    positive("--users", args.users, 2)
    positive("--days", args.days)
    positive("--seed", args.seed, 0)
    positive("--block-size", args.block_size)
    in_unit_interval("--gamma", args.gamma)
    _check_out(args.out, args.overwrite)
    reward = parse_reward(args.reward) if args.reward is not None else None
    config = parse_config(args.config)
    ceiling = None
    if args.ceiling is not None:
        from benchmarks.evaluation.ceiling import load_ceiling

        ceiling = load_ceiling(args.ceiling)
    import torch

    from agents.registry import load_policy
    from benchmarks.evaluation.ab import ab_test, arm_names

    # torch policies run between simulator steps whose numba threads use the cores; more than one
    # torch thread was measured to slow MLP evaluation several-fold on a 2-core machine
    torch.set_num_threads(1)
    control = load_policy(args.control, seed=args.seed)
    names = arm_names(args.control, args.treatment)
    treatments = {name: load_policy(spec, seed=args.seed) for name, spec in zip(names, args.treatment)}
    extra = {} if args.block_size is None else {"block_size": args.block_size}
    result = ab_test(control, treatments, users=args.users, days=args.days, seed=args.seed, config=config,
                     reward=reward, gamma=args.gamma, show_progress=not args.no_progress,
                     control_name=args.control, **extra)
    result.meta["specs"] = {"control": args.control, "treatments": dict(zip(names, args.treatment))}
    json_path, md_path = result.write(args.out)
    print(result.to_markdown())
    if ceiling is not None:
        from benchmarks.evaluation.ceiling import regret_to_ceiling
        from mtf_env.files import write_json

        arms = {args.control: control, **treatments}
        regrets = regret_to_ceiling(arms, ceiling, config, show_progress=not args.no_progress)
        write_json(args.out / "regret.json", {"ceiling": str(args.ceiling), "best": ceiling.best, "arms": regrets})
        lines = [f"### Regret to the ceiling ({ceiling.best}, a reference found by direct search; paired 95% CI)", "",
                 "| Arm | true value +- SE | regret |", "|---|---:|---:|"]
        for name, r in regrets.items():
            g = r["regret"]
            lines.append(f"| {name} | {r['true_value']['value']:.4f} +- {r['true_value']['se']:.4f} | "
                         f"{g['mean']:+.4f} [{g['ci_low']:+.4f}, {g['ci_high']:+.4f}] |")
        with open(md_path, "a") as fh:
            fh.write("\n" + "\n".join(lines) + "\n")
        print("\n".join(lines))
    print(f"results -> {json_path}, {md_path}")
