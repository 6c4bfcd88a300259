"""Retention across days in the day model: calibration of the hazard logits and retention by static preset.

:func:`calibrate_retention` re-fits ``ResponseParams.retention_logits`` so that under the
production fusion weights the pooled distribution of drawn return gaps matches KuaiRand's
(:data:`mtf_env.retention.KUAIRAND_RETURN_GAP`): it runs the day model, collects every
visit day's score and solves for the logits (:func:`mtf_env.retention.calibrate_logits`),
a few times because which user-days enter the pool depends on the logits.
:func:`retention_by_preset` measures active days per user under each static preset on the
same users with common random numbers, and the best-minus-worst difference with a 95% CI.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from agents.static import STATIC_PRESETS, StaticPolicy
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.retention import KUAIRAND_RETURN_GAP, calibrate_logits

from .days import evaluate
from .stats import paired_difference


def with_retention_logits(config: SimConfig, logits: np.ndarray) -> SimConfig:
    """``config`` with ``response.retention_logits`` replaced by ``logits`` (7,)."""
    response = dataclasses.replace(config.response, retention_logits=tuple(round(float(x), 4) for x in logits))
    return dataclasses.replace(config, response=response)


def calibrate_retention(config: SimConfig | None = None, users: int = 20_000, days: int = 30, seed: int = 0,
                        iterations: int = 3, show_progress: bool = False) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Logits (7,) that reproduce KuaiRand's return gaps under the production weights, and the history of the fit.

    Each iteration runs ``users`` x ``days`` under the current logits, refits them on the
    collected day scores and records the drawn gap shares (the shares of the run *before*
    the refit, so the last entry checks the previous iteration's logits).
    """
    config = config if config is not None else SimConfig()
    history = []
    policy = StaticPolicy.preset("production")
    for _ in range(iterations):
        scores: list = []
        res = evaluate(policy, users, days, seed, sim=Simulator(config), show_progress=show_progress,
                       day_scores=scores)
        logits = calibrate_logits(np.concatenate(scores), KUAIRAND_RETURN_GAP)
        history.append({"logits_used": list(config.response.retention_logits),
                        "gap_shares": [e.value for e in res.return_gap_shares()], "refit": logits.tolist()})
        config = with_retention_logits(config, logits)
    return np.asarray(config.response.retention_logits), history


def retention_by_preset(config: SimConfig | None = None, users: int = 10_000, days: int = 30, seed: int = 0,
                        show_progress: bool = False, sim: Simulator | None = None) -> dict[str, Any]:
    """Active days per user (over ``days``) and ADTime under every static preset, same users and random numbers.

    Returns ``{"presets": {name: {"active_days": {mean, se}, "adtime_s": {value, se}, "gap_1d_share": ...}},
    "best", "worst", "difference": paired best - worst active days {mean, se, ci95}, "users", "days",
    "wall_s"}``.
    """
    sim = sim if sim is not None else Simulator(config if config is not None else SimConfig())
    if not sim.config.retention:
        raise ValueError("retention_by_preset needs SimConfig.retention = True")
    runs = {name: evaluate(StaticPolicy.preset(name), users, days, seed, sim=sim, show_progress=show_progress)
            for name in STATIC_PRESETS}
    active = {name: r.active_days.astype(np.float64) for name, r in runs.items()}
    means = {name: float(a.mean()) for name, a in active.items()}
    best, worst = max(means, key=means.get), min(means, key=means.get)
    diff = paired_difference(active[best], active[worst])
    out = {"users": int(runs[best].n_users), "days": int(days), "seed": int(seed),
           "wall_s": float(sum(r.wall_s for r in runs.values())), "best": best, "worst": worst,
           "presets": {}}
    for name, r in runs.items():
        met = r.metrics()
        gaps = r.return_gap_shares()
        out["presets"][name] = {
            "active_days": {"mean": means[name], "se": float(active[name].std(ddof=1) / np.sqrt(len(active[name])))},
            "adtime_s": met["adtime_s"].to_json(), "sessions_per_active_day": met["sessions_per_day"].to_json(),
            "session_return": met["session_return"].to_json(), "gap_1d_share": gaps[0].to_json()}
    out["difference"] = {"mean": diff["mean"], "se": diff["se"], "ci95": [diff["ci_low"], diff["ci_high"]],
                         "p_value": diff["p_value"], "relative_pct": 100.0 * diff["mean"] / means[worst]}
    return out
