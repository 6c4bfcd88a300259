"""Logged datasets: collection with a run log, statistics, the action-distribution figure, dataset cards.

:func:`collect_with_log` collects a dataset and writes its run log; :func:`inspect_dataset`
writes ``stats.json`` (sessions, transitions, session lengths, reward statistics under every
reward preset, action coverage per dimension, per behaviour group) and ``actions.png`` (the
distribution of each action dimension per behaviour group, like the paper's Figures 6 and 7);
:func:`write_card` writes a dataset card (``datasets/cards/NAME.{json,md}``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtf_env.files import write_json
from agents.behaviour import collection_policy
from mtf_env.dataset import DATASET_PRESETS, CollectConfig, collect_dataset, load_dataset
from mtf_env.rewards import REWARD_PRESETS
from mtf_env.tasks import TASK_NAMES


#: Equal-width bins of [-1, 1] used for the action coverage figure of merit.
COVERAGE_BINS = 20
#: A bin counts as covered when it holds at least this share of a uniform bin's mass.
COVERAGE_MIN_SHARE = 0.1
#: Run log the collect command writes into the dataset directory (not listed in the manifest).
COLLECT_LOG = "collect_log.json"
#: At most this many actions per behaviour group go into the figure.
FIGURE_SAMPLES = 20_000


def collect_with_log(out: Path, sim, collect: CollectConfig, sim_overrides: dict[str, Any] | None = None,
                     overwrite: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Collect a dataset into ``out`` and write its run log ``COLLECT_LOG`` next to the data.

    sim: the SimConfig; collect: the CollectConfig; sim_overrides: recorded in the log. The log
    is not part of the manifest (timings differ between identical runs). Returns the log plus
    ``path`` (the dataset directory), ``sessions``, ``requests`` and ``files``.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    path = collect_dataset(out, sim, collect, collection_policy(collect), overwrite=overwrite,
                           progress=show_progress, timings=timings)
    wall = time.perf_counter() - t0
    manifest = json.loads((path / "manifest.json").read_text())
    n_req = manifest["counts"]["requests"]
    size = sum(f["bytes"] for f in manifest["files"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb, cpu_s = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    log = {
        "collect": dataclasses.asdict(collect), "sim_overrides": dict(sim_overrides or {}),
        "wall_s": wall, "timings_s": timings, "peak_rss_mb": peak_mb, "process_cpu_s": cpu_s,
        "sessions_per_s": collect.n_sessions / wall,
        "requests_per_s": n_req / wall, "bytes": size, "cpu_count": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()), "python": platform.python_version(),
    }
    write_json(path / COLLECT_LOG, log)
    return {**log, "path": path, "sessions": collect.n_sessions, "requests": n_req, "files": len(manifest["files"])}


# ---------------------------------------------------------------------------- inspect
def _summary(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def action_coverage(actions: np.ndarray) -> list[dict[str, Any]]:
    """Per action dimension: moments, quantiles, share on the box faces, and covered bins.

    ``covered_bins`` is the share of ``COVERAGE_BINS`` equal bins of [-1, 1] holding at least
    ``COVERAGE_MIN_SHARE`` of a uniform bin's mass (1.0: the whole range is explored).
    """
    out = []
    n = len(actions)
    threshold = COVERAGE_MIN_SHARE * n / COVERAGE_BINS
    for d, task in enumerate(TASK_NAMES):
        a = actions[:, d]
        counts, _ = np.histogram(a, bins=COVERAGE_BINS, range=(-1.0, 1.0))
        q = np.quantile(a, [0.01, 0.5, 0.99])
        out.append({"task": task, **_summary(a), "q01": float(q[0]), "median": float(q[1]), "q99": float(q[2]),
                    "at_bounds": float(np.mean(np.abs(a) >= 1.0)),
                    "covered_bins": float(np.mean(counts >= threshold))})
    return out


def dataset_statistics(ds) -> dict[str, Any]:
    """Statistics of one loaded split (a :class:`mtf_env.dataset.Dataset`)."""
    lengths = ds.session_lengths
    actions = ds.actions
    feedback = ds.column("request_feedback")
    group_rows = np.repeat(ds.behaviour_groups, lengths)
    session_index = np.repeat(np.arange(ds.n_sessions), lengths)
    stats: dict[str, Any] = {
        "path": str(ds.path), "split": ds.split, "policy": ds.manifest["collection"]["policy"],
        "sessions": ds.n_sessions, "transitions": ds.n_transitions,
        "session_length": {**_summary(lengths), "median": float(np.median(lengths))},
        "terminated_share": float(ds.session_column("terminated").mean()),
        "truncated_share": float(ds.session_column("truncated").mean()),
        "behaviour_log_prob": _summary(ds.column("behaviour_log_prob")),
        "rewards": {}, "action_coverage": action_coverage(actions), "groups": {},
    }
    for preset in REWARD_PRESETS:
        r = ds.rewards_for(preset)
        returns = np.bincount(session_index, weights=r, minlength=ds.n_sessions)
        stats["rewards"][preset] = {"per_transition": _summary(r), "session_return": _summary(returns)}
    for g, name in enumerate(ds.group_names):
        rows = group_rows == g
        sess = ds.behaviour_groups == g
        if not sess.any():
            continue
        r = ds.rewards_for("default")[rows]
        stats["groups"][name] = {
            "sessions": int(sess.sum()), "transitions": int(rows.sum()),
            "mean_session_length": float(lengths[sess].mean()),
            "mean_session_return_default": float(r.sum() / sess.sum()),
            "mean_reward_default": float(r.mean()),
            "mean_play_time_s_per_request": float(feedback[rows, 0].mean()),
            "action_coverage": action_coverage(actions[rows]),
        }
    return stats


def action_figure(ds, path: Path, seed: int = 0) -> Path:
    """Violin plot of every action dimension per behaviour group (like the paper's Figs 6-7) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    rng = np.random.default_rng(seed)
    actions = ds.actions
    group_rows = np.repeat(ds.behaviour_groups, ds.session_lengths)
    frames = []
    for g, name in enumerate(ds.group_names):
        rows = np.flatnonzero(group_rows == g)
        if rows.size == 0:
            continue
        take = rng.choice(rows, size=min(FIGURE_SAMPLES, rows.size), replace=False)
        frame = pd.DataFrame(actions[np.sort(take)], columns=list(TASK_NAMES)).melt(var_name="task",
                                                                                    value_name="action")
        frame["behaviour"] = name
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(12, 4))
    sns.violinplot(data=data, x="task", y="action", hue="behaviour", split=len(frames) == 2, cut=0,
                   density_norm="width", inner="quart", linewidth=0.6, ax=ax)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("")
    ax.set_ylabel("action (fusion weight, scaled to [-1, 1])")
    ax.set_title(f"{ds.path.name}: actions per task under {ds.manifest['collection']['policy']} "
                 f"({ds.split}, {ds.n_transitions:,} requests)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def inspect_dataset(path: Path, out: Path | None = None, split: str = "all", verify: bool = True) -> dict[str, Any]:
    """Load ``path``; write ``stats.json`` and ``actions.png`` into ``out`` (default PATH/inspect); return the stats."""
    ds = load_dataset(path, split=split, verify_checksums=verify, validate="structure")
    out = Path(out) if out is not None else Path(path) / "inspect"
    stats = dataset_statistics(ds)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "stats.json", stats)
    action_figure(ds, out / "actions.png")
    return stats


def write_card(path: Path, stats: dict[str, Any], name: str, cards_dir: Path) -> tuple[Path, Path]:
    """Write the dataset card ``cards_dir/NAME.json`` and ``.md`` for a dataset collected with preset NAME."""
    preset = DATASET_PRESETS[name]
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    if manifest["collection"]["config"] != dataclasses.asdict(preset.collect):
        raise ValueError(f"{path} was not collected with preset {name!r} (collection settings differ)")
    log_path = Path(path) / COLLECT_LOG
    run = json.loads(log_path.read_text()) if log_path.is_file() else None
    card = {
        "name": name, "description": preset.description, "command": f"mtf-bench collect --preset {name}",
        "collect": dataclasses.asdict(preset.collect), "sim_overrides": preset.sim,
        "schema_version": manifest["schema_version"], "code_version": manifest["created_by"],
        "counts": manifest["counts"], "split": manifest["split"],
        "bytes": sum(f["bytes"] for f in manifest["files"]),
        "files_sha256": {f["path"]: f["sha256"] for f in manifest["files"]},
        "stats": {k: stats[k] for k in ("sessions", "transitions", "session_length", "terminated_share",
                                         "truncated_share", "rewards", "groups")},
        "collection_run": run,
    }
    for group in card["stats"]["groups"].values():
        group["covered_bins"] = {row["task"]: row["covered_bins"] for row in group.pop("action_coverage")}
    cards_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = cards_dir / f"{name}.json", cards_dir / f"{name}.md"
    write_json(json_path, card)
    c, length = manifest["counts"], stats["session_length"]
    lines = [
        f"# Dataset card: `{name}`", "", preset.description + ".", "",
        f"Reproduce: `{card['command']}` (writes `datasets/{name}`; the same code gives the same SHA-256 per file, "
        f"listed in `{name}.json`).", "",
        "| field | value |", "|---|---|",
        f"| behaviour policy | `{manifest['collection']['policy']}` (groups: "
        f"{', '.join(manifest['collection']['groups'])}; {manifest['collection']['group_rule']}) |",
        f"| seed / batch size / days | {preset.collect.seed} / {preset.collect.batch_size} / {preset.collect.n_days} |",
        f"| simulator | default `SimConfig`{' + ' + json.dumps(preset.sim) if preset.sim else ''} |",
        f"| sessions / requests | {c['sessions']:,} / {c['requests']:,} |",
        f"| requests per session | mean {length['mean']:.3f}, std {length['std']:.3f}, max {length['max']:.0f} |",
        f"| ended by exit / by the request limit | {stats['terminated_share']:.4f} / {stats['truncated_share']:.4f} |",
        f"| split | train {manifest['split']['train_sessions']:,} sessions (first 90% in time order), "
        f"test {manifest['split']['test_sessions']:,} |",
        f"| size on disk | {card['bytes'] / 1e6:,.1f} MB in {len(manifest['files'])} Parquet files |",
        f"| code | {manifest['created_by'].get('version')} @ {manifest['created_by'].get('git_commit')}"
        f"{' (with uncommitted changes in tracked files)' if manifest['created_by'].get('git_dirty') else ''} |",
    ]
    if run:
        lines.append(f"| collection run | {run['wall_s']:.1f} s wall ({run['requests_per_s']:,.0f} requests/s), "
                     f"peak RSS {run['peak_rss_mb']:,.0f} MB, process CPU {run.get('process_cpu_s', float('nan')):.0f} s, "
                     f"{run['cpu_count']} CPUs, 1-minute load average at end {run['load_average_at_end'][0]:.1f} "
                     f"(this job included) |")
    lines += ["", "Rewards (relabelled from the logged feedback):", "",
              "| reward preset | mean reward per request | std | mean session return |", "|---|---|---|---|"]
    for preset_name, row in stats["rewards"].items():
        lines.append(f"| {preset_name} | {row['per_transition']['mean']:.4f} | {row['per_transition']['std']:.4f} | "
                     f"{row['session_return']['mean']:.4f} |")
    lines += ["", "Behaviour groups:", "", "| group | sessions | mean length | mean return (default) | "
              "min covered bins over tasks |", "|---|---|---|---|---|"]
    for group_name, g in card["stats"]["groups"].items():
        lines.append(f"| {group_name} | {g['sessions']:,} | {g['mean_session_length']:.3f} | "
                     f"{g['mean_session_return_default']:.4f} | {min(g['covered_bins'].values()):.2f} |")
    lines += ["", "Covered bins: share of 20 equal bins of [-1, 1] holding at least 10% of a uniform bin's mass "
              "(`mtf-bench inspect`).", ""]
    md_path.write_text("\n".join(lines))
    return json_path, md_path
