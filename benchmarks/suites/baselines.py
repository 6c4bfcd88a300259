"""The baselines suite: every registered method on one logged dataset, judged in the simulator.

::

    mtf-bench collect --preset small --out datasets/small
    mtf-bench suite baselines --data datasets/small --steps 2000 --out results/baselines

What it does (each step writes files; the figures are drawn from those files by
:mod:`benchmarks.suites.plots`, never by re-running training):

1. **Train** every algorithm of :data:`agents.registry.ALGOS` (or ``--algos``) with
   :func:`benchmarks.evaluation.training.train_agent` into ``OUT/runs/<algo>__<dataset>__<seed>``:
   offline methods on the dataset's *train* split (rewards relabelled with ``--reward``,
   discount 0.95 for all), online ones (``bo``, ``es``, ``sac-online``) in the dataset's own
   world (its ``SimConfig``), with no data. A finished run (its ``train.json`` has the
   requested steps) is loaded instead of retrained; an unfinished one is resumed (every
   agent resumes exactly, ``sac-online`` included).
2. **True value** of every method and of ``static:production`` (the target of the data's
   action-noise half): :func:`benchmarks.evaluation.true_value.true_value`, the expected discounted session
   return from the *test* split's initial states (held-out users, fresh sessions),
   ``--rollouts`` sessions each, with the same seed for every method (common random numbers).
3. **Q estimates** of the offline critics (the paper's Figure 5). Each critic is trained in
   ``--q-checkpoints`` resumed chunks (the agents resume bitwise, so the weights are those of
   one uninterrupted run) and after each chunk the suite records the critic's value of its own
   policy at the same initial states as the true value, ``mean_s Q(s0, pi(s0))`` (d3rlpy agents:
   ``predict_value``, the mean of the critic ensemble; BatchRL-MTF: ``Q1``, the critic its
   action selection uses): this trajectory, against the final policy's true value, is the
   comparable pair. Next to it, from each run's ``metrics.csv`` (a row every 100 steps):
   ``train/q_mean`` (Q at the logged actions of each minibatch) and, where logged,
   ``train/q_policy_mean`` (Q at the policy's own actions) -- averages over *all* states of the
   data, later requests of a session included, so they sit below a value from initial states.
   An estimate far above the true value is the extrapolation error the paper shows for TD3.
4. **Online A/B test** (:func:`benchmarks.evaluation.ab.ab_test`): ``--users`` users x ``--days`` days of
   the day model, BO as the control as in the paper's Table 1, paired lifts of ADTime and
   UPIRate (and the session returns) with 95% CIs, every method and production as treatments.
5. **Action distributions** (the paper's Figure 6): every method's actions on ``--action-states``
   states drawn from the test split's requests, next to the logged actions of those requests.

Budget on this machine (2 shared cores; documented in the results): offline methods train
``--steps`` gradient steps (default 2,000; the paper trains 300,000) with 128-128 networks for
every actor, critic and value net (BatchRL-MTF's VAE 256-256) -- ``--hidden 400,300
--vae-hidden 750,750 --steps 300000`` is the paper scale; the online methods get
:data:`ONLINE_STEPS` (BO 60 rounds of 2,000 users, ES 100 iterations of 16 candidates x 500
users, SAC 40,000 env steps), and their online budgets (sessions and requests served) are
reported next to their results.

Writes into ``OUT``: ``results.json`` and ``results.md`` (the table), ``ab.json`` / ``ab.md``,
``q_curves.json``, ``actions.npz`` (``names`` (m,), ``actions`` (m, n, 12) in [-1, 1],
``state_index`` (n,); the first name is ``data``, the logged actions), and the figures
``fig5_q_vs_true.png`` and ``fig6_actions.png``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

#: Order of the methods in the tables and figures; algorithms not listed follow in name order.
SUITE_ORDER = ("bo", "es", "sac-online", "batchrl-mtf", "td3", "uwac-td3", "cql-sac", "td3-bc", "iql", "bc")
#: The control of the A/B test (the paper reports lifts over BO).
CONTROL = "bo"
#: The reference policy evaluated next to the trained methods.
REFERENCE = "static:production"
#: Budgets of the online methods in their own units (``fit``'s ``n_steps``).
ONLINE_STEPS: dict[str, int] = {"bo": 60, "es": 100, "sac-online": 40_000}
#: What one step of each method is.
STEP_UNITS: dict[str, str] = {"bo": "online rounds", "es": "ES iterations", "sac-online": "env steps"}
#: Hidden widths of every offline network in this suite (the paper's BCQ uses 400-300).
DEFAULT_HIDDEN = (128, 128)
#: BatchRL-MTF's VAE widths in this suite (the paper's BCQ uses 750-750).
DEFAULT_VAE_HIDDEN = (256, 256)
#: Metric columns of the Q curves (metrics.csv).
Q_COLUMNS = ("train/q_mean", "train/q_policy_mean")
#: Per offline critic, ``{step: mean Q(s0, pi(s0))}`` at the training checkpoints (in its run directory).
Q_TRAJECTORY_NAME = "q_initial_states.json"
#: Steps per metrics row of the offline methods (finer Q curves than the agents' default 1000).
OFFLINE_LOG_EVERY = 100


def suite_algos(selected: Sequence[str] | None = None) -> list[str]:
    """The methods to run, in table order (all of ``ALGOS`` by default); unknown names raise ValueError."""
    from agents.registry import ALGOS

    names = list(ALGOS) if selected is None else list(selected)
    unknown = sorted(set(names) - set(ALGOS))
    if unknown:
        raise ValueError(f"unknown algorithm(s) {unknown}; choose from {sorted(ALGOS)}")
    order = {name: i for i, name in enumerate(SUITE_ORDER)}
    return sorted(dict.fromkeys(names), key=lambda n: (order.get(n, len(order)), n))


def is_online(algo: str) -> bool:
    from agents.registry import algo_class

    return not bool(getattr(algo_class(algo), "requires_data", True))


def network_overrides(algo: str, hidden: Sequence[int], vae_hidden: Sequence[int]) -> dict[str, Any]:
    """The suite's network widths for an offline method's config (nothing for online methods)."""
    from agents.registry import algo_class
    from benchmarks.evaluation.configs import config_class

    if is_online(algo):
        return {}
    fields = {f.name for f in dataclasses.fields(config_class(algo_class(algo)))}
    out: dict[str, Any] = {}
    if "hidden" in fields:  # d3rlpy agents: every encoder
        out["hidden"] = tuple(hidden)
    for name in ("actor_hidden", "critic_hidden"):  # BatchRL-MTF
        if name in fields:
            out[name] = tuple(hidden)
    if "vae_hidden" in fields:
        out["vae_hidden"] = tuple(vae_hidden)
    return out


def read_q_curve(run_dir: Path) -> dict[str, list[float]]:
    """``step`` and the :data:`Q_COLUMNS` present in a run's ``metrics.csv`` (empty if it logs no Q)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    present = [c for c in Q_COLUMNS if rows and c in rows[0]]
    if not present:
        return {}
    curve = {"step": [int(float(r["step"])) for r in rows]}
    for col in present:
        curve[col.split("/")[-1]] = [float(r[col]) if r[col] not in ("", None) else float("nan") for r in rows]
    return curve


def policy_q_values(agent: Any, obs: np.ndarray, chunk: int = 1024) -> np.ndarray | None:
    """The agent's critic's value of its own policy per state, ``Q(s, pi(s))`` (n,) float64 over ``obs`` (n, obs_dim).

    ``agent.predict_value(obs)``: the d3rlpy agents' critic-ensemble mean, BatchRL-MTF's ``Q1``
    (the critic its action selection uses). None for an agent without a critic.
    """
    if getattr(agent, "has_critic", True) and callable(getattr(agent, "predict_value", None)):
        return np.concatenate([np.asarray(agent.predict_value(obs[i:i + chunk]), np.float64).ravel()
                               for i in range(0, len(obs), chunk)])
    return None


def policy_value_estimate(agent: Any, obs: np.ndarray, chunk: int = 1024) -> float | None:
    """The agent's critic's value of its own policy, ``mean_s Q(s, pi(s))`` over ``obs`` (n, obs_dim); None without a critic."""
    values = policy_q_values(agent, obs, chunk)
    return None if values is None else float(np.mean(values))


def _json_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}


def train_method(algo: str, data_dir: Path, data, steps: int, seed: int, run_dir: Path, reward: Any,
                 overrides: Mapping[str, Any], show_progress: bool) -> tuple[Any, dict[str, Any]]:
    """Train (or load a finished run of) one method; returns the agent and its training record."""
    from agents.registry import algo_class
    from benchmarks.evaluation.training import TRAIN_LOG_NAME, train_agent

    log_path = run_dir / TRAIN_LOG_NAME
    reused = log_path.is_file() and _steps_done(run_dir) == int(steps)
    if reused:
        agent = algo_class(algo).load(run_dir)
    else:
        resume = run_dir.is_dir() and any(run_dir.iterdir())
        online = is_online(algo)
        agent = train_agent(algo, data_dir, int(steps), int(seed), run_dir, resume=resume, reward=reward,
                            overrides=dict(overrides), show_progress=show_progress, data=None if online else data,
                            fit_kwargs=None if online else {"log_every": OFFLINE_LOG_EVERY}).agent
    log = json.loads(log_path.read_text())
    wall = float(log.get("wall_s") or 0.0) + sum(float(c.get("wall_s") or 0.0) for c in log.get("previous_calls", []))
    return agent, {"run_dir": str(run_dir), "steps": int(steps), "wall_s": wall,
                   "steps_per_s": int(steps) / wall if wall > 0 else None, "reused": reused,
                   "overrides": log.get("overrides", _json_overrides(overrides))}


def _steps_done(run_dir: Path) -> int:
    """Steps of the last finished training call of a run (0 if none)."""
    from benchmarks.evaluation.training import TRAIN_LOG_NAME

    path = Path(run_dir) / TRAIN_LOG_NAME
    return int(json.loads(path.read_text()).get("steps", 0)) if path.is_file() else 0


def has_critic(algo: str) -> bool:
    from agents.registry import algo_class

    return not is_online(algo) and bool(getattr(algo_class(algo), "has_critic", True))


def train_with_q_checkpoints(algo: str, data_dir: Path, data, steps: int, seed: int, run_dir: Path, reward: Any,
                             overrides: Mapping[str, Any], initial_obs: np.ndarray, n_checkpoints: int,
                             show_progress: bool) -> tuple[Any, dict[str, Any], dict[int, float | None]]:
    """Train an offline critic in ``n_checkpoints`` resumed chunks, recording ``mean Q(s0, pi(s0))`` after each.

    The agents resume bitwise, so the final weights equal one uninterrupted run's. The trajectory
    ``{step: estimate}`` is kept in the run directory (:data:`Q_TRAJECTORY_NAME`), so a finished
    run is not retrained to draw it again.
    """
    from mtf_env.files import write_json

    path = run_dir / Q_TRAJECTORY_NAME
    trajectory = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    targets = sorted({max(1, round(steps * i / n_checkpoints)) for i in range(1, n_checkpoints + 1)})
    agent = record = None
    for target in targets:
        if target < steps and target <= _steps_done(run_dir):
            continue  # an earlier call of the suite got past this checkpoint
        agent, record = train_method(algo, data_dir, data, target, seed, run_dir, reward, overrides, show_progress)
        if target not in trajectory:
            trajectory[target] = policy_value_estimate(agent, initial_obs)
            write_json(path, {str(k): v for k, v in sorted(trajectory.items())})
    return agent, record, dict(sorted(trajectory.items()))


def _online_budget(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / "budget.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run(data: str | Path, out: str | Path, steps: int = 2000, seed: int = 0, algos: Sequence[str] | None = None,
        online_steps: Mapping[str, int] | None = None, hidden: Sequence[int] = DEFAULT_HIDDEN,
        vae_hidden: Sequence[int] = DEFAULT_VAE_HIDDEN, overrides: Mapping[str, Mapping[str, Any]] | None = None,
        rollouts: int = 2, users: int = 10_000, days: int = 1, action_states: int = 2000, q_checkpoints: int = 10,
        reward: str = "default", gamma: float = 0.95, show_progress: bool = True, plots: bool = True,
        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train -> true values -> Q estimates -> A/B test -> actions (see the module docstring); returns results.json's dict.

    overrides: per algorithm, config overrides applied after the suite's network widths
    (``{"bo": {"n_users": 500}}``); online_steps: per online algorithm, its ``n_steps``
    (default :data:`ONLINE_STEPS`, falling back to ``steps``); log: called with a line of text
    at each phase (None: silent).
    """
    import torch

    from mtf_env.files import write_json
    from agents.static import StaticPolicy
    from mtf_env.core import Simulator
    from mtf_env.dataset import load_dataset

    from benchmarks.evaluation.ab import ab_test
    from benchmarks.evaluation.true_value import true_value

    data, out = Path(data), Path(out)
    names = suite_algos(algos)
    online_steps = {**ONLINE_STEPS, **dict(online_steps or {})}
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"overrides for algorithms not in this run: {unknown}")
    for name, value in (("steps", steps), ("rollouts", rollouts), ("users", users), ("days", days),
                        ("action_states", action_states), ("q_checkpoints", q_checkpoints)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    seconds: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    say = log if log is not None else (lambda text: None)

    # ---- 1. train (offline critics in chunks, with their value estimate at the test initial states)
    test = load_dataset(data, reward=reward, split="test", verify_checksums=False, validate="structure")
    initial_obs = test.initial_observations()
    train = load_dataset(data, reward=reward, split="train")
    transitions = train.transitions()
    agents: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {}
    trajectories: dict[str, dict[int, float | None]] = {}
    t0 = time.perf_counter()
    for algo in names:
        n_steps = online_steps.get(algo, steps) if is_online(algo) else steps
        algo_overrides = {**network_overrides(algo, hidden, vae_hidden), **overrides.get(algo, {})}
        run_dir = out / "runs" / f"{algo}__{data.resolve().name}__{seed}"
        say(f"{algo}: {n_steps} {STEP_UNITS.get(algo, 'gradient steps')} into {run_dir}")
        if has_critic(algo):
            agents[algo], records[algo], trajectories[algo] = train_with_q_checkpoints(
                algo, data, transitions, n_steps, seed, run_dir, reward, algo_overrides, initial_obs, q_checkpoints,
                show_progress)
        else:
            agents[algo], records[algo] = train_method(algo, data, transitions, n_steps, seed, run_dir, reward,
                                                       algo_overrides, show_progress)
        say(f"{algo}: {'loaded the finished run' if records[algo]['reused'] else 'trained'} "
            f"({records[algo]['wall_s'] or 0:.0f} s of training)")
    seconds["train"] = time.perf_counter() - t0
    del transitions

    # ---- 2. true values (same seed for every policy: common random numbers)
    sim = Simulator(test.config)
    policies = {**agents, REFERENCE: StaticPolicy.preset("production")}
    say(f"true values of {len(policies)} policies")
    t0 = time.perf_counter()
    values = {name: true_value(policy, test, gamma=gamma, n_rollouts=rollouts, seed=seed, reward=reward, sim=sim,
                               show_progress=show_progress) for name, policy in policies.items()}
    seconds["true_value"] = time.perf_counter() - t0

    # ---- 3. Q estimates of the offline critics
    q_curves, q_summary = {}, {}
    for algo in names:
        if not has_critic(algo):
            continue
        curve = read_q_curve(Path(records[algo]["run_dir"]))
        trajectory = trajectories[algo]
        estimate = trajectory[max(trajectory)]
        q_curves[algo] = {**curve, "true_value": values[algo].value, "q_policy_at_initial_states": estimate,
                          "q_initial_states_step": list(trajectory), "q_initial_states": list(trajectory.values())}
        q_summary[algo] = {
            "q_mean_final": curve["q_mean"][-1] if "q_mean" in curve else None,
            "q_mean_over_training": float(np.nanmean(curve["q_mean"])) if "q_mean" in curve else None,
            "q_policy_mean_final": curve["q_policy_mean"][-1] if "q_policy_mean" in curve else None,
            "q_policy_at_initial_states": estimate,
            "overestimate_at_initial_states": None if estimate is None else estimate - values[algo].value,
        }
    write_json(out / "q_curves.json", q_curves)

    # ---- 4. A/B test against BO
    control = CONTROL if CONTROL in policies else REFERENCE
    say(f"A/B test against {control}: {users} users x {days} day(s) per arm")
    t0 = time.perf_counter()
    ab = ab_test(policies[control], {k: v for k, v in policies.items() if k != control}, users=users, days=days,
                 seed=seed, sim=sim, reward=reward, gamma=gamma, show_progress=show_progress, control_name=control)
    ab.write(out)
    seconds["ab_test"] = time.perf_counter() - t0

    # ---- 5. actions on test-split states against the logged actions
    t0 = time.perf_counter()
    obs, logged = test.observations, test.actions
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAC7]))
    index = np.sort(rng.choice(len(obs), size=min(action_states, len(obs)), replace=False))
    action_names = ["data", *policies]
    actions = np.stack([logged[index].astype(np.float32)] + [policies[n].act(obs[index]) for n in policies])
    np.savez_compressed(out / "actions.npz", names=np.array(action_names), actions=actions, state_index=index)
    seconds["actions"] = time.perf_counter() - t0

    # ---- results
    methods: dict[str, Any] = {}
    for name in [*names, REFERENCE]:
        rec = records.get(name, {})
        lifts = ab.lifts.get(name)
        methods[name] = {
            "kind": "reference" if name == REFERENCE else ("online" if is_online(name) else "offline"),
            "steps": rec.get("steps"),
            "step_unit": STEP_UNITS.get(name, "gradient steps") if name != REFERENCE else None,
            "run_dir": rec.get("run_dir"),
            "train_wall_s": rec.get("wall_s"),
            "steps_per_s": rec.get("steps_per_s"),
            "reused_run": rec.get("reused"),
            "overrides": rec.get("overrides"),
            "online_budget": _online_budget(Path(rec["run_dir"])) if name in records and is_online(name) else None,
            "true_value": values[name].to_json(),
            "true_value_minus_production": float(values[name].value - values[REFERENCE].value),
            "q": q_summary.get(name),
            "lifts_vs_control": {m: lift.to_json() for m, lift in lifts.items()} if lifts else None,
        }
    result = {
        "suite": "baselines", "data": str(data), "seed": seed, "reward": reward, "gamma": gamma,
        "control": control, "methods": methods,
        "settings": {"offline_steps": steps, "online_steps": {k: online_steps.get(k) for k in names if is_online(k)},
                     "hidden": list(hidden), "vae_hidden": list(vae_hidden), "rollouts": rollouts,
                     "test_initial_states": int(len(test.initial_user_ids)), "ab_users": users, "ab_days": days,
                     "action_states": int(len(index)), "q_checkpoints": q_checkpoints,
                     "offline_log_every": OFFLINE_LOG_EVERY,
                     "overrides": {k: _json_overrides(v) for k, v in overrides.items()}},
        "seconds": seconds, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
    }
    result["order"] = list(methods)  # table order (the JSON objects are written with sorted keys)
    write_json(out / "results.json", result)
    (out / "results.md").write_text(to_markdown(result))
    if plots:
        from .plots import plot_action_distributions, plot_q_vs_true

        plot_q_vs_true(out)
        plot_action_distributions(out)
    return result


def _fmt(value: Any, spec: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "--"
    return spec.format(value)


def _lift(lifts: Mapping[str, Any] | None, metric: str) -> str:
    if not lifts:
        return "(control)"
    lift = lifts[metric]
    return f"{lift['lift_pct']:+.2f}% +- {lift['half_width_pct']:.2f}"


def to_markdown(result: Mapping[str, Any]) -> str:
    """The comparison table (Table 1 with true values and Figure 5's numbers) and the budgets."""
    s, methods = result["settings"], result["methods"]
    lines = [
        f"## Baselines on `{result['data']}` (seed {result['seed']}, reward `{result['reward']}`, gamma "
        f"{result['gamma']})", "",
        f"True value: discounted session return from the {s['test_initial_states']} test-split initial states x "
        f"{s['rollouts']} rollouts (common random numbers). Q at s0: the critic's `mean Q(s0, pi(s0))` over the same "
        f"states; Q over training: mean of `train/q_mean` (Q at the logged actions) over the logged windows. Lifts: "
        f"A/B test of {s['ab_users']} users x {s['ab_days']} day(s) against `{result['control']}` (95% CI half-width).",
        "",
        "| Method | Kind | Training | Online budget (sessions / requests) | True value +- SE | vs production | "
        "Q at s0 | Q over training | ADTime lift | UPIRate lift |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in methods.items():
        tv = m["true_value"]
        budget = m["online_budget"]
        budget_cell = f"{budget['sessions']:,} / {budget['requests']:,}" if budget else "--"
        training = f"{m['steps']:,} {m['step_unit']}" if m["steps"] is not None else "--"
        q = m["q"] or {}
        lifts = m["lifts_vs_control"]
        lines.append(
            f"| {name} | {m['kind']} | {training} | {budget_cell} | {tv['value']:.4f} +- {tv['se']:.4f} | "
            f"{m['true_value_minus_production']:+.4f} | {_fmt(q.get('q_policy_at_initial_states'))} | "
            f"{_fmt(q.get('q_mean_over_training'))} | {_lift(lifts, 'adtime_s')} | {_lift(lifts, 'upi_rate')} |")
    lines += [
        "", f"Offline methods: {s['offline_steps']:,} gradient steps, hidden {tuple(s['hidden'])} for every network "
        f"(BatchRL-MTF's VAE {tuple(s['vae_hidden'])}); the paper trains 300,000 steps with 400-300 networks. "
        f"Online budgets: {s['online_steps']}.",
    ]
    return "\n".join(lines) + "\n"


def parse_method_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["bo:n_users=500", ...]`` -> ``{"bo": {"n_users": 500}}``; ValueError for an item without ``ALGO:``."""
    from benchmarks.evaluation.configs import parse_key_values

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        algo, sep, rest = item.partition(":")
        if not sep or not algo:
            raise ValueError(f"--set expects ALGO:KEY=VALUE, got {item!r}")
        out.setdefault(algo, {}).update(parse_key_values([rest]))
    return out
