"""The BatchRL-MTF suite: BatchRL-MTF trained on the ``small`` mixed dataset against the production weights.

::

    mtf-bench collect --preset small --out datasets/small          # 50k sessions, mixed exploration
    mtf-bench suite batchrl-small --data datasets/small --steps 20000 --seed 0 \\
        --out results/batchrl_small

Three steps, each writing files (results are never recomputed by reports):

1. **Train** BatchRL-MTF with :func:`benchmarks.evaluation.training.train_agent` into ``--run`` (default
   ``OUT/run``, inside the suite's own output, so it never meets a run of ``mtf-bench train``) with the reduced :data:`SMALL_PRESET` networks (the
   paper's 400-300 / 750-750 networks do about 4-5 gradient steps per second on a shared
   2-core machine; these are several times faster). The run resumes if it exists, so an
   interrupted suite continues where it stopped and a finished run is not retrained.
2. **True value** (:func:`benchmarks.evaluation.true_value.true_value`): the expected discounted session return
   (gamma 0.95, the training reward) from the initial states of the dataset's *test* split
   (its held-out users, fresh sessions), ``--rollouts`` sessions per state, for the agent and
   for ``static:production`` (the target of the data's action-noise half) with the **same seed
   and the same users**, so row ``i`` of both runs uses the same random numbers (common random
   numbers). The difference is paired per initial state: ``d_s = mean_k G_agent(s, k) -
   mean_k G_production(s, k)``; its standard error is ``sd(d_s) / sqrt(n_states)`` (it treats
   the test users as a sample of the user population) and the 95% CI is ``mean(d) +- 1.96 se``
   (:func:`benchmarks.evaluation.stats.paired_difference`).
3. **Online A/B test** (:func:`benchmarks.evaluation.ab.ab_test`): ``--users`` users x ``--days`` day(s)
   of the day model, production as control, paired lifts of ADTime, UPIRate and the session
   returns with 95% CIs.

Writes ``OUT/result.json`` (settings, train log, both true values, the paired difference, the
lifts), ``OUT/result.md`` (the tables) and ``OUT/ab.json`` / ``OUT/ab.md``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any


#: BatchRL-MTF overrides of this suite: the paper's hyperparameters except narrower networks.
SMALL_PRESET: dict[str, Any] = {"actor_hidden": (64, 64), "critic_hidden": (64, 64), "vae_hidden": (128, 128)}


def run(data: str | Path, steps: int, seed: int, out: str | Path, run_dir: str | Path | None = None,
        overrides: dict[str, Any] | None = None, rollouts: int = 4, users: int = 10_000, days: int = 1,
        reward: str = "default", show_progress: bool = True) -> dict[str, Any]:
    """Train -> true values -> A/B test (see the module docstring); returns the result dict written to JSON."""
    import torch

    from mtf_env.files import write_json
    from agents.static import StaticPolicy
    from mtf_env.core import Simulator
    from mtf_env.dataset import load_dataset

    from benchmarks.evaluation.ab import ab_test
    from benchmarks.evaluation.stats import paired_difference
    from benchmarks.evaluation.training import train_agent
    from benchmarks.evaluation.true_value import true_value

    data, out = Path(data), Path(out)
    overrides = dict(SMALL_PRESET if overrides is None else overrides)
    run_dir = Path(run_dir) if run_dir is not None else out / "run"
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
