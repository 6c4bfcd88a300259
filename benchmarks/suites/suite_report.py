"""The paper suite's report: tables side by side with the paper, claims, figures; read from cell files only.

:func:`write_report` reads a suite directory (its plan ``suite.json`` and the finished cells'
files, never re-running anything) and writes ``results.json``, ``report.md`` and the figures
(:mod:`benchmarks.suites.plots`, each PNG next to the CSV it was drawn from).

Pooling over seeds: each seed is a complete replication (its own trained agents, its own A/B
users with common random numbers across the rows of that seed). A row's figure is the mean
over seeds; its 95% CI is the t interval over seeds, ``mean +- t_{0.975, n-1} sd / sqrt(n)``
(it covers training and evaluation noise together); with one seed it is that seed's own
interval (the A/B test's paired delta-method CI, ``1.96 se`` for a true value, the bootstrap
interval of the estimator). Lifts are paired per seed against that seed's BO arm
(:func:`benchmarks.evaluation.stats.paired_lift`).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

#: Lift metrics of Table 1: our metric key -> paper column key.
LIFTS = {"adtime_s": "adtime", "upi_rate": "upirate"}
#: The control of the A/B lifts (the paper's Table 1 reports lifts over BO).
CONTROL = "bo"
#: Where the suite writes its plan (the cells, with their keys) inside the suite directory.
PLAN_NAME = "suite.json"


def strip_timing(value: Any) -> Any:
    """``results.json`` (or any part of it) without its ``timing`` entries: what a resumed, parallel or remote run
    of the same cells must reproduce exactly."""
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if k != "timing"}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def pooled(values: Sequence[float], own_half_widths: Sequence[float]) -> dict[str, Any]:
    """Mean over seeds with a 95% CI: t interval over seeds (n >= 2), else the single seed's own half-width."""
    from scipy.stats import t

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "half_width": None, "n_seeds": 0, "ci": None}
    if n >= 2:
        half = float(t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
        how = "t over seeds"
    else:
        half = float(own_half_widths[0]) if own_half_widths and own_half_widths[0] is not None else float("nan")
        how = "single seed"
    mean = float(x.mean())
    return {"mean": mean, "half_width": half, "ci_low": mean - half, "ci_high": mean + half, "n_seeds": n,
            "ci": how, "per_seed": x.tolist()}


def direction(ours: Mapping[str, Any] | None, paper: float | None) -> str:
    """``yes`` / ``no`` when our CI excludes 0 and has the paper's sign / the other; ``unclear`` when it includes 0."""
    if paper is None or paper == 0 or not ours or ours.get("mean") is None:
        return "--"
    low, high = ours["ci_low"], ours["ci_high"]
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 <= high:
        return "unclear (CI includes 0)"
    return "yes" if (low > 0) == (paper > 0) else "no"


def _load(out: Path) -> tuple[dict, dict[str, dict], dict[str, dict]]:
    from .cells import is_done, read_result

    plan_path = out / PLAN_NAME
    if not plan_path.is_file():
        raise ValueError(f"{out} is not a suite directory (no suite.json); run `mtf-bench suite run` first")
    plan = json.loads(plan_path.read_text())
    results = {c["name"]: read_result(c, out) for c in plan["cells"] if is_done(c, out)}
    datasets = {c["row"]: read_result(c, out) for c in plan["dataset_cells"] if is_done(c, out)}
    return plan, results, datasets


def collect_results(out: str | Path) -> dict[str, Any]:
    """Everything of ``results.json`` (see the module docstring)."""
    from benchmarks.evaluation.stats import paired_lift

    from .cells import load_arm
    from .paper_suite import PAPER_TABLE1, ROW_BY_NAME

    out = Path(out)
    plan, results, datasets = _load(out)
    cells = {c["name"]: c for c in plan["cells"]}
    seeds, rows = plan["seeds"], plan["rows"]

    # -- per-seed lifts over BO (paired over that seed's A/B users)
    lifts: dict[str, dict[int, dict[str, Any]]] = {}
    for seed in seeds:
        control_name = f"{CONTROL}/seed{seed}"
        if control_name not in results:
            continue
        base = load_arm(cells[control_name], out).ratio_pairs()
        for row in rows:
            name = f"{row}/seed{seed}"
            if row == CONTROL or name not in results:
                continue
            pairs = load_arm(cells[name], out).ratio_pairs()
            lifts.setdefault(row, {})[seed] = {m: paired_lift(*pairs[m], *base[m]).to_json() for m in LIFTS}

    per_cell: dict[str, Any] = {}
    for name, r in results.items():
        final_q = r["checkpoints"][-1]["q_mean"] if r["checkpoints"] else None
        per_cell[name] = {
            "row": cells[name]["row"], "seed": cells[name]["seed"], "key": cells[name]["key"],
            "figures": {"true_value": r["true_value"]["default"]["value"], "ope_value": r["ope"]["value"],
                        "adtime_s": r["ab_arm"]["metrics"]["adtime_s"]["value"],
                        "upi_rate": r["ab_arm"]["metrics"]["upi_rate"]["value"], "final_q_mean": final_q},
            "true_value": r["true_value"], "ope": {k: r["ope"][k] for k in ("value", "ci_low", "ci_high")},
            "checkpoints": r["checkpoints"], "train": r["train"],
            "timing": r.get("timing", {}),
        }

    table: dict[str, Any] = {}
    for row in rows:
        done = [(seed, results[f"{row}/seed{seed}"]) for seed in seeds if f"{row}/seed{seed}" in results]
        if not done:
            table[row] = {"label": ROW_BY_NAME[row].label, "group": ROW_BY_NAME[row].group, "seeds_done": []}
            continue
        tv = pooled([r["true_value"]["default"]["value"] for _, r in done],
                    [1.96 * r["true_value"]["default"]["se"] for _, r in done])
        ope = pooled([r["ope"]["value"] for _, r in done],
                     [(r["ope"]["ci_high"] - r["ope"]["ci_low"]) / 2 for _, r in done])
        entry = {"label": ROW_BY_NAME[row].label, "group": ROW_BY_NAME[row].group,
                 "seeds_done": [s for s, _ in done], "true_value": tv, "ope_value": ope, "lifts": {}}
        own_reward = ROW_BY_NAME[row].reward
        if own_reward != "default":
            entry["true_value_own_reward"] = pooled([r["true_value"][own_reward]["value"] for _, r in done],
                                                    [1.96 * r["true_value"][own_reward]["se"] for _, r in done])
        for metric in LIFTS:
            per_seed = lifts.get(row, {})
            if per_seed:
                entry["lifts"][metric] = pooled([per_seed[s][metric]["lift_pct"] for s in sorted(per_seed)],
                                                [per_seed[s][metric]["half_width_pct"] for s in sorted(per_seed)])
        finals = [r["checkpoints"][-1]["q_mean"] for _, r in done if r["checkpoints"]]
        if finals and all(q is not None for q in finals):
            entry["q_at_initial_states"] = pooled(finals, [float("nan")] * len(finals))
        paper = PAPER_TABLE1.get(row)
        if paper is not None:
            entry["paper"] = paper
            entry["agrees"] = {LIFTS[m]: direction(entry["lifts"].get(m), paper[LIFTS[m]]) for m in LIFTS}
        table[row] = entry
    _ope_directions(table)
    claims = paper_claims(table)
    return {
        "suite": "paper", "preset": plan["preset"], "seeds": seeds, "rows": rows, "device": plan["device"],
        "code_version": plan["code_version"], "settings": plan["preset_settings"],
        "datasets": {name: {"checksum": d["checksum"], "counts": d["counts"], "path": d["dataset_path"]}
                     for name, d in datasets.items()},
        "cells_planned": len(plan["cells"]), "cells_done": len(results),
        "missing_cells": sorted(set(cells) - set(results)),
        "table": table, "claims": claims, "cells": per_cell,
        "timing": {"cells_wall_s": sum(float(c["timing"].get("cell_wall_s", 0.0)) for c in per_cell.values()),
                   "cells_cpu_s": sum(float(c["timing"].get("cell_cpu_s") or 0.0) for c in per_cell.values()),
                   "datasets_collect_s": {n: d.get("timing", {}).get("collect_s") for n, d in datasets.items()},
                   "load_average_at_report": list(os.getloadavg())},
    }


def _ope_directions(table: dict[str, Any]) -> None:
    """The paper's V^(pi) is on its own reward scale: compare each row's V^ with BatchRL-MTF's, in sign."""
    from .paper_suite import PAPER_TABLE1

    ref = table.get("batchrl-mtf", {}).get("ope_value", {}).get("mean")
    paper_ref = PAPER_TABLE1["batchrl-mtf"]["ope"]
    for row, entry in table.items():
        paper = PAPER_TABLE1.get(row, {}).get("ope")
        if "agrees" not in entry:
            continue
        ours = entry.get("ope_value", {}).get("mean")
        if row == "batchrl-mtf" or paper is None or ours is None or ref is None:
            entry["agrees"]["ope_vs_batchrl_mtf"] = "--"
        else:
            entry["agrees"]["ope_vs_batchrl_mtf"] = "yes" if (ours > ref) == (paper > paper_ref) else "no"


def _get(table, row, *path):
    value = table.get(row)
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def paper_claims(table: Mapping[str, Any]) -> list[dict[str, str]]:
    """The paper's qualitative claims, each judged on our numbers: reproduced / not reproduced / inconclusive / n.a."""

    def verdict(ci: Mapping | None, positive: bool = True) -> str:
        if ci and ci.get("n_seeds") == 1 and ci.get("ci") is None:
            return "not available (needs >= 2 seeds)"
        if not ci or ci.get("mean") is None or ci.get("half_width") is None or not math.isfinite(ci["half_width"]):
            return "not available"
        low, high = ci["ci_low"], ci["ci_high"]
        if low > 0:
            return "reproduced" if positive else "not reproduced"
        if high < 0:
            return "not reproduced" if positive else "reproduced"
        return "inconclusive (CI includes 0)"

    def diff(a: str, b: str, *path) -> dict | None:
        """Paired over seeds: mean of per-seed (a - b) with the t CI over seeds."""
        xa, xb = _get(table, a, *path, "per_seed"), _get(table, b, *path, "per_seed")
        if not xa or not xb or len(xa) != len(xb):
            return None
        out = pooled([u - v for u, v in zip(xa, xb)], [float("nan")])
        if out["n_seeds"] == 1:
            out["ci"] = None  # one seed: no interval for a difference of two rows
        return out

    claims = []
    for metric, label in (("adtime_s", "ADTime"), ("upi_rate", "UPIRate")):
        claims.append({"claim": f"BatchRL-MTF above BO ({label} lift > 0)",
                       "verdict": verdict(_get(table, "batchrl-mtf", "lifts", metric))})
    for row, label in (("td3", "TD3"), ("uwac-td3", "UWAC+TD3")):
        claims.append({"claim": f"{label} below BatchRL-MTF (true value)",
                       "verdict": verdict(diff("batchrl-mtf", row, "true_value"))})
    q = _get(table, "cql-sac", "q_at_initial_states", "mean")
    tv = _get(table, "cql-sac", "true_value", "mean")
    claims.append({"claim": "CQL+SAC overestimates: its critic's Q(s0, pi(s0)) above its true value",
                   "verdict": "not available" if q is None or tv is None else
                   ("reproduced" if q > tv else "not reproduced") + f" (Q {q:.3f} vs true {tv:.3f}; one number per "
                   "seed, no CI)"})
    claims.append({"claim": "Mixed exploration above random-only (BatchRL-MTF vs -RE, true value)",
                   "verdict": verdict(diff("batchrl-mtf", "batchrl-mtf-re", "true_value"))})
    claims.append({"claim": "Seesaw: -Rtime has a higher ADTime lift than -Rinteraction",
                   "verdict": verdict(diff("batchrl-mtf-rtime", "batchrl-mtf-rinteraction", "lifts", "adtime_s"))})
    claims.append({"claim": "Seesaw: -Rinteraction has a higher UPIRate lift than -Rtime",
                   "verdict": verdict(diff("batchrl-mtf-rinteraction", "batchrl-mtf-rtime", "lifts", "upi_rate"))})
    return claims


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------
def _ci(entry: Mapping | None, spec: str = "{:.4f}", suffix: str = "") -> str:
    if not entry or entry.get("mean") is None:
        return "--"
    half = entry.get("half_width")
    half_text = "" if half is None or not math.isfinite(half) else f" +- {spec.replace('+', '').format(half)}{suffix}"
    return f"{spec.format(entry['mean'])}{suffix}{half_text}"


def _paper(value: float | None, spec: str) -> str:
    return "--" if value is None else spec.format(value)


def to_markdown(res: Mapping[str, Any]) -> str:
    table, s = res["table"], res["settings"]
    ev = s["evaluation"]
    lines = [f"# Paper suite, preset `{res['preset']}` (seeds {res['seeds']})", "",
             f"{res['cells_done']} of {res['cells_planned']} cells finished"
             + (f"; missing: {', '.join(res['missing_cells'])}" if res["missing_cells"] else "") + ".", "",
             "Each number is the mean over seeds with a 95% CI (t interval over seeds; with one seed, that seed's own "
             "interval). V^(pi): the Conservative-OPEstimator fitted on the mixed dataset's test split (default "
             "reward). True value: the expected discounted session return (gamma 0.95, default reward) from the test "
             f"split's initial states, {ev['rollouts']} rollouts each, common random numbers. Lifts: A/B test of "
             f"{ev['ab_users']} users x {ev['ab_days']} day(s) per arm against BO, paired per seed. 'Agrees': our CI "
             "excludes 0 with the paper's sign (yes) or the other sign (no); for V^, whether the row lies on the same "
             "side of BatchRL-MTF's V^ as in the paper (the paper's V^ is on its own reward scale). Q(s0, pi(s0)): "
             "the critic's value of its own final policy at the same initial states as the true value (offline "
             "methods with a critic); far above the true value is overestimation.", "",
             "## Table 1", "",
             "| Method | V^(pi) ours | V^ paper | agrees | True value | Q(s0, pi(s0)) | ADTime lift % | paper | agrees | "
             "UPIRate lift % | paper | agrees |",
             "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for row, e in table.items():
        if e["group"] != "table1":
            continue
        if not e["seeds_done"]:
            lines.append(f"| {e['label']} | (not run) |" + " |" * 11)
            continue
        paper, agrees = e.get("paper", {}), e.get("agrees", {})
        lifts = e["lifts"]
        control = row == CONTROL
        lines.append(
            f"| {e['label']} | {_ci(e['ope_value'])} | {_paper(paper.get('ope'), '{:.3f}')} | "
            f"{agrees.get('ope_vs_batchrl_mtf', '--')} | {_ci(e['true_value'])} | {_ci(e.get('q_at_initial_states'))} | "
            f"{'(control)' if control else _ci(lifts.get('adtime_s'), '{:+.3f}')} | "
            f"{_paper(paper.get('adtime'), '{:+.3f}')} | {agrees.get('adtime', '--')} | "
            f"{'(control)' if control else _ci(lifts.get('upi_rate'), '{:+.3f}')} | "
            f"{_paper(paper.get('upirate'), '{:+.3f}')} | {agrees.get('upirate', '--')} |")
    variants = [(r, e) for r, e in table.items() if "true_value_own_reward" in e]
    if variants:
        lines += ["", "Reward variants judged on their own training reward (true value): " + "; ".join(
            f"{e['label']} {_ci(e['true_value_own_reward'])}" for _, e in variants) + "."]
    lines += ["", "## Table 2 (more baselines; not in the paper)", "",
              "| Method | V^(pi) | True value | Q(s0, pi(s0)) | ADTime lift % | UPIRate lift % |",
              "|---|---:|---:|---:|---:|---:|"]
    for row, e in table.items():
        if e["group"] in ("table2", "reference") and e["seeds_done"]:
            lines.append(f"| {e['label']} | {_ci(e['ope_value'])} | {_ci(e['true_value'])} | "
                         f"{_ci(e.get('q_at_initial_states'))} | {_ci(e['lifts'].get('adtime_s'), '{:+.3f}')} | "
                         f"{_ci(e['lifts'].get('upi_rate'), '{:+.3f}')} |")
    lines += ["", "## The paper's claims on these numbers", "", "| Claim | Verdict |", "|---|---|"]
    lines += [f"| {c['claim']} | {c['verdict']} |" for c in res["claims"]]
    lines += ["", "## Figures", "",
              "Each PNG has the CSV it was drawn from next to it.", "",
              "- Figure 5, critics' `Q(s0, pi(s0))` (mean and std over the test initial states) over training: "
              "![fig5](fig5_q_over_training.png)",
              "- Figure 6, fusion weights (play time, finish, like, skip) per method against the logged data: "
              "![fig6](fig6_action_distributions.png)",
              "- Figure 7, BatchRL-MTF vs BatchRL-MTF-RE vs the behaviour policy: ![fig7](fig7_exploration.png)",
              "- Figure 8, sensitivity to rho and the critic learning rate (true value, 95% CI over seeds): "
              "![fig8](fig8_sensitivity.png)",
              "- True value against training steps for every offline method: "
              "![tv](true_value_over_training.png)", ""]
    lines += ["## Settings", "", f"Code version: `{json.dumps(res['code_version'], sort_keys=True)}`.", "",
              f"Offline methods: {s['offline_steps']:,} gradient steps, hidden {tuple(s['hidden'])} (BatchRL-MTF's "
              f"VAE {tuple(s['vae_hidden'])}); online budgets {s['online_steps']}; per-algorithm overrides "
              f"`{json.dumps(s['algo_overrides'], sort_keys=True)}`; evaluation `{json.dumps(ev, sort_keys=True)}`.",
              "", "| Dataset | Source | Checksum (sha256 of the manifest's file list) | Sessions | Requests |",
              "|---|---|---|---:|---:|"]
    for name, d in res["datasets"].items():
        counts = d.get("counts") or {}
        source = _dataset_source(s['datasets'].get(name.removeprefix('dataset-'), {}))
        lines.append(f"| {name} | {source} | `{d['checksum']}` | "
                     f"{counts.get('sessions', '--')} | {counts.get('requests', '--')} |")
    lines += ["", "## Wall time per cell", "",
              "CPU s: this process's CPU time (one torch thread), what the cell costs on a dedicated core.", "",
              "| Cell | Wall s | CPU s | Train s | True value s | V^ s | A/B s | load avg |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in res["cells"].items():
        t = c["timing"]
        cpu = t.get("cell_cpu_s")
        lines.append(f"| {name} | {t.get('cell_wall_s', 0):.1f} | {'--' if cpu is None else f'{cpu:.1f}'} | "
                     f"{t.get('train_s', 0):.1f} | "
                     f"{t.get('true_value_s', 0):.1f} | {t.get('ope_s', 0):.1f} | {t.get('ab_s', 0):.1f} | "
                     f"{(t.get('load_average_at_end') or [float('nan')])[0]:.2f} |")
    collect = ", ".join(f"{k} {v:.1f} s" for k, v in res["timing"]["datasets_collect_s"].items() if v is not None)
    lines += ["", f"Sum of cell wall times: {res['timing']['cells_wall_s']:.0f} s (CPU {res['timing']['cells_cpu_s']:.0f} s, "
              f"where recorded); dataset collection: {collect}."]
    return "\n".join(lines) + "\n"


def figure_tables(suite_dir: str | Path) -> dict[str, "object"]:
    """The tidy data frames of the suite figures, read from the finished cells of a suite directory.

    fig5: row, seed, step, q_mean, q_std (critic's Q(s0, pi(s0)) over the test initial states);
    fig6: row, seed, weight, alpha (fusion weights on fixed test states; row ``logged data``);
    fig7 / fig8: row, seed, true_value (fig8 also parameter, value);
    true_value_over_training: row, seed, step, true_value.
    """
    import pandas as pd

    from mtf_env.fusion import action_to_alpha
    from mtf_env.tasks import TASK_INDEX

    from .cells import is_done, load_actions, read_result
    from .paper_suite import MAIN_CRITIC_LR, MAIN_RHO, ROW_BY_NAME
    from .plots import FIG6_TASKS

    suite_dir = Path(suite_dir)
    plan = json.loads((suite_dir / PLAN_NAME).read_text())
    fig5, fig6, fig7, fig8, tv = [], [], [], [], []
    for cell in plan["dataset_cells"]:
        if cell["row"] == "dataset-mixed" and is_done(cell, suite_dir):
            alpha = action_to_alpha(load_actions(cell, suite_dir))
            fig6 += [{"row": "logged data", "seed": None, "weight": w, "alpha": float(a)}
                     for w in FIG6_TASKS for a in alpha[:, TASK_INDEX[w]]]
    for cell in plan["cells"]:
        if not is_done(cell, suite_dir):
            continue
        result, row, seed = read_result(cell, suite_dir), ROW_BY_NAME[cell["row"]], cell["seed"]
        value = result["true_value"]["default"]["value"]
        for c in result["checkpoints"]:
            tv.append({"row": row.name, "seed": seed, "step": c["step"], "true_value": c["true_value"]})
            if c["q_mean"] is not None:
                fig5.append({"row": row.name, "seed": seed, "step": c["step"], "q_mean": c["q_mean"],
                             "q_std": c["q_std"]})
        if row.group in ("table1", "table2") and seed == plan["seeds"][0]:
            alpha = action_to_alpha(load_actions(cell, suite_dir))
            fig6 += [{"row": row.name, "seed": seed, "weight": w, "alpha": float(a)}
                     for w in FIG6_TASKS for a in alpha[:, TASK_INDEX[w]]]
        if row.name in ("batchrl-mtf", "batchrl-mtf-re", "behaviour-noise", "behaviour-random", "production"):
            fig7.append({"row": row.name, "seed": seed, "true_value": value})
        if row.name == "batchrl-mtf" or row.group == "sensitivity":
            rho = dict(row.overrides).get("rho", MAIN_RHO)
            lr = dict(row.overrides).get("lr_critic", MAIN_CRITIC_LR)
            if row.name == "batchrl-mtf" or "rho" in row.overrides:
                fig8.append({"row": row.name, "seed": seed, "parameter": "rho", "value": rho, "true_value": value})
            if row.name == "batchrl-mtf" or "lr_critic" in row.overrides:
                fig8.append({"row": row.name, "seed": seed, "parameter": "lr_critic", "value": lr,
                             "true_value": value})
    columns = {"fig5_q_over_training": (fig5, ["row", "seed", "step", "q_mean", "q_std"]),
               "fig6_action_distributions": (fig6, ["row", "seed", "weight", "alpha"]),
               "fig7_exploration": (fig7, ["row", "seed", "true_value"]),
               "fig8_sensitivity": (fig8, ["row", "seed", "parameter", "value", "true_value"]),
               "true_value_over_training": (tv, ["row", "seed", "step", "true_value"])}
    return {stem: pd.DataFrame(rows, columns=cols) for stem, (rows, cols) in columns.items()}


def write_report(out: str | Path, figures: bool = True) -> dict[str, Any]:
    """Write ``results.json``, ``report.md`` and (``figures``) the figures into the suite directory ``out``."""
    from mtf_env.files import write_json

    out = Path(out)
    res = collect_results(out)
    write_json(out / "results.json", res)
    (out / "report.md").write_text(to_markdown(res))
    if figures and res["cells_done"]:
        from .plots import suite_figures

        suite_figures(out, figure_tables(out))
    return res


def _dataset_source(spec: Mapping[str, Any]) -> str:
    """One table cell saying where a suite dataset came from (a collection, or a loop's training window)."""
    if spec.get("source") == "loop":
        loop = spec.get("loop") or {}
        return f"loop `{loop.get('directory')}`, days {loop.get('days')}"
    collect = spec.get("collect") or {}
    return (f"collected: {collect.get('policy')}, {collect.get('n_sessions', 0):,} sessions x "
            f"{collect.get('n_days')} day(s)")
