"""The paper suite (benchmarks.suites.paper_suite): cell keys, input validation, resume after a kill."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.suites import paper_suite
from benchmarks.suites.runner import run_suite
from benchmarks.suites.cells import cell_key, make_cell
from benchmarks.suites.paper_suite import ROW_BY_NAME, SUITE_PRESETS, method_inputs
from benchmarks.suites.suite_report import strip_timing

VERSION = {"package": "batchrl-mtf-bench", "version": "0.1.0", "git_commit": "a" * 40, "git_dirty": False}
#: Rows of the resume test: an online control, an offline critic, a fixed policy.
TINY_ROWS = ["bo", "batchrl-mtf", "production"]


def tiny_preset() -> paper_suite.SuitePreset:
    """The smoke preset shrunk to seconds (300 sessions, 20 gradient steps)."""
    smoke = SUITE_PRESETS["smoke"]
    datasets = {name: dataclasses.replace(spec, collect={**spec.collect, "n_sessions": 300, "batch_size": 512},
                                          sim={"n_users": 3000, "n_items": 4000})
                for name, spec in smoke.datasets.items()}
    evaluation = {**smoke.evaluation, "ab_users": 60, "action_states": 40, "checkpoints": 2,
                  "ope": {**smoke.evaluation["ope"], "n_steps": 10, "n_initial_states": 20, "n_bootstrap": 20}}
    return dataclasses.replace(smoke, name="tiny", datasets=datasets, seeds=(0,), offline_steps=20,
                               evaluation=evaluation)


def _inputs(row="batchrl-mtf", checksum="c" * 64, preset="smoke", device="cpu"):
    return method_inputs(ROW_BY_NAME[row], SUITE_PRESETS[preset], checksum, device)


def test_cell_key_changes_with_settings_data_seed_and_code_only():
    base = cell_key("method", _inputs(), 0, VERSION)
    assert base == cell_key("method", _inputs(), 0, dict(VERSION))  # same inputs: same key
    assert base == cell_key("method", json.loads(json.dumps(_inputs())), 0, VERSION)  # JSON round trip
    different = {
        "seed": cell_key("method", _inputs(), 1, VERSION),
        "data": cell_key("method", _inputs(checksum="d" * 64), 0, VERSION),
        "method": cell_key("method", _inputs(row="td3"), 0, VERSION),
        "setting (rho)": cell_key("method", _inputs(row="batchrl-mtf-rho0.05"), 0, VERSION),
        "reward": cell_key("method", _inputs(row="batchrl-mtf-rtime"), 0, VERSION),
        "budget (preset)": cell_key("method", _inputs(preset="small"), 0, VERSION),
        "device": cell_key("method", _inputs(device="cuda"), 0, VERSION),
        "code version": cell_key("method", _inputs(), 0, {**VERSION, "git_commit": "b" * 40}),
        "dirty tree": cell_key("method", _inputs(), 0, {**VERSION, "git_dirty": True}),
    }
    assert base not in different.values()
    assert len(set(different.values())) == len(different)
    # where the dataset lies is not an input (its checksum is); nor is anything but the hashed code-version fields
    a = make_cell("method", "batchrl-mtf", 0, _inputs(), VERSION, dataset_path="datasets/one")
    b = make_cell("method", "batchrl-mtf", 0, _inputs(), {**VERSION, "note": "x"}, dataset_path="datasets/two")
    assert a["key"] == b["key"] == base
    json.dumps(a)  # a cell is plain data


def test_every_preset_builds_valid_agent_configs():
    paper_suite.check_presets_configs()
    assert set(paper_suite.check_only(None)) == set(ROW_BY_NAME)
    rhos = {ROW_BY_NAME[r].overrides.get("rho") for r in ROW_BY_NAME} - {None}
    assert rhos | {paper_suite.MAIN_RHO} == {0.05, 0.1, 0.15, 0.2, 0.3}


@pytest.mark.parametrize("argv, message", [
    (["--preset", "huge"], "--preset: unknown preset 'huge'"),
    (["--preset", "smoke", "--only", "batchrl-mtf", "nope"], "--only: unknown cell(s) ['nope']"),
    (["--preset", "smoke", "--seeds", "0,x"], "--seeds expects comma-separated"),
    (["--preset", "smoke", "--seeds", "1,1"], "--seeds expects distinct"),
    (["--preset", "smoke", "--seeds", "-1"], "--seeds expects distinct non-negative"),
    (["--preset", "smoke", "--device", "tpu"], "--device must be cpu or cuda"),
    (["--preset", "smoke", "--workers", "0"], "--workers must be a positive integer"),
])
def test_run_validates_inputs_before_any_work(tmp_path, capsys, argv, message):
    from benchmarks.cli import main

    out = tmp_path / "suite"
    assert main(["suite", "run", *argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


_RUN_TINY = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_paper_suite import TINY_ROWS, tiny_preset
    from benchmarks.suites import paper_suite
    from benchmarks.suites.runner import run_suite
    paper_suite.SUITE_PRESETS["tiny"] = tiny_preset()
    run_suite("tiny", {out!r}, only=TINY_ROWS, show_progress=False)
""")


def test_killed_and_resumed_suite_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    from benchmarks.suites.cells import CELLS_DIR

    monkeypatch.setitem(SUITE_PRESETS, "tiny", tiny_preset())
    straight = tmp_path / "straight"
    # uninterrupted, with 2 worker processes (cells are plain data: the workers need no preset); the killed and
    # resumed run below is sequential, so this also shows that the executor does not change the results
    run_suite("tiny", straight, only=TINY_ROWS, show_progress=False, workers=2)
    expected = json.loads((straight / "results.json").read_text())
    assert expected["cells_done"] == expected["cells_planned"] == len(TINY_ROWS)

    # a real kill (SIGKILL) of a suite process once its first method cell is written
    killed = tmp_path / "killed"
    code = _RUN_TINY.format(tests=str(Path(__file__).parent), out=str(killed))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if list((killed / CELLS_DIR).glob("bo__*.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the suite finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    finished = {p.name: p.stat().st_mtime_ns for p in (killed / CELLS_DIR).glob("*.json")}
    names = {name.split("__")[0] for name in finished}
    assert {"dataset-mixed", "bo"} <= names and "production" not in names  # killed half-way

    run_suite("tiny", killed, only=TINY_ROWS, show_progress=False)
    resumed = json.loads((killed / "results.json").read_text())
    # finished cells were not run again; the results equal the uninterrupted run's, timings aside
    assert {p.name: p.stat().st_mtime_ns for p in (killed / CELLS_DIR).glob("*.json") if p.name in finished} == finished
    assert strip_timing(resumed) == strip_timing(expected)
    for name in ("report.md", "fig5_q_over_training.png", "fig5_q_over_training.csv", "fig8_sensitivity.csv"):
        assert (killed / name).is_file(), name

    # a third call finds every cell finished and runs none
    calls = []

    class Counting:
        def submit(self, cells, out_dir):
            calls.extend(cells)
            return iter(())

    run_suite("tiny", killed, only=TINY_ROWS, show_progress=False, executor=Counting())
    assert calls == []
