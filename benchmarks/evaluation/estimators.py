"""Running an off-policy estimator: fit it on a logged dataset's test split and estimate policies' values.

:func:`load_test_split` loads a dataset's test split (the paper's last 10% of sessions, its
offline evaluation data) and draws the session-start states the value averages over;
:func:`fit_and_estimate` fits one estimator (:class:`agents.ope.ConservativeFQE`, or
d3rlpy's FQE) for one policy and estimates ``V(pi_e)``, the mean of ``Q(s0, pi_e(s0))`` over
those states, with a percentile bootstrap interval over the states (it reflects which states
were drawn, not the error of the fitted Q-function). :func:`run_ope` does it for several
policy specs and writes a JSON file and a Markdown table (:func:`markdown_table`); every
spec and the dataset are checked before any fitting starts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtf_env.files import write_json

#: Estimator names this module fits (``d3rlpy-fqe`` is d3rlpy's FQE, alpha_c must be 0).
ESTIMATORS: tuple[str, ...] = ("conservative", "d3rlpy-fqe")


@dataclass(frozen=True)
class TestSplit:
    """A dataset's test split prepared for the estimator.

    data: TransitionArrays of the split (rewards relabelled with ``reward``);
    initial_observations: (n, obs_dim) float32 session-start states the value averages over;
    initial_user_ids: (n,) int64 their users (a fresh session of user ``u`` starts in exactly the
    logged state, so :func:`benchmarks.evaluation.true_value.true_value` on these ids evaluates the same states);
    dataset: the loaded :class:`mtf_env.dataset.Dataset`.
    """

    data: Any
    initial_observations: np.ndarray
    initial_user_ids: np.ndarray
    dataset: Any


def load_test_split(data_dir: str | Path, n_initial: int, seed: int, reward: Any = "default",
                    split: str = "test") -> TestSplit:
    """Load ``split`` of the dataset in ``data_dir`` and draw ``n_initial`` initial states.

    The states are the first requests of ``min(n_initial, n_sessions)`` sessions drawn without
    replacement with ``default_rng(seed)`` (all sessions when there are no more than
    ``n_initial``), in session order. Raises ValueError (``DatasetError``) for a missing or
    invalid dataset.
    """
    from mtf_env.dataset import load_dataset

    if not isinstance(n_initial, (int, np.integer)) or n_initial < 1:
        raise ValueError(f"the number of initial states must be a positive integer, got {n_initial!r}")
    path = Path(data_dir)
    if not path.is_dir():
        raise ValueError(f"dataset directory {path} does not exist (collect one with `mtf-bench collect`)")
    dataset = load_dataset(path, reward=reward, split=split)
    data = dataset.transitions()
    starts = np.flatnonzero(np.asarray(data.episode_starts, dtype=bool))
    user_ids = np.asarray(dataset.initial_user_ids, dtype=np.int64)
    if len(starts) != len(user_ids):
        raise ValueError(f"{path}: {len(starts)} session starts in the requests but {len(user_ids)} sessions")
    sessions = np.arange(len(starts))
    if n_initial < len(starts):
        sessions = np.sort(np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E55])).choice(
            len(starts), size=int(n_initial), replace=False))
    return TestSplit(data=data, initial_observations=np.asarray(data.observations[starts[sessions]], np.float32),
                     initial_user_ids=user_ids[sessions], dataset=dataset)


def make_estimator(kind: str, config, seed: int):
    """A fresh estimator: ``conservative`` (:class:`~agents.ope.ConservativeFQE`, any alpha_c) or
    ``d3rlpy-fqe`` (:class:`~agents.ope.D3rlpyFQE`, alpha_c must be 0)."""
    from agents.ope import ConservativeFQE, D3rlpyFQE

    if kind == "conservative":
        return ConservativeFQE(config, seed=seed)
    if kind == "d3rlpy-fqe":
        return D3rlpyFQE(config, seed=seed)
    raise ValueError(f"unknown estimator {kind!r}; choose one of {ESTIMATORS}")


def fit_and_estimate(kind: str, config, seed: int, data, initial_observations: np.ndarray, policy,
                     show_progress: bool = False) -> dict[str, Any]:
    """Fit one estimator on ``data`` for ``policy`` and estimate V(pi_e) on ``initial_observations``.

    Returns the estimate's summary (``value``, ``ci_low``, ``ci_high``, ``ci_level``,
    ``std_error``, ``n_states``, ``n_bootstrap``; no per-state values) plus ``fit_s`` (wall
    seconds of fit + estimate) and the estimator's ``fit_stats``.
    """
    t0 = time.perf_counter()
    est = make_estimator(kind, config, seed)
    est.fit(data, policy, show_progress=show_progress)
    summary = est.estimate(initial_observations, policy)
    out = {k: v for k, v in summary.items() if k != "per_state_values"}
    out["fit_s"] = time.perf_counter() - t0
    out["fit_stats"] = dict(est.fit_stats)
    return out



def run_ope(policies: Sequence[str], data_dir: str | Path, config, seed: int, out: str | Path,
            estimator: str = "conservative", n_initial: int | None = None, reward: Any = "default",
            show_progress: bool = True) -> dict[str, Any]:
    """Estimate every policy spec in ``policies``; write ``out`` (JSON) and ``out`` with ``.md``.

    Every spec is resolved and the dataset loaded before the first fit, so a bad input fails fast.
    Returns the result dict that was written.
    """
    from tqdm.auto import tqdm

    from agents.registry import load_policy

    if not policies:
        raise ValueError("give at least one --policy")
    if estimator == "d3rlpy-fqe" and config.alpha_c != 0.0:
        raise ValueError("d3rlpy-fqe is plain FQE: use --alpha-c 0")
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise ValueError(f"--out must name a .json file, got {out}")
    if out.exists() and out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name ending in .json")
    resolved = []
    for spec in policies:
        try:
            resolved.append((spec, load_policy(spec, seed=seed)))
        except ValueError as exc:
            raise ValueError(f"--policy {spec!r}: {exc}") from None
    split = load_test_split(data_dir, n_initial if n_initial is not None else config.n_initial_states, seed, reward)
    rows = []
    bar = tqdm(resolved, desc="ope/policies", unit="policy", disable=not show_progress)
    for spec, policy in bar:
        bar.set_postfix_str(spec[-40:])
        est = fit_and_estimate(estimator, config, seed, split.data, split.initial_observations, policy,
                               show_progress=show_progress)
        rows.append({"policy": spec, "stochastic": bool(getattr(policy, "stochastic", False)), **est})
    result = {
        "command": "mtf-bench ope",
        "estimator": estimator,
        "seed": int(seed),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()},
        "dataset": {"path": str(data_dir), "split": "test", "reward": reward,
                    "n_transitions": len(split.data), "n_sessions": int(split.dataset.n_sessions),
                    "n_initial_states": int(len(split.initial_observations))},
        "results": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    out.with_suffix(".md").write_text(markdown_table(result))
    return result


def markdown_table(result: dict[str, Any]) -> str:
    """The results of :func:`run_ope` as a Markdown table (value and its bootstrap interval)."""
    cfg = result["config"]
    level = result["results"][0]["ci_level"] if result["results"] else cfg["ci_level"]
    lines = [
        f"Conservative-OPEstimator ({result['estimator']}, alpha_c = {cfg['alpha_c']:g}, K = {cfg['n_steps']}, "
        f"lr = {cfg['learning_rate']:g}, m = {cfg['batch_size']}, hidden = {cfg['hidden']}) on "
        f"{result['dataset']['path']} (test split, {result['dataset']['n_transitions']} transitions, "
        f"{result['dataset']['n_initial_states']} initial states), seed {result['seed']}",
        "",
        f"| policy | V(pi_e) | {100 * level:g}% bootstrap CI | fit s |",
        "| --- | ---: | --- | ---: |",
    ]
    for r in result["results"]:
        lines.append(f"| {r['policy']} | {r['value']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {r['fit_s']:.1f} |")
    return "\n".join(lines) + "\n"
