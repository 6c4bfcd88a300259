"""Regression benchmark: the paper suite's ``smoke`` preset against its committed reference (``pytest -m benchmark``).

The reference (``benchmarks/reference/suite_smoke/reference.json``) holds each cell's figures and,
per row and figure, a tolerance of 3 standard deviations over the reference's seeds
(:mod:`benchmarks.suites.regression`). Set ``MTF_SUITE_SMOKE_DIR`` to keep (and reuse) the
suite directory; by default it runs in a temporary one (about 10 minutes on 2 cores).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference" / "suite_smoke" / "reference.json"


@pytest.mark.benchmark
def test_smoke_suite_matches_reference(tmp_path):
    from benchmarks.suites.runner import run_suite
    from benchmarks.suites.regression import compare

    reference = json.loads(REFERENCE.read_text())
    out = Path(os.environ.get("MTF_SUITE_SMOKE_DIR", tmp_path / "smoke"))
    results = run_suite("smoke", out, seeds=reference["seeds"], show_progress=False)
    assert results["cells_done"] == results["cells_planned"] == len(reference["cells"])
    assert {n: d["checksum"] for n, d in results["datasets"].items()} == reference["datasets"]
    problems = compare(results, reference)
    assert not problems, "smoke suite regressed:\n" + "\n".join(problems)


def test_compare_flags_a_figure_outside_the_seed_spread():
    """The comparison itself (no suite run): equal results pass, one figure moved by 4 sd fails."""
    from benchmarks.suites.regression import compare, make_reference

    def results(shift=0.0):
        cells = {f"m/seed{s}": {"row": "m", "seed": s, "figures": {"true_value": 2.0 + 0.1 * s + (shift if s == 1 else 0),
                                                                   "ope_value": None}}
                 for s in (0, 1, 2)}
        return {"preset": "x", "seeds": [0, 1, 2], "code_version": {}, "datasets": {}, "cells": cells}

    reference = make_reference(results())
    assert reference["tolerances"]["m"]["true_value"] == pytest.approx(0.3)  # 3 x sd of (2.0, 2.1, 2.2)
    assert compare(results(), reference) == []
    assert compare(results(0.29), reference) == []
    problems = compare(results(0.4), reference)
    assert len(problems) == 1 and problems[0].startswith("m/seed1 true_value")
    with pytest.raises(ValueError, match="at least 2 seeds"):
        make_reference({**results(), "seeds": [0]})
