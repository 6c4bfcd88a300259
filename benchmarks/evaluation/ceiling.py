"""The ceiling: reference policies found by direct search in the simulator, and regret to them.

A real platform cannot search policies on its users' sessions with common random numbers;
the simulator can. :func:`find_ceiling` searches three families of
:class:`agents.reference.LinearFeaturePolicy` with CMA-ES (the ``cma`` package), each
stage starting from the previous stage's best:

1. ``static``: one weight vector for every user and request (12 parameters);
2. ``personalised``: static weights chosen per user, linear in the observation's profile
   and history features (``features``, fixed within a session);
3. ``scheduled``: ``personalised`` plus a quadratic schedule over the request index
   (``obs[session_stats + 0]`` = request / max_requests).

The objective of the search is the mean discounted session return (the quantity
:func:`benchmarks.evaluation.true_value.true_value` measures) of one fresh session of each
*search* user, all candidates with the same seed (common random numbers). The references
are then *judged* by their true value on the other half of the users (disjoint from the
search users by construction, :func:`split_users`), with ``n_rollouts_judge`` sessions per
user. The best judged reference is "the ceiling"; :func:`regret` is its true value minus a
policy's, paired over the same initial states and random numbers.

The references are not agents: they need the simulator to be found, learn nothing from
logged data, and only say how far a policy is from the best policy this search finds (a
lower bound on the true optimum's value). Results are cached by a hash of the configuration
(``ceiling.json`` and the per-stage files in the output directory; JSON only).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.reference import LinearFeaturePolicy
from agents.static import StaticPolicy
from mtf_env.config import SimConfig
from mtf_env.core import Simulator, obs_layout
from mtf_env.files import write_json
from mtf_env.rewards import reward_weights
from mtf_env.tasks import N_TASKS

from .stats import paired_difference
from .true_value import true_value

#: The search stages, in order (each starts from the previous stage's best).
STAGES: tuple[str, ...] = ("static", "personalised", "scheduled")
#: Observation blocks (``mtf_env.core.obs_layout`` names) the personalised references read.
DEFAULT_FEATURES: tuple[str, ...] = ("profile", "history_stats")
CEILING_NAME = "ceiling.json"
BEST_POLICY_NAME = "best_policy.json"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class CeilingConfig:
    """Settings of the direct search (the default fits a 2-core machine in minutes)."""

    n_users: int = 2000
    """Users in each half (search and judgement), disjoint."""
    seed: int = 0
    """Root seed: users, search rollouts, CMA-ES and judgement."""
    gamma: float = 0.95
    """Discount of the session return (as the true value)."""
    generations: tuple[int, int, int] = (25, 50, 30)
    """CMA-ES generations of the static, personalised and scheduled stages (0 skips a stage)."""
    popsize: int = 12
    """CMA-ES population per generation."""
    sigma0: float = 0.25
    """Initial CMA-ES step size (action units)."""
    n_rollouts_judge: int = 2
    """Sessions per judgement user."""
    features: tuple[str, ...] = DEFAULT_FEATURES
    """Observation blocks of the personalised stages."""
    block_size: int = 8192
    """Sessions simulated together (part of the random-number layout)."""

    def __post_init__(self) -> None:
        for name in ("n_users", "popsize", "n_rollouts_judge", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2 - (name == "block_size"):
                raise ValueError(f"ceiling {name} must be an integer >= 2, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"ceiling seed must be a non-negative integer, got {self.seed!r}")
        gens = tuple(int(g) for g in self.generations)
        if len(gens) != len(STAGES) or min(gens) < 0 or gens[0] < 1:
            raise ValueError(f"ceiling generations must be 3 integers >= 0 (the first >= 1), got {self.generations!r}")
        object.__setattr__(self, "generations", gens)
        object.__setattr__(self, "features", tuple(self.features))
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"ceiling gamma must lie in (0, 1], got {self.gamma}")
        if not self.sigma0 > 0:
            raise ValueError(f"ceiling sigma0 must be positive, got {self.sigma0}")


#: Named search budgets: ``small`` (about 5-10 minutes on 2 cores), ``large`` (a bigger search, hours on 2 cores).
CEILING_PRESETS: dict[str, CeilingConfig] = {
    "small": CeilingConfig(),
    "large": CeilingConfig(n_users=8000, generations=(60, 200, 100), popsize=24, n_rollouts_judge=4),
}


def config_hash(config: CeilingConfig, sim_config: SimConfig) -> str:
    """16 hex digits identifying the search (its settings and the world)."""
    text = json.dumps({"version": _CACHE_VERSION, "ceiling": asdict(config), "world": sim_config.to_json()},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_users(seed: int, n_users: int, n_population: int) -> tuple[np.ndarray, np.ndarray]:
    """(search ids (n,), judgement ids (n,)) int64: 2n distinct users, split in two halves."""
    if 2 * n_users > n_population:
        raise ValueError(f"the ceiling needs 2 x {n_users} distinct users; the world has {n_population}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCE11]))
    ids = rng.choice(n_population, size=2 * int(n_users), replace=False).astype(np.int64)
    return np.sort(ids[:n_users]), np.sort(ids[n_users:])


def _initial_observations(sim: Simulator, user_ids: np.ndarray) -> np.ndarray:
    """(n, obs_dim) the fresh-session observation of each user (a function of the user alone)."""
    state = sim.empty_state(len(user_ids))
    sim.start_sessions(state, np.arange(len(user_ids)), user_ids, np.random.default_rng(0))
    return np.asarray(state.obs, np.float64)


class _Family:
    """The parameter vector <-> policy map of one stage."""

    def __init__(self, stage: str, sim: Simulator, columns: np.ndarray, mean: np.ndarray, scale: np.ndarray):
        self.stage = stage
        self.obs_dim = sim.obs_dim
        self.columns, self.mean, self.scale = columns, mean, scale
        self.request_index = obs_layout(sim.config)["session_stats"].start
        f = len(columns) if stage != "static" else 0
        self.sizes = (N_TASKS, N_TASKS * f, 2 * N_TASKS if stage == "scheduled" else 0)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def step_scales(self) -> np.ndarray:
        """(dim,) relative CMA-ES step sizes: 1 for the bias and the schedule, ``1/sqrt(F)`` for the
        feature weights (so a step moves an action by about ``sigma0`` whatever the number of features)."""
        b, w, s = self.sizes
        return np.concatenate([np.ones(b), np.full(w, 1.0 / np.sqrt(max(w // N_TASKS, 1))), np.ones(s)])

    def policy(self, x: np.ndarray, name: str | None = None) -> LinearFeaturePolicy:
        b, w, s = np.split(np.asarray(x, np.float64), np.cumsum(self.sizes)[:-1])
        kw: dict[str, Any] = {}
        if self.sizes[1]:
            kw.update(features=self.columns, mean=self.mean, scale=self.scale, weights=w.reshape(N_TASKS, -1))
        if self.sizes[2]:
            kw.update(request_index=self.request_index, schedule=s.reshape(N_TASKS, 2))
        return LinearFeaturePolicy(self.obs_dim, b, name=name or f"reference:{self.stage}", **kw)

    def embed(self, previous: "_Family | None", x_prev: np.ndarray | None) -> np.ndarray:
        """The previous stage's best as a point of this family (new parameters at zero)."""
        x = np.zeros(self.dim)
        if previous is None or x_prev is None:
            return x
        parts = np.split(np.asarray(x_prev, np.float64), np.cumsum(previous.sizes)[:-1])
        mine = np.split(x, np.cumsum(self.sizes)[:-1])
        for a, b in zip(mine, parts):
            if len(b):
                a[:] = b
        return np.concatenate(mine)


def _search_stage(family: _Family, x0: np.ndarray, generations: int, config: CeilingConfig, sim: Simulator,
                  search_ids: np.ndarray, seed: int, weights: np.ndarray, show_progress: bool) -> dict[str, Any]:
    """CMA-ES on the mean discounted return of the search users (common random numbers); returns the best."""
    import cma

    from mtf_env.rollout import rollout_sessions

    def objective(x: np.ndarray) -> float:
        rolled = rollout_sessions(sim, family.policy(x), search_ids, seed=seed, gamma=config.gamma,
                                  batch_size=config.block_size)
        return float(rolled.returns(weights, discounted=True).mean())

    opts = {"seed": int(np.random.SeedSequence([config.seed, 0xC3A, STAGES.index(family.stage)]).generate_state(1)[0])
            % (2**31 - 1) + 1, "popsize": config.popsize, "maxiter": generations, "verbose": -9,
            "CMA_diagonal": family.dim > 60, "CMA_stds": family.step_scales()}
    start_value = objective(x0)
    es = cma.CMAEvolutionStrategy(np.asarray(x0, np.float64), config.sigma0, opts)
    best_x, best_value, trace = np.asarray(x0, np.float64), start_value, [start_value]
    bar = tqdm(total=generations, desc=f"ceiling/{family.stage}", unit="gen", disable=not show_progress)
    for _ in range(generations):
        xs = es.ask()
        values = [objective(x) for x in xs]
        es.tell(xs, [-v for v in values])
        k = int(np.argmax(values))
        if values[k] > best_value:
            best_x, best_value = np.asarray(xs[k], np.float64), values[k]
        trace.append(best_value)
        bar.update(1)
        bar.set_postfix(best=f"{best_value:.4f}")
    bar.close()
    return {"x": best_x.tolist(), "search_value": best_value, "start_value": start_value, "trace": trace,
            "evaluations": 1 + generations * config.popsize, "dim": family.dim}


@dataclass(frozen=True)
class Ceiling:
    """The result of :func:`find_ceiling` (``ceiling.json`` in its directory)."""

    directory: Path
    summary: dict[str, Any]

    @property
    def best(self) -> str:
        return self.summary["best"]

    @property
    def judge_ids(self) -> np.ndarray:
        return np.asarray(self.summary["users"]["judge_ids"], np.int64)

    @property
    def search_ids(self) -> np.ndarray:
        return np.asarray(self.summary["users"]["search_ids"], np.int64)

    def policy(self, name: str | None = None) -> LinearFeaturePolicy:
        """The reference policy ``name`` (default the best) as a :class:`~mtf_env.policy.Policy`."""
        name = self.best if name is None else name
        return LinearFeaturePolicy.load(self.directory / self.summary["references"][name]["file"])


def load_ceiling(directory: str | Path) -> Ceiling:
    """A ceiling written by :func:`find_ceiling` (ValueError naming the file otherwise)."""
    path = Path(directory) / CEILING_NAME
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"no ceiling at {directory} ({path}: {type(exc).__name__}); run `mtf-bench ceiling`") from None
    if not isinstance(summary, dict) or "best" not in summary or "references" not in summary:
        raise ValueError(f"{path} is not a ceiling result")
    return Ceiling(Path(directory), summary)


def find_ceiling(out: str | Path, config: CeilingConfig | None = None, sim_config: SimConfig | None = None,
                 show_progress: bool = True) -> Ceiling:
    """Search the references (module docstring) into ``out``; a cached result of the same hash is reused.

    Writes ``out/stages/STAGE-HASH.json`` after each stage (a rerun skips finished stages),
    ``out/STAGE.json`` (each reference, a :class:`LinearFeaturePolicy` file),
    ``out/best_policy.json`` and ``out/ceiling.json`` (the judgement: true values on the
    judgement users with SEs, paired differences to production and to the best reference).
    """
    config = config or CeilingConfig()
    sim_config = sim_config or SimConfig()
    out = Path(out)
    key = config_hash(config, sim_config)
    if (out / CEILING_NAME).is_file():
        cached = load_ceiling(out)
        if cached.summary.get("config_hash") == key:
            return cached
    t0 = time.perf_counter()
    sim = Simulator(sim_config)
    weights = reward_weights(sim_config.reward)
    search_ids, judge_ids = split_users(config.seed, config.n_users, sim.population.n_users)
    obs0 = _initial_observations(sim, search_ids)
    lay = obs_layout(sim_config)
    for name in config.features:
        if name not in lay:
            raise ValueError(f"ceiling features: unknown observation block {name!r}; choose from {sorted(lay)}")
    columns = np.concatenate([np.arange(lay[n].start, lay[n].stop) for n in config.features]).astype(np.int64)
    std = obs0[:, columns].std(axis=0)
    keep = std > 1e-6  # constant columns carry nothing
    columns, mean, scale = columns[keep], obs0[:, columns].mean(axis=0)[keep], std[keep]
    search_seed = int(np.random.SeedSequence([config.seed, 0x5EA]).generate_state(1)[0])
    judge_seed = int(np.random.SeedSequence([config.seed, 0x1D6]).generate_state(1)[0])
    (out / "stages").mkdir(parents=True, exist_ok=True)
    stages: dict[str, dict[str, Any]] = {}
    previous, x_prev = None, None
    for stage, generations in zip(STAGES, config.generations):
        if generations == 0:
            continue
        family = _Family(stage, sim, columns, mean, scale)
        stage_file = out / "stages" / f"{stage}-{key}.json"
        if stage_file.is_file():
            result = json.loads(stage_file.read_text())
        else:
            result = _search_stage(family, family.embed(previous, x_prev), generations, config, sim, search_ids,
                                   search_seed, weights, show_progress)
            write_json(stage_file, result)
        stages[stage] = result
        family.policy(result["x"], name=f"reference:{stage}").save(
            out / f"{stage}.json", reference=True, stage=stage, config_hash=key,
            note="a reference found by direct search in the simulator (mtf-bench ceiling), not an agent")
        previous, x_prev = family, np.asarray(result["x"])
    # judgement on the other half of the users
    arms = {"static:production": StaticPolicy.preset("production")}
    arms.update({f"reference:{s}": LinearFeaturePolicy.load(out / f"{s}.json") for s in stages})
    values = {name: true_value(p, judge_ids, gamma=config.gamma, n_rollouts=config.n_rollouts_judge,
                               seed=judge_seed, sim=sim, block_size=config.block_size)
              for name, p in tqdm(arms.items(), desc="ceiling/judge", disable=not show_progress)}
    best = max((n for n in values if n.startswith("reference:")), key=lambda n: values[n].value)
    prod = values["static:production"]
    references = {}
    for name, tv in values.items():
        row = {**tv.to_json(),
               "vs_production": paired_difference(tv.per_state, prod.per_state),
               "vs_best": paired_difference(tv.per_state, values[best].per_state)}
        if name.startswith("reference:"):
            stage = name.split(":", 1)[1]
            row.update(file=f"{stage}.json", search_value=stages[stage]["search_value"],
                       evaluations=stages[stage]["evaluations"], parameters=stages[stage]["dim"])
        references[name] = row
    LinearFeaturePolicy.load(out / f"{best.split(':', 1)[1]}.json").save(
        out / BEST_POLICY_NAME, reference=True, stage=best, config_hash=key,
        note="the best reference found by direct search in the simulator (mtf-bench ceiling), not an agent")
    summary = {
        "command": "mtf-bench ceiling", "config": asdict(config), "config_hash": key,
        "world": sim_config.to_json(), "best": best, "best_file": BEST_POLICY_NAME, "references": references,
        "users": {"search_ids": search_ids.tolist(), "judge_ids": judge_ids.tolist(), "disjoint": True,
                  "search_seed": search_seed, "judge_seed": judge_seed},
        "features": {"blocks": list(config.features), "columns": columns.tolist()},
        "wall_s": time.perf_counter() - t0,
        "note": "references found by direct search in the simulator with common random numbers; not agents",
    }
    write_json(out / CEILING_NAME, summary)
    (out / "ceiling.md").write_text(ceiling_markdown(summary))
    return load_ceiling(out)  # as the file holds it (JSON types), the same as a cached result


def ceiling_markdown(summary: dict[str, Any]) -> str:
    """The judged references as a Markdown table (true value, paired difference to production)."""
    cfg = summary["config"]
    lines = [f"Ceiling (references by direct search, not agents): {cfg['n_users']} search users, "
             f"{cfg['n_users']} disjoint judgement users x {cfg['n_rollouts_judge']} sessions, "
             f"generations {cfg['generations']}, population {cfg['popsize']}, seed {cfg['seed']}, "
             f"hash {summary['config_hash']}", "",
             "| policy | parameters | true value +- SE | vs production (95% CI) | vs best (95% CI) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in summary["references"].items():
        vp, vb = r["vs_production"], r["vs_best"]
        lines.append(f"| {name}{' (best)' if name == summary['best'] else ''} | {r.get('parameters', 0)} | "
                     f"{r['value']:.4f} +- {r['se']:.4f} | {vp['mean']:+.4f} [{vp['ci_low']:+.4f}, {vp['ci_high']:+.4f}]"
                     f" | {vb['mean']:+.4f} [{vb['ci_low']:+.4f}, {vb['ci_high']:+.4f}] |")
    return "\n".join(lines) + "\n"


def regret(ceiling_value, policy_value) -> dict[str, float]:
    """Regret to the ceiling: ``ceiling - policy`` true values, paired over the same initial states.

    Both are :class:`~benchmarks.evaluation.true_value.TrueValue` of the same user ids and seed
    (common random numbers); returns :func:`stats.paired_difference` (mean, CI) of the per-state means.
    """
    if ceiling_value.per_state.shape != policy_value.per_state.shape:
        raise ValueError("regret needs true values on the same initial states")
    return paired_difference(ceiling_value.per_state, policy_value.per_state)


def regret_to_ceiling(policies: dict[str, Any], ceiling: Ceiling, sim_config: SimConfig | None = None,
                      show_progress: bool = False) -> dict[str, dict[str, Any]]:
    """Each policy's true value on the ceiling's judgement users and its regret to the best reference.

    The same users, ``n_rollouts_judge`` and judgement seed as the ceiling's own judgement
    (common random numbers), so the regrets are paired. Refuses a world other than the ceiling's.
    Returns name -> ``{"true_value": {...}, "regret": paired_difference}``.
    """
    world = json.loads(json.dumps((sim_config or SimConfig()).to_json(), default=str))
    if world != ceiling.summary["world"]:
        raise ValueError(f"the ceiling in {ceiling.directory} was searched in another world")
    cfg = ceiling.summary["config"]
    sim = Simulator(sim_config or SimConfig())
    kw = dict(gamma=cfg["gamma"], n_rollouts=cfg["n_rollouts_judge"], seed=ceiling.summary["users"]["judge_seed"],
              sim=sim, block_size=cfg["block_size"])
    best = true_value(ceiling.policy(), ceiling.judge_ids, **kw)
    out = {}
    for name, policy in tqdm(policies.items(), desc="regret", disable=not show_progress):
        tv = true_value(policy, ceiling.judge_ids, **kw)
        out[name] = {"true_value": tv.to_json(), "regret": regret(best, tv)}
    return out


def with_generations(config: CeilingConfig, generations: tuple[int, int, int]) -> CeilingConfig:
    """``config`` with other generations per stage."""
    return replace(config, generations=tuple(generations))
