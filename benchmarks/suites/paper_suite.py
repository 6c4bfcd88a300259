"""The paper suite: Table 1, the second table and Figures 5-8 of the paper as a set of cells, at three budgets.

::

    mtf-bench suite run --preset smoke --out results/suite/smoke        # every cell at a toy budget
    mtf-bench suite run --preset small --seeds 0,1,2 --out results/suite/small
    mtf-bench suite report results/suite/small                           # redraw report.md and the figures

:func:`plan_dataset_cells` and :func:`plan_cells` turn a preset (:data:`SUITE_PRESETS`) into cells
(:mod:`benchmarks.suites.cells`); :func:`benchmarks.suites.runner.run_suite` collects the datasets
(once per suite, shared), runs every method cell through an executor
(:mod:`benchmarks.suites.executors`) and writes the report (:mod:`benchmarks.suites.suite_report`).
Finished cells are never run again, so a killed suite resumes where it stopped.

Rows (:data:`ROWS`): Table 1 (BO, ES, TD3, UWAC+TD3, CQL+SAC, BatchRL-MTF, BatchRL-MTF-RE trained
on random exploration only, and the reward variants -Rtime, -Rintegrity, -Rinteraction: the
training reward relabelled with the ``time``, ``integrity``, ``interaction`` presets); a second
table (BC, TD3+BC, IQL, online SAC); the references of Figure 7 (``static:production`` and the two
behaviour policies whose sessions make up the ``mixed`` data: ``action-noise``, production plus the
paper's N(0, 0.1), for users with an odd id, and ``random`` for even ids -- the ``mixed`` policy itself
needs each row's user id, which the estimator's states do not carry); the sensitivity rows of Figure 8 (BatchRL-MTF
with other perturbation bounds rho and critic learning rates).

Dataset source hook: each preset names where its datasets come from (``DatasetSpec.source``,
resolved by :data:`benchmarks.suites.cells.DATASET_SOURCES`): ``collect`` collects with a behaviour
policy; ``loop`` takes the last training window of an explore -> retrain loop
(:func:`with_loop_data`, ``mtf-bench suite run --loop-data DIR``), so Table 1 trains on the data
the loop produced, as the paper did, as a second setting next to the production-centred presets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence



@dataclass(frozen=True)
class Row:
    """One row of the suite's tables and figures: a method (or a fixed policy) on one dataset with one reward."""

    name: str
    """Row name (also the cell name's prefix), e.g. ``batchrl-mtf-re``."""
    label: str
    """Name in the tables, as in the paper (``BatchRL-MTF-RE``)."""
    group: str
    """``table1``, ``table2``, ``reference`` (Figure 7) or ``sensitivity`` (Figure 8)."""
    algo: str | None = None
    """Registered algorithm (None for a fixed policy)."""
    policy: str | None = None
    """Policy spec of a fixed policy (``static:production``, ``mixed``)."""
    dataset: str = "mixed"
    """Dataset the row trains on (``mixed`` or ``random``); online methods train in its world."""
    reward: str = "default"
    """Training reward preset (offline: the data relabelled; online: the reward optimised)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Config overrides of this row on top of the preset's (Figure 8's rho and critic lr)."""


#: Sensitivity grid of Figure 8 (the main row has the paper's rho 0.15 and critic lr 2e-4).
RHO_VALUES = (0.05, 0.1, 0.15, 0.2, 0.3)
CRITIC_LR_VALUES = (5e-5, 1e-4, 2e-4, 5e-4, 1e-3)
MAIN_RHO, MAIN_CRITIC_LR = 0.15, 2e-4


def _rows() -> tuple[Row, ...]:
    rows = [
        Row("bo", "BO", "table1", algo="bo"),
        Row("es", "ES", "table1", algo="es"),
        Row("td3", "TD3", "table1", algo="td3"),
        Row("uwac-td3", "UWAC+TD3", "table1", algo="uwac-td3"),
        Row("cql-sac", "CQL+SAC", "table1", algo="cql-sac"),
        Row("batchrl-mtf", "BatchRL-MTF", "table1", algo="batchrl-mtf"),
        Row("batchrl-mtf-re", "BatchRL-MTF-RE", "table1", algo="batchrl-mtf", dataset="random"),
        Row("batchrl-mtf-rtime", "BatchRL-MTF-Rtime", "table1", algo="batchrl-mtf", reward="time"),
        Row("batchrl-mtf-rintegrity", "BatchRL-MTF-Rintegrity", "table1", algo="batchrl-mtf", reward="integrity"),
        Row("batchrl-mtf-rinteraction", "BatchRL-MTF-Rinteraction", "table1", algo="batchrl-mtf",
            reward="interaction"),
        Row("bc", "BC", "table2", algo="bc"),
        Row("td3-bc", "TD3+BC", "table2", algo="td3-bc"),
        Row("iql", "IQL", "table2", algo="iql"),
        Row("sac-online", "SAC (online)", "table2", algo="sac-online"),
        Row("production", "production weights", "reference", policy="static:production"),
        Row("behaviour-noise", "behaviour: production + N(0, 0.1)", "reference", policy="action-noise"),
        Row("behaviour-random", "behaviour: random exploration", "reference", policy="random"),
    ]
    rows += [Row(f"batchrl-mtf-rho{rho:g}", f"BatchRL-MTF rho={rho:g}", "sensitivity", algo="batchrl-mtf",
                 overrides={"rho": rho}) for rho in RHO_VALUES if rho != MAIN_RHO]
    rows += [Row(f"batchrl-mtf-lrc{lr:g}", f"BatchRL-MTF critic lr={lr:g}", "sensitivity", algo="batchrl-mtf",
                 overrides={"lr_critic": lr}) for lr in CRITIC_LR_VALUES if lr != MAIN_CRITIC_LR]
    return tuple(rows)


#: Every row of the suite, in table order.
ROWS: tuple[Row, ...] = _rows()
ROW_BY_NAME: dict[str, Row] = {row.name: row for row in ROWS}

#: The paper's Table 1 (Zhang et al. 2022, as quoted in the design notes): offline V^(pi) of the
#: Conservative-OPEstimator and the online lifts over BO in percent; None where not quoted.
PAPER_TABLE1: dict[str, dict[str, float | None]] = {
    "bo": {"ope": None, "adtime": 0.0, "upirate": 0.0},
    "es": {"ope": None, "adtime": 0.376, "upirate": 0.402},
    "td3": {"ope": -648.162, "adtime": None, "upirate": None},
    "uwac-td3": {"ope": -297.053, "adtime": -0.513, "upirate": 16.061},
    "cql-sac": {"ope": 5.194, "adtime": 2.322, "upirate": 10.258},
    "batchrl-mtf": {"ope": 4.126, "adtime": 2.216, "upirate": 9.118},
    "batchrl-mtf-re": {"ope": 3.023, "adtime": 0.862, "upirate": -1.282},
    "batchrl-mtf-rtime": {"ope": None, "adtime": None, "upirate": None},
    "batchrl-mtf-rintegrity": {"ope": None, "adtime": None, "upirate": None},
    "batchrl-mtf-rinteraction": {"ope": None, "adtime": 2.550, "upirate": 9.651},
}


@dataclass(frozen=True)
class DatasetSpec:
    """How one of the suite's datasets is made (hashed into its cell's key)."""

    source: str
    """A key of :data:`benchmarks.suites.cells.DATASET_SOURCES` (``collect`` or ``loop``)."""
    collect: Mapping[str, Any]
    """``collect``: ``CollectConfig`` fields (policy, n_sessions, seed, n_days, batch_size); ``loop``: empty."""
    sim: Mapping[str, Any] = field(default_factory=dict)
    """``SimConfig`` overrides (empty: the default world)."""
    loop: Mapping[str, Any] | None = None
    """``loop``: ``directory`` (an explore -> retrain loop), ``days`` (its training window) and ``files_sha256``
    (per day, the sorted checksums of its data files: the data the cell must find there)."""


@dataclass(frozen=True)
class SuitePreset:
    """Budgets of one preset of the suite."""

    name: str
    description: str
    datasets: Mapping[str, DatasetSpec]
    """``mixed`` (mixed exploration) and ``random`` (random exploration only, for -RE)."""
    seeds: tuple[int, ...]
    """Default seeds (``--seeds`` replaces them)."""
    offline_steps: int
    """Gradient steps of every offline method (the paper: 300,000)."""
    online_steps: Mapping[str, int]
    """Budgets of the online methods in their own units (BO rounds, ES iterations, SAC env steps)."""
    hidden: tuple[int, ...]
    """Widths of every offline actor / critic / value network (BatchRL-MTF's perturbation net and critics too)."""
    vae_hidden: tuple[int, ...]
    """BatchRL-MTF's VAE widths."""
    algo_overrides: Mapping[str, Mapping[str, Any]]
    """Per algorithm, config overrides (online budgets per round, batch sizes)."""
    evaluation: Mapping[str, Any]
    """``rollouts`` / ``checkpoint_rollouts`` (sessions per test initial state for the final / checkpoint
    true values), ``checkpoints`` (training chunks of an offline method), ``ab_users`` x ``ab_days``,
    ``action_states`` (Figure 6), ``ope`` (ConservativeFQEConfig fields)."""


def _datasets(n_sessions: int, batch_size: int, n_days: int, sim: Mapping[str, Any] | None = None
              ) -> dict[str, DatasetSpec]:
    base = {"n_sessions": n_sessions, "seed": 0, "n_days": n_days, "batch_size": batch_size}
    return {name: DatasetSpec("collect", {"policy": name, **base}, dict(sim or {})) for name in ("mixed", "random")}


SUITE_PRESETS: dict[str, SuitePreset] = {
    "smoke": SuitePreset(
        name="smoke", description="every cell at a toy budget (minutes on 2 cores); numbers mean nothing",
        datasets=_datasets(2000, 2048, 1), seeds=(0, 1, 2), offline_steps=200,
        online_steps={"bo": 3, "es": 2, "sac-online": 320}, hidden=(32, 32), vae_hidden=(32, 32),
        algo_overrides={"bo": {"n_users": 100, "n_init": 2, "n_candidates": 64, "gp_restarts": 0},
                        "es": {"n_users": 50, "n_pairs": 2, "hidden": [8]},
                        "sac-online": {"n_envs": 16, "learning_starts": 50, "batch_size": 32, "hidden": [32, 32]},
                        **{a: {"batch_size": 64} for a in ("td3", "uwac-td3", "cql-sac", "bc", "td3-bc", "iql",
                                                            "batchrl-mtf")}},
        evaluation={"rollouts": 2, "checkpoint_rollouts": 1, "checkpoints": 3, "ab_users": 1000, "ab_days": 1,
                    "action_states": 300,
                    "ope": {"n_steps": 100, "batch_size": 128, "hidden": [32, 32], "n_initial_states": 200,
                            "n_bootstrap": 100, "target_update_every": 25}}),
    "small": SuitePreset(
        name="small", description="budgets at which the methods' differences are measurable (hours on 2 cores)",
        datasets=_datasets(50_000, 8192, 7), seeds=(0, 1, 2), offline_steps=5000,
        online_steps={"bo": 30, "es": 40, "sac-online": 20_000}, hidden=(64, 64), vae_hidden=(128, 128),
        algo_overrides={"bo": {"n_users": 1000}, "es": {"n_users": 300}},
        evaluation={"rollouts": 4, "checkpoint_rollouts": 1, "checkpoints": 5, "ab_users": 10_000, "ab_days": 1,
                    "action_states": 2000,
                    "ope": {"n_steps": 1000, "hidden": [128, 128], "n_initial_states": 2000, "n_bootstrap": 200}}),
    "paper": SuitePreset(
        name="paper", description="the paper's data size, budgets (300,000 steps) and network sizes (days of CPU)",
        datasets=_datasets(3_142_000, 16384, 7), seeds=(0, 1, 2), offline_steps=300_000,
        online_steps={"bo": 60, "es": 100, "sac-online": 300_000}, hidden=(400, 300), vae_hidden=(750, 750),
        algo_overrides={},
        evaluation={"rollouts": 4, "checkpoint_rollouts": 1, "checkpoints": 10, "ab_users": 100_000, "ab_days": 30,
                    "action_states": 5000, "ope": {}}),
}


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``; ValueError for anything but distinct non-negative integers."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"--seeds expects comma-separated non-negative integers such as 0,1,2, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds expects distinct non-negative integers such as 0,1,2, got {text!r}")
    return seeds


def check_only(only: Sequence[str] | None) -> list[str]:
    """The rows selected by ``--only`` (all rows if None); ValueError naming an unknown row."""
    if not only:
        return [row.name for row in ROWS]
    unknown = [name for name in only if name not in ROW_BY_NAME]
    if unknown:
        raise ValueError(f"--only: unknown cell(s) {unknown}; choose from {[row.name for row in ROWS]}")
    return [row.name for row in ROWS if row.name in set(only)]


def _network_overrides(algo: str, preset: SuitePreset) -> dict[str, Any]:
    from .baselines import network_overrides

    return network_overrides(algo, preset.hidden, preset.vae_hidden)


def method_inputs(row: Row, preset: SuitePreset, dataset_checksum: str, device: str) -> dict[str, Any]:
    """The hashed inputs of a row's cell (everything that determines its result, no paths)."""
    from .baselines import is_online

    evaluation = dict(preset.evaluation)
    inputs: dict[str, Any] = {"dataset": {"name": row.dataset, "checksum": dataset_checksum},
                              "evaluation": evaluation}
    if row.algo is None:
        return {**inputs, "policy": row.policy}
    online = is_online(row.algo)
    overrides = {**_network_overrides(row.algo, preset), **preset.algo_overrides.get(row.algo, {}),
                 **dict(row.overrides)}
    steps = preset.online_steps[row.algo] if online else preset.offline_steps
    return {**inputs, "algo": row.algo, "reward": row.reward, "steps": int(steps), "overrides": overrides,
            "device": device}


def plan_dataset_cells(preset: SuitePreset, rows: Sequence[str], code_version: Mapping[str, Any]) -> list[dict]:
    """The dataset cells the selected rows need (``mixed`` always: it holds the logged actions of Figure 6)."""
    from .cells import make_cell

    needed = {"mixed"} | {ROW_BY_NAME[name].dataset for name in rows}
    return [make_cell("dataset", f"dataset-{name}", None,
                      {**dataclasses.asdict(spec), "action_states": int(preset.evaluation["action_states"])},
                      code_version)
            for name, spec in preset.datasets.items() if name in needed]


def plan_cells(preset: SuitePreset, rows: Sequence[str], seeds: Sequence[int], datasets: Mapping[str, Mapping],
               code_version: Mapping[str, Any], device: str = "cpu") -> list[dict]:
    """The method and reference cells: every selected row x seed. ``datasets``: name -> its finished dataset
    cell's result (``dataset_path``, ``checksum``)."""
    from .cells import make_cell

    cells = []
    for seed in seeds:
        for name in rows:
            row = ROW_BY_NAME[name]
            data = datasets[row.dataset]
            cells.append(make_cell("method" if row.algo else "reference", row.name, int(seed),
                                   method_inputs(row, preset, data["checksum"], device), code_version,
                                   dataset_path=data["dataset_path"]))
    return cells


def check_presets_configs() -> None:
    """Every preset's config overrides build a valid agent config (ValueError naming the row otherwise)."""
    from agents.registry import algo_class
    from benchmarks.evaluation.configs import build_config

    for preset in SUITE_PRESETS.values():
        for row in ROWS:
            if row.algo is None:
                continue
            inputs = method_inputs(row, preset, "", "cpu")
            try:
                build_config(algo_class(row.algo), inputs["overrides"])
            except ValueError as exc:
                raise ValueError(f"preset {preset.name}, row {row.name}: {exc}") from None


def loop_dataset_spec(loop_dir: str | Path) -> DatasetSpec:
    """The ``loop`` dataset of a loop directory: the training window of its last finished round (ValueError
    naming ``loop_dir`` if it holds none; see :func:`benchmarks.evaluation.explore_loop.window_data_dirs`)."""
    from mtf_env.dataset import dataset_manifest

    from benchmarks.evaluation.explore_loop import window_data_dirs

    dirs, days = window_data_dirs(loop_dir)
    checksums = [sorted(f["sha256"] for f in dataset_manifest(d)["files"]) for d in dirs]
    return DatasetSpec("loop", {}, {}, {"directory": str(Path(loop_dir).resolve()), "days": days,
                                        "files_sha256": checksums})


def with_loop_data(preset: SuitePreset, loop_dir: str | Path | None, random_loop_dir: str | Path | None = None
                   ) -> SuitePreset:
    """``preset`` training on the data of explore -> retrain loops, as the paper did: the ``mixed`` dataset (every
    row but -RE) becomes the last training window of ``loop_dir``, the ``random`` one (BatchRL-MTF-RE) that of
    ``random_loop_dir`` (a loop with ``--exploration random``) if given, else it stays the preset's collection."""
    datasets = dict(preset.datasets)
    if loop_dir is not None:
        datasets["mixed"] = loop_dataset_spec(loop_dir)
    if random_loop_dir is not None:
        datasets["random"] = loop_dataset_spec(random_loop_dir)
    return dataclasses.replace(preset, datasets=datasets)


def resolve_preset(name: str) -> SuitePreset:
    if name not in SUITE_PRESETS:
        raise ValueError(f"--preset: unknown preset {name!r}; choose one of {sorted(SUITE_PRESETS)}")
    return SUITE_PRESETS[name]
