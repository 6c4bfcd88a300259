"""Smoke tests of ``mtf-bench ope`` (benchmarks/cli/ope.py, benchmarks/evaluation/estimators.py) on a tiny collected dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.cli import main
from benchmarks.evaluation.estimators import load_test_split

TINY = ["--steps", "20", "--batch-size", "32", "--hidden", "16,16", "--target-update-every", "5",
        "--n-initial", "30", "--n-bootstrap", "50", "--no-progress"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the command sets one thread


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from mtf_env.config import SimConfig
    from agents.behaviour import collection_policy
    from mtf_env.dataset import CollectConfig, collect_dataset

    collect = CollectConfig(policy="mixed", n_sessions=400, seed=2, batch_size=400)
    return collect_dataset(tmp_path_factory.mktemp("ope_cli") / "tiny", SimConfig(n_users=2000, n_items=3000),
                           collect, collection_policy(collect), progress=False)


def test_ope_command_writes_json_and_markdown(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "res" / "ope.json"
    rc = main(["ope", "--policy", "static:production", "--policy", "static:time-only", "--data", str(tiny_dataset),
               "--alpha-c", "1e-3", "--seed", "3", "--out", str(out), *TINY])
    assert rc == 0
    result = json.loads(out.read_text())
    assert [r["policy"] for r in result["results"]] == ["static:production", "static:time-only"]
    assert result["config"]["alpha_c"] == 1e-3 and result["config"]["n_steps"] == 20
    assert result["dataset"]["split"] == "test" and result["dataset"]["n_initial_states"] == 30
    for r in result["results"]:
        assert np.isfinite(r["value"]) and r["ci_low"] <= r["value"] <= r["ci_high"]
        assert r["n_states"] == 30
    md = out.with_suffix(".md").read_text()
    assert "| static:production |" in md and "| static:time-only |" in md
    assert "static:production" in capsys.readouterr().out
    # same seed -> same estimate
    out2 = tmp_path / "again.json"
    assert main(["ope", "--policy", "static:production", "--data", str(tiny_dataset), "--alpha-c", "1e-3",
                 "--seed", "3", "--out", str(out2), *TINY]) == 0
    assert json.loads(out2.read_text())["results"][0]["value"] == result["results"][0]["value"]


def test_ope_command_d3rlpy_reference(tiny_dataset, tmp_path):
    out = tmp_path / "d3.json"
    assert main(["ope", "--policy", "static:production", "--data", str(tiny_dataset), "--estimator", "d3rlpy-fqe",
                 "--alpha-c", "0", "--out", str(out), *TINY]) == 0
    assert np.isfinite(json.loads(out.read_text())["results"][0]["value"])


@pytest.mark.parametrize("args, message", [
    (["--policy", "static:nope"], "static:nope"),
    (["--policy", "no/such/run"], "unknown policy"),
    (["--policy", "static:production", "--alpha-c", "-1"], "alpha-c"),
    (["--policy", "static:production", "--estimator", "d3rlpy-fqe"], "alpha-c 0"),
])
def test_ope_command_refuses_bad_specs(tiny_dataset, tmp_path, capsys, args, message):
    out = tmp_path / "x.json"
    assert main(["ope", *args, "--data", str(tiny_dataset), "--out", str(out), *TINY]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_ope_command_refuses_bad_data(tmp_path, capsys):
    assert main(["ope", "--policy", "static:production", "--data", str(tmp_path / "absent"),
                 "--out", str(tmp_path / "x.json"), *TINY]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["ope", "--policy", "static:production", "--data", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "x.json"), *TINY]) == 2
    assert "manifest" in capsys.readouterr().err.lower()
    with pytest.raises(SystemExit):  # argparse: bad --hidden
        main(["ope", "--policy", "static:production", "--data", "x", "--out", "x.json", "--hidden", "a,b"])


def test_load_test_split_draws_matching_states_and_users(tiny_dataset):
    split = load_test_split(tiny_dataset, n_initial=10, seed=0)
    assert split.initial_observations.shape == (10, split.data.obs_dim)
    assert split.initial_user_ids.shape == (10,)
    full = load_test_split(tiny_dataset, n_initial=10_000, seed=0)
    assert len(full.initial_user_ids) == full.dataset.n_sessions
    # the drawn states are rows of the full set, with their users
    for obs, user in zip(split.initial_observations, split.initial_user_ids):
        same_state = (full.initial_observations == obs).all(1)
        assert user in full.initial_user_ids[same_state]
    with pytest.raises(ValueError, match="positive integer"):
        load_test_split(tiny_dataset, n_initial=0, seed=0)
