"""The paper's daily loop: explore around the deployed policy, retrain on the last days, deploy.

:func:`run_loop` runs ``rounds`` days. Day ``d`` serves ``users`` fresh sessions (one per
user) under exploration around the policy deployed after day ``d - 1`` (day 0: the
production weights) and logs them with :func:`mtf_env.dataset_collect.collect_dataset`:

* ``exploration="mixed"`` (default, the paper's Eq. 8): users with an even id get random
  exploration ``clip(N(0, random_std^2))``, users with an odd id get action noise
  ``clip(pi(s) + N(0, noise_std^2))`` around the deployed policy ``pi`` (equal groups,
  ``noise_std = 0.1``) -- :class:`agents.behaviour.MixedBehaviour` with the deployed policy
  as its target;
* ``exploration="random"``: random exploration for every user (``BatchRL-MTF-RE``).

It then trains the algorithm (from scratch, or with ``warm_start`` from the previous day's
networks: ``Agent.fit(init_from=...)``) on the transitions of the last ``window_days`` days
and deploys the result. The online methods (``bo``, ``es``) run the same days without logged
data: after day ``d`` they have served the same ``(d + 1) * users`` sessions, in
``online_rounds_per_day`` online rounds per day (BO: rounds of ``users / k`` users; ES:
iterations of ``2 * n_pairs`` candidates sharing ``users / k`` sessions).

Every round records (``round_DD/round.json``):

* ``true_value``: the deployed policy's true value (:func:`true_value`) from fixed held-out
  initial states (the ceiling's judgement users when a ceiling is given, which its search
  never saw; else users drawn with the loop's seed), the same users and seed every round;
* ``regret``: the best reference's true value minus the policy's, paired over those states
  (:func:`benchmarks.evaluation.ceiling.regret`), when a ceiling is given;
* ``ab_vs_bo``: A/B lifts of ADTime and UPIRate (95% CIs) over the BO arm *at the same
  cumulative traffic* -- the BO loop of the same seed, users and rounds in ``bo_dir``, run
  (or resumed) as needed;
* ``coverage``: what the training data's actions cover (per-dimension spread, the share of
  logged actions near production and near the ceiling's best static weights, L-inf <= 0.5);
* ``ope``: the Conservative-OPEstimator's estimate of the deployed policy on the training
  window (:func:`benchmarks.evaluation.estimators.fit_and_estimate`), next to the true value.

Resumable per round: a round whose ``round.json`` exists is skipped; an unfinished round's
directory is removed and the round redone. Every random stream derives from ``seed`` and
the day, so the same seed gives the same rounds. :func:`write_loop_report` writes
``report.json``, ``report.md`` and ``report.png``; :func:`compare_loops` puts several loops on
one figure of true value against cumulative users served.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mtf_env.config import SimConfig, make_config
from mtf_env.files import write_json
from mtf_env.transitions import TransitionArrays

#: Files of a loop directory.
LOOP_NAME, ROUND_NAME, BASELINE_NAME = "loop.json", "round.json", "baseline.json"
#: Exploration settings: ``mixed`` (random + action noise around the deployed policy), ``random`` only.
EXPLORATIONS = ("mixed", "random")
#: Online methods run in the loop without logged data.
ONLINE_ALGOS = ("bo", "es")
#: Default online rounds per day's traffic.
DEFAULT_ONLINE_ROUNDS = {"bo": 4, "es": 1}
_NEAR = 0.5  # L-inf radius of the coverage shares (action units)


@dataclass(frozen=True)
class LoopConfig:
    """Settings of one loop (see the module docstring)."""

    algo: str
    """Algorithm of :data:`agents.algos.ALGOS` (offline, or bo / es)."""
    rounds: int = 8
    """Days (rounds)."""
    users: int = 2000
    """Users (one fresh session each) served per day."""
    window_days: int = 3
    """Days of logged data the policy is trained on (the paper's three)."""
    warm_start: bool = False
    """Start each day's training from the previous day's networks."""
    exploration: str = "mixed"
    """``mixed`` or ``random`` (random exploration only: BatchRL-MTF-RE)."""
    noise_std: float = 0.1
    """Action-noise standard deviation around the deployed policy (the paper's N(0, 0.1))."""
    random_std: float = 0.5
    """Standard deviation of random exploration (``agents.behaviour.RANDOM_STD``)."""
    steps: int = 3000
    """Gradient steps per round (offline algorithms)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Agent config overrides (network sizes, batch size, ...)."""
    seed: int = 0
    """Root seed of every stream of the loop."""
    reward: Any = "default"
    """Reward the data is relabelled with (and the online methods optimise)."""
    eval_users: int = 1000
    """Held-out initial states of the true value."""
    eval_rollouts: int = 2
    """Sessions per held-out state."""
    ab_users: int = 2000
    """Users per arm of the A/B test against the BO arm (0: no A/B)."""
    ab_days: int = 1
    """Days of the A/B test."""
    online_rounds_per_day: int | None = None
    """BO / ES rounds per day's traffic (None: bo 4, es 1)."""
    ope_steps: int = 1000
    """Conservative-OPEstimator gradient steps (0: no OPE)."""
    ope_hidden: tuple[int, ...] = (64, 64)
    """Conservative-OPEstimator widths."""

    def __post_init__(self) -> None:
        from agents.algos import ALGOS

        if self.algo not in ALGOS or self.algo == "sac-online":
            raise ValueError(f"loop algo: choose one of {sorted(a for a in ALGOS if a != 'sac-online')}, "
                             f"got {self.algo!r}")
        for name, low in (("rounds", 1), ("users", 4), ("window_days", 1), ("steps", 1), ("seed", 0),
                          ("eval_users", 2), ("eval_rollouts", 1), ("ab_users", 0), ("ab_days", 1),
                          ("ope_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"loop {name} must be an integer >= {low}, got {value!r}")
        if self.exploration not in EXPLORATIONS:
            raise ValueError(f"loop exploration must be one of {EXPLORATIONS}, got {self.exploration!r}")
        for name in ("noise_std", "random_std"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"loop {name} must be positive, got {getattr(self, name)!r}")
        k = self.rounds_per_day
        if k < 1 or self.users // k < 2:
            raise ValueError(f"loop online_rounds_per_day must be >= 1 and leave >= 2 users per round, got {k}")
        object.__setattr__(self, "overrides", dict(self.overrides))
        object.__setattr__(self, "ope_hidden", tuple(int(h) for h in self.ope_hidden))

    @property
    def online(self) -> bool:
        return self.algo in ONLINE_ALGOS

    @property
    def rounds_per_day(self) -> int:
        if self.online_rounds_per_day is not None:
            return int(self.online_rounds_per_day)
        return DEFAULT_ONLINE_ROUNDS.get(self.algo, 1)

    def identity(self) -> dict[str, Any]:
        """What a resumed loop must share with the one on disk (everything but ``rounds``)."""
        d = asdict(self)
        d.pop("rounds")
        if self.online:  # the settings of logged data, training, OPE and the A/B test do not apply
            for key in ("window_days", "warm_start", "exploration", "noise_std", "random_std", "steps", "ab_users",
                        "ab_days", "ope_steps", "ope_hidden"):
                d.pop(key)
        if "ope_hidden" in d:
            d["ope_hidden"] = list(self.ope_hidden)
        return json.loads(json.dumps(d, default=str))

    def bo_arm(self) -> "LoopConfig":
        """The BO loop at the same traffic (same users per day, seed, reward and evaluation)."""
        return replace(self, algo="bo", overrides={}, warm_start=False, exploration="mixed",
                       online_rounds_per_day=None)


def _day_seed(seed: int, day: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed), 0x100B, int(day), int(stream)]).generate_state(1)[0] & 0x7FFFFFFF)


def concat_transitions(parts: list[TransitionArrays]) -> TransitionArrays:
    """One :class:`TransitionArrays` of several, in order."""
    names = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_starts")
    return TransitionArrays(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


def exploration_policy(config: LoopConfig, target, target_name: str, seed: int):
    """The day's behaviour policy: mixed around ``target`` or random only (module docstring)."""
    from agents.behaviour import GaussianBehaviour, MixedBehaviour
    from mtf_env.tasks import N_TASKS

    zero = np.zeros(N_TASKS, np.float32)
    if config.exploration == "random":
        return GaussianBehaviour("random", zero, config.random_std, seed, spec=f"random:{config.random_std:g}")
    s_random, s_noise = np.random.SeedSequence(seed).spawn(2)
    random_part = GaussianBehaviour("random", zero, config.random_std, s_random)
    noise_part = GaussianBehaviour("action-noise", target, config.noise_std, s_noise,
                                   spec=f"action-noise:{target_name}")
    return MixedBehaviour(random_part, noise_part, spec=f"mixed:{target_name}", seed=seed)


def action_coverage(actions: np.ndarray, best_static: np.ndarray | None) -> dict[str, Any]:
    """Spread of logged actions (N, 12) and the shares near production / the best static weights (L-inf <= 0.5)."""
    from mtf_env.fusion import PRODUCTION_ACTION

    out: dict[str, Any] = {"n_actions": int(len(actions)), "action_std_mean": float(actions.std(axis=0).mean()),
                           "share_near_production": float((np.abs(actions - PRODUCTION_ACTION).max(1) <= _NEAR).mean()),
                           "radius": _NEAR}
    if best_static is not None:
        out["share_near_best_static"] = float((np.abs(actions - best_static).max(1) <= _NEAR).mean())
    return out


class _Loop:
    """The state shared by the rounds of one loop (world, evaluation users, ceiling)."""

    def __init__(self, config: LoopConfig, out: Path, sim_config: SimConfig, ceiling_dir: Path | None,
                 bo_dir: Path | None, show_progress: bool):
        from mtf_env.core import Simulator

        from .ceiling import load_ceiling, split_users

        self.config, self.out, self.sim_config, self.show = config, out, sim_config, show_progress
        self.sim = Simulator(sim_config)
        self.ceiling = load_ceiling(ceiling_dir) if ceiling_dir is not None else None
        if self.ceiling is not None:
            if self.ceiling.summary["world"] != _world_json(sim_config):
                raise ValueError(f"--ceiling {ceiling_dir} was searched in another world than the loop's")
            ids = self.ceiling.judge_ids
            if config.eval_users > len(ids):
                raise ValueError(f"eval_users {config.eval_users} > the ceiling's {len(ids)} judgement users")
            self.eval_ids = ids[:config.eval_users]
        else:
            self.eval_ids = split_users(config.seed, config.eval_users, self.sim.population.n_users)[1]
        self.eval_seed = _day_seed(config.seed, 0, 0xE7A1)
        self.bo_dir = bo_dir
        self.best_static = None
        if self.ceiling is not None and "reference:static" in self.ceiling.summary["references"]:
            self.best_static = np.clip(self.ceiling.policy("reference:static").bias, -1, 1)

    def true_value(self, policy):
        from .true_value import true_value

        return true_value(policy, self.eval_ids, n_rollouts=self.config.eval_rollouts, seed=self.eval_seed,
                          sim=self.sim, reward=self.config.reward)

    def baseline(self) -> dict[str, Any]:
        """The production policy's and the ceiling's true values on the evaluation states (cached)."""
        path = self.out / BASELINE_NAME
        if path.is_file():
            return json.loads(path.read_text())
        from agents.static import StaticPolicy

        prod = self.true_value(StaticPolicy.preset("production"))
        out: dict[str, Any] = {"production": {**prod.to_json(), "per_state": prod.per_state.tolist()}}
        if self.ceiling is not None:
            ref = self.true_value(self.ceiling.policy())
            out["ceiling"] = {**ref.to_json(), "per_state": ref.per_state.tolist(), "reference": self.ceiling.best,
                              "directory": str(self.ceiling.directory)}
            out["production"]["regret"] = _regret(out["ceiling"]["per_state"], prod.per_state)
        write_json(path, out)
        return out


def _world_json(sim_config: SimConfig) -> dict[str, Any]:
    """The world as its JSON file holds it (tuples as lists), for comparing with a saved one."""
    return json.loads(json.dumps(sim_config.to_json(), default=str))


def _regret(ceiling_per_state, per_state) -> dict[str, float]:
    from .stats import paired_difference

    return paired_difference(np.asarray(ceiling_per_state), np.asarray(per_state))


def _check_loop_dir(out: Path, config: LoopConfig, sim_config: SimConfig) -> dict[str, Any]:
    """Refuse an ``out`` that holds something else; returns what ``loop.json`` will hold."""
    path = out / LOOP_NAME
    mine = {"config": config.identity(), "world": _world_json(sim_config)}
    if path.is_file():
        saved = json.loads(path.read_text())
        if {"config": saved.get("config"), "world": saved.get("world")} != mine:
            raise ValueError(f"{out} holds a loop with other settings; choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no loop ({LOOP_NAME}); choose another --out")
    return mine


def run_loop(config: LoopConfig, out: str | Path, sim_config: SimConfig | None = None,
             ceiling_dir: str | Path | None = None, bo_dir: str | Path | None = None,
             show_progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the loop in ``out``; returns the rounds' records (``round_DD/round.json``).

    ceiling_dir: a :func:`benchmarks.evaluation.ceiling.find_ceiling` result (regret and the
    held-out states); bo_dir: the BO loop to A/B test against (default ``out/bo-arm``; run or
    resumed here as far as needed; ignored for the online methods and when ``ab_users = 0``).
    """
    if sim_config is None:
        sim_config = make_config(reward=config.reward)
    out = Path(out)
    identity = _check_loop_dir(out, config, sim_config)
    if bo_dir is None and not config.online and config.ab_users > 0:
        bo_dir = out / "bo-arm"
    loop = _Loop(config, out, sim_config, Path(ceiling_dir) if ceiling_dir else None,
                 Path(bo_dir) if bo_dir else None, show_progress)  # checks the ceiling before writing
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / LOOP_NAME, {**identity, "rounds": config.rounds, "command": "mtf-bench loop"})
    loop.baseline()
    records = []
    for day in tqdm(range(config.rounds), desc=f"loop/{config.algo}", unit="day", disable=not show_progress):
        rdir = out / f"round_{day:02d}"
        if (rdir / ROUND_NAME).is_file():
            records.append(json.loads((rdir / ROUND_NAME).read_text()))
            continue
        if rdir.exists():  # an unfinished round: redo it from scratch
            shutil.rmtree(rdir)
        rdir.mkdir(parents=True)
        t0 = time.perf_counter()
        record = _online_round(loop, day, rdir) if config.online else _offline_round(loop, day, rdir)
        record["wall_s"] = time.perf_counter() - t0
        write_json(rdir / ROUND_NAME, record)
        records.append(record)
    write_loop_report(out)
    return records


def _window(day: int, window_days: int) -> list[int]:
    """The days whose data the policy of ``day`` trains on: the last ``window_days`` up to ``day``."""
    return list(range(max(0, day - window_days + 1), day + 1))


def window_data_dirs(loop_dir: str | Path, day: int | None = None) -> tuple[list[Path], list[int]]:
    """The logged datasets the policy of ``day`` (default: the last finished round) trained on, and their days.

    For the suite's ``loop`` data source: the training window (``window_days`` days ending at ``day``) of an
    offline loop. ValueError naming ``loop_dir`` if it is not a loop directory, is an online loop (BO and ES
    log no data), has no finished round, or ``day`` is not finished.
    """
    loop_dir = Path(loop_dir)
    if not (loop_dir / LOOP_NAME).is_file():
        raise ValueError(f"{loop_dir} is not a loop directory (no {LOOP_NAME}; write one with `mtf-bench loop`)")
    config = json.loads((loop_dir / LOOP_NAME).read_text())["config"]
    if config["algo"] in ONLINE_ALGOS:
        raise ValueError(f"{loop_dir} is a {config['algo']} loop, which logs no data; give an offline loop")
    finished = sorted(int(p.parent.name.removeprefix("round_")) for p in loop_dir.glob(f"round_*/{ROUND_NAME}"))
    if not finished:
        raise ValueError(f"{loop_dir} has no finished round yet")
    day = finished[-1] if day is None else int(day)
    if day not in finished:
        raise ValueError(f"round {day} of {loop_dir} is not finished (finished: {finished})")
    days = _window(day, int(config["window_days"]))
    return [loop_dir / f"round_{d:02d}" / "data" for d in days], days


def _deployed_policy(out: Path, day: int):
    """The policy deployed after ``day`` (a run directory in ``round_DD/policy``)."""
    from agents.registry import load_policy

    return load_policy(str(out / f"round_{day:02d}" / "policy"))


def _offline_round(loop: _Loop, day: int, rdir: Path) -> dict[str, Any]:
    from agents.static import StaticPolicy
    from mtf_env.dataset import CollectConfig, collect_dataset, load_dataset
    from mtf_env.dataset_collect import collection_seeds

    from .training import train_agent

    cfg, out = loop.config, loop.out
    if day == 0:
        target, target_name = StaticPolicy.preset("production"), "static:production"
    else:
        target, target_name = _deployed_policy(out, day - 1), f"round_{day - 1:02d}"
    collect = CollectConfig(policy=f"{cfg.exploration}", n_sessions=cfg.users, seed=_day_seed(cfg.seed, day, 1),
                            n_days=1, batch_size=min(8192, cfg.users))
    behaviour = exploration_policy(cfg, target, target_name, collection_seeds(collect.seed)[2])
    collect_dataset(rdir / "data", loop.sim_config, collect, behaviour, progress=False)
    window = _window(day, cfg.window_days)
    parts = []
    for d in window:
        ds = load_dataset(out / f"round_{d:02d}" / "data", reward=cfg.reward, split="all", verify_checksums=False)
        parts.append(ds.transitions())
    data = concat_transitions(parts)
    fit_kwargs: dict[str, Any] = {}
    if cfg.warm_start and day > 0:
        fit_kwargs["init_from"] = out / f"round_{day - 1:02d}" / "policy"
    result = train_agent(cfg.algo, rdir / "data", cfg.steps, _day_seed(cfg.seed, day, 2), rdir / "policy",
                         reward=cfg.reward, overrides=cfg.overrides, show_progress=False, data=data,
                         fit_kwargs=fit_kwargs or None)
    policy = result.agent
    record = _evaluate_round(loop, day, policy)
    record.update(window_days=window, transitions=len(data), train_wall_s=result.wall_s,
                  behaviour=behaviour.spec, coverage=action_coverage(data.actions, loop.best_static))
    if cfg.ope_steps > 0:
        record["ope"] = _ope(loop, day, data, policy)
    if cfg.ab_users > 0 and loop.bo_dir is not None:
        record["ab_vs_bo"] = _ab_vs_bo(loop, day, policy)
    return record


def _online_round(loop: _Loop, day: int, rdir: Path) -> dict[str, Any]:
    from .training import train_agent

    cfg, out = loop.config, loop.out
    k = cfg.rounds_per_day
    per_round = cfg.users // k
    overrides = dict(cfg.overrides)
    if cfg.algo == "bo":
        overrides["n_users"] = per_round
    else:  # es: 2 * n_pairs candidates share a round's sessions
        from agents.es import ESConfig

        n_pairs = int(overrides.get("n_pairs", ESConfig().n_pairs))
        overrides["n_users"] = max(2, per_round // (2 * n_pairs))
    result = train_agent(cfg.algo, None, (day + 1) * k, cfg.seed, out / "online-run", resume=True, reward=cfg.reward,
                         overrides=overrides, show_progress=False, sim_overrides=loop.sim_config.to_json())
    shutil.copytree(out / "online-run", rdir / "policy")
    budget = json.loads((out / "online-run" / "budget.json").read_text())
    record = _evaluate_round(loop, day, result.agent)
    record.update(online_rounds=(day + 1) * k, online_budget=budget, overrides=overrides)
    return record


def _evaluate_round(loop: _Loop, day: int, policy) -> dict[str, Any]:
    tv = loop.true_value(policy)
    base = loop.baseline()
    record: dict[str, Any] = {"day": day, "algo": loop.config.algo, "users_served": (day + 1) * loop.config.users,
                              "true_value": tv.to_json(), "per_state": tv.per_state.tolist(),
                              "vs_production": _regret(tv.per_state, base["production"]["per_state"])}
    if "ceiling" in base:
        record["regret"] = _regret(base["ceiling"]["per_state"], tv.per_state)
    return record


def _ope(loop: _Loop, day: int, data: TransitionArrays, policy) -> dict[str, Any]:
    from agents.ope import ConservativeFQEConfig

    from .estimators import fit_and_estimate

    starts = np.flatnonzero(data.episode_starts)
    rng = np.random.default_rng(_day_seed(loop.config.seed, day, 3))
    pick = np.sort(rng.choice(starts, size=min(1000, len(starts)), replace=False))
    cfg = ConservativeFQEConfig(n_steps=loop.config.ope_steps, hidden=loop.config.ope_hidden,
                                n_initial_states=len(pick), log_every=max(1, loop.config.ope_steps // 10))
    est = fit_and_estimate("conservative", cfg, _day_seed(loop.config.seed, day, 4), data,
                           np.asarray(data.observations[pick], np.float32), policy)
    est.pop("fit_stats", None)
    est["on"] = "the training window's session starts"
    return est


def _ab_vs_bo(loop: _Loop, day: int, policy) -> dict[str, Any]:
    from .ab import ab_test

    bo_cfg = replace(loop.config.bo_arm(), rounds=day + 1)
    run_loop(bo_cfg, loop.bo_dir, sim_config=loop.sim_config,
             ceiling_dir=loop.ceiling.directory if loop.ceiling is not None else None, show_progress=False)
    bo_policy = _deployed_policy(loop.bo_dir, day)
    ab = ab_test(bo_policy, {loop.config.algo: policy}, users=loop.config.ab_users, days=loop.config.ab_days,
                 seed=loop.eval_seed, sim=loop.sim, reward=loop.config.reward, show_progress=False,
                 control_name="bo")
    lifts = ab.lifts[loop.config.algo]
    return {"control": "bo at the same cumulative users", "bo_dir": str(loop.bo_dir), "users": loop.config.ab_users,
            "days": loop.config.ab_days,
            **{m: lifts[m].to_json() for m in ("adtime_s", "upi_rate", "session_return")}}


# ---------------------------------------------------------------------------------------------------- reports
def _rows(out: Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    loop_meta = json.loads((out / LOOP_NAME).read_text())
    base = json.loads((out / BASELINE_NAME).read_text()) if (out / BASELINE_NAME).is_file() else {}
    rows = [json.loads(p.read_text()) for p in sorted(out.glob(f"round_*/{ROUND_NAME}"))]
    return loop_meta, base, rows


def _method(meta: dict[str, Any]) -> str:
    """The loop's method without its seed: ``batchrl-mtf``, ``batchrl-mtf-RE``, ``td3+warm``, ``bo``."""
    c = meta["config"]
    name = c["algo"]
    if c["algo"] not in ONLINE_ALGOS and c.get("exploration") == "random":
        name += "-RE"
    if c.get("warm_start"):
        name += "+warm"
    return name


def _label(meta: dict[str, Any]) -> str:
    return f"{_method(meta)} (seed {meta['config']['seed']})"


def write_loop_report(out: str | Path) -> dict[str, Any]:
    """``report.json``, ``report.md`` and ``report.png`` (true value and regret per round) of a loop directory."""
    out = Path(out)
    meta, base, rows = _rows(out)
    slim = [{k: v for k, v in r.items() if k != "per_state"} for r in rows]
    report = {"label": _label(meta), "config": meta["config"], "world": meta["world"],
              "production": {k: v for k, v in base.get("production", {}).items() if k != "per_state"},
              "ceiling": {k: v for k, v in base.get("ceiling", {}).items() if k != "per_state"},
              "rounds": slim}
    write_json(out / "report.json", report)
    (out / "report.md").write_text(loop_markdown(report))
    _plot([report], out / "report.png")
    return report


def _ci(d: dict[str, float], fmt: str = "{:+.4f}") -> str:
    return f"{fmt.format(d['mean'])} [{fmt.format(d['ci_low'])}, {fmt.format(d['ci_high'])}]"


def _lift(d: dict[str, float]) -> str:
    return f"{d['lift_pct']:+.2f}% [{d['ci_low_pct']:+.2f}, {d['ci_high_pct']:+.2f}]"


def loop_markdown(report: dict[str, Any]) -> str:
    """One row per round: users served, true value, regret, lifts over BO, coverage, OPE."""
    c = report["config"]
    if c["algo"] in ONLINE_ALGOS:
        setting = (f"{c['users']} users/day served online in {c['online_rounds_per_day'] or DEFAULT_ONLINE_ROUNDS[c['algo']]}"
                   f" round(s) per day, overrides {c['overrides']}")
    else:
        setting = (f"{c['users']} users/day, window {c['window_days']} days, exploration {c['exploration']} "
                   f"(noise {c['noise_std']}, random {c['random_std']}), steps/round {c['steps']}, "
                   f"overrides {c['overrides']}, warm start {c['warm_start']}")
    lines = [f"## Loop {report['label']}", "",
             f"{setting}; true value on {c['eval_users']} held-out states x {c['eval_rollouts']} sessions "
             "(CRN, same states every round).", ""]
    prod, ceil = report.get("production") or {}, report.get("ceiling") or {}
    if prod:
        lines.append(f"Production: {prod['value']:.4f} +- {prod['se']:.4f}" +
                     (f"; ceiling ({ceil['reference']}): {ceil['value']:.4f} +- {ceil['se']:.4f}; production's "
                      f"regret {_ci(prod['regret'])}" if ceil else ""))
        lines.append("")
    lines += ["| day | users served | true value +- SE | vs production (95% CI) | regret to ceiling (95% CI) | "
              "ADTime vs BO | UPIRate vs BO | near best static | OPE estimate |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["rounds"]:
        tv = r["true_value"]
        ab = r.get("ab_vs_bo")
        cov = r.get("coverage", {})
        ope = r.get("ope")
        cells = [str(r["day"]), str(r["users_served"]), f"{tv['value']:.4f} +- {tv['se']:.4f}",
                 _ci(r["vs_production"]), _ci(r["regret"]) if "regret" in r else "-",
                 _lift(ab["adtime_s"]) if ab else "-", _lift(ab["upi_rate"]) if ab else "-",
                 f"{cov['share_near_best_static']:.4f}" if "share_near_best_static" in cov else "-",
                 f"{ope['value']:.4f}" if ope else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_markdown(reports: list[dict[str, Any]]) -> str:
    """One row per loop, one column per day: true value (regret to the ceiling, 95% CI half-width)."""
    days = max((len(r["rounds"]) for r in reports), default=0)
    lines = ["## True value per day (regret to the ceiling +- 95% CI half-width)", "",
             "| method | users/day | " + " | ".join(f"day {d}" for d in range(days)) + " |",
             "| --- | ---: |" + " ---: |" * days]
    for rep in reports:
        cells = []
        for r in rep["rounds"]:
            g = r.get("regret")
            cells.append(f"{r['true_value']['value']:.4f}" +
                         (f" ({g['mean']:+.4f} +- {(g['ci_high'] - g['ci_low']) / 2:.4f})" if g else ""))
        cells += ["-"] * (days - len(cells))
        lines.append(f"| {rep['label']} | {rep['config']['users']} | " + " | ".join(cells) + " |")
    prod = next((r.get("production") for r in reports if r.get("production")), None)
    ceil = next((r.get("ceiling") for r in reports if r.get("ceiling")), None)
    if prod:
        lines += ["", f"Production: {prod['value']:.4f} +- {prod['se']:.4f}" +
                  (f"; ceiling ({ceil['reference']}, a reference by direct search, not an agent): "
                   f"{ceil['value']:.4f} +- {ceil['se']:.4f}" if ceil else "") + "."]
    return "\n".join(lines) + "\n"


def pool_seeds(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method (loops of several seeds pooled), per day: the mean over seeds of the gain over production and
    of the regret to the ceiling, each with a 95% CI of that mean from the seeds' paired standard errors
    (``sqrt(sum se^2) / k``: the evaluation noise of the k seeds' own comparisons; k seeds are too few for a
    spread-over-seeds interval) and the per-seed means. A day counts only where every seed of the method has it."""
    from .stats import Z95

    groups: dict[str, list[dict[str, Any]]] = {}
    for rep in reports:
        groups.setdefault(_method({"config": rep["config"]}), []).append(rep)
    pooled: dict[str, dict[str, Any]] = {}
    for method, reps in groups.items():
        days = min(len(r["rounds"]) for r in reps)
        rows = []
        for d in range(days):
            row: dict[str, Any] = {"day": d, "users_served": reps[0]["rounds"][d]["users_served"]}
            for key in ("vs_production", "regret"):
                parts = [r["rounds"][d].get(key) for r in reps]
                if any(p is None for p in parts):
                    continue
                mean = float(np.mean([p["mean"] for p in parts]))
                se = float(np.sqrt(sum(p["se"] ** 2 for p in parts)) / len(parts))
                row[key] = {"mean": mean, "se": se, "ci_low": mean - Z95 * se, "ci_high": mean + Z95 * se,
                            "per_seed": [p["mean"] for p in parts]}
            rows.append(row)
        pooled[method] = {"seeds": sorted(int(r["config"]["seed"]) for r in reps), "days": rows}
    return pooled


def pooled_markdown(pooled: dict[str, dict[str, Any]]) -> str:
    """Two tables (gain over production, regret to the ceiling), one row per method, one column per day."""
    days = max((len(p["days"]) for p in pooled.values()), default=0)
    lines = []
    for key, title in (("vs_production", "Gain over production"), ("regret", "Regret to the ceiling")):
        lines += [f"## {title} per day, mean over seeds (95% CI from the seeds' paired SEs; per seed in brackets)",
                  "", "| method | seeds | " + " | ".join(f"day {d}" for d in range(days)) + " |",
                  "| --- | --- |" + " ---: |" * days]
        for method, p in pooled.items():
            cells = [f"{r[key]['mean']:+.3f} +- {(r[key]['ci_high'] - r[key]['ci_low']) / 2:.3f} ["
                     + ", ".join(f"{v:+.3f}" for v in r[key]["per_seed"]) + "]" if key in r else "-"
                     for r in p["days"]]
            cells += ["-"] * (days - len(cells))
            lines.append(f"| {method} | {','.join(map(str, p['seeds']))} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plot_pooled(pooled: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, ylabel in ((axes[0], "vs_production", "true value - production's (same states)"),
                            (axes[1], "regret", "regret to the ceiling")):
        for method, p in pooled.items():
            rows = [r for r in p["days"] if key in r]
            if not rows:
                continue
            x = np.array([r["users_served"] for r in rows])
            m = np.array([r[key]["mean"] for r in rows])
            lo, hi = np.array([r[key]["ci_low"] for r in rows]), np.array([r[key]["ci_high"] for r in rows])
            line, = ax.plot(x, m, marker="o", ms=3, label=f"{method} (seeds {','.join(map(str, p['seeds']))})")
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel("cumulative users served")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].set_title("gain over production, mean over seeds (95% CI)")
    axes[1].set_title("regret to the best reference, mean over seeds (95% CI)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot(reports: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_v, ax_r) = plt.subplots(1, 2, figsize=(12, 4.5))
    ceiling_drawn = False
    for rep in reports:
        rows = rep["rounds"]
        if not rows:
            continue
        x = [0] + [r["users_served"] for r in rows]
        prod = rep.get("production") or {}
        v = [prod.get("value", np.nan)] + [r["true_value"]["value"] for r in rows]
        se = [prod.get("se", 0.0)] + [r["true_value"]["se"] for r in rows]
        ax_v.errorbar(x, v, yerr=1.96 * np.asarray(se), marker="o", ms=3, capsize=2, label=rep["label"])
        if all("regret" in r for r in rows) and prod.get("regret"):
            reg = [prod["regret"]] + [r["regret"] for r in rows]
            m = np.array([g["mean"] for g in reg])
            ax_r.errorbar(x, m, yerr=[m - [g["ci_low"] for g in reg], [g["ci_high"] for g in reg] - m],
                          marker="o", ms=3, capsize=2, label=rep["label"])
        ceil = rep.get("ceiling") or {}
        if ceil and not ceiling_drawn:
            ax_v.axhline(ceil["value"], color="k", ls="--", lw=1, label=f"ceiling ({ceil['reference']})")
            ax_v.axhline(prod["value"], color="grey", ls=":", lw=1, label="production")
            ceiling_drawn = True
    ax_v.set_xlabel("cumulative users served")
    ax_v.set_ylabel("true value (discounted session return)")
    ax_v.set_title("true value of the deployed policy (95% CI)")
    ax_r.axhline(0.0, color="k", lw=0.8)
    ax_r.set_xlabel("cumulative users served")
    ax_r.set_ylabel("regret to the ceiling")
    ax_r.set_title("regret to the best reference (paired 95% CI)")
    for ax in (ax_v, ax_r):
        ax.grid(alpha=0.3)
    if ax_v.get_legend_handles_labels()[0]:
        ax_v.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare_loops(loop_dirs: list[str | Path], out: str | Path) -> dict[str, Any]:
    """Several loops on one figure and table: ``compare.json``, ``compare.md``, ``compare.png`` in ``out``."""
    reports = []
    for d in loop_dirs:
        if not (Path(d) / LOOP_NAME).is_file():
            raise ValueError(f"{d} holds no loop ({LOOP_NAME}); run `mtf-bench loop` first")
        reports.append(write_loop_report(d))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"loops": [{"dir": str(d), "label": r["label"], "rounds": [
        {k: r2[k] for k in ("day", "users_served", "true_value", "vs_production") if k in r2}
        | ({"regret": r2["regret"]} if "regret" in r2 else {})
        | ({"ab_vs_bo": r2["ab_vs_bo"]} if "ab_vs_bo" in r2 else {}) for r2 in r["rounds"]]}
        for d, r in zip(loop_dirs, reports)]}
    pooled = pool_seeds(reports)
    summary["pooled"] = pooled
    write_json(out / "compare.json", summary)
    (out / "compare.md").write_text(pooled_markdown(pooled) + "\n![pooled](compare_pooled.png)\n\n"
                                    + summary_markdown(reports) + "\n![loops](compare.png)\n\n"
                                    + "\n".join(loop_markdown(r) for r in reports))
    _plot(reports, out / "compare.png")
    _plot_pooled(pooled, out / "compare_pooled.png")
    return summary
