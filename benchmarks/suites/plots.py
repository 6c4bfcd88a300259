"""Figures drawn from result files (never by re-running training or evaluation).

* :func:`plot_q_vs_true` -- the paper's Figure 5: each offline critic's estimate of its own
  policy's value at the test initial states, ``mean Q(s0, pi(s0))``, at checkpoints over
  training, against the final policy's true value at the same states; with the minibatch
  averages ``train/q_mean`` (Q at the logged actions) and ``train/q_policy_mean`` (Q at the
  policy's own actions, where logged) over all training states. Reads ``q_curves.json``.
* :func:`plot_action_distributions` -- the paper's Figure 6: per task, violins of the fusion
  weights ``alpha_i`` each method chooses on test-split states, next to the logged ones.
  Reads ``actions.npz``.

Both read a results directory written by :mod:`benchmarks.suites.baselines`::

    mtf-bench plots results/baselines
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

#: File names of the figures in the results directory.
Q_FIGURE = "fig5_q_vs_true.png"
ACTIONS_FIGURE = "fig6_actions.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run benchmarks.suites.baselines first")
    return json.loads(path.read_text())


def _ordered(results_dir: Path, names) -> list[str]:
    """``names`` in the table order of ``results.json`` (its ``order`` list), the rest after in name order."""
    path = results_dir / "results.json"
    order = json.loads(path.read_text()).get("order", []) if path.is_file() else []
    rank = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def plot_q_vs_true(results_dir: str | Path, out: str | Path | None = None) -> Path:
    """Figure 5 from ``results_dir/q_curves.json``; one panel per offline critic. Returns the PNG path.

    Each panel: ``Q(s0, pi(s0))`` at the checkpoints (red, markers; only the final one if no
    trajectory was recorded), ``q_mean`` (solid) and ``q_policy_mean`` (dashed) over gradient
    steps, and the true value (dotted horizontal line).
    The y axis is symlog when the estimates span more than two orders of magnitude (TD3's
    overestimation can).
    """
    results_dir = Path(results_dir)
    curves = _read_json(results_dir / "q_curves.json")
    curves = {name: curves[name] for name in _ordered(results_dir, curves)}
    if not curves:
        raise ValueError(f"{results_dir / 'q_curves.json'} holds no Q curves (no offline critic was run)")
    plt = _pyplot()
    n = len(curves)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (algo, c) in zip(axes.flat, curves.items()):
        steps = np.asarray(c.get("step", []), float)
        shown = []
        if "q_mean" in c:
            ax.plot(steps, c["q_mean"], color="C0", label="Q(s, a_data)")
            shown += c["q_mean"]
        if "q_policy_mean" in c:
            ax.plot(steps, c["q_policy_mean"], color="C1", ls="--", label="Q(s, pi(s))")
            shown += c["q_policy_mean"]
        ax.axhline(c["true_value"], color="k", ls=":", label="true value")
        shown.append(c["true_value"])
        trajectory = [(x, v) for x, v in zip(c.get("q_initial_states_step", []), c.get("q_initial_states", []))
                      if v is not None]
        estimate = c.get("q_policy_at_initial_states")
        if trajectory:
            xs, vs = zip(*trajectory)
            ax.plot(xs, vs, marker="o", ms=3, color="C3", label="Q(s0, pi(s0))")
            shown += list(vs)
        elif estimate is not None:
            x = steps[-1] if len(steps) else 0.0
            ax.plot([x], [estimate], marker="o", color="C3", ls="none", label="Q(s0, pi(s0))")
            shown.append(estimate)
        finite = np.abs(np.asarray([v for v in shown if v is not None and math.isfinite(v)], float))
        if finite.size and finite.max() > 100 * max(np.median(finite), 1e-9):
            ax.set_yscale("symlog", linthresh=max(1.0, float(np.median(finite))))
        ax.set_title(algo)
        ax.set_xlabel("gradient step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].set_ylabel("value (discounted return)")
    legend: dict[str, object] = {}
    for ax in axes.flat[:n]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), frameon=False)
    fig.suptitle("Critics' value estimates over training vs the true value of the final policy "
                 "(Q(s0, pi(s0)): test initial states; Q(s, .): all training states)")
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    path = Path(out) if out is not None else results_dir / Q_FIGURE
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_action_distributions(results_dir: str | Path, out: str | Path | None = None) -> Path:
    """Figure 6 from ``results_dir/actions.npz``: per task, one violin per method plus the data. Returns the PNG path.

    Actions are shown as fusion weights ``alpha = mtf_env.fusion.action_to_alpha(action)``; a
    static method (BO, production) is a single line at its weight.
    """
    from mtf_env.fusion import action_to_alpha
    from mtf_env.tasks import TASK_NAMES

    results_dir = Path(results_dir)
    path_npz = results_dir / "actions.npz"
    if not path_npz.is_file():
        raise FileNotFoundError(f"{path_npz} does not exist: run benchmarks.suites.baselines first")
    with np.load(path_npz, allow_pickle=False) as f:
        names, actions = [str(n) for n in f["names"]], f["actions"]
    if actions.ndim != 3 or actions.shape[0] != len(names) or actions.shape[2] != len(TASK_NAMES):
        raise ValueError(f"{path_npz}: actions have shape {actions.shape}, expected ({len(names)}, n, 12)")
    alpha = action_to_alpha(actions)  # (m, n, 12)
    plt = _pyplot()
    cols, rows = 4, math.ceil(len(TASK_NAMES) / 4)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    positions = np.arange(len(names))
    for t, ax in enumerate(axes.flat[:len(TASK_NAMES)]):
        values = [alpha[m, :, t] for m in range(len(names))]
        spread = [v for v, pos in zip(values, positions) if np.ptp(v) > 1e-6]
        spread_pos = [pos for v, pos in zip(values, positions) if np.ptp(v) > 1e-6]
        if spread:
            parts = ax.violinplot(spread, positions=spread_pos, widths=0.8, showmedians=True, showextrema=False)
            for body, pos in zip(parts["bodies"], spread_pos):
                body.set_facecolor("0.6" if pos == 0 else f"C{pos % 10}")
                body.set_alpha(0.7)
        for v, pos in zip(values, positions):
            if np.ptp(v) <= 1e-6:  # a static weight: one line
                ax.plot([pos - 0.35, pos + 0.35], [v[0], v[0]], color=f"C{pos % 10}", lw=2)
        ax.set_title(TASK_NAMES[t])
        ax.set_xticks(positions)
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(TASK_NAMES):]:
        ax.axis("off")
    fig.suptitle(f"Fusion weights chosen on {actions.shape[1]} test-split states ('data': the logged actions)")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(out) if out is not None else results_dir / ACTIONS_FIGURE
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# The paper suite's figures (seaborn): each drawn from a tidy CSV written next to its PNG
# ---------------------------------------------------------------------------------------------
#: The 4 representative fusion weights of Figure 6.
FIG6_TASKS = ("play_time", "finish", "like", "skip")
#: File stems of the paper suite's figures (``STEM.png`` and ``STEM.csv`` in the suite directory).
SUITE_FIGURES = ("fig5_q_over_training", "fig6_action_distributions", "fig7_exploration", "fig8_sensitivity",
                 "true_value_over_training")


def _seaborn():
    _pyplot()
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return sns


def suite_figures(suite_dir: str | Path, frames: dict) -> list[Path]:
    """Write every suite figure as ``STEM.csv`` and ``STEM.png`` into ``suite_dir``; returns the PNG paths.

    frames: stem -> tidy pandas DataFrame (:func:`benchmarks.suites.suite_report.figure_tables`).

    Error bars over seeds are ``mean +- 1.96 SE`` (seaborn ``errorbar=("se", 1.96)``); with one seed
    there are none. A figure without data (its rows were not run) is skipped.
    """
    suite_dir = Path(suite_dir)
    sns = _seaborn()
    plt = _pyplot()
    paths = []
    bars = ("se", 1.96)
    for stem, df in frames.items():
        df.to_csv(suite_dir / f"{stem}.csv", index=False)
        if df.empty:
            continue
        if stem == "fig5_q_over_training":
            long = df.melt(id_vars=["row", "seed", "step"], value_vars=["q_mean", "q_std"], var_name="statistic",
                           value_name="Q")
            grid = sns.relplot(data=long, x="step", y="Q", hue="row", col="statistic", kind="line", marker="o",
                               errorbar=bars, facet_kws={"sharey": False}, height=3.2, aspect=1.3)
            grid.set_axis_labels("gradient step", "Q(s0, pi(s0)) over test initial states")
            grid.figure.suptitle("Figure 5: mean and std of the critics' Q over training", y=1.03)
            fig = grid.figure
        elif stem == "fig6_action_distributions":
            grid = sns.catplot(data=df, y="row", x="alpha", hue="row", col="weight", kind="box", col_wrap=2,
                               height=0.22 * df["row"].nunique() + 1.2, aspect=1.3, sharex=False, fliersize=0.5,
                               legend=False)
            grid.set_titles("alpha of {col_name}")
            grid.set_axis_labels("fusion weight alpha", "")
            grid.figure.suptitle("Figure 6: fusion weights on fixed test states vs the logged data", y=1.02)
            fig = grid.figure
        elif stem == "fig7_exploration":
            fig, ax = plt.subplots(figsize=(5.5, 3.2))
            sns.barplot(data=df, x="row", y="true_value", errorbar=bars, ax=ax, capsize=0.1)
            ax.set_ylim(df["true_value"].min() * 0.95, df["true_value"].max() * 1.03)
            ax.set(xlabel="", ylabel="true value (disc. session return)",
                   title="Figure 7: mixed vs random-only exploration vs the behaviour policy")
        elif stem == "fig8_sensitivity":
            grid = sns.relplot(data=df, x="value", y="true_value", col="parameter", kind="line", marker="o",
                               errorbar=bars, facet_kws={"sharex": False}, height=3.2, aspect=1.2)
            for ax, name in zip(grid.axes.flat, grid.col_names):
                if name == "lr_critic":
                    ax.set_xscale("log")
            grid.set_axis_labels("setting", "true value")
            grid.figure.suptitle("Figure 8: sensitivity of BatchRL-MTF to rho and the critic learning rate", y=1.03)
            fig = grid.figure
        else:
            fig, ax = plt.subplots(figsize=(6.5, 3.6))
            sns.lineplot(data=df, x="step", y="true_value", hue="row", marker="o", errorbar=bars, ax=ax)
            ax.set(xlabel="gradient step", ylabel="true value", title="True value over training (offline methods)")
            ax.legend(fontsize=6, ncol=2)
        path = suite_dir / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
