"""Training on the data an explore -> retrain loop produced: merging a window's days, and the suite's ``loop``
source (Table 1 trained on the loop's last window, as the paper did)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from agents.behaviour import collection_policy
from mtf_env.dataset import CollectConfig, collect_dataset, load_dataset
from mtf_env.dataset_io import DatasetError
from mtf_env.dataset_merge import merge_datasets


def _collect(path, config, seed, n=150, n_days=1):
    collect = CollectConfig(policy="mixed", n_sessions=n, seed=seed, n_days=n_days, batch_size=n)
    return collect_dataset(path, config, collect, collection_policy(collect), progress=False)


@pytest.fixture(scope="module")
def two_days(tmp_path_factory, small_config):
    root = tmp_path_factory.mktemp("days")
    return [_collect(root / "day0", small_config, 0, n_days=2), _collect(root / "day1", small_config, 1, n=90)]


def test_merge_concatenates_in_order_and_tests_on_the_last_source(two_days, tmp_path):
    out = merge_datasets(two_days, tmp_path / "merged", description="two days")
    merged = load_dataset(out, split="all")  # full validation: layout, flags, ids, checksums
    parts = [load_dataset(p, split="all") for p in two_days]
    got, want = merged.transitions(), [p.transitions() for p in parts]
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        assert np.array_equal(getattr(got, name), np.concatenate([getattr(w, name) for w in want])), name
    assert merged.n_sessions == 240
    # days continue: the first source's two days stay 0 and 1, the second's day 0 becomes 2
    assert np.array_equal(merged.session_column("day"),
                          np.concatenate([parts[0].session_column("day"), parts[1].session_column("day") + 2]))
    assert np.array_equal(merged.session_column("user_id"),
                          np.concatenate([p.session_column("user_id") for p in parts]))
    # the paper's split on the merged order: the 24 test sessions are the end of the last source
    test = load_dataset(out, split="test")
    assert test.n_sessions == 24
    assert np.array_equal(test.session_column("user_id"), parts[1].session_column("user_id")[-24:])
    manifest = merged.manifest
    assert manifest["collection"]["policy"] == "merged" and manifest["collection"]["description"] == "two days"
    assert [s["counts"]["sessions"] for s in manifest["collection"]["sources"]] == [150, 90]
    # the same inputs give the same bytes
    again = merge_datasets(two_days, tmp_path / "again")
    assert ([f["sha256"] for f in load_dataset(again, split="all").manifest["files"]]
            == [f["sha256"] for f in manifest["files"]])


def test_merge_refuses_another_world_or_a_corrupt_source_and_writes_nothing(two_days, tmp_path, small_config):
    other = _collect(tmp_path / "other", dataclasses.replace(small_config, n_items=3000), 2, n=40)
    with pytest.raises(DatasetError, match="other: its sim_config differs"):
        merge_datasets([two_days[0], other], tmp_path / "out")
    assert not (tmp_path / "out").exists()

    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(two_days[1], broken)
    part = next((broken / "requests").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="broken"):
        merge_datasets([two_days[0], broken], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="train_fraction"):
        merge_datasets(two_days, tmp_path / "out", train_fraction=1.0)


@pytest.fixture(scope="module")
def tiny_loop(tmp_path_factory, small_config):
    from benchmarks.evaluation.explore_loop import LoopConfig, run_loop

    out = tmp_path_factory.mktemp("loop") / "td3"
    config = LoopConfig(algo="td3", rounds=2, users=120, steps=20, window_days=3, eval_users=40, eval_rollouts=1,
                        ab_users=0, ope_steps=0, overrides={"hidden": [16, 16], "batch_size": 32}, seed=1)
    run_loop(config, out, small_config, show_progress=False)
    return out


def test_window_data_dirs_and_their_errors(tiny_loop, tmp_path):
    from benchmarks.evaluation.explore_loop import window_data_dirs

    dirs, days = window_data_dirs(tiny_loop)
    assert days == [0, 1] and dirs == [tiny_loop / "round_00" / "data", tiny_loop / "round_01" / "data"]
    assert window_data_dirs(tiny_loop, day=0) == ([tiny_loop / "round_00" / "data"], [0])
    with pytest.raises(ValueError, match="round 5 .* is not finished"):
        window_data_dirs(tiny_loop, day=5)
    with pytest.raises(ValueError, match="is not a loop directory"):
        window_data_dirs(tmp_path)
    (tmp_path / "bo").mkdir()
    (tmp_path / "bo" / "loop.json").write_text(json.dumps({"config": {"algo": "bo", "window_days": 3}}))
    with pytest.raises(ValueError, match="a bo loop, which logs no data"):
        window_data_dirs(tmp_path / "bo")


def test_suite_trains_table1_on_the_loops_last_window(tiny_loop, tmp_path, monkeypatch):
    from benchmarks.suites import paper_suite
    from benchmarks.suites.runner import run_suite

    from tests.test_paper_suite import tiny_preset

    monkeypatch.setitem(paper_suite.SUITE_PRESETS, "tiny", tiny_preset())
    out = tmp_path / "suite"
    result = run_suite("tiny", out, only=["td3", "production"], show_progress=False, loop_data=tiny_loop)
    assert result["cells_done"] == 2
    window = [load_dataset(tiny_loop / f"round_{d:02d}" / "data", split="all") for d in (0, 1)]
    assert result["datasets"]["dataset-mixed"]["counts"]["sessions"] == sum(w.n_sessions for w in window) == 240
    trained_on = load_dataset(out / result["datasets"]["dataset-mixed"]["path"], split="all")
    assert np.array_equal(trained_on.actions, np.concatenate([w.actions for w in window]))
    report = (out / "report.md").read_text()
    assert f"loop `{tiny_loop.resolve()}`, days [0, 1]" in report
    # the planned window is checked when the dataset cell runs: a changed loop is refused, not silently used
    from benchmarks.suites.cells import DATASET_SOURCES

    spec = paper_suite.loop_dataset_spec(tiny_loop)
    assert spec.loop["days"] == [0, 1] and len(spec.loop["files_sha256"]) == 2
    stale = {**spec.loop, "files_sha256": [spec.loop["files_sha256"][0], ["0" * 64]]}
    with pytest.raises(ValueError, match="round_01/data changed since the suite was planned"):
        DATASET_SOURCES["loop"]({"loop": stale}, tmp_path / "stale", False)
    assert not (tmp_path / "stale").exists()


@pytest.mark.parametrize("extra, message", [
    (["--loop-data", "{tmp}"], "--loop-data: {tmp} is not a loop directory"),
    (["--loop-data-random", "{tmp}"], "--loop-data-random needs --loop-data"),
])
def test_suite_run_loop_data_errors_are_one_line(tmp_path, capsys, extra, message):
    from benchmarks.cli import main

    out = tmp_path / "suite"
    argv = [a.format(tmp=tmp_path) for a in extra]
    assert main(["suite", "run", "--preset", "smoke", *argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
