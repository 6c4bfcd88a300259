"""``mtf-bench train``: train an algorithm on a logged dataset (or online) into a run directory.

::

    mtf-bench train --algo batchrl-mtf --data datasets/small --steps 20000 --seed 0 \\
        --set critic_hidden=64,64 actor_hidden=64,64 vae_hidden=128,128
    mtf-bench train --algo batchrl-mtf --data datasets/small --steps 40000 --seed 0 \\
        --out runs/batchrl-mtf__small__0 --resume            # continue the run to 40k steps
    mtf-bench train --algo bo --reward time --steps 20        # online: trains on the time reward

Works for every algorithm of :data:`agents.algos.ALGOS`; see
:func:`benchmarks.evaluation.training.train_agent` for what it writes and checks. Without
``--steps`` the run takes the config's ``n_steps`` (hours for the paper's budget): the command
first prints the time it expects (:func:`benchmarks.evaluation.training.estimate_seconds`).
Ctrl-C ends with one line saying what was kept (the last checkpoint) and the command that
resumes it; interrupted before the first checkpoint, a new run leaves nothing behind.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from agents.algos import ALGOS

from .common import dataset_dir, output_dir, parse_reward, positive, set_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train an algorithm on a logged dataset (or online) into a run directory",
        description="Train an algorithm of agents/algos.py. Writes config.json, metrics.csv, checkpoint.pt "
                    "and train.json into the run directory (default runs/ALGO__DATASET__SEED), which loads "
                    "as a policy (e.g. `mtf-bench ab --treatment RUN_DIR`).")
    p.add_argument("--algo", required=True, metavar="ALGO",
                   help=f"algorithm: {', '.join(ALGOS)} (bo, es and sac-online train online, without --data)")
    p.add_argument("--data", type=Path, help="logged dataset directory (its train split); not needed by online "
                                             "algorithms")
    p.add_argument("--steps", type=int, help="total steps of the run (default: the config's n_steps, the paper's "
                                             "300,000 gradient steps for the offline algorithms: hours; the "
                                             "expected time is printed first)")
    p.add_argument("--seed", type=int, default=0, help="seed of all randomness of the run")
    p.add_argument("--out", type=Path, help="run directory (default runs/ALGO__DATASET__SEED); must be empty "
                                            "unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (which must hold one) from its last checkpoint")
    p.add_argument("--reward", default="default",
                   help="reward preset the data is relabelled with, and the online algorithms' reward (default, "
                        "time, integrity, interaction), or a JSON list of 12 weights / object task -> weight")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config override(s), e.g. --set critic_hidden=64,64 batch_size=128 rho=0.1")
    p.add_argument("--sim", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="SimConfig override(s) for online algorithms trained without --data")
    p.add_argument("--log-every", type=int, help="steps per metrics row (default: the algorithm's)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the algorithm's)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 was measured fastest on a shared 2-core machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _resume_command(args: argparse.Namespace, out: Path, steps: int | None) -> str:
    """The command line that continues the interrupted run in ``out``."""
    argv = ["mtf-bench", "train", "--algo", args.algo]
    if args.data is not None:
        argv += ["--data", str(args.data)]
    if steps is not None:
        argv += ["--steps", str(steps)]
    argv += ["--seed", str(args.seed), "--out", str(out), "--resume"]
    if args.reward != "default":
        argv += ["--reward", args.reward]
    if args.sim:
        argv += ["--sim", *args.sim]
    return shlex.join(argv)


def _check_run(args: argparse.Namespace, out: Path, config) -> None:
    """Refuse before any work: a non-empty ``--out`` without ``--resume``, ``--resume`` without a run in
    ``--out``, a checkpoint beyond ``--steps``, and a budget that is not a multiple of a vectorised
    online algorithm's ``n_envs``."""
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not args.resume:
        raise ValueError(f"--out {out} is not empty ({', '.join(entries[:5])}); pass --resume to continue that "
                         "run, or choose another --out")
    if args.resume:
        if not entries:
            raise ValueError(f"--resume: {out} holds no run to resume (missing or empty); leave out --resume "
                             "to start a new run there")
        if args.steps is not None and (out / "checkpoint.pt").is_file():
            from agents.checkpoint import load_checkpoint

            step = int(load_checkpoint(out / "checkpoint.pt").get("step", 0))
            if step > args.steps:
                raise ValueError(f"--steps {args.steps} is below the step of the run's checkpoint in {out} "
                                 f"({step}); give --steps {step} or more to continue it")
    n_envs = getattr(config, "n_envs", None)
    if n_envs:
        for option, value in (("--steps", args.steps), ("--checkpoint-every", args.checkpoint_every)):
            if value is not None and value % n_envs:
                raise ValueError(f"{option} must be a multiple of {args.algo}'s n_envs={n_envs} (it steps "
                                 f"{n_envs} simulator sessions at a time), got {value}")


def _run(args: argparse.Namespace) -> None:
    from benchmarks.evaluation.configs import parse_key_values

    if args.algo not in ALGOS:
        raise ValueError(f"--algo: unknown algorithm {args.algo!r}; choose one of {', '.join(ALGOS)}")
    reward = parse_reward(args.reward)
    overrides = parse_key_values(args.overrides, "--set")
    sim_overrides = parse_key_values(args.sim, "--sim")
    for option, value in (("--steps", args.steps), ("--log-every", args.log_every),
                          ("--checkpoint-every", args.checkpoint_every), ("--threads", args.threads)):
        positive(option, value)
    positive("--seed", args.seed, 0)
    if args.data is not None:
        dataset_dir("--data", args.data)
    from benchmarks.evaluation.training import default_run_dir

    out = args.out or default_run_dir(args.algo, args.data, args.seed)
    output_dir("--out", out)
    set_threads(args.threads)
    from agents.algos import algo_class
    from benchmarks.evaluation.configs import build_config, reward_overrides
    from benchmarks.evaluation.training import TrainingInterrupted, estimate_seconds, train_agent

    cls = algo_class(args.algo)
    if getattr(cls, "requires_data", True) and args.data is None:
        raise ValueError(f"--data: {args.algo} trains on logged data; give the dataset directory (--data DIR)")
    with_reward = reward_overrides(cls, overrides, reward)
    try:
        config = build_config(cls, with_reward)
    except ValueError as exc:
        raise ValueError(f"--set: {exc}") from None
    _check_run(args, out, config)

    def print_estimate(run_config) -> None:
        """Without --steps: the expected time of the config's n_steps, printed once everything is checked."""
        if args.steps is not None:
            return
        seconds, basis = estimate_seconds(args.algo, run_config, out if args.resume else None,
                                          changed=bool(overrides))
        unit = getattr(cls, "step_unit", "step")
        when = f"about {_duration(seconds)}" if seconds is not None else "unknown time"
        print(f"{args.algo}: {run_config.n_steps:,} {unit}s (the config's n_steps; --steps sets fewer): {when} "
              f"({basis})", file=sys.stderr, flush=True)

    fit_kwargs = {k: v for k, v in (("log_every", args.log_every), ("checkpoint_every", args.checkpoint_every))
                  if v is not None}
    try:
        result = train_agent(args.algo, args.data, args.steps, args.seed, out, resume=args.resume, reward=reward,
                             overrides=overrides, show_progress=not args.no_progress, sim_overrides=sim_overrides,
                             fit_kwargs=fit_kwargs, before_fit=print_estimate)
    except TrainingInterrupted as exc:
        if exc.checkpoint_step is None:
            raise KeyboardInterrupt(f"{exc}; nothing to resume, run the same command again to start over") from None
        raise KeyboardInterrupt(f"{exc}; resume with: {_resume_command(args, out, args.steps)}") from None
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.last_metrics.items())
    print(f"{result.algo}: {result.steps} steps ({result.steps_this_call} in this call, {result.wall_s:.1f} s, "
          f"{result.steps_per_s:.1f} steps/s) -> {result.run_dir}")
    if metrics:
        print(f"last metrics: {metrics}")


def _duration(seconds: float) -> str:
    """``seconds`` as "40 s", "12 min" or "8.3 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
