"""Cells of the paper suite: plain-data units of work, their keys, and the one function that runs a cell.

A *cell* is a JSON-able dict naming every input of one unit of work::

    {"name": "batchrl-mtf/seed0", "kind": "method", "row": "batchrl-mtf", "seed": 0,
     "inputs": {...}, "code_version": {...}, "key": "<sha256>"}

* ``kind = "dataset"``: collect one logged dataset (``inputs``: its source and collection
  settings). Datasets are collected once per suite and shared by every method cell.
* ``kind = "method"``: train one registered algorithm on one dataset (or online in that
  dataset's world) with one seed, then judge it: critic values ``Q(s0, pi(s0))`` (mean and std
  over the test initial states) and true values at checkpoints over training, the final
  true value, the Conservative-OPEstimator's ``V^(pi)``, the per-user totals of an A/B arm,
  and its fusion weights on fixed test states.
* ``kind = "reference"``: the same judgement of a fixed policy spec (``static:production``,
  the ``mixed`` behaviour policy), nothing trained.

The key is ``sha256`` of (code version, kind, inputs, seed) where a method cell's inputs hold
its dataset's *checksum* (not its path), so a cell's result is reused exactly when nothing
that determines it changed. :func:`run_cell` is a top-level function of plain arguments
``(cell, out_dir) -> path``, so any executor (:mod:`benchmarks.suites.executors`) can send it
elsewhere; it writes its result files atomically (a finished cell = its JSON file exists) and
starts a half-done cell from scratch, so a resumed suite gives the same results as an
uninterrupted one.

Files of a cell under ``out_dir``: ``cells/<stem>.json`` (the result), ``cells/<stem>.npz`` (A/B
arm arrays and actions), ``work/<stem>/`` (the run directory of a trained agent) and
``datasets/<stem>/`` (a collected dataset); ``<stem>`` is :func:`cell_stem`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

#: Fields of :class:`benchmarks.evaluation.days.EvalResult` stored per cell (per-user arrays of one A/B arm).
AB_ARRAYS = ("user_ids", "play_s", "plays", "positive_plays", "requests", "sessions", "feedback",
             "discounted_feedback", "active_days", "return_gaps")
#: Folders of a suite directory.
CELLS_DIR, WORK_DIR, DATASETS_DIR = "cells", "work", "datasets"
#: Seed of the fixed test states whose fusion weights every cell records (Figure 6); one set for all cells.
ACTION_STATES_SEED = 0xAC7


# ---------------------------------------------------------------------------------------------
# Keys and names
# ---------------------------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the byte string that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def cell_key(kind: str, inputs: Mapping[str, Any], seed: int | None, code_version: Mapping[str, Any]) -> str:
    """sha256 (hex) of (code version, kind, inputs, seed); ``inputs`` must not hold file paths."""
    code = {k: code_version.get(k) for k in ("package", "version", "git_commit", "git_dirty")}
    payload = {"code_version": code, "kind": kind, "inputs": dict(inputs), "seed": seed}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def make_cell(kind: str, row: str, seed: int | None, inputs: Mapping[str, Any], code_version: Mapping[str, Any],
              dataset_path: str | None = None) -> dict[str, Any]:
    """A cell (plain data). ``dataset_path`` (relative to the suite directory) is where the cell reads its
    dataset; it is not hashed (the dataset's checksum in ``inputs`` is)."""
    name = row if seed is None else f"{row}/seed{seed}"
    cell = {"name": name, "kind": kind, "row": row, "seed": seed, "inputs": json.loads(canonical_json(inputs)),
            "code_version": dict(code_version), "key": cell_key(kind, inputs, seed, code_version)}
    if dataset_path is not None:
        cell["dataset_path"] = dataset_path
    return cell


def cell_stem(cell: Mapping[str, Any]) -> str:
    """File stem of a cell's outputs: ``<row>__seed<k>__<first 16 hex of the key>``."""
    seed = "" if cell["seed"] is None else f"__seed{cell['seed']}"
    return f"{cell['row']}{seed}__{cell['key'][:16]}"


def result_path(cell: Mapping[str, Any], out_dir: str | Path) -> Path:
    return Path(out_dir) / CELLS_DIR / f"{cell_stem(cell)}.json"


def is_done(cell: Mapping[str, Any], out_dir: str | Path) -> bool:
    """Whether the cell's result file exists (it is written last, atomically)."""
    return result_path(cell, out_dir).is_file()


def read_result(cell: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    return json.loads(result_path(cell, out_dir).read_text())


def dataset_checksum(data_dir: str | Path) -> str:
    """sha256 over the manifest's (file, sha256) list: one checksum for a whole dataset."""
    from mtf_env.dataset import dataset_manifest

    files = sorted((f["path"], f["sha256"]) for f in dataset_manifest(data_dir)["files"])
    return hashlib.sha256(canonical_json(files).encode()).hexdigest()


def _write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    import io

    from mtf_env.files import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


# ---------------------------------------------------------------------------------------------
# Running a cell
# ---------------------------------------------------------------------------------------------
def run_cell(cell: Mapping[str, Any], out_dir: str | Path, show_progress: bool = False) -> Path:
    """Run one cell (plain data, see the module docstring) in the suite directory ``out_dir``; returns its result path.

    A finished cell (its result file exists) is not run again. Anything a killed earlier attempt
    left behind (a partial run or dataset directory) is removed first, so the result does not
    depend on interruptions. Raises whatever the work raises; no result file is written then.
    """
    out_dir = Path(out_dir)
    path = result_path(cell, out_dir)
    if path.is_file():
        return path
    runners: dict[str, Callable[[Mapping[str, Any], Path], dict[str, Any]]] = {
        "dataset": _run_dataset_cell, "method": _run_policy_cell, "reference": _run_policy_cell}
    if cell["kind"] not in runners:
        raise ValueError(f"cell {cell['name']}: unknown kind {cell['kind']!r}")
    t0, c0 = time.perf_counter(), time.process_time()
    body = runners[cell["kind"]](cell, out_dir, show_progress)
    body["timing"] = {**body.get("timing", {}), "cell_wall_s": time.perf_counter() - t0,
                      "cell_cpu_s": time.process_time() - c0,
                      "load_average_at_end": list(os.getloadavg())}
    from mtf_env.files import write_json

    write_json(path, {"cell": dict(cell), **body})
    return path


#: Dataset sources: ``inputs["source"]`` -> function ``(inputs, out_path, show_progress)`` writing a dataset at
#: ``out_path``. ``collect`` collects with a behaviour policy (``mtf_env.dataset_collect``); ``loop`` merges the
#: training window of an explore -> retrain loop. To add a source, register a function here and name it in a
#: preset's dataset spec; its inputs must determine the data (they are hashed into the key).
DATASET_SOURCES: dict[str, Callable[[Mapping[str, Any], Path, bool], None]] = {}


def _collect_source(inputs: Mapping[str, Any], out_path: Path, show_progress: bool) -> None:
    from agents.behaviour import collection_policy
    from mtf_env.config import make_config
    from mtf_env.dataset import CollectConfig, collect_dataset

    collect = CollectConfig(**inputs["collect"])
    collect_dataset(out_path, make_config(**inputs.get("sim", {})), collect, collection_policy(collect),
                    overwrite=True, progress=show_progress)


DATASET_SOURCES["collect"] = _collect_source


def _loop_source(inputs: Mapping[str, Any], out_path: Path, show_progress: bool) -> None:
    """The training window of an explore -> retrain loop, merged into one dataset (``mtf_env.dataset_merge``)."""
    from mtf_env.dataset import dataset_manifest
    from mtf_env.dataset_merge import merge_datasets

    loop = inputs["loop"]
    directory = Path(loop["directory"])
    sources = [directory / f"round_{day:02d}" / "data" for day in loop["days"]]
    for source, expected in zip(sources, loop["files_sha256"]):
        found = sorted(f["sha256"] for f in dataset_manifest(source)["files"])
        if found != list(expected):
            raise ValueError(f"{source} changed since the suite was planned (its files' checksums differ)")
    merge_datasets(sources, out_path, overwrite=True,
                   description=f"training window (days {loop['days']}) of the loop {directory}")


DATASET_SOURCES["loop"] = _loop_source


def _run_dataset_cell(cell: Mapping[str, Any], out_dir: Path, show_progress: bool) -> dict[str, Any]:
    from mtf_env.dataset import load_dataset

    inputs = cell["inputs"]
    source = DATASET_SOURCES.get(inputs["source"])
    if source is None:
        raise ValueError(f"cell {cell['name']}: unknown dataset source {inputs['source']!r}; known: "
                         f"{sorted(DATASET_SOURCES)}")
    data_dir = out_dir / DATASETS_DIR / cell_stem(cell)
    if data_dir.exists():  # a killed earlier attempt
        shutil.rmtree(data_dir)
    t0 = time.perf_counter()
    source(inputs, data_dir, show_progress)
    wall = time.perf_counter() - t0
    test = load_dataset(data_dir, split="test", verify_checksums=False, validate="structure")
    index = action_state_index(test.n_transitions, int(inputs["action_states"]))
    _write_npz_atomic(result_path(cell, out_dir).with_suffix(".npz"),
                      {"logged_actions": test.actions[index].astype(np.float32), "state_index": index})
    manifest = test.manifest
    return {"dataset_path": str(data_dir.relative_to(out_dir)), "checksum": dataset_checksum(data_dir),
            "counts": manifest.get("counts"), "split": manifest.get("split"),
            "collection": manifest.get("collection"), "timing": {"collect_s": wall}}


def action_state_index(n_states: int, n: int) -> np.ndarray:
    """Sorted row indices (n,) of the test-split requests whose fusion weights every cell records."""
    rng = np.random.default_rng(np.random.SeedSequence(ACTION_STATES_SEED))
    return np.sort(rng.choice(n_states, size=min(n, n_states), replace=False)).astype(np.int64)


def _device_overrides(algo: str, device: str) -> dict[str, Any]:
    """``{"device": device}`` for an agent whose config has a ``device`` field (others run on the CPU)."""
    import dataclasses

    from agents.registry import algo_class
    from benchmarks.evaluation.configs import config_class

    fields = {f.name for f in dataclasses.fields(config_class(algo_class(algo)))}
    return {"device": device} if "device" in fields and device != "cpu" else {}


def _run_policy_cell(cell: Mapping[str, Any], out_dir: Path, show_progress: bool) -> dict[str, Any]:
    """Train (method cells) and judge a policy: checkpoints, true value, V^(pi), A/B arm, actions."""
    import torch

    from agents.ope import ConservativeFQEConfig
    from agents.registry import load_policy
    from mtf_env.core import Simulator
    from mtf_env.dataset import load_dataset

    from benchmarks.evaluation.days import evaluate
    from benchmarks.evaluation.estimators import fit_and_estimate, load_test_split
    from benchmarks.evaluation.true_value import true_value

    from .baselines import OFFLINE_LOG_EVERY, has_critic, is_online, policy_q_values, read_q_curve, train_method

    inputs, seed = cell["inputs"], int(cell["seed"])
    ev = inputs["evaluation"]
    data_dir = out_dir / cell["dataset_path"]
    timing: dict[str, float] = {}
    test = load_dataset(data_dir, reward="default", split="test", verify_checksums=False, validate="structure")
    sim = Simulator(test.config)
    initial_obs = test.initial_observations()

    def judge_value(policy) -> tuple[float, float]:
        tv = true_value(policy, test, n_rollouts=int(ev["checkpoint_rollouts"]), seed=seed, reward="default",
                        sim=sim)
        return tv.value, tv.se

    checkpoints: list[dict[str, Any]] = []
    q_curve: dict[str, list[float]] = {}
    if cell["kind"] == "method":
        algo, reward, steps = inputs["algo"], inputs["reward"], int(inputs["steps"])
        run_dir = out_dir / WORK_DIR / cell_stem(cell)
        if run_dir.exists():  # a killed earlier attempt: start the cell over (the result must not depend on it)
            shutil.rmtree(run_dir)
        overrides = {**inputs["overrides"], **_device_overrides(algo, inputs.get("device", "cpu"))}
        t0 = time.perf_counter()
        if is_online(algo):
            policy, record = train_method(algo, data_dir, None, steps, seed, run_dir, reward, overrides,
                                          show_progress)
        else:
            transitions = load_dataset(data_dir, reward=reward, split="train").transitions()
            n_checkpoints = int(ev["checkpoints"])
            targets = sorted({max(1, round(steps * i / n_checkpoints)) for i in range(1, n_checkpoints + 1)})
            for target in targets:  # resumed chunks: the agents resume bitwise, the weights are one run's
                policy, record = train_method(algo, data_dir, transitions, target, seed, run_dir, reward,
                                              overrides, show_progress)
                q = policy_q_values(policy, initial_obs) if has_critic(algo) else None
                value, se = judge_value(policy)
                checkpoints.append({"step": target, "true_value": value, "true_value_se": se,
                                    "q_mean": None if q is None else float(q.mean()),
                                    "q_std": None if q is None else float(q.std())})
            q_curve = read_q_curve(run_dir)
            del transitions
        timing["train_s"] = time.perf_counter() - t0
        train_info = {"steps": steps, "reward": reward, "overrides": record.get("overrides"),
                      "log_every": OFFLINE_LOG_EVERY}
        timing["train_wall_s"] = float(record.get("wall_s") or 0.0)  # inside fit (the chunks' sum)
        timing["steps_per_s"] = steps / timing["train_wall_s"] if timing["train_wall_s"] > 0 else None
    else:
        policy = load_policy(inputs["policy"], seed=seed)
        train_info = None

    # -- final true value (default reward: one yardstick for every row; the variants' own reward too)
    t0 = time.perf_counter()
    rewards = ["default"] + ([inputs["reward"]] if inputs.get("reward", "default") != "default" else [])
    values = {}
    for reward_name in rewards:
        tv = true_value(policy, test, n_rollouts=int(ev["rollouts"]), seed=seed, reward=reward_name, sim=sim)
        values[reward_name] = tv.to_json()
    timing["true_value_s"] = time.perf_counter() - t0

    # -- the Conservative-OPEstimator's V^(pi) on the test split (default reward)
    t0 = time.perf_counter()
    ope_config = ConservativeFQEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ev["ope"].items()})
    split = load_test_split(data_dir, ope_config.n_initial_states, seed, reward="default")
    ope = fit_and_estimate("conservative", ope_config, seed, split.data, split.initial_observations, policy)
    ope.pop("fit_s", None)
    timing["ope_s"] = time.perf_counter() - t0

    # -- one A/B arm: per-user totals with the seed's common random numbers (lifts are paired in the report)
    t0 = time.perf_counter()
    arm = evaluate(policy, int(ev["ab_users"]), int(ev["ab_days"]), seed, reward="default", sim=sim,
                   show_progress=show_progress)
    timing["ab_s"] = time.perf_counter() - t0
    metrics = {k: v.to_json() for k, v in arm.metrics().items() if k in ("adtime_s", "upi_rate", "session_return")}

    # -- fusion weights on the fixed test states (Figure 6)
    index = action_state_index(test.n_transitions, int(ev["action_states"]))
    actions = np.asarray(policy.act(test.observations[index]), np.float32)
    _write_npz_atomic(result_path(cell, out_dir).with_suffix(".npz"),
                      {"actions": actions, **{f"ab_{name}": np.asarray(getattr(arm, name)) for name in AB_ARRAYS}})
    return {
        "train": train_info, "checkpoints": checkpoints, "q_curve": q_curve, "true_value": values,
        "ope": ope, "ab_arm": {"users": arm.n_users, "days": arm.days, "seed": arm.seed, "metrics": metrics},
        "timing": {**timing, "torch_threads": torch.get_num_threads()},
    }


def load_arm(cell: Mapping[str, Any], out_dir: str | Path, gamma: float = 0.95):
    """The A/B arm of a finished policy cell as an :class:`~benchmarks.evaluation.days.EvalResult`."""
    from mtf_env.rewards import reward_weights

    from benchmarks.evaluation.days import EvalResult

    result = read_result(cell, out_dir)
    with np.load(result_path(cell, out_dir).with_suffix(".npz"), allow_pickle=False) as f:
        arrays = {name: f[f"ab_{name}"] for name in AB_ARRAYS}
    arm = result["ab_arm"]
    return EvalResult(days=int(arm["days"]), seed=int(arm["seed"]), gamma=gamma, reward=reward_weights("default"),
                      wall_s=0.0, policy_s=0.0, policy_calls=0, policy_name=cell["name"], **arrays)


def load_actions(cell: Mapping[str, Any], out_dir: str | Path) -> np.ndarray:
    """(n, 12) fusion actions in [-1, 1] a finished cell recorded (dataset cells: the logged actions)."""
    with np.load(result_path(cell, out_dir).with_suffix(".npz"), allow_pickle=False) as f:
        return f["logged_actions" if cell["kind"] == "dataset" else "actions"]
