"""Diagnosis of the simulator: measure its phenomena 1, 2, 3 and 6 (DESIGN.md) with standard errors.

A pool of static fusion-weight vectors (the named presets plus seeded random ones) is run
on two disjoint halves of the users, each candidate with the same seed (common random
numbers, so paired differences have small Monte-Carlo error). Choices (best weights,
best per segment, myopic best) are made on the *selection* half and judged on the
*evaluation* half, so no winner's curse inflates the effects.

1. Fusion weights matter: session-return gap between the best and worst named preset.
2. Personalisation pays: best weights per age-bucket segment vs the single best weights.
3. Greedy is not optimal: weights chosen for the first request's reward vs for the session return:
   the myopic choice's gain on the first request, its loss on the rest of the session, and
   the net difference in session return.
6. Stickiness vs activeness: weights best for the ``time`` reward vs best for ``interaction``:
   play time per session and positive interactions per play.

And what the world allows beyond static weights:

* Within-session effect: under the production weights, per request index of the session:
  fatigue at the request, play seconds per watched video, mean duration of the watched
  videos, skip rate (the drift within a session, ``ResponseParams.fatigue_length_shift``).
* Schedule headroom: a request-index schedule ``action(t) = base + min(t, H) / H * slope``
  starting from the best static weights, its slope found by a small coordinate search on the
  selection half (common random numbers), judged against the best static weights on the
  evaluation half.
* Retention (the day model, optional, :func:`benchmarks.evaluation.retention.retention_by_preset`):
  active days per user under every static preset, best minus worst with a 95% CI.
* Per-user spread: the population's spread of per-user like rate and play ratio under production.

Every effect is reported with its standard error and z = effect / SE.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.static import STATIC_PRESETS, StaticPolicy
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.drive import drive
from mtf_env.fusion import alpha_to_action
from mtf_env.rewards import REWARD_PRESETS
from mtf_env.rollout import SessionRollout, rollout_sessions
from mtf_env.tasks import POSITIVE_INTERACTIONS, TASK_INDEX

from .stats import paired_difference

SEGMENT_FIELD = "age_bucket"
N_SEGMENTS = 4


def candidate_pool(n_random: int, seed: int) -> dict[str, np.ndarray]:
    """Named presets plus ``n_random`` seeded random actions: name -> action (12,)."""
    pool = {f"static:{name}": alpha_to_action(alpha) for name, alpha in STATIC_PRESETS.items()}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD1A]))
    for i in range(n_random):
        pool[f"random-{i:02d}"] = rng.uniform(-1.0, 1.0, 12).astype(np.float32)
    return pool


class SegmentPolicy:
    """Static weights chosen per profile segment (age bucket, read from the observation's one-hot)."""

    stochastic = False

    def __init__(self, actions: np.ndarray):
        self.actions = np.asarray(actions, np.float32)  # (N_SEGMENTS, 12)

    def act(self, obs: np.ndarray) -> np.ndarray:
        segment = np.argmax(obs[:, :N_SEGMENTS], axis=1)
        return self.actions[segment].copy()


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of a - b over paired sessions (n,) with its standard error, z and the mean relative to b's, in percent."""
    diff = paired_difference(a, b)
    mean, se = diff["mean"], diff["se"]
    return {"effect": mean, "se": se, "z": mean / se if se > 0 else float("inf"),
            "relative_pct": 100.0 * mean / float(np.mean(b))}


def mean_se(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "se": float(x.std(ddof=1) / np.sqrt(len(x)))}


def interactions_per_play(r: SessionRollout) -> np.ndarray:
    """Positive interactions per watched video, per session (n,)."""
    idx = [TASK_INDEX[k] for k in POSITIVE_INTERACTIONS]
    return r.feedback[:, idx].sum(1) / np.maximum(r.videos, 1)


def feedback_rates(r: SessionRollout) -> dict[str, float]:
    """Mean feedback per watched video (play time in s, the rest rates), pooled over sessions."""
    from mtf_env.tasks import TASK_NAMES

    totals = r.feedback.sum(0) / max(int(r.videos.sum()), 1)
    return {name: float(v) for name, v in zip(TASK_NAMES, totals)}


#: Request index at which a schedule reaches its full slope (requests 0 .. H-1 ramp linearly).
SCHEDULE_HORIZON = 6
#: Coordinate-search step sizes (action units), one pass over the 12 coordinates each.
SCHEDULE_STEPS = (0.5, 0.25)
#: Request indices reported by the within-session profile.
PROFILE_REQUESTS = 8


class RequestSchedulePolicy:
    """Fusion weights that move with the request index t of the session (read from the observation).

    ``action(t) = clip(base + min(t, horizon) / horizon * slope, -1, 1)``; base and slope (12,) in action units.
    """

    stochastic = False

    def __init__(self, base: np.ndarray, slope: np.ndarray, sim: Simulator, horizon: int = SCHEDULE_HORIZON):
        self.base, self.slope = np.asarray(base, np.float64), np.asarray(slope, np.float64)
        self.column = sim.layout["session_stats"].start  # requests so far / max_requests
        self.max_requests, self.horizon = sim.config.max_requests, horizon

    def act(self, obs: np.ndarray) -> np.ndarray:
        t = np.rint(obs[:, self.column].astype(np.float64) * self.max_requests)
        ramp = np.minimum(t, self.horizon) / self.horizon
        return np.clip(self.base[None] + ramp[:, None] * self.slope[None], -1.0, 1.0).astype(np.float32)


def schedule_search(sim: Simulator, base: np.ndarray, users: np.ndarray, seed: int, weights: np.ndarray,
                    steps: tuple[float, ...] = SCHEDULE_STEPS) -> tuple[np.ndarray, list[dict]]:
    """Coordinate search of a schedule's slope (12,) from zero on ``users`` with a fixed seed (common random numbers).

    For each step size, every coordinate is tried at +step then -step and a move is kept when
    it raises the mean session return under ``weights``. Returns the slope and the trace of
    accepted moves.
    """
    def value(slope):
        return float(rollout_sessions(sim, RequestSchedulePolicy(base, slope, sim), users, seed=seed)
                     .returns(weights).mean())

    slope = np.zeros(12)
    best = value(slope)
    trace = [{"coordinate": None, "step": 0.0, "session_return": best}]
    for step in steps:
        for j in range(12):
            for sign in (1.0, -1.0):
                trial = slope.copy()
                trial[j] = np.clip(trial[j] + sign * step, -2.0, 2.0)
                v = value(trial)
                if v > best:
                    slope, best = trial, v
                    trace.append({"coordinate": j, "step": sign * step, "session_return": v})
                    break
    return slope, trace


def within_session_profile(sim: Simulator, policy, users: np.ndarray, seed: int,
                           n_requests: int = PROFILE_REQUESTS) -> dict[str, list[float]]:
    """Per request index t < n_requests of fresh sessions: sessions reaching it, mean fatigue at its start,
    play seconds per watched video, mean duration (s) of the watched videos, skip rate."""
    sums = {k: np.zeros(n_requests) for k in ("sessions", "fatigue", "plays", "play_s", "duration_s", "skips")}
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD1C]))
    state = sim.empty_state(len(users))
    sim.start_sessions(state, np.arange(len(users)), users, rng)
    duration = sim.catalogue.duration_s.astype(np.float64)
    per_min = sim.params.fatigue_per_minute
    for served in drive(sim, state, policy, rng=rng, compact="never"):
        t = served.t
        if t >= n_requests:
            continue
        res, rows = served.result, served.rows
        watched = res.watched[rows]
        play = res.feedback[rows][:, :, TASK_INDEX["play_time"]].astype(np.float64)
        play_total = (play * watched).sum(1)
        sums["sessions"][t] += len(rows)
        sums["fatigue"][t] += (served.state.fatigue[rows] - per_min * play_total / 60.0).sum()
        sums["plays"][t] += watched.sum()
        sums["play_s"][t] += play_total.sum()
        sums["duration_s"][t] += (duration[np.maximum(res.items[rows], 0)] * watched).sum()
        sums["skips"][t] += (res.feedback[rows][:, :, TASK_INDEX["skip"]] * watched).sum()
    n, plays = np.maximum(sums["sessions"], 1), np.maximum(sums["plays"], 1)
    return {"request_index": list(range(n_requests)), "sessions": sums["sessions"].tolist(),
            "fatigue": (sums["fatigue"] / n).tolist(), "play_s_per_play": (sums["play_s"] / plays).tolist(),
            "watched_duration_s": (sums["duration_s"] / plays).tolist(), "skip_rate": (sums["skips"] / plays).tolist()}


def per_user_spread(sim: Simulator, r: SessionRollout, min_plays: int = 10) -> dict[str, float]:
    """Spread over users (sessions with at least ``min_plays`` plays) of the per-session like rate and play ratio,
    and the population SDs of preferred log duration and interactivity."""
    ok = r.videos >= min_plays
    like = r.feedback[ok, TASK_INDEX["like"]] / r.videos[ok]
    skip = r.feedback[ok, TASK_INDEX["skip"]] / r.videos[ok]
    pop = sim.population
    return {"sessions": int(ok.sum()), "like_rate_mean": float(like.mean()), "like_rate_sd": float(like.std()),
            "skip_rate_mean": float(skip.mean()), "skip_rate_sd": float(skip.std()),
            "pref_log_len_sd": float(np.std(pop.pref_log_len)), "interactivity_sd": float(np.std(pop.interactivity))}


@dataclass
class Diagnosis:
    report: dict


def diagnose(config: SimConfig = SimConfig(), n_sessions: int = 40_000, n_random: int = 18, seed: int = 0,
             show_progress: bool = True, retention_users: int = 0, retention_days: int = 30,
             schedule_steps: tuple[float, ...] = SCHEDULE_STEPS) -> Diagnosis:
    """Measure phenomena 1, 2, 3 and 6, the within-session effect, the schedule headroom (coordinate
    search with ``schedule_steps``; empty: no search, the schedule is the best static weights) and (with
    ``retention_users`` > 0) retention by preset over ``retention_days``; ``n_sessions`` is split into
    selection and evaluation halves."""
    t0 = time.perf_counter()
    sim = Simulator(config)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD1B]))
    users = rng.choice(config.n_users, size=n_sessions, replace=n_sessions > config.n_users)
    half = n_sessions // 2
    sel_users, eval_users = users[:half], users[half:2 * half]
    seg_of = lambda ids: sim.population.profile[ids, 0]  # noqa: E731  (age bucket)
    pool = candidate_pool(n_random, seed)
    names = list(pool)
    w = {k: v.astype(np.float64) for k, v in REWARD_PRESETS.items()}

    def run(policy, ids, s):
        return rollout_sessions(sim, policy, ids, seed=s, gamma=0.95)

    sel, ev = {}, {}
    from tqdm.auto import tqdm

    for name in tqdm(names, desc="candidates", disable=not show_progress):
        policy = StaticPolicy(pool[name], name=name)
        sel[name] = run(policy, sel_users, seed + 1)
        ev[name] = run(policy, eval_users, seed + 2)

    def ret(r: SessionRollout, preset: str = "default") -> np.ndarray:
        return r.returns(w[preset])

    # 1. fusion weights matter (named presets)
    presets = [n for n in names if n.startswith("static:")]
    preset_means = {n: float(ret(ev[n]).mean()) for n in presets}
    best_p, worst_p = max(preset_means, key=preset_means.get), min(preset_means, key=preset_means.get)
    ph1 = {"best": best_p, "worst": worst_p, "session_return": {n: mean_se(ret(ev[n])) for n in presets},
           "gap": paired(ret(ev[best_p]), ret(ev[worst_p]))}

    # 2. personalisation pays
    seg_sel, seg_eval = seg_of(sel_users), seg_of(eval_users)
    global_best = max(names, key=lambda n: ret(sel[n]).mean())
    seg_best = [max(names, key=lambda n: ret(sel[n])[seg_sel == g].mean()) for g in range(N_SEGMENTS)]
    seg_policy = SegmentPolicy(np.stack([pool[n] for n in seg_best]))
    seg_roll = run(seg_policy, eval_users, seed + 2)
    per_segment = {
        str(g): {"best": seg_best[g], "gain_over_global_best": paired(ret(seg_roll)[seg_eval == g],
                                                                    ret(ev[global_best])[seg_eval == g])}
        for g in range(N_SEGMENTS)
    }
    ph2 = {"segment_field": SEGMENT_FIELD, "global_best": global_best, "segment_best": seg_best,
           "n_distinct_segment_best": len(set(seg_best)),
           "gain": paired(ret(seg_roll), ret(ev[global_best])), "per_segment": per_segment}

    # 3. greedy is not optimal
    myopic = max(names, key=lambda n: sel[n].immediate(w["default"]).mean())
    long_horizon = max(names, key=lambda n: ret(sel[n]).mean())
    ph3 = {"myopic_best": myopic, "long_horizon_best": long_horizon,
           "immediate_reward": {"myopic": mean_se(ev[myopic].immediate(w["default"])),
                                "long_horizon": mean_se(ev[long_horizon].immediate(w["default"]))},
           "session_return": {"myopic": mean_se(ret(ev[myopic])), "long_horizon": mean_se(ret(ev[long_horizon]))},
           "requests_per_session": {"myopic": mean_se(ev[myopic].requests),
                                    "long_horizon": mean_se(ev[long_horizon].requests)},
           "loss_of_myopic": paired(ret(ev[long_horizon]), ret(ev[myopic])),
           "later_reward_loss_of_myopic": paired(ret(ev[long_horizon]) - ev[long_horizon].immediate(w["default"]),
                                                 ret(ev[myopic]) - ev[myopic].immediate(w["default"])),
           "immediate_gain_of_myopic": paired(ev[myopic].immediate(w["default"]),
                                              ev[long_horizon].immediate(w["default"]))}

    # 6. stickiness vs activeness
    best_time = max(names, key=lambda n: ret(sel[n], "time").mean())
    best_inter = max(names, key=lambda n: ret(sel[n], "interaction").mean())
    play = lambda r: r.feedback[:, TASK_INDEX["play_time"]]  # noqa: E731
    ph6 = {"best_for_time": best_time, "best_for_interaction": best_inter,
           "play_time_per_session_s": {"time": mean_se(play(ev[best_time])), "interaction": mean_se(play(ev[best_inter]))},
           "interactions_per_play": {"time": mean_se(interactions_per_play(ev[best_time])),
                                     "interaction": mean_se(interactions_per_play(ev[best_inter]))},
           "play_time_gap": paired(play(ev[best_time]), play(ev[best_inter])),
           "interaction_rate_gap": paired(interactions_per_play(ev[best_inter]), interactions_per_play(ev[best_time]))}

    # what the world allows beyond static weights
    base = pool[long_horizon]
    slope, trace = schedule_search(sim, base, sel_users, seed + 1, w["default"], steps=schedule_steps)
    schedule = rollout_sessions(sim, RequestSchedulePolicy(base, slope, sim), eval_users, seed=seed + 2)
    within = {"base": long_horizon, "horizon": SCHEDULE_HORIZON, "slope": slope.tolist(), "search": trace,
              "headroom": paired(ret(schedule), ret(ev[long_horizon])),
              "profile_production": within_session_profile(sim, StaticPolicy(pool["static:production"]), eval_users,
                                                           seed + 2)}
    retention = None
    if retention_users > 0:
        from .retention import retention_by_preset

        retention = retention_by_preset(users=retention_users, days=retention_days, seed=seed, sim=sim,
                                        show_progress=show_progress)

    prod = ev["static:production"]
    report = {
        "config": config.to_json(), "n_sessions": n_sessions, "n_candidates": len(names), "seed": seed,
        "production": {"requests_per_session": mean_se(prod.requests), "videos_per_session": mean_se(prod.videos),
                       "session_return": mean_se(ret(prod)), "play_time_per_session_s": mean_se(play(prod)),
                       "feedback_per_play": feedback_rates(prod)},
        "phenomenon_1_fusion_weights_matter": ph1,
        "phenomenon_2_personalisation_pays": ph2,
        "phenomenon_3_greedy_not_optimal": ph3,
        "phenomenon_6_stickiness_vs_activeness": ph6,
        "within_session": within,
        "retention": retention,
        "per_user_spread": per_user_spread(sim, prod),
        "candidates": {n: {"action": pool[n].tolist(), "session_return_eval": mean_se(ret(ev[n])),
                           "immediate_reward_eval": mean_se(ev[n].immediate(w["default"])),
                           "play_time_per_session_s": mean_se(play(ev[n])),
                           "interactions_per_play": mean_se(interactions_per_play(ev[n])),
                           "segment_return_sel": [float(ret(sel[n])[seg_sel == g].mean()) for g in range(N_SEGMENTS)]}
                       for n in names},
        "seconds": time.perf_counter() - t0,
    }
    return Diagnosis(report=report)


def plot_diagnosis(report: dict, path: Path) -> None:
    """Four panels: returns per candidate, segment x candidate returns, myopic vs session value, time vs interaction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    cands = report["candidates"]
    df = pd.DataFrame([{"candidate": n, "session_return": c["session_return_eval"]["mean"],
                        "se": c["session_return_eval"]["se"], "immediate": c["immediate_reward_eval"]["mean"],
                        "play_time_s": c["play_time_per_session_s"]["mean"],
                        "interactions_per_play": c["interactions_per_play"]["mean"]} for n, c in cands.items()])
    df = df.sort_values("session_return", ascending=False)
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(2, 2, figsize=(15, 11))
    ax = axes[0, 0]
    sns.barplot(data=df, x="session_return", y="candidate", ax=ax, color="tab:blue")
    ax.errorbar(df["session_return"], np.arange(len(df)), xerr=1.96 * df["se"], fmt="none", ecolor="black")
    ax.set_title("1. session return per static weight vector (95% CI)")
    seg = pd.DataFrame({n: c["segment_return_sel"] for n, c in cands.items()}).T
    seg.columns = [f"age {g}" for g in seg.columns]
    sns.heatmap((seg - seg.mean()).loc[df["candidate"]], ax=axes[0, 1], cmap="RdBu_r", center=0)
    axes[0, 1].set_title("2. session return per age segment (minus segment mean)")
    ax = axes[1, 0]
    sns.scatterplot(data=df, x="immediate", y="session_return", ax=ax)
    ph3 = report["phenomenon_3_greedy_not_optimal"]
    for key, marker in (("myopic_best", "myopic"), ("long_horizon_best", "long-horizon")):
        row = df[df["candidate"] == ph3[key]].iloc[0]
        ax.annotate(marker, (row["immediate"], row["session_return"]), color="red")
    ax.set_title("3. first-request reward vs session return")
    ax = axes[1, 1]
    sns.scatterplot(data=df, x="play_time_s", y="interactions_per_play", ax=ax)
    ph6 = report["phenomenon_6_stickiness_vs_activeness"]
    for key, label in (("best_for_time", "best for time"), ("best_for_interaction", "best for interaction")):
        row = df[df["candidate"] == ph6[key]].iloc[0]
        ax.annotate(label, (row["play_time_s"], row["interactions_per_play"]), color="red")
    ax.set_title("6. play time per session vs interactions per play")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
