"""A zoo of evaluation policies spread over the quality range, for judging off-policy estimators.

The validation harness (:mod:`benchmarks.suites.ope_validation`) needs many policies whose
true values differ, some close to the logged data and some far from it. Every member is a
**deterministic** :class:`~mtf_env.policy.Policy` (the estimator's protocol: ``pi_e(s)`` is a
function of the observation), built from a seed:

================  ==========================================================================
family            members
================  ==========================================================================
``preset``        the static presets of :data:`agents.static.STATIC_PRESETS` (6).
``random-static`` seeded static actions drawn uniformly from the action box ``[-1, 1]^12``.
``noisy``         a static action plus **per-state hash noise** (:class:`HashNoisePolicy`):
                  ``clip(a0 + std * z(s))`` with ``z(s) ~ N(0, I)`` a fixed function of the
                  observation's bytes. It behaves like Gaussian noise around ``a0`` over
                  states, but the same state always gets the same action, so the estimator's
                  deterministic protocol holds (a ``GaussianPolicy`` would not).
``degraded``      ``production`` moved toward the ``anti`` corner (the worst weights we know:
                  reward skips, hates and exits, ignore play time) by ``t`` in
                  :data:`DEGRADED_STEPS` (:class:`InterpolatedPolicy`, static).
``corner``        static actions at corners of the box (``anti``, all +1, all -1, play time
                  only): far from the logged actions, the out-of-distribution-heavy members a
                  TD3-like unconstrained policy produces.
``trained``       trained agents: every run directory under ``runs/`` (or given) that
                  :func:`agents.registry.load_policy` loads.
================  ==========================================================================

Out-of-distribution-heavy (:func:`ood_distance`, :func:`ood_threshold`)
-----------------------------------------------------------------------
A policy's *OOD distance* is the mean, over the states of the logged data, of the Euclidean
distance (action units, box ``[-1, 1]^12``) from its action ``pi(s)`` to the **nearest logged
action** of the data (any state). A policy is *OOD-heavy* when that mean exceeds the
threshold :func:`ood_threshold`: the 95% quantile of the logged actions' own leave-one-out
nearest-neighbour distances, i.e. a policy whose *typical* action is further from the data
than 95% of the logged actions are from each other. Logged actions are the data's, so the
threshold adapts to the behaviour policy (narrow data gives a small threshold).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mtf_env.policy import Policy, check_obs_batch
from agents.static import STATIC_PRESETS, StaticPolicy
from mtf_env.fusion import validate_action
from mtf_env.tasks import N_TASKS, TASK_INDEX

from .streams import GOLDEN as _GOLDEN
from .streams import mix64 as _mix64
from .streams import to_unit

#: The worst weights we know (action units): rank up predicted skips, hates and exits, ignore
#: play time and the positive tasks. One corner of the box.
ANTI_ACTION = np.full(N_TASKS, -1.0, dtype=np.float32)
ANTI_ACTION[[TASK_INDEX["skip"], TASK_INDEX["hate"], TASK_INDEX["exit"]]] = 1.0
#: Corner members: name -> action in [-1, 1]^12.
CORNER_ACTIONS: dict[str, np.ndarray] = {
    "anti": ANTI_ACTION,
    "all-max": np.ones(N_TASKS, np.float32),
    "all-min": -np.ones(N_TASKS, np.float32),
    "time-corner": np.where(np.arange(N_TASKS) == TASK_INDEX["play_time"], 1.0, -1.0).astype(np.float32),
}
#: Noisy members: (centre, per-coordinate std in action units); the centre is a static preset
#: or ``degraded:T`` (production moved toward anti by T; noise there spreads the values between
#: the good plateau and the cliff of the degraded line).
NOISY_MEMBERS: tuple[tuple[str, float], ...] = (
    ("production", 0.1), ("production", 0.3), ("integrity", 0.2), ("degraded:0.8", 0.3), ("degraded:0.9", 0.3),
)
#: Degraded members: interpolation weights t of production -> anti. The value stays near
#: production's up to t ~ 0.7 and falls steeply after (ranking depends on the weights' direction
#: only), so the steps sit around the fall.
DEGRADED_STEPS: tuple[float, ...] = (0.5, 0.7, 0.75, 0.8)
#: Quantile of the logged actions' leave-one-out nearest-neighbour distance used as the OOD threshold.
OOD_QUANTILE = 0.95
#: Family names in display order.
FAMILIES: tuple[str, ...] = ("preset", "random-static", "noisy", "degraded", "corner", "trained")

def state_hash_normals(obs: np.ndarray, salt: int, dim: int = N_TASKS) -> np.ndarray:
    """Standard normals ``(B, dim)`` float64 that are a fixed function of each observation row's bytes.

    obs: (B, obs_dim) float32. Row ``i``'s normals depend only on ``obs[i]`` (its float32 bit
    pattern) and ``salt``, so the same state always gets the same draw, whatever the batch.
    Box-Muller on SplitMix64 outputs of a per-row hash (:mod:`benchmarks.evaluation.streams`).
    """
    obs = np.ascontiguousarray(check_obs_batch(obs), dtype=np.float32)
    words = obs.view(np.uint32).astype(np.uint64)  # (B, obs_dim)
    with np.errstate(over="ignore"):
        h = np.full(len(obs), _mix64(np.uint64(int(salt) & 0xFFFFFFFFFFFFFFFF) + _GOLDEN), dtype=np.uint64)
        for j in range(words.shape[1]):
            h = _mix64(h ^ (words[:, j] + _GOLDEN * np.uint64(j + 1)))
        out = np.empty((len(obs), dim), dtype=np.float64)
        for k in range(dim):
            u1 = to_unit(_mix64(h + _GOLDEN * np.uint64(2 * k + 1)))
            u2 = to_unit(_mix64(h + _GOLDEN * np.uint64(2 * k + 2)))
            out[:, k] = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    return out


class HashNoisePolicy:
    """``clip(base(s) + std * z(s), -1, 1)`` with per-state hash normals ``z(s)``; deterministic.

    base: a Policy (its action is the centre); std: scalar or (12,) action units; salt: the
    noise stream (two salts give independent noise functions).
    """

    stochastic = False

    def __init__(self, base: Policy, std: float | np.ndarray, salt: int, name: str = "hash-noise"):
        self.base = base
        self.std = np.broadcast_to(np.asarray(std, dtype=np.float64), (N_TASKS,)).copy()
        if np.any(self.std < 0) or not np.all(np.isfinite(self.std)):
            raise ValueError(f"std must be finite and >= 0, got {std!r}")
        self.salt = int(salt)
        self.name = name

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = check_obs_batch(obs)
        centre = np.asarray(self.base.act(obs), dtype=np.float64)
        noisy = centre + self.std * state_hash_normals(obs, self.salt)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)


class InterpolatedPolicy(StaticPolicy):
    """The static action ``(1 - t) * a_from + t * a_to`` (t in [0, 1]); deterministic."""

    def __init__(self, action_from: np.ndarray, action_to: np.ndarray, t: float, name: str = "interpolated"):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"interpolation weight t must lie in [0, 1], got {t}")
        a0, a1 = validate_action(np.asarray(action_from, np.float32)), validate_action(np.asarray(action_to, np.float32))
        super().__init__((1.0 - t) * a0 + t * a1, name=name)
        self.t = float(t)


@dataclass(frozen=True)
class ZooMember:
    """One zoo policy: ``name`` (unique), ``family`` (see :data:`FAMILIES`), ``spec`` (how it was
    built, JSON-able text), ``policy`` (deterministic Policy)."""

    name: str
    family: str
    spec: str
    policy: Policy


def random_static_actions(n: int, seed: int) -> np.ndarray:
    """``(n, 12)`` float32 actions drawn uniformly from the box with ``default_rng(seed)``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A71C]))
    return rng.uniform(-1.0, 1.0, size=(n, N_TASKS)).astype(np.float32)


def find_run_dirs(root: str | Path = "runs") -> list[Path]:
    """Run directories under ``root`` (any depth) whose ``config.json`` names an ``algo``, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for cfg in sorted(root.rglob("config.json")):
        try:
            algo = json.loads(cfg.read_text()).get("algo")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(algo, str) and (cfg.parent / "checkpoint.pt").is_file():
            found.append(cfg.parent)
    return found


def trained_members(run_dirs: Iterable[str | Path], on_error: str = "skip") -> tuple[list[ZooMember], list[str]]:
    """Zoo members for trained run directories; returns (members, skipped messages).

    Stochastic agents (``stochastic = True``) and runs that fail to load are skipped with a
    message (``on_error="raise"`` raises ValueError instead).
    """
    from agents.checkpoint import CheckpointError
    from agents.registry import load_policy

    members, skipped = [], []
    for run in run_dirs:
        run = Path(run)
        try:
            policy = load_policy(str(run))
        # any failure (bad checkpoint, an algorithm module that does not import, ...) skips that run
        except (ValueError, CheckpointError, OSError, KeyError, RuntimeError, ImportError, AttributeError,
                TypeError) as exc:
            if on_error == "raise":
                raise ValueError(f"cannot load run {run}: {type(exc).__name__}: {exc}") from None
            skipped.append(f"{run}: {type(exc).__name__}: {exc}")
            continue
        if getattr(policy, "stochastic", False):
            msg = f"{run}: stochastic policy (the estimator's protocol needs deterministic ones)"
            if on_error == "raise":
                raise ValueError(msg)
            skipped.append(msg)
            continue
        algo = json.loads((run / "config.json").read_text())["algo"]
        members.append(ZooMember(name=f"{algo}:{run.name}", family="trained", spec=str(run), policy=policy))
    return members, skipped


def centre_action(name: str) -> np.ndarray:
    """The static action (12,) of a preset name or of ``degraded:T`` (production -> anti by T)."""
    if name.startswith("degraded:"):
        t = float(name.split(":", 1)[1])
        return InterpolatedPolicy(StaticPolicy.preset("production").action, ANTI_ACTION, t).action
    return StaticPolicy.preset(name).action


def build_zoo(seed: int = 0, n_random: int = 4, run_dirs: Sequence[str | Path] = (),
              families: Sequence[str] = FAMILIES) -> list[ZooMember]:
    """The zoo: presets, ``n_random`` random statics, noisy, degraded and corner members, trained runs.

    seed: the random statics and the hash-noise salts. run_dirs: trained run directories to
    include (loaded with :func:`trained_members`, which raises on a run that does not load:
    find them with :func:`find_run_dirs`). families: which families to build.
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown zoo families {unknown}; choose from {FAMILIES}")
    production = StaticPolicy.preset("production")
    members: list[ZooMember] = []
    if "preset" in families:
        for name in STATIC_PRESETS:
            members.append(ZooMember(f"static:{name}", "preset", f"static:{name}", StaticPolicy.preset(name)))
    if "random-static" in families:
        for i, action in enumerate(random_static_actions(n_random, seed)):
            members.append(ZooMember(f"random-static-{i}", "random-static",
                                     json.dumps({"action": np.round(action, 6).tolist()}),
                                     StaticPolicy(action, name=f"random-static-{i}")))
    if "noisy" in families:
        for i, (centre, std) in enumerate(NOISY_MEMBERS):
            salt = int(np.random.SeedSequence([int(seed), 0x0A15E, i]).generate_state(1)[0])
            name = f"noisy:{centre}:{std:g}"
            base = StaticPolicy(centre_action(centre), name=centre)
            members.append(ZooMember(name, "noisy", f"hash-noise({centre}, std={std:g}, salt={salt})",
                                     HashNoisePolicy(base, std, salt, name=name)))
    if "degraded" in families:
        for t in DEGRADED_STEPS:
            name = f"degraded:{t:g}"
            members.append(ZooMember(name, "degraded", f"(1-{t:g})*production + {t:g}*anti",
                                     InterpolatedPolicy(production.action, ANTI_ACTION, t, name=name)))
    if "corner" in families:
        for name, action in CORNER_ACTIONS.items():
            members.append(ZooMember(f"corner:{name}", "corner", json.dumps({"action": action.tolist()}),
                                     StaticPolicy(action, name=f"corner:{name}")))
    if "trained" in families and run_dirs:
        members.extend(trained_members(run_dirs, on_error="raise")[0])
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"zoo member names are not unique: {names}")
    return members


# ----------------------------------------------------------------------------------------
# out-of-distribution distance


def _nearest_distances(points: np.ndarray, reference: np.ndarray, k: int = 1) -> np.ndarray:
    from scipy.spatial import cKDTree

    tree = cKDTree(np.asarray(reference, dtype=np.float64))
    dist, _ = tree.query(np.asarray(points, dtype=np.float64), k=k)
    return dist if k == 1 else dist[:, k - 1]


def ood_threshold(logged_actions: np.ndarray, quantile: float = OOD_QUANTILE, max_points: int = 20000,
                  seed: int = 0) -> float:
    """The ``quantile`` of the logged actions' leave-one-out nearest-neighbour distances (action units).

    logged_actions: (N, 12). At most ``max_points`` actions (a seeded subsample) are used, so
    the threshold is computed on the same number of points as :func:`ood_distance` searches.
    """
    actions = np.asarray(logged_actions, dtype=np.float64)
    if actions.ndim != 2 or len(actions) < 2:
        raise ValueError(f"need at least 2 logged actions (N, dim), got shape {actions.shape}")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    actions = _subsample(actions, max_points, seed)
    loo = _nearest_distances(actions, actions, k=2)  # k=1 is the point itself
    return float(np.quantile(loo, quantile))


def ood_distance(policy: Policy, observations: np.ndarray, logged_actions: np.ndarray, max_points: int = 20000,
                 seed: int = 0, max_states: int = 5000) -> float:
    """Mean over ``observations`` (n, obs_dim) of the distance from ``policy.act(s)`` to the nearest logged action.

    logged_actions: (N, 12), subsampled (seeded) to ``max_points`` as in :func:`ood_threshold`;
    observations: at most ``max_states`` rows are used (a seeded subsample). Repeated actions
    (a static policy plays one) are searched once.
    """
    obs = _subsample(check_obs_batch(observations), max_states, seed + 1)
    actions = np.asarray(policy.act(obs), dtype=np.float64)
    unique, inverse = np.unique(actions, axis=0, return_inverse=True)
    dist = _nearest_distances(unique, _subsample(np.asarray(logged_actions, np.float64), max_points, seed))
    return float(dist[np.asarray(inverse).reshape(-1)].mean())


def _subsample(actions: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    if len(actions) <= max_points:
        return actions
    rows = np.sort(np.random.default_rng(seed).choice(len(actions), size=max_points, replace=False))
    return actions[rows]
