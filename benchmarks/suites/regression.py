"""Regression reference of the paper suite: each cell's figures with tolerances derived from the spread over seeds.

:func:`make_reference` keeps, from a suite's ``results.json``, each cell's figures
(:data:`METRICS`: true value, V^(pi), ADTime and UPIRate of its A/B arm, the critic's final
``Q(s0, pi(s0))``) and one tolerance per row and metric::

    tolerance(row, metric) = TOLERANCE_SDS * sd over the reference's seeds of that row's metric
                             (at least FLOOR_REL * max(1, |mean|))

so a re-run with the same seeds fails only where a cell moved by more than three times what
changing the seed moves it. A re-run with unchanged code reproduces the reference exactly
(every stream is seeded), so any failure is a change of the code's results; a change smaller
than the seed spread is not caught, by design (the tolerance is not tuned, it is measured).
The floor only keeps a row whose metric does not depend on the seed from a zero tolerance.
:func:`compare` returns one line per figure out of tolerance.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

#: Figures compared per cell (keys of ``results.json`` ``cells[name]["figures"]``).
METRICS = ("true_value", "ope_value", "adtime_s", "upi_rate", "final_q_mean")
#: Tolerance in standard deviations over seeds.
TOLERANCE_SDS = 3.0
#: Smallest tolerance, relative to max(1, |mean over seeds|).
FLOOR_REL = 1e-6


def make_reference(results: Mapping[str, Any]) -> dict[str, Any]:
    """The reference of a finished suite (needs at least 2 seeds, for the spread)."""
    if len(results["seeds"]) < 2:
        raise ValueError("a regression reference needs at least 2 seeds (its tolerances are the spread over seeds)")
    by_row: dict[str, dict[str, list[float]]] = {}
    for cell in results["cells"].values():
        for metric in METRICS:
            value = cell["figures"].get(metric)
            if value is not None:
                by_row.setdefault(cell["row"], {}).setdefault(metric, []).append(float(value))
    tolerances = {}
    for row, metrics in by_row.items():
        tolerances[row] = {}
        for metric, values in metrics.items():
            x = np.asarray(values)
            sd = float(x.std(ddof=1)) if x.size >= 2 else 0.0
            tolerances[row][metric] = max(TOLERANCE_SDS * sd, FLOOR_REL * max(1.0, abs(float(x.mean()))))
    return {
        "preset": results["preset"], "seeds": results["seeds"], "code_version": results["code_version"],
        "datasets": {name: d["checksum"] for name, d in results["datasets"].items()},
        "tolerance_rule": f"{TOLERANCE_SDS:g} x sd over the seeds of the row, at least {FLOOR_REL:g} x max(1, |mean|)",
        "cells": {name: {"row": c["row"], "seed": c["seed"], "figures": {m: c["figures"].get(m) for m in METRICS}}
                  for name, c in sorted(results["cells"].items())},
        "tolerances": tolerances,
    }


def compare(results: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Lines naming every cell figure of ``results`` outside the reference's tolerance, and missing cells."""
    problems = []
    if list(results["seeds"]) != list(reference["seeds"]):
        problems.append(f"seeds {results['seeds']} differ from the reference's {reference['seeds']}")
    for name, ref in reference["cells"].items():
        cell = results["cells"].get(name)
        if cell is None:
            problems.append(f"{name}: missing from the results")
            continue
        for metric, expected in ref["figures"].items():
            got = cell["figures"].get(metric)
            if expected is None and got is None:
                continue
            tol = reference["tolerances"][ref["row"]].get(metric)
            if got is None or expected is None or tol is None or not math.isfinite(got) or abs(got - expected) > tol:
                problems.append(f"{name} {metric}: {got} vs reference {expected} (tolerance {tol})")
    return problems


def save_reference(suite_dir, reference_dir) -> None:
    """Write ``reference.json`` (:func:`make_reference`) and copies of the report, results and figures."""
    import json
    import shutil
    from pathlib import Path

    from mtf_env.files import write_json

    from .plots import SUITE_FIGURES

    suite_dir, reference_dir = Path(suite_dir), Path(reference_dir)
    results = json.loads((suite_dir / "results.json").read_text())
    reference = make_reference(results)
    reference_dir.mkdir(parents=True, exist_ok=True)
    write_json(reference_dir / "reference.json", reference)
    for name in ["report.md", "results.json"] + [f"{s}.{ext}" for s in SUITE_FIGURES for ext in ("png", "csv")]:
        if (suite_dir / name).is_file():
            shutil.copyfile(suite_dir / name, reference_dir / name)
