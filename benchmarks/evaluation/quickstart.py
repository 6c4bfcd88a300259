"""The quickstart: collect a small dataset, train BatchRL-MTF briefly, A/B-test it against production.

:func:`run_quickstart` is the README's main job on small settings: it collects a small
mixed-exploration dataset, trains BatchRL-MTF with the reduced :data:`QUICKSTART` settings
(:func:`benchmarks.evaluation.training.train_agent`) and A/B-tests it against the production
fusion weights (:func:`benchmarks.evaluation.ab.ab_test`), writing everything under one
output directory and returning the Table-1-shaped lift table.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .training import train_agent

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
    from agents.behaviour import collection_policy
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
    collect_dataset(out / "dataset", sim_config, collect, collection_policy(collect), progress=show_progress)
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
