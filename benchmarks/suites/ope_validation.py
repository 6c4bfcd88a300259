"""The OPE validation suite: the Conservative-OPEstimator judged against the simulator's true values.

::

    mtf-bench collect --preset small --out datasets/small      # if absent
    mtf-bench suite ope-validation --data datasets/small --out results/ope_validation

What it does (every step writes files; a rerun with the same settings reuses finished fits):

1. **Data**: the dataset's *test* split (the paper fits the estimator on its held-out last 10%),
   rewards relabelled with the default reward, and ``n_initial`` of its session-start states
   (all 5,000 of ``small``). A fresh session of the logged user starts in exactly the logged
   state; the harness checks that on the simulator (``initial_state_max_abs_diff``).
2. **Zoo** (:mod:`benchmarks.evaluation.policy_zoo`): presets, seeded random statics, per-state hash-noise
   variants, degraded and corner statics, every loadable deterministic run under the ``--runs``
   directories (default :data:`DEFAULT_RUN_ROOTS`: ``runs/`` and the runs of the baselines
   suite), and a quickly trained **unconstrained TD3** (small networks, a few thousand steps on
   the *train* split, :class:`agents.offline_d3rlpy.TD3Agent`) when they hold no ``td3`` run.
   Each member gets its **OOD distance** (mean distance of its actions on the test states to the
   nearest logged action) and is *OOD-heavy* above :func:`benchmarks.evaluation.policy_zoo.ood_threshold`.
3. **Truth** (:func:`benchmarks.evaluation.true_value.true_value`): the expected discounted session return (gamma
   0.95) from the same initial states (the split's users), ``n_rollouts`` sessions each, the
   same seed for every policy (common random numbers, so differences between policies carry
   less noise than the values).
4. **Estimates**: for every member, ``conservative`` (alpha_c = 0.5e-3), ``fqe`` (our estimator
   with alpha_c = 0) and ``d3rlpy-fqe`` (d3rlpy's FQE), same network, steps, batch and seed;
   then the alpha_c sweep (the conservative estimator at each ``sweep_alphas`` value).
5. **Metrics** per estimator (DOPE's protocol, Fu et al. 2021): Spearman and Kendall rank
   correlation with a percentile bootstrap CI over policies, normalised regret@1 and @3,
   normalised mean absolute error, the share of estimates below the truth (all / OOD-heavy),
   the median normalised slack ``(truth - estimate) / range``; normalisation divides by the
   range ``max - min`` of the zoo's true values. The sweep reports the mean signed error
   ``estimate - truth`` (raw and normalised) per alpha_c (:mod:`benchmarks.evaluation.stats`).
6. **Files**: ``OUT/result.json``, ``OUT/result.md``, ``OUT/scatter.png`` (estimate against
   truth, one panel per estimator, OOD-heavy marked), ``OUT/alpha_sweep.png``, ``OUT/fits/``
   (one JSON per fit, reused by reruns with identical settings), ``OUT/truth/``.

Grid (:func:`run_grid`; ``mtf-bench suite ope-validation`` without ``--data``): the same harness for
every estimator of :mod:`benchmarks.evaluation.estimators` (:data:`GRID_ESTIMATORS`) on datasets it
collects itself (:class:`GridSettings`: 4,000 sessions, half in the test split, mixed exploration at
seeds 0, 1, 2 and random and action-noise exploration at seed 0), one 35-policy zoo for all of them;
each estimate carries its lower bound and support label, and the tables give every metric as mean
and sd over the seeds, also restricted to the policies each estimator labels supported
(:func:`support_metrics`), and the IS forms at three kernel bandwidths with and without a clip
(:func:`weight_settings_table`). Files: ``OUT/result.md|json``, ``OUT/scatter.png``, ``OUT/runs/<dataset>/``.

Budget: :data:`DEFAULT_SETTINGS` are reduced so the whole harness runs in about 20 minutes on a
loaded 2-core CPU; :data:`PAPER_SETTINGS` names the paper's for people with more compute. The
reduction keeps ``learning_rate * n_steps`` at the paper's 0.5: with Adam the CQL term lowers Q
at off-data actions by an amount that grows with the number of steps times the step size (see
:mod:`agents.ope`), so this keeps the size of the pessimism comparable to the paper's K and lr.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.evaluation.estimators import MIN_ESS, SUPPORT_RULES, canonical_estimator
from benchmarks.evaluation.stats import estimator_metrics, median_normalised_slack, normalised_mae, regret_at_k, share_below, spearman, value_range

#: Targets on the policies an estimator labels supported, and on the OOD-heavy ones.
SUPPORT_TARGETS = {"supported_spearman_min": 0.8, "supported_regret_at_1_max": 0.05,
                   "ood_lower_below_or_unsupported_min": 0.9}
#: The weight table's kernel bandwidths (multiples of Silverman's rule) and per-step ratio clips.
WEIGHT_TABLE_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)
WEIGHT_TABLE_CLIPS: tuple[float | None, ...] = (None, 100.0)

#: Targets the conservative estimator should meet on the zoo.
TARGETS = {"spearman_min": 0.8, "regret_at_1_max": 0.1, "ood_share_below_min": 0.9, "ood_median_slack_max": 0.2}
#: Estimators of the side-by-side comparison: name -> (kind, alpha_c or None for the main value).
MAIN_ESTIMATORS: dict[str, tuple[str, float | None]] = {
    "conservative": ("conservative", None),  # alpha_c = settings.alpha_c
    "fqe": ("conservative", 0.0),
    "d3rlpy-fqe": ("d3rlpy-fqe", 0.0),
}
#: Directories searched for trained runs by default: ``mtf-bench train``'s and the baselines suite's.
DEFAULT_RUN_ROOTS: tuple[str, ...] = ("runs", "results/baselines/runs")
#: Reference result: FQE's Spearman over 76 continuous-control policies (DOPE).
DOPE_FQE_SPEARMAN = 0.68


@dataclass(frozen=True)
class ValidationSettings:
    """Settings of the harness (defaults: the reduced budget; see :data:`PAPER_SETTINGS`)."""

    n_steps: int = 500
    """K, gradient steps per estimator fit (paper: 5000)."""
    learning_rate: float = 1e-3
    """Adam learning rate (paper: 1e-4); lr * K = 0.5 as in the paper."""
    batch_size: int = 256
    """m, transitions per gradient step (paper: 512)."""
    hidden: tuple[int, ...] = (64, 64)
    """Q-network widths (estimator default 256-256)."""
    target_update_every: int = 50
    """Gradient steps between target copies (d3rlpy default 100); K / this = Bellman backups."""
    alpha_c: float = 0.5e-3
    """CQL weight of the conservative estimator (paper: 0.5e-3)."""
    gamma: float = 0.95
    """Discount (paper: 0.95)."""
    n_initial: int = 5000
    """n, initial states (paper: 5000; ``small``'s test split has exactly 5000 sessions)."""
    n_rollouts: int = 4
    """Simulated sessions per initial state for the true value."""
    sweep_alphas: tuple[float, ...] = (0.0, 5e-4, 2e-3, 5e-3, 1e-2)
    """alpha_c values of the sweep (the conservative estimator, all zoo members)."""
    n_random: int = 4
    """Random static members of the zoo."""
    td3_steps: int = 3000
    """Gradient steps of the quick unconstrained TD3 (trained only when no td3 run exists)."""
    td3_hidden: tuple[int, ...] = (64, 64)
    """Network widths of the quick TD3."""
    n_bootstrap: int = 2000
    """Bootstrap resamples over policies for the rank-correlation CIs."""
    n_bootstrap_states: int = 200
    """Bootstrap resamples over initial states for each estimate's own interval."""
    ci_level: float = 0.95
    """Two-sided level of the bootstrap intervals."""
    seed: int = 0
    """One seed for zoo, estimators (network init, batches), truth (CRN) and bootstraps."""
    n_members: int = 5
    """Members of bootstrap FQE."""
    bandwidth_scale: float = 1.0
    """IS family: kernel bandwidth as a multiple of Silverman's rule on the logged actions."""
    clip: float | None = None
    """IS family: per-step importance ratio cap (None: no clip; the weight table reports clipped forms)."""
    model_steps: int = 2000
    """Adam steps of the model-based estimator's dynamics model (fitted once per dataset)."""
    model_hidden: tuple[int, ...] = (128, 128)
    """Widths of that model."""
    n_bootstrap_sessions: int = 200
    """Bootstrap resamples of the sessions for the IS family's intervals."""

    def __post_init__(self) -> None:
        for name in ("n_steps", "batch_size", "target_update_every", "n_initial", "n_rollouts", "n_bootstrap",
                     "n_bootstrap_states", "td3_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ValidationSettings.{name} must be a positive integer, got {value!r}")
        if self.n_random < 0 or self.seed < 0:
            raise ValueError("ValidationSettings.n_random and seed must be >= 0")
        if any((not math.isfinite(a)) or a < 0 for a in (self.alpha_c, *self.sweep_alphas)):
            raise ValueError(f"alpha_c values must be >= 0, got {self.alpha_c} and {self.sweep_alphas}")
        for name in ("hidden", "td3_hidden", "sweep_alphas", "model_hidden"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def estimator_config(self, alpha_c: float):
        """The :class:`agents.ope.ConservativeFQEConfig` of one fit at ``alpha_c``."""
        from agents.ope import ConservativeFQEConfig

        return ConservativeFQEConfig(
            batch_size=self.batch_size, n_initial_states=self.n_initial, gamma=self.gamma, alpha_c=float(alpha_c),
            n_steps=self.n_steps, learning_rate=self.learning_rate, hidden=self.hidden,
            target_update_every=self.target_update_every, n_bootstrap=self.n_bootstrap_states,
            ci_level=self.ci_level, log_every=max(1, min(100, self.n_steps)),
        )

    def estimator_settings(self):
        """The :class:`benchmarks.evaluation.estimators.EstimatorSettings` of every estimator."""
        from agents.ope_model import ModelBasedConfig
        from benchmarks.evaluation.estimators import EstimatorSettings

        return EstimatorSettings(
            fqe=self.estimator_config(self.alpha_c), n_members=self.n_members, bandwidth_scale=self.bandwidth_scale,
            clip=self.clip, n_bootstrap_sessions=self.n_bootstrap_sessions, ci_level=self.ci_level,
            model=ModelBasedConfig(hidden=self.model_hidden, n_steps=self.model_steps, gamma=self.gamma,
                                   n_bootstrap=self.n_bootstrap_states, ci_level=self.ci_level))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#: The paper's estimator settings (minutes per policy on this machine) for the same harness.
PAPER_SETTINGS = ValidationSettings(n_steps=5000, learning_rate=1e-4, batch_size=512, hidden=(256, 256),
                                    target_update_every=100, n_rollouts=8)
DEFAULT_SETTINGS = ValidationSettings()


def check_targets(m: dict[str, Any]) -> dict[str, Any]:
    """The targets (:data:`TARGETS`) on a metrics dict of :func:`estimator_metrics` -> {target: {value, target, met}}."""
    def row(value, target, ok):
        return {"value": value, "target": target, "met": bool(ok) if np.isfinite(value) else False}

    return {
        "spearman": row(m["spearman"], f">= {TARGETS['spearman_min']}", m["spearman"] >= TARGETS["spearman_min"]),
        "regret_at_1": row(m["regret_at_1"], f"<= {TARGETS['regret_at_1_max']}",
                           m["regret_at_1"] <= TARGETS["regret_at_1_max"]),
        "share_below_ood": row(m["share_below_ood"], f">= {TARGETS['ood_share_below_min']}",
                               m["share_below_ood"] >= TARGETS["ood_share_below_min"]),
        "median_slack_ood": row(m["median_slack_ood"], f"<= {TARGETS['ood_median_slack_max']}",
                                m["median_slack_ood"] <= TARGETS["ood_median_slack_max"]),
    }


def support_metrics(truth: np.ndarray, rows: Sequence[dict[str, Any]], ood_heavy: np.ndarray,
                    settings: ValidationSettings) -> dict[str, Any]:
    """Lower-bound and support metrics of one estimator's per-policy ``rows`` (``lower``, ``supported``).

    ``share_lower_below``: share of the policies with a lower bound whose bound lies below the
    truth (all / OOD-heavy); ``ood_lower_below_or_unsupported``: share of the OOD-heavy policies
    whose lower bound lies below the truth or that are labelled unsupported (no bound: only the
    label counts); ``supported``: :func:`estimator_metrics` on the supported policies alone
    (normalised by *their* range of true values; None with fewer than 3 or equal true values).
    """
    truth = np.asarray(truth, dtype=float)
    lower = np.array([np.nan if r.get("lower") is None else r["lower"] for r in rows], dtype=float)
    supported = np.array([bool(r.get("supported", True)) for r in rows])
    est = np.array([r["value"] for r in rows], dtype=float)
    has = np.isfinite(lower)
    ood = np.asarray(ood_heavy, dtype=bool)
    below = has & (lower < truth)
    out: dict[str, Any] = {
        "n_supported": int(supported.sum()), "n_supported_ood": int((supported & ood).sum()),
        "share_lower_below": float(below[has].mean()) if has.any() else None,
        "share_lower_below_ood": float(below[has & ood].mean()) if (has & ood).any() else None,
        "ood_lower_below_or_unsupported": float((below | ~supported)[ood].mean()) if ood.any() else None,
        "supported": None,
    }
    if supported.sum() >= 3 and np.ptp(truth[supported]) > 0:
        out["supported"] = estimator_metrics(truth[supported], est[supported], ood[supported], settings.n_bootstrap,
                                             settings.ci_level, settings.seed)
    return out


def check_support_targets(m: dict[str, Any]) -> dict[str, Any]:
    """:data:`SUPPORT_TARGETS` on one estimator's metrics -> {target: {value, target, met}} (None: not measurable)."""
    sup = m.get("supported") or {}

    def row(value, target, ok):
        finite = value is not None and np.isfinite(value)
        return {"value": value, "target": target, "met": bool(ok(value)) if finite else None}

    t = SUPPORT_TARGETS
    return {
        "supported_spearman": row(sup.get("spearman"), f">= {t['supported_spearman_min']}",
                                  lambda v: v >= t["supported_spearman_min"]),
        "supported_regret_at_1": row(sup.get("regret_at_1"), f"<= {t['supported_regret_at_1_max']}",
                                     lambda v: v <= t["supported_regret_at_1_max"]),
        "ood_lower_below_or_unsupported": row(m.get("ood_lower_below_or_unsupported"),
                                              f">= {t['ood_lower_below_or_unsupported_min']}",
                                              lambda v: v >= t["ood_lower_below_or_unsupported_min"]),
    }


def weight_settings_table(ctx, members: Sequence[Any], truth: np.ndarray, ood_heavy: np.ndarray,
                          settings: ValidationSettings) -> list[dict[str, Any]]:
    """The IS forms (no DR) at every kernel bandwidth of :data:`WEIGHT_TABLE_SCALES` and clip of
    :data:`WEIGHT_TABLE_CLIPS`: Spearman, regret@1, nMAE, the median ESS of the first-step
    weights and the mean share of clipped ratios over the zoo (the effect of the two choices)."""
    rows = []
    for scale in WEIGHT_TABLE_SCALES:
        for clip in WEIGHT_TABLE_CLIPS:
            outs = [ctx.is_family(m.policy, _identity(m), with_dr=False, bandwidth_scale=scale, clip=clip,
                                  n_bootstrap=0) for m in members]
            for form in ("tis", "sntis", "pdis", "snpdis"):
                e = np.array([o[form] for o in outs], dtype=float)
                ok = np.isfinite(e)
                rows.append({
                    "bandwidth_scale": scale, "bandwidth": scale * ctx.silverman, "clip": clip, "form": form,
                    "spearman": spearman(truth[ok], e[ok]) if ok.sum() >= 3 else None,
                    "regret_at_1": regret_at_k(truth[ok], e[ok], 1) if ok.sum() >= 3 else None,
                    "nmae": normalised_mae(truth[ok], e[ok]) if ok.sum() >= 3 else None,
                    "median_ess_first_step": float(np.median([o["ess_first_step"] for o in outs])),
                    "mean_clipped_share": float(np.mean([o["clipped_share"] for o in outs])),
                    "n_finite": int(ok.sum()),
                })
    return rows


# ----------------------------------------------------------------------------------------
# the run


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _identity(member) -> str:
    """What identifies a zoo member's policy for the result cache: its spec, and for a trained
    run also its checkpoint's size and modification time (a retrained run is estimated anew)."""
    if member.family != "trained":
        return member.spec
    ckpt = Path(member.spec) / "checkpoint.pt"
    stat = ckpt.stat() if ckpt.is_file() else None
    return f"{member.spec}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}"


def _cached(path: Path, key: str) -> dict[str, Any] | None:
    """A finished result file whose ``key`` matches, else None (a stale or broken file is redone)."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return saved if saved.get("key") == key else None


def _quick_td3(data_dir: Path, out_dir: Path, settings: ValidationSettings, show_progress: bool) -> Path:
    """Train (or reuse) the small unconstrained TD3 of the zoo into ``out_dir``; returns the run dir.

    TD3 (:class:`agents.offline_d3rlpy.TD3Agent`, d3rlpy's defaults except the paper's gamma and
    batch and ``settings.td3_hidden`` networks) on the dataset's *train* split for
    ``settings.td3_steps`` steps: the unconstrained offline learner whose actions drift to the
    edges of the box. A finished run is marked by ``ope_zoo.json`` and reused when its settings match.
    """
    from mtf_env.files import write_json

    import shutil

    from agents.offline_d3rlpy import TD3Agent, TD3AgentConfig
    from mtf_env.dataset import load_dataset

    marker = {"steps": settings.td3_steps, "seed": settings.seed, "hidden": list(settings.td3_hidden),
              "data": str(data_dir.resolve())}
    marker_path = out_dir / "ope_zoo.json"
    if marker_path.is_file() and json.loads(marker_path.read_text()) == marker:
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)  # an unfinished or differently configured quick run of this harness
    train = load_dataset(data_dir, split="train").transitions()
    agent = TD3Agent(TD3AgentConfig(hidden=settings.td3_hidden))
    agent.fit(train, settings.td3_steps, seed=settings.seed, out_dir=out_dir, show_progress=show_progress,
              log_every=min(1000, settings.td3_steps), checkpoint_every=0)
    write_json(marker_path, marker)
    return out_dir


def build_validation_zoo(data_dir: Path, out: Path, settings: ValidationSettings,
                         run_roots: Sequence[str | Path] = DEFAULT_RUN_ROOTS, families: Sequence[str] | None = None,
                         train_td3: bool = True, max_members: int | None = None, runs_per_algo: int | None = None,
                         show_progress: bool = True) -> tuple[list[Any], dict[str, list[str]]]:
    """The zoo of :func:`run_validation` (see its arguments) -> (members, {used, skipped, not_used} run dirs)."""
    from benchmarks.evaluation import policy_zoo as zoo_mod

    families = tuple(families) if families is not None else zoo_mod.FAMILIES
    found = [d for root in run_roots for d in zoo_mod.find_run_dirs(root)] if "trained" in families else []
    run_dirs, not_used, per_algo = [], [], {}
    for d in found:
        algo = json.loads((d / "config.json").read_text())["algo"]
        if runs_per_algo is not None and per_algo.get(algo, 0) >= runs_per_algo:
            not_used.append(str(d))
            continue
        per_algo[algo] = per_algo.get(algo, 0) + 1
        run_dirs.append(d)
    members = zoo_mod.build_zoo(seed=settings.seed, n_random=settings.n_random,
                                families=[f for f in families if f != "trained"])
    if max_members is not None:
        members = members[:max_members]
    skipped: list[str] = []
    if "trained" in families:
        trained, skipped = zoo_mod.trained_members(run_dirs)
        has_td3 = any(m.name.startswith("td3:") for m in trained)
        if train_td3 and not has_td3:
            td3_dir = _quick_td3(data_dir, out / "td3_quick", settings, show_progress)
            quick, more = zoo_mod.trained_members([td3_dir])
            trained += [dataclasses.replace(m, name="td3:quick") for m in quick]
            skipped += more
        for m in trained:  # the same run name under two roots: tell them apart by the root's parent
            if any(m.name == other.name for other in members):
                m = dataclasses.replace(m, name=f"{m.name}@{Path(m.spec).parent.parent.name or 'runs'}")
            members.append(m)
    return members, {"used": [str(p) for p in run_dirs], "skipped": skipped, "not_used": not_used}


def run_validation(data_dir: str | Path, out: str | Path, settings: ValidationSettings = DEFAULT_SETTINGS,
                   run_roots: Sequence[str | Path] = DEFAULT_RUN_ROOTS, families: Sequence[str] | None = None,
                   train_td3: bool = True, max_members: int | None = None, sweep: bool = True,
                   runs_per_algo: int | None = None,
                   estimators: Sequence[str] = tuple(MAIN_ESTIMATORS), show_progress: bool = True,
                   figures: bool = True, members: Sequence[Any] | None = None,
                   truth_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the whole harness (see module docstring); returns the result dict written to ``OUT/result.json``.

    run_roots: directories searched for trained runs (empty: none). families: zoo families (None:
    all). train_td3: train the quick TD3 when no td3 run is found. max_members: keep only the
    first members of the built zoo (trained runs are added after; for smoke tests). sweep: run
    the alpha_c sweep. estimators: estimator names of :data:`benchmarks.evaluation.estimators.ESTIMATORS`
    (or the alias ``conservative``), used as the labels of the report. members: a prebuilt zoo
    (zoo options ignored; :func:`run_grid` passes one zoo to every dataset). truth_dir: where true
    values are cached (default ``OUT/truth``; they depend on the users, world and settings only,
    so datasets of one seed but different exploration share them). runs_per_algo:
    trained runs kept per algorithm, the first found in ``run_roots`` order (None: all; a cap
    bounds the time when many seeds exist: each BCQ-style run costs minutes here).
    """
    from mtf_env.files import write_json

    import torch
    from tqdm.auto import tqdm

    from benchmarks.evaluation import policy_zoo as zoo_mod
    from benchmarks.evaluation.estimators import OPEContext, canonical_estimator, load_test_split
    from benchmarks.evaluation.true_value import true_value
    from mtf_env.core import Simulator

    torch.set_num_threads(1)  # measured fastest on the shared 2-core machine
    from benchmarks.evaluation.estimators import ESTIMATOR_ALIASES, ESTIMATORS

    unknown = sorted(set(estimators) - set(ESTIMATORS) - set(ESTIMATOR_ALIASES))
    if unknown or not estimators:
        raise ValueError(f"unknown estimators {unknown}; choose from {', '.join(ESTIMATORS)}")
    data_dir, out = Path(data_dir), Path(out)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. data --------------------------------------------------------------------------------
    t0 = time.perf_counter()
    split = load_test_split(data_dir, settings.n_initial, settings.seed)
    data, s0, user_ids = split.data, split.initial_observations, split.initial_user_ids
    sim = Simulator(split.dataset.config)
    check = sim.empty_state(len(user_ids))
    sim.start_sessions(check, np.arange(len(user_ids)), user_ids, np.random.default_rng(0), carry=False)
    init_diff = float(np.max(np.abs(check.obs - s0)))
    del check
    manifest = split.dataset.manifest
    timings["data_s"] = time.perf_counter() - t0

    # 2. zoo ------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    run_info: dict[str, Any] = {"used": [], "skipped": [], "not_used": []}
    if members is None:
        members, run_info = build_validation_zoo(data_dir, out, settings, run_roots, families, train_td3, max_members,
                                                 runs_per_algo, show_progress)
    members = list(members)
    run_dirs, skipped, not_used = run_info["used"], run_info["skipped"], run_info["not_used"]
    if len(members) < 3:
        raise ValueError(f"the zoo has {len(members)} members; need at least 3 for rank metrics")
    threshold = zoo_mod.ood_threshold(data.actions, seed=settings.seed)
    ood_dist = np.array([zoo_mod.ood_distance(m.policy, data.observations, data.actions, seed=settings.seed)
                         for m in members])
    ood_heavy = ood_dist > threshold
    timings["zoo_s"] = time.perf_counter() - t0

    # 3. truth ----------------------------------------------------------------------------------
    t0 = time.perf_counter()
    truth_key = _fingerprint({"world": split.dataset.config.to_json(), "users": user_ids.tolist(), "n_rollouts": settings.n_rollouts,
                              "gamma": settings.gamma, "seed": settings.seed})
    truths = []
    for m in tqdm(members, desc="ope-validation/truth", unit="policy", disable=not show_progress):
        path = (Path(truth_dir) if truth_dir is not None else out / "truth") / f"{_slug(m.name)}.json"
        key = _fingerprint({"truth": truth_key, "spec": _identity(m)})
        saved = _cached(path, key)
        if saved is None:
            tv = true_value(m.policy, user_ids, gamma=settings.gamma, n_rollouts=settings.n_rollouts,
                            seed=settings.seed, sim=sim)
            saved = {"key": key, "name": m.name, **tv.to_json()}
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, saved)
        truths.append(saved)
    truth = np.array([t["value"] for t in truths])
    timings["truth_s"] = time.perf_counter() - t0

    # 4. estimates ------------------------------------------------------------------------------
    est_settings = settings.estimator_settings()
    ctx = OPEContext(split, est_settings, settings.seed)
    jobs: list[tuple[str, str, float | None]] = []  # (label, estimator name, alpha_c of the FQE family)
    for label in estimators:
        name = canonical_estimator(label)
        alpha = {"fqe": 0.0, "conservative-fqe": settings.alpha_c}.get(name)
        jobs.append((label, name, alpha))
    sweep_alphas = tuple(settings.sweep_alphas) if sweep else ()
    for a in sweep_alphas:
        if not any(name in ("fqe", "conservative-fqe") and alpha == a for _, name, alpha in jobs):
            jobs.append((f"alpha_c={a:g}", "conservative-fqe", a))
    fit_key = _fingerprint({"data": manifest["files"], "n_initial": settings.n_initial, "seed": settings.seed})
    settings_key = est_settings.to_dict()
    estimates: dict[str, np.ndarray] = {}
    fits: dict[str, list[dict[str, Any]]] = {}
    fit_seconds: dict[str, float] = {}
    n_fits = len(jobs) * len(members)
    bar = tqdm(total=n_fits, desc="ope-validation/fits", unit="fit", disable=not show_progress)
    for label, name, alpha in jobs:
        rows = []
        t0 = time.perf_counter()
        for m in members:
            bar.set_postfix_str(f"{label} {m.name}"[-48:])
            folder = _slug(f"{name}_a{alpha:g}") if alpha is not None else _slug(name)
            path = out / "fits" / folder / f"{_slug(m.name)}.json"
            key = _fingerprint({"fit": fit_key, "name": name, "alpha_c": alpha, "settings": settings_key,
                                "spec": _identity(m)})
            saved = _cached(path, key)
            if saved is None:
                est = ctx.estimate(name, m.policy, key=_identity(m), alpha_c=alpha)
                saved = {"key": key, "name": m.name, "kind": name, "alpha_c": alpha, **est}
                path.parent.mkdir(parents=True, exist_ok=True)
                write_json(path, saved)
            rows.append(saved)
            bar.update(1)
        fits[label] = rows
        estimates[label] = np.array([r["value"] for r in rows])
        fit_seconds[label] = time.perf_counter() - t0
    bar.close()
    timings["fits_s"] = sum(fit_seconds.values())
    weight_table = weight_settings_table(ctx, members, truth, ood_heavy, settings) if any(
        canonical_estimator(lbl) in ("snpdis", "dr", "sndr", "pdis", "tis", "sntis") for lbl in estimators) else []

    # 5. metrics --------------------------------------------------------------------------------
    metrics = {}
    for label in estimators:
        # a self-normalised IS estimate is undefined (NaN) when every weight is 0: such policies are left
        # out of that estimator's metrics and counted (they are labelled unsupported: ESS 0)
        ok = np.isfinite(estimates[label])
        metrics[label] = estimator_metrics(truth[ok], estimates[label][ok], ood_heavy[ok], settings.n_bootstrap,
                                           settings.ci_level, settings.seed)
        metrics[label]["n_undefined"] = int((~ok).sum())
        metrics[label].update(support_metrics(truth[ok], [r for r, keep in zip(fits[label], ok) if keep],
                                              ood_heavy[ok], settings))
        if not ok.all():  # the OOD-heavy share counts every OOD-heavy policy (an undefined estimate is unsupported)
            sup = np.array([bool(r.get("supported", True)) for r in fits[label]])
            low = np.array([np.nan if r.get("lower") is None else r["lower"] for r in fits[label]], dtype=float)
            hit = (np.isfinite(low) & (low < truth)) | ~sup | ~ok
            metrics[label]["ood_lower_below_or_unsupported"] = float(hit[ood_heavy].mean()) if ood_heavy.any() else None
    targets = check_targets(metrics["conservative"]) if "conservative" in metrics else {}
    support_targets = {label: check_support_targets(metrics[label]) for label in estimators}
    span = value_range(truth)
    sweep_rows = []
    for a in sweep_alphas:
        label = next(lbl for lbl, name, alpha in jobs if name in ("fqe", "conservative-fqe") and alpha == a)
        e = estimates[label]
        sweep_rows.append({
            "alpha_c": a, "estimator": label, "mean_signed_error": float(np.mean(e - truth)),
            "normalised_mean_signed_error": float(np.mean(e - truth) / span),
            "normalised_mean_signed_error_ood": float(np.mean((e - truth)[ood_heavy]) / span) if ood_heavy.any() else None,
            "normalised_mean_signed_error_in_distribution": (float(np.mean((e - truth)[~ood_heavy]) / span)
                                                             if (~ood_heavy).any() else None),
            "share_below": share_below(truth, e), "share_below_ood": share_below(truth[ood_heavy], e[ood_heavy]),
            "median_slack_ood": median_normalised_slack(truth[ood_heavy], e[ood_heavy], span),
            "spearman": spearman(truth, e), "regret_at_1": regret_at_k(truth, e, 1), "nmae": normalised_mae(truth, e),
        })
    timings["total_s"] = time.perf_counter() - t_start

    policies = []
    for i, m in enumerate(members):
        policies.append({
            "name": m.name, "family": m.family, "spec": m.spec, "ood_distance": float(ood_dist[i]),
            "ood_heavy": bool(ood_heavy[i]), "truth": truths[i]["value"], "truth_se": truths[i]["se"],
            "truth_se_population": truths[i]["se_population"],
            "estimates": {label: {k: fits[label][i].get(k) for k in ("value", "ci_low", "ci_high", "lower", "supported",
                                                                          "fit_s")} for label in fits},
            "support": fits[next(iter(fits))][i].get("support"),
        })
    result = {
        "suite": "ope_validation",
        "dataset": {"path": str(data_dir), "split": "test", "n_transitions": len(data),
                    "n_sessions": int(split.dataset.n_sessions), "n_initial_states": int(len(s0)),
                    "created_by": manifest.get("created_by"), "collection": manifest["collection"]["config"],
                    "initial_state_max_abs_diff": init_diff},
        "settings": settings.to_dict(),
        "paper_settings": PAPER_SETTINGS.to_dict(),
        "ood": {"threshold": threshold, "quantile": zoo_mod.OOD_QUANTILE,
                "definition": "mean over test states of the distance from pi(s) to the nearest logged action "
                              "(action units); OOD-heavy above the 95% quantile of the logged actions' "
                              "leave-one-out nearest-neighbour distances"},
        "runs": {"used": list(run_dirs), "skipped": skipped, "not_used": not_used,
                 "runs_per_algo": runs_per_algo},
        "policies": policies,
        "metrics": metrics,
        "targets": targets,
        "support_targets": support_targets,
        "support_rule": {"min_ess": MIN_ESS, "rules": {lbl: SUPPORT_RULES[canonical_estimator(lbl)] for lbl in estimators}},
        "weight_settings": weight_table,
        "estimator_settings": est_settings.to_dict(),
        "silverman_bandwidth": ctx.silverman,
        "alpha_sweep": sweep_rows,
        "timings_s": {**timings, "fits_per_estimator_s": fit_seconds},
        "machine": {"cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
                    "torch_threads": torch.get_num_threads()},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "result.json", result)
    write_report(result, out, figures=figures)
    return result


def write_report(result: dict[str, Any], out: str | Path, figures: bool = True) -> None:
    """``OUT/result.md`` and (with ``figures``) ``scatter.png`` / ``alpha_sweep.png`` from a result dict."""
    out = Path(out)
    (out / "result.md").write_text(markdown_report(result))
    if figures:
        scatter_figure(result, out / "scatter.png")
        if result["alpha_sweep"]:
            sweep_figure(result, out / "alpha_sweep.png")


# ----------------------------------------------------------------------------------------
# report and figures (read the result dict only)


def _f(x: Any, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _spread_note(result: dict[str, Any]) -> str:
    """One sentence on how the true values spread: normalised metrics divide by the full range."""
    truth = np.sort([p["truth"] for p in result["policies"]])
    span = truth[-1] - truth[0]
    upper = truth[len(truth) // 2 :]
    return (f"True values: min {truth[0]:.3f}, median {np.median(truth):.3f}, max {truth[-1]:.3f}; the better half "
            f"of the zoo spans {upper[-1] - upper[0]:.3f} ({100 * (upper[-1] - upper[0]) / span:.0f}% of the range; a "
            f"normalised error of 0.1 is {0.1 * span:.3f}).")


def markdown_report(result: dict[str, Any]) -> str:
    """The result as Markdown: metrics side by side, targets, sweep, per-policy table, settings."""
    m = result["metrics"]
    names = [n for n in MAIN_ESTIMATORS if n in m] + [n for n in m if n not in MAIN_ESTIMATORS]  # JSON sorts keys
    lvl = f"{100 * result['settings']['ci_level']:g}%"
    lines = [f"# Conservative-OPEstimator validation on {result['dataset']['path']} (test split)", "",
             f"{len(result['policies'])} zoo policies ({m[names[0]]['n_ood_heavy']} OOD-heavy), "
             f"{result['dataset']['n_transitions']} test transitions, {result['dataset']['n_initial_states']} initial "
             f"states; truth range {_f(m[names[0]]['truth_range'])}; wall time {result['timings_s']['total_s']:.0f} s.",
             "", _spread_note(result),
             "", "## Metrics (DOPE protocol; normalised by the range of true values)", "",
             "| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]

    def add(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(m[n]) for n in names) + " |")

    add(f"Spearman [{lvl} CI]", lambda x: f"{_f(x['spearman'])} [{_f(x['spearman_ci'][0])}, {_f(x['spearman_ci'][1])}]")
    add(f"Kendall [{lvl} CI]", lambda x: f"{_f(x['kendall'])} [{_f(x['kendall_ci'][0])}, {_f(x['kendall_ci'][1])}]")
    add("regret@1", lambda x: _f(x["regret_at_1"]))
    add("regret@3", lambda x: _f(x["regret_at_3"]))
    add("normalised MAE", lambda x: _f(x["nmae"]))
    add("normalised mean signed error", lambda x: _f(x["normalised_mean_signed_error"]))
    add("share below truth (all)", lambda x: _f(x["share_below"], ".2f"))
    add("share below truth (OOD-heavy)", lambda x: _f(x["share_below_ood"], ".2f"))
    add("share below truth (in-distribution)", lambda x: _f(x["share_below_in_distribution"], ".2f"))
    add("median normalised slack (all)", lambda x: _f(x["median_slack"]))
    add("median normalised slack (OOD-heavy)", lambda x: _f(x["median_slack_ood"]))
    if "n_supported" in m[names[0]]:
        add("lower bound below truth (all)", lambda x: _f(x["share_lower_below"], ".2f"))
        add("lower bound below truth (OOD-heavy)", lambda x: _f(x["share_lower_below_ood"], ".2f"))
        add("OOD-heavy: lower below truth or unsupported", lambda x: _f(x["ood_lower_below_or_unsupported"], ".2f"))
        add("policies labelled supported (OOD-heavy among them)",
            lambda x: f"{x['n_supported']} ({x['n_supported_ood']})")
        sup = lambda x, k: (x["supported"] or {}).get(k)  # noqa: E731
        add(f"supported: Spearman [{lvl} CI]", lambda x: f"{_f(sup(x, 'spearman'))} [{_f((sup(x, 'spearman_ci') or [None])[0])}, "
                                                         f"{_f((sup(x, 'spearman_ci') or [None, None])[1])}]")
        add(f"supported: Kendall [{lvl} CI]", lambda x: f"{_f(sup(x, 'kendall'))} [{_f((sup(x, 'kendall_ci') or [None])[0])}, "
                                                        f"{_f((sup(x, 'kendall_ci') or [None, None])[1])}]")
        add("supported: regret@1", lambda x: _f(sup(x, "regret_at_1")))
        add("supported: regret@3", lambda x: _f(sup(x, "regret_at_3")))
        add("supported: normalised MAE", lambda x: _f(sup(x, "nmae")))
        rules = result.get("support_rule", {})
        lines.append(f"\nSupport rule: FQE family and model-based: OOD distance <= threshold; IS family: at least "
                     f"{rules.get('min_ess', MIN_ESS):g} effective sessions in the kernel weights (first step, or whole "
                     f"session for tis/sntis); Silverman bandwidth {_f(result.get('silverman_bandwidth'))}, scale "
                     f"{result['settings'].get('bandwidth_scale', 1.0)}, clip {result['settings'].get('clip')}.")
    if result.get("support_targets"):
        lines += ["", "## Targets on supported / OOD-heavy policies", "",
                  "| estimator | supported Spearman >= 0.8 | supported regret@1 <= 0.05 | OOD-heavy lower below truth or "
                  "unsupported >= 0.9 |", "| --- | --- | --- | --- |"]
        for n in names:
            t = result["support_targets"][n]
            cell = lambda v: f"{_f(v['value'])} ({'n/a' if v['met'] is None else ('yes' if v['met'] else 'NO')})"  # noqa: E731
            lines.append(f"| {n} | {cell(t['supported_spearman'])} | {cell(t['supported_regret_at_1'])} | "
                         f"{cell(t['ood_lower_below_or_unsupported'])} |")
    if result.get("weight_settings"):
        lines += ["", "## Importance weights: kernel bandwidth and clip (IS forms, all zoo policies)", "",
                  "| bandwidth (x Silverman) | clip | form | Spearman | regret@1 | nMAE | median ESS first step "
                  "| mean share clipped |", "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in result["weight_settings"]:
            lines.append(f"| {_f(r['bandwidth'])} ({r['bandwidth_scale']:g}) | {r['clip'] or 'none'} | {r['form']} | "
                         f"{_f(r['spearman'])} | {_f(r['regret_at_1'])} | {_f(r['nmae'])} | "
                         f"{_f(r['median_ess_first_step'], '.1f')} | {_f(r['mean_clipped_share'], '.3f')} |")
    if result["targets"]:
        lines += ["", "## Targets (conservative estimator)", "", "| target | value | required | met |",
                  "| --- | ---: | --- | --- |"]
        for k in ("spearman", "regret_at_1", "share_below_ood", "median_slack_ood"):
            v = result["targets"][k]
            lines.append(f"| {k} | {_f(v['value'])} | {v['target']} | {'yes' if v['met'] else 'NO'} |")
        lines.append(f"\nReference: FQE reached a Spearman of about {DOPE_FQE_SPEARMAN} over 76 policies of a "
                     "continuous-control task (DOPE).")
    if result["alpha_sweep"]:
        lines += ["", "## alpha_c sweep (conservative estimator, all zoo policies)", "",
                  "| alpha_c | mean signed error | normalised | normalised (OOD-heavy) | normalised (in-distribution) "
                  "| share below truth | share below (OOD-heavy) | median slack (OOD-heavy) | Spearman | regret@1 "
                  "| nMAE |", "| ---: |" + " ---: |" * 10]
        for r in result["alpha_sweep"]:
            lines.append(f"| {r['alpha_c']:g} | {_f(r['mean_signed_error'])} | {_f(r['normalised_mean_signed_error'])} "
                         f"| {_f(r['normalised_mean_signed_error_ood'])} "
                         f"| {_f(r['normalised_mean_signed_error_in_distribution'])} | {_f(r['share_below'], '.2f')} "
                         f"| {_f(r['share_below_ood'], '.2f')} | {_f(r['median_slack_ood'])} "
                         f"| {_f(r['spearman'])} | {_f(r['regret_at_1'])} | {_f(r['nmae'])} |")
    present = set(result["policies"][0]["estimates"]) if result["policies"] else set()
    labels = [n for n in MAIN_ESTIMATORS if n in present]
    labels += [r["estimator"] for r in result["alpha_sweep"] if r["estimator"] not in labels]
    labels += sorted(present - set(labels))
    lines += ["", "## Policies", "", "| policy | family | OOD dist | OOD-heavy | truth (se) | " + " | ".join(labels) + " |",
              "| --- | --- | ---: | --- | ---: |" + " ---: |" * len(labels)]
    for p in sorted(result["policies"], key=lambda p: -p["truth"]):
        lines.append(f"| {p['name']} | {p['family']} | {p['ood_distance']:.2f} | {'yes' if p['ood_heavy'] else 'no'} | "
                     f"{p['truth']:.3f} ({p['truth_se']:.3f}) | "
                     + " | ".join(_f(p["estimates"][lb]["value"]) for lb in labels) + " |")
    s, ps = result["settings"], result["paper_settings"]
    lines += ["", "## Settings (this run vs the paper's)", "", "| setting | this run | paper |", "| --- | --- | --- |"]
    for key in ("n_steps", "learning_rate", "batch_size", "hidden", "target_update_every", "alpha_c", "gamma",
                "n_initial", "n_rollouts"):
        lines.append(f"| {key} | {s[key]} | {ps[key]} |")
    lines += ["", f"OOD-heavy: {result['ood']['definition']}; threshold {result['ood']['threshold']:.3f}.",
              f"Initial states: simulator vs logged max |diff| = {result['dataset']['initial_state_max_abs_diff']:.2g}.",
              f"Trained runs used: {result['runs']['used'] or 'none'}; failed to load: "
              f"{result['runs']['skipped'] or 'none'}; not used (over --runs-per-algo "
              f"{result['runs']['runs_per_algo']}): {result['runs']['not_used'] or 'none'}."]
    t = result["timings_s"]
    lines.append(f"Timings (s): data {t['data_s']:.0f}, zoo {t['zoo_s']:.0f}, truth {t['truth_s']:.0f}, "
                 f"fits {t['fits_s']:.0f}, total {t['total_s']:.0f}; load average at end "
                 f"{', '.join(f'{x:.1f}' for x in result['machine']['load_average_at_end'])}.")
    return "\n".join(lines) + "\n"


def scatter_figure(result: dict[str, Any], path: str | Path) -> None:
    """Estimate against truth, one panel per estimator; OOD-heavy policies as red crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in MAIN_ESTIMATORS if n in result["metrics"]]
    names += [n for n in result["metrics"] if n not in names]
    pols = result["policies"]
    truth = np.array([p["truth"] for p in pols])
    ood = np.array([p["ood_heavy"] for p in pols])
    n_cols = min(4, len(names))
    n_rows = (len(names) + n_cols - 1) // n_cols
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 4.2 * n_rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        est = np.array([p["estimates"][name]["value"] for p in pols], dtype=float)
        lo = min(truth.min(), np.nanmin(est)) if np.isfinite(est).any() else truth.min()
        hi = max(truth.max(), np.nanmax(est)) if np.isfinite(est).any() else truth.max()
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1, ls="--", label="estimate = truth")
        ax.scatter(truth[~ood], est[~ood], s=22, c="tab:blue", label="in-distribution")
        ax.scatter(truth[ood], est[ood], s=30, c="tab:red", marker="x", label="OOD-heavy")
        unsup = np.array([p["estimates"][name].get("supported") is False for p in pols])
        if unsup.any():
            ax.scatter(truth[unsup], est[unsup], s=80, facecolors="none", edgecolors="0.3", lw=0.8,
                       label="labelled unsupported")
        m = result["metrics"][name]
        ax.set_title(f"{name}\nSpearman {_f(m['spearman'], '.2f')}, regret@1 {_f(m['regret_at_1'], '.2f')}, "
                     f"nMAE {_f(m['nmae'], '.2f')}", fontsize=9)
        ax.set_xlabel("true value (discounted session return)")
        ax.set_ylabel("estimate")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep_figure(result: dict[str, Any], path: str | Path) -> None:
    """Normalised mean signed error (estimate - truth) / range against alpha_c (all / OOD-heavy / in-distribution)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["alpha_sweep"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label, style in (("normalised_mean_signed_error", "all policies", "o-"),
                              ("normalised_mean_signed_error_ood", "OOD-heavy", "x--"),
                              ("normalised_mean_signed_error_in_distribution", "in-distribution", "s:")):
        y = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
        ax.plot(x, y, style, label=label)
    ax.axhline(0.0, color="0.5", lw=1)
    ax.set_xticks(x, [f"{r['alpha_c']:g}" for r in rows])
    ax.set_xlabel("alpha_c")
    ax.set_ylabel("mean (estimate - truth) / range")
    ax.set_title("over- (> 0) to under-estimation (< 0)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# command line


# ----------------------------------------------------------------------------------------
# the grid: every estimator over several dataset seeds and three exploration policies

#: Estimators the grid compares by default (d3rlpy-fqe, an outside reference that calls the policy
#: on every mini-batch, is left out for time; add it with ``estimators=``).
GRID_ESTIMATORS: tuple[str, ...] = ("fqe", "conservative-fqe", "bootstrap-fqe", "model-based",
                                    "tis", "sntis", "pdis", "snpdis", "dr", "sndr")


@dataclass(frozen=True)
class GridSettings:
    """What :func:`run_grid` collects and compares (defaults: sized for 30 minutes on 2 cores)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    """Dataset seeds of the main (mixed-exploration) table."""
    explorations: tuple[str, ...] = ("mixed", "random", "action-noise")
    """Behaviour policies of the exploration table (``mixed`` is the main table's)."""
    exploration_seeds: tuple[int, ...] = (0,)
    """Dataset seeds of the other explorations (mixed uses ``seeds``)."""
    n_sessions: int = 4000
    """Sessions per collected dataset."""
    train_fraction: float = 0.5
    """Share of sessions in the train split (the estimators use the test split; the quick TD3 the train split)."""
    validation: ValidationSettings = ValidationSettings(n_initial=500, n_random=15, sweep_alphas=())
    """Settings of each dataset's run (zoo: 6 presets, 15 random statics, 5 noisy, 4 degraded, 4 corners,
    the quick TD3 = 35 policies)."""

    def __post_init__(self) -> None:
        for name in ("seeds", "explorations", "exploration_seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"GridSettings.{name} must not be empty")
        if any((not isinstance(s, (int, np.integer))) or s < 0 for s in (*self.seeds, *self.exploration_seeds)):
            raise ValueError("dataset seeds must be integers >= 0")
        if not isinstance(self.n_sessions, (int, np.integer)) or self.n_sessions < 20:
            raise ValueError(f"GridSettings.n_sessions must be an integer >= 20, got {self.n_sessions!r}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"GridSettings.train_fraction must lie in (0, 1), got {self.train_fraction}")

    def datasets(self) -> list[tuple[str, int]]:
        """(exploration, seed) of every dataset in run order: every exploration at the first seed (they
        share true values), then the other seeds of mixed and of the other explorations."""
        first = self.seeds[0]
        out = [(e, first if e == "mixed" else self.exploration_seeds[0]) for e in self.explorations]
        out += [("mixed", s) for s in self.seeds[1:] if "mixed" in self.explorations]
        out += [(e, s) for e in self.explorations if e != "mixed" for s in self.exploration_seeds[1:]]
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["validation"] = self.validation.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def collect_grid_dataset(out: Path, exploration: str, seed: int, grid: GridSettings, show_progress: bool) -> Path:
    """Collect (or reuse) one dataset of the grid under ``out``; a finished one is marked by ``grid.json``."""
    from agents.behaviour import collection_policy
    from mtf_env.config import SimConfig
    from mtf_env.dataset import CollectConfig, collect_dataset
    from mtf_env.files import write_json

    marker = {"policy": exploration, "seed": int(seed), "n_sessions": grid.n_sessions,
              "train_fraction": grid.train_fraction}
    if (out / "grid.json").is_file() and json.loads((out / "grid.json").read_text()) == marker:
        return out
    collect = CollectConfig(policy=exploration, n_sessions=grid.n_sessions, seed=int(seed),
                            train_fraction=grid.train_fraction)
    collect_dataset(out, SimConfig(), collect, collection_policy(collect), overwrite=True, progress=show_progress)
    write_json(out / "grid.json", marker)
    return out


def _mean_sd(values: Sequence[Any]) -> dict[str, Any]:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if ok.size else None, "sd": float(ok.std(ddof=1)) if ok.size > 1 else None,
            "n": int(ok.size), "values": [None if not np.isfinite(x) else float(x) for x in v]}


#: Metrics of the grid's tables: (label, key path in a run's metrics).
GRID_METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Spearman", ("spearman",)), ("Kendall", ("kendall",)), ("regret@1", ("regret_at_1",)),
    ("regret@3", ("regret_at_3",)), ("nMAE", ("nmae",)),
    ("lower below truth", ("share_lower_below",)), ("lower below truth (OOD-heavy)", ("share_lower_below_ood",)),
    ("OOD-heavy: lower below or unsupported", ("ood_lower_below_or_unsupported",)),
    ("n supported", ("n_supported",)), ("n undefined (all weights 0)", ("n_undefined",)),
    ("supported: Spearman", ("supported", "spearman")), ("supported: Kendall", ("supported", "kendall")),
    ("supported: regret@1", ("supported", "regret_at_1")), ("supported: regret@3", ("supported", "regret_at_3")),
    ("supported: nMAE", ("supported", "nmae")),
)


def _metric(m: dict[str, Any], path: tuple[str, ...]) -> Any:
    for k in path:
        m = (m or {}).get(k)
    return m


def run_grid(out: str | Path, grid: GridSettings = GridSettings(), estimators: Sequence[str] = GRID_ESTIMATORS,
             run_roots: Sequence[str | Path] = (), train_td3: bool = True, show_progress: bool = True,
             figures: bool = True) -> dict[str, Any]:
    """Collect the grid's datasets, build one zoo, run :func:`run_validation` on each, aggregate.

    Writes ``OUT/data/<exploration>-s<seed>/`` (datasets), ``OUT/runs/<exploration>-s<seed>/`` (each
    run's files, figures included), ``OUT/truth/s<seed>/`` (true values, shared by the explorations of a
    seed) and ``OUT/result.json`` / ``OUT/result.md`` / ``OUT/scatter.png`` (the tables: mean and sd
    over the seeds per estimator and metric, the main table on mixed exploration, then one per exploration).
    """
    from mtf_env.files import write_json

    import torch

    out = Path(out)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    torch.set_num_threads(1)  # also for the quick TD3 (run_validation sets it for the fits)
    for label in estimators:
        canonical_estimator(label)
    settings = grid.validation
    datasets = grid.datasets()
    dirs = {}
    t0 = time.perf_counter()
    for exploration, seed in datasets:
        dirs[(exploration, seed)] = collect_grid_dataset(out / "data" / f"{exploration}-s{seed}", exploration, seed, grid,
                                                         show_progress)
    collect_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = dirs[datasets[0]]
    members, run_info = build_validation_zoo(first, out, dataclasses.replace(settings, seed=datasets[0][1]), run_roots,
                                             None, train_td3, None, None, show_progress)
    zoo_s = time.perf_counter() - t0
    runs: dict[str, dict[str, Any]] = {}
    for exploration, seed in datasets:
        name = f"{exploration}-s{seed}"
        runs[name] = run_validation(dirs[(exploration, seed)], out / "runs" / name, dataclasses.replace(settings, seed=seed),
                                    estimators=estimators, sweep=False, show_progress=show_progress,
                                    figures=figures, members=members, truth_dir=out / "truth" / f"s{seed}")
        runs[name]["runs"] = run_info
        aggregate_grid(out, grid, estimators, runs, members, {"collect_s": collect_s, "zoo_s": zoo_s}, load_start,
                       t_start, figures=figures and len(runs) == len(datasets))
    return json.loads((out / "result.json").read_text())


def aggregate_grid(out: Path, grid: GridSettings, estimators: Sequence[str], runs: dict[str, dict[str, Any]],
                   members: Sequence[Any] | None, timings: dict[str, float], load_start: Sequence[float],
                   t_start: float | None, figures: bool = True) -> dict[str, Any]:
    """Write ``OUT/result.json`` and ``result.md`` (and ``scatter.png``) from the finished per-dataset
    ``runs`` (name -> :func:`run_validation` result); called after every dataset, so a run stopped
    early leaves the tables of the datasets it finished (``datasets_finished``)."""
    from mtf_env.files import write_json

    datasets = [f"{e}-s{s}" for e, s in grid.datasets()]
    tables = {}
    for exploration in grid.explorations:
        names = [n for n in datasets if n.rsplit("-s", 1)[0] == exploration and n in runs]
        if not names:
            continue
        tables[exploration] = {
            "datasets": names,
            "metrics": {est: {key: _mean_sd([_metric(runs[n]["metrics"][est], path) for n in names])
                              for key, path in GRID_METRICS} for est in estimators},
            "n_policies": [len(runs[n]["policies"]) for n in names],
            "n_ood_heavy": [runs[n]["metrics"][estimators[0]]["n_ood_heavy"] for n in names],
        }
    first = next(iter(runs.values())) if runs else None
    result = {
        "suite": "ope_validation_grid", "grid": grid.to_dict(), "estimators": list(estimators), "tables": tables,
        "datasets_planned": datasets, "datasets_finished": [n for n in datasets if n in runs],
        "runs": {n: {"metrics": r["metrics"], "support_targets": r["support_targets"], "dataset": r["dataset"],
                     "timings_s": r["timings_s"], "weight_settings": r["weight_settings"],
                     "silverman_bandwidth": r["silverman_bandwidth"],
                     "policies": r["policies"]} for n, r in runs.items()},
        "zoo": {"members": [m.name for m in members] if members is not None else
                [p["name"] for p in first["policies"]] if first else [],
                "runs": first["runs"] if first else {}},
        "timings_s": {**timings, "total_s": (time.perf_counter() - t_start) if t_start is not None else
                      sum(r["timings_s"]["total_s"] for r in runs.values()) + sum(timings.values())},
        "machine": {"cpu_count": os.cpu_count(), "load_average_at_start": list(load_start),
                    "load_average_at_end": list(os.getloadavg())},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "result.json", result)
    (out / "result.md").write_text(grid_markdown(result))
    if figures and tables:
        grid_scatter(result, out / "scatter.png")
    return result


def aggregate_finished_runs(out: str | Path, grid: GridSettings = GridSettings(),
                            estimators: Sequence[str] = GRID_ESTIMATORS) -> dict[str, Any]:
    """:func:`aggregate_grid` from the ``OUT/runs/*/result.json`` files alone (a grid stopped early);
    the wall time is then the sum of the finished runs' (collection and zoo not included)."""
    out = Path(out)
    runs = {}
    for exploration, seed in grid.datasets():
        path = out / "runs" / f"{exploration}-s{seed}" / "result.json"
        if path.is_file():
            runs[f"{exploration}-s{seed}"] = json.loads(path.read_text())
    if not runs:
        raise ValueError(f"{out}/runs holds no finished dataset (runs/<exploration>-s<seed>/result.json)")
    return aggregate_grid(out, grid, estimators, runs, None, {"collect_s": 0.0, "zoo_s": 0.0},
                          [float("nan")] * 3, None)


def grid_markdown(result: dict[str, Any]) -> str:
    """The grid's tables as Markdown: per exploration, every estimator's metrics (mean (sd) over seeds)."""
    est = result["estimators"]
    g = result["grid"]
    t = result["timings_s"]
    lines = ["# Off-policy estimators judged against the true values (grid)", "",
             f"Zoo of {len(result['zoo']['members'])} policies; datasets of {g['n_sessions']} sessions "
             f"(test split: the last {1 - g['train_fraction']:.0%}); {g['validation']['n_initial']} initial states, "
             f"{g['validation']['n_rollouts']} true sessions each; FQE family K = {g['validation']['n_steps']}, "
             f"lr {g['validation']['learning_rate']}, hidden {g['validation']['hidden']}.",
             f"Wall time {t['total_s']:.0f} s (collection {t['collect_s']:.0f} s, zoo {t['zoo_s']:.0f} s); load average "
             f"at start {', '.join(f'{x:.1f}' for x in result['machine']['load_average_at_start'])}, at end "
             f"{', '.join(f'{x:.1f}' for x in result['machine']['load_average_at_end'])} on "
             f"{result['machine']['cpu_count']} CPUs.", ""]
    planned, finished = result.get("datasets_planned", []), result.get("datasets_finished", [])
    if planned and len(finished) < len(planned):
        lines += [f"**Partial**: {len(finished)} of {len(planned)} datasets finished ({', '.join(finished)}); not "
                  f"finished: {', '.join(n for n in planned if n not in finished)}.", ""]
    for exploration, table in result["tables"].items():
        lines += [f"## {exploration} exploration: {', '.join(table['datasets'])} "
                  f"({table['n_policies'][0]} policies, OOD-heavy per dataset {table['n_ood_heavy']})", "",
                  "Mean over the datasets (sd in brackets; `n/a`: not defined, e.g. fewer than 3 supported "
                  "policies or no lower bound).", "",
                  "| metric | " + " | ".join(est) + " |", "| --- |" + " ---: |" * len(est)]
        for key, _ in GRID_METRICS:
            cells = []
            for e in est:
                v = table["metrics"][e][key]
                cells.append("n/a" if v["mean"] is None else
                             f"{v['mean']:.3f}" + (f" ({v['sd']:.3f})" if v["sd"] is not None else ""))
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        best = []
        for key, better in (("Spearman", max), ("Kendall", max), ("regret@1", min), ("regret@3", min), ("nMAE", min),
                            ("supported: Spearman", max), ("supported: regret@1", min)):
            vals = {e: table["metrics"][e][key]["mean"] for e in est if table["metrics"][e][key]["mean"] is not None}
            if vals:
                b = better(vals, key=vals.get)
                best.append(f"{key}: **{b}** ({vals[b]:.3f})")
        lines += ["", "Best per metric (mean): " + "; ".join(best) + ".", ""]
    lines += ["Per-dataset reports (per-policy tables, bandwidth and clip table, figures): `runs/<dataset>/result.md`.",
              ""]
    return "\n".join(lines)


def grid_scatter(result: dict[str, Any], path: str | Path) -> None:
    """Estimate against truth per estimator, pooled over the main table's datasets (one colour per
    dataset), OOD-heavy as crosses, estimates labelled unsupported circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    est = result["estimators"]
    first = next(iter(result["tables"]))
    names = result["tables"][first]["datasets"]
    n_cols = min(4, len(est))
    n_rows = (len(est) + n_cols - 1) // n_cols
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.0 * n_cols, 4.0 * n_rows), squeeze=False)
    for ax in axes.flat[len(est):]:
        ax.axis("off")
    colours = ["tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]
    for ax, e in zip(axes.flat, est):
        lo, hi = np.inf, -np.inf
        for i, n in enumerate(names):
            pols = result["runs"][n]["policies"]
            truth = np.array([p["truth"] for p in pols])
            val = np.array([p["estimates"][e]["value"] for p in pols])
            ood = np.array([p["ood_heavy"] for p in pols])
            unsup = np.array([p["estimates"][e].get("supported") is False for p in pols])
            c = colours[i % len(colours)]
            ax.scatter(truth[~ood], val[~ood], s=14, c=c, label=n)
            ax.scatter(truth[ood], val[ood], s=20, c=c, marker="x")
            if unsup.any():
                ax.scatter(truth[unsup], val[unsup], s=60, facecolors="none", edgecolors="0.4", lw=0.6)
            lo, hi = min(lo, truth.min()), max(hi, truth.max())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--")
        m = result["tables"][first]["metrics"][e]
        ax.set_title(f"{e}: Spearman {_f(m['Spearman']['mean'], '.2f')}, regret@1 {_f(m['regret@1']['mean'], '.2f')}",
                     fontsize=9)
        ax.set_xlabel("true value")
        ax.set_ylabel("estimate")
    axes[0][0].legend(fontsize=7, loc="upper left", title="x: OOD-heavy, o: unsupported", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
