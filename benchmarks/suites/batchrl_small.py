"""Issue 5's headline: BatchRL-MTF trained on the ``small`` mixed dataset against the production weights.

::

    mtf-bench collect --preset small --out datasets/small          # 50k sessions, mixed exploration
    python -m benchmarks.suites.batchrl_small --data datasets/small --steps 20000 --seed 0 \\
        --out results/batchrl_small

Three steps, each writing files (results are never recomputed by reports):

1. **Train** BatchRL-MTF with :func:`benchmarks.training.train_agent` into ``--run`` (default
   ``runs/batchrl-mtf__small__SEED``) with the reduced :data:`SMALL_PRESET` networks (the
   paper's 400-300 / 750-750 networks do about 4-5 gradient steps per second on a shared
   2-core machine; these are several times faster). The run resumes if it exists, so an
   interrupted suite continues where it stopped and a finished run is not retrained.
2. **True value** (:func:`benchmarks.ab.true_value`): the expected discounted session return
   (gamma 0.95, the training reward) from the initial states of the dataset's *test* split
   (its held-out users, fresh sessions), ``--rollouts`` sessions per state, for the agent and
   for ``static:production`` (the target of the data's action-noise half) with the **same seed
   and the same users**, so row ``i`` of both runs uses the same random numbers (common random
   numbers). The difference is paired per initial state: ``d_s = mean_k G_agent(s, k) -
   mean_k G_production(s, k)``; its standard error is ``sd(d_s) / sqrt(n_states)`` (it treats
   the test users as a sample of the user population) and the 95% CI is ``mean(d) +- 1.96 se``.
3. **Online A/B test** (:func:`benchmarks.ab.ab_test`): ``--users`` users x ``--days`` day(s)
   of the day model, production as control, paired lifts of ADTime, UPIRate and the session
   returns with 95% CIs.

Writes ``OUT/result.json`` (settings, train log, both true values, the paired difference, the
lifts), ``OUT/result.md`` (the tables) and ``OUT/ab.json`` / ``OUT/ab.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: BatchRL-MTF overrides of this suite: the paper's hyperparameters except narrower networks.
SMALL_PRESET: dict[str, Any] = {"actor_hidden": (64, 64), "critic_hidden": (64, 64), "vae_hidden": (128, 128)}
#: z of a two-sided 95% normal interval.
Z95 = 1.959963984540054


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of ``a - b`` over paired rows (n,) with its standard error and 95% CI."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"need two (n,) arrays with n >= 2, got shape {d.shape}")
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    return {"mean": mean, "se": se, "ci_low": mean - Z95 * se, "ci_high": mean + Z95 * se,
            "p_value": math.erfc(abs(mean) / se / math.sqrt(2.0)) if se > 0 else float(mean == 0),
            "n_states": int(d.size)}


def run(data: str | Path, steps: int, seed: int, out: str | Path, run_dir: str | Path | None = None,
        overrides: dict[str, Any] | None = None, rollouts: int = 4, users: int = 10_000, days: int = 1,
        reward: str = "default", show_progress: bool = True) -> dict[str, Any]:
    """Train -> true values -> A/B test (see the module docstring); returns the result dict written to JSON."""
    import torch

    from mtf_env.files import write_json
    from agents.static import StaticPolicy
    from mtf_env.core import Simulator
    from mtf_env.dataset import load_dataset

    from ..ab import ab_test, true_value
    from ..training import default_run_dir, train_agent

    data, out = Path(data), Path(out)
    overrides = dict(SMALL_PRESET if overrides is None else overrides)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir("batchrl-mtf", data, seed)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    trained = train_agent("batchrl-mtf", data, steps, seed, run_dir, resume=True, reward=reward,
                          overrides=overrides, show_progress=show_progress)
    seconds["train"] = time.perf_counter() - t0
    agent = trained.agent

    test = load_dataset(data, reward=reward, split="test", verify_checksums=False, validate="structure")
    sim = Simulator(test.config)
    production = StaticPolicy.preset("production")
    t0 = time.perf_counter()
    values = {name: true_value(policy, test, n_rollouts=rollouts, seed=seed, reward=reward, sim=sim,
                               show_progress=show_progress)
              for name, policy in (("batchrl-mtf", agent), ("static:production", production))}
    seconds["true_value"] = time.perf_counter() - t0
    diff = paired_difference(values["batchrl-mtf"].per_state, values["static:production"].per_state)

    t0 = time.perf_counter()
    ab = ab_test(production, {"batchrl-mtf": agent}, users=users, days=days, seed=seed, sim=sim, reward=reward,
                 show_progress=show_progress, control_name="static:production")
    ab.write(out)
    seconds["ab_test"] = time.perf_counter() - t0

    lifts = ab.lifts["batchrl-mtf"]
    train_log = {"run_dir": str(run_dir), "steps": trained.steps, "steps_this_call": trained.steps_this_call,
                 "wall_s": trained.wall_s, "steps_per_s": trained.steps_per_s,
                 "last_metrics": trained.last_metrics}
    result = {
        "suite": "batchrl_small",
        "data": str(data), "seed": seed, "reward": reward, "steps": steps,
        "agent_overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "agent_config": dataclasses.asdict(agent.config),
        "train": train_log,
        "true_value": {name: v.to_json() for name, v in values.items()},
        "true_value_difference": diff,
        "beats_production": bool(diff["ci_low"] > 0),
        "ab": {"users": users, "days": days,
               "lifts_pct": {m: lifts[m].to_json() for m in lifts}},
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "result.json", result)
    (out / "result.md").write_text(to_markdown(result, ab.to_markdown()))
    return result


def to_markdown(result: dict[str, Any], ab_markdown: str) -> str:
    """The suite's tables: true values with the paired difference, then the A/B test."""
    tv, d, c = result["true_value"], result["true_value_difference"], result["agent_config"]
    n, k = tv["batchrl-mtf"]["n_states"], tv["batchrl-mtf"]["n_rollouts"]
    lines = [
        f"## BatchRL-MTF on `{result['data']}` ({result['steps']} steps, seed {result['seed']})", "",
        f"Networks: actor {c['actor_hidden']}, critics {c['critic_hidden']}, VAE {c['vae_hidden']} (other "
        f"settings: the paper's; buffer {c['buffer_size']}, batch {c['batch_size']}). Training: "
        f"{result['train']['steps_per_s']:.1f} gradient steps/s in the last call.", "",
        f"### True value (discounted session return, gamma 0.95, reward `{result['reward']}`; {n} test-split initial "
        f"states x {k} rollouts, common random numbers)", "",
        "| Policy | True value | SE (Monte Carlo) | SE (over states) |", "|---|---:|---:|---:|",
    ]
    for name, v in tv.items():
        lines.append(f"| {name} | {v['value']:.4f} | {v['se']:.4f} | {v['se_population']:.4f} |")
    lines += ["", f"Paired difference (BatchRL-MTF - production): **{d['mean']:+.4f}** "
                  f"(SE {d['se']:.4f}, 95% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], p = {d['p_value']:.2g}); "
                  f"{'the CI excludes zero' if d['ci_low'] > 0 or d['ci_high'] < 0 else 'the CI includes zero'}.",
              "", ab_markdown]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from ..training import parse_key_values

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("datasets/small"), help="logged dataset (train/test splits)")
    p.add_argument("--steps", type=int, default=20_000, help="gradient steps (the paper: 300,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/batchrl_small"))
    p.add_argument("--run", type=Path, help="run directory (default runs/batchrl-mtf__DATASET__SEED); resumed")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=None, metavar="KEY=VALUE",
                   help=f"BatchRL-MTF config overrides replacing the suite's preset {SMALL_PRESET}")
    p.add_argument("--rollouts", type=int, default=4, help="sessions per test initial state (true value)")
    p.add_argument("--users", type=int, default=10_000, help="users per A/B arm")
    p.add_argument("--days", type=int, default=1, help="days per user in the A/B test")
    p.add_argument("--reward", default="default", help="training and evaluation reward preset")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    overrides = parse_key_values(args.overrides) if args.overrides is not None else None
    result = run(args.data, args.steps, args.seed, args.out, args.run, overrides, args.rollouts, args.users,
                 args.days, args.reward, show_progress=not args.no_progress)
    print((Path(args.out) / "result.md").read_text())
    d = result["true_value_difference"]
    print(f"beats production: {result['beats_production']} (difference {d['mean']:+.4f}, "
          f"CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]); seconds {result['seconds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
