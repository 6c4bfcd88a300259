"""``mtf-bench train`` and ``mtf-bench quickstart``.

::

    mtf-bench train --algo batchrl-mtf --data datasets/small --steps 20000 --seed 0 \\
        --set critic_hidden=64,64 actor_hidden=64,64 vae_hidden=128,128
    mtf-bench train --algo batchrl-mtf --data datasets/small --steps 40000 --seed 0 \\
        --out runs/batchrl-mtf__small__0 --resume            # continue the run to 40k steps
    mtf-bench quickstart                                      # collect, train, A/B test: minutes

``train`` works for every algorithm of :data:`agents.registry.ALGOS` (see
:func:`benchmarks.training.train_agent` for what it writes and checks). ``quickstart`` is the
README's main job: it collects a small mixed-exploration dataset, trains BatchRL-MTF briefly
with the reduced :data:`QUICKSTART` settings and A/B-tests it against the production fusion
weights, printing the Table-1-shaped lift table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .training import default_run_dir, parse_key_values, train_agent

#: Marker file of a quickstart output directory (a later quickstart may replace such a directory).
QUICKSTART_LOG = "quickstart.json"


@dataclass(frozen=True)
class QuickstartSettings:
    """Everything ``mtf-bench quickstart`` does, with its sizes.

    The defaults (:data:`QUICKSTART`) are chosen to finish in well under 10 minutes on a
    loaded 2-core machine; they are a demonstration, not the paper's scale. The paper's
    settings are BatchRL-MTF's config defaults (400-300 critics and perturbation net, 750-750
    VAE, batch 256, 300,000 steps) on 3.142M sessions (``mtf-bench collect --preset paper``).
    """

    sessions: int = 4000
    """Sessions of mixed exploration collected (half random, half action-noise around production)."""
    collect_batch_size: int = 4096
    """Sessions simulated in parallel while collecting."""
    steps: int = 6000
    """Gradient steps of BatchRL-MTF (the paper: 300,000); about 2-5 minutes with these networks."""
    agent: dict[str, Any] = field(default_factory=lambda: {
        "actor_hidden": (64, 64), "critic_hidden": (64, 64), "vae_hidden": (128, 128),
    })
    """BatchRL-MTF config overrides: networks a few times narrower than BCQ's 400-300 / 750-750."""
    users: int = 4000
    """Users per A/B arm (the same users, with common random numbers, in both arms)."""
    days: int = 1
    """Days per user in the A/B test."""
    sim: dict[str, Any] = field(default_factory=dict)
    """SimConfig overrides of the world (empty: the default simulator)."""


#: The quickstart preset (documented in the README).
QUICKSTART = QuickstartSettings()
#: A seconds-long variant for tests (``--tiny``): a small world, tiny networks, a few hundred users.
QUICKSTART_TINY = QuickstartSettings(
    sessions=300, collect_batch_size=512, steps=40, users=200, days=1, sim={"n_users": 3000, "n_items": 4000},
    agent={"actor_hidden": (16,), "critic_hidden": (16,), "vae_hidden": (16,), "batch_size": 64,
           "n_action_samples": 10, "n_target_samples": 4},
)


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
                   help="reward preset the data is relabelled with (default, time, integrity, interaction) "
                        "or a JSON list of 12 weights / object task -> weight")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config override(s), e.g. --set critic_hidden=64,64 batch_size=128 rho=0.1")
    p.add_argument("--sim", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="SimConfig override(s) for online algorithms trained without --data")
    p.add_argument("--log-every", type=int, help="gradient steps per metrics row (agent default if omitted)")
    p.add_argument("--checkpoint-every", type=int, help="gradient steps between checkpoints (agent default)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: measured fastest on a shared 2-core machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)

    q = sub.add_parser(
        "quickstart", help="collect a small dataset, train BatchRL-MTF briefly, A/B-test it against production",
        description="The main job on small settings (minutes on 2 CPU cores): collect "
                    f"{QUICKSTART.sessions} mixed-exploration sessions, train BatchRL-MTF for {QUICKSTART.steps} "
                    f"steps with reduced networks, A/B-test it against static:production on {QUICKSTART.users} "
                    "users x 1 day, print the lift table and write everything under --out.")
    q.add_argument("--out", type=Path, default=Path("results/quickstart"),
                   help="output directory (dataset/, run/, ab.json, ab.md, quickstart.json)")
    q.add_argument("--seed", type=int, default=0, help="seed of the collection, the training and the A/B test")
    q.add_argument("--steps", type=int, help=f"gradient steps (default {QUICKSTART.steps})")
    q.add_argument("--sessions", type=int, help=f"sessions to collect (default {QUICKSTART.sessions})")
    q.add_argument("--users", type=int, help=f"users per A/B arm (default {QUICKSTART.users})")
    q.add_argument("--tiny", action="store_true", help="seconds-long smoke variant (small world, tiny networks)")
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.set_defaults(func=_run_quickstart)


def _parse_reward(text: str) -> Any:
    text = text.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--reward is not valid JSON: {exc}") from None
    from mtf_env.rewards import REWARD_PRESETS

    if text not in REWARD_PRESETS:
        raise ValueError(f"unknown reward preset {text!r}; choose one of {sorted(REWARD_PRESETS)} or give JSON weights")
    return text


def _set_threads(n: int) -> None:
    import torch

    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)


def _run_train(args: argparse.Namespace) -> None:
    reward = _parse_reward(args.reward)
    overrides = parse_key_values(args.overrides, "--set")
    sim_overrides = parse_key_values(args.sim, "--sim")
    _set_threads(args.threads)
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


# ---------------------------------------------------------------------------------------------
# quickstart
# ---------------------------------------------------------------------------------------------
def _prepare_out(out: Path) -> None:
    """Use ``out`` if absent or empty; replace it only if a previous quickstart wrote it."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / QUICKSTART_LOG).is_file():
            raise ValueError(f"{out} is not empty and was not written by quickstart (no {QUICKSTART_LOG}); "
                             "choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_quickstart(out: str | Path = "results/quickstart", seed: int = 0,
                   settings: QuickstartSettings = QUICKSTART, show_progress: bool = True) -> dict[str, Any]:
    """Collect -> train -> A/B test (see the module docstring); returns the summary written to quickstart.json.

    Writes ``out/dataset`` (the logged data), ``out/run`` (the BatchRL-MTF run directory),
    ``out/ab.json`` and ``out/ab.md`` (the A/B test) and ``out/quickstart.json`` (settings,
    per-phase seconds, load average, the headline lifts).
    """
    from agents.static import StaticPolicy
    from mtf_env.config import make_config
    from mtf_env.core import Simulator
    from mtf_env.dataset import CollectConfig, collect_dataset

    from .ab import ab_test

    out = Path(out)
    _prepare_out(out)
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()
    sim_config = make_config(**settings.sim)

    t0 = time.perf_counter()
    collect = CollectConfig(policy="mixed", n_sessions=settings.sessions, seed=seed, n_days=1,
                            batch_size=settings.collect_batch_size)
    collect_dataset(out / "dataset", sim_config, collect, progress=show_progress)
    seconds["collect"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    trained = train_agent("batchrl-mtf", out / "dataset", settings.steps, seed, out / "run",
                          overrides=settings.agent, show_progress=show_progress,
                          fit_kwargs={"log_every": max(1, min(250, settings.steps))})
    seconds["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sim = Simulator(sim_config)
    result = ab_test(StaticPolicy.preset("production"), {"batchrl-mtf": trained.agent}, users=settings.users,
                     days=settings.days, seed=seed, sim=sim, show_progress=show_progress,
                     control_name="static:production")
    result.write(out)
    seconds["ab_test"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_all

    lifts = result.lifts["batchrl-mtf"]
    summary = {
        "settings": dataclasses.asdict(settings),
        "seed": seed,
        "dataset": str(out / "dataset"),
        "run": str(out / "run"),
        "train_steps_per_s": trained.steps_per_s,
        "seconds": seconds,
        "load_average_at_end": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "lift_pct": {m: lifts[m].to_json() for m in ("adtime_s", "upi_rate", "session_return",
                                                      "discounted_session_return")},
    }
    from mtf_env.files import write_json

    write_json(out / QUICKSTART_LOG, summary)
    return {**summary, "markdown": result.to_markdown()}


def _run_quickstart(args: argparse.Namespace) -> None:
    _set_threads(args.threads)
    base = QUICKSTART_TINY if args.tiny else QUICKSTART
    changes = {k: v for k, v in (("steps", args.steps), ("sessions", args.sessions), ("users", args.users))
               if v is not None}
    for key, value in changes.items():
        if value < 1 or (key == "users" and value < 2):
            raise ValueError(f"--{key} must be a positive integer{' >= 2' if key == 'users' else ''}, got {value}")
    settings = dataclasses.replace(base, **changes)
    summary = run_quickstart(args.out, args.seed, settings, show_progress=not args.no_progress)
    print(summary["markdown"])
    s = summary["seconds"]
    print(f"quickstart: collect {s['collect']:.0f} s, train {s['train']:.0f} s "
          f"({summary['train_steps_per_s']:.0f} steps/s), A/B test {s['ab_test']:.0f} s, total {s['total']:.0f} s "
          f"-> {args.out} (ab.md, ab.json, run/, dataset/)")
