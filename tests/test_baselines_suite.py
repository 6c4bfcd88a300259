"""The baselines comparison suite (benchmarks.suites.baselines) end to end on a tiny dataset, and its figures."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.suites.plots import ACTIONS_FIGURE, Q_FIGURE, plot_action_distributions, plot_q_vs_true
from benchmarks.suites.baselines import REFERENCE, network_overrides, parse_method_overrides, run, suite_algos

TINY = {
    "bo": {"n_users": 40, "n_init": 2, "n_candidates": 32, "gp_restarts": 0},
    "es": {"n_users": 20, "n_pairs": 1, "hidden": [4]},
    "td3": {"batch_size": 16},
    "bc": {"batch_size": 16},
}



@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, small_config):
    from agents.behaviour import collection_policy
    from mtf_env.dataset import CollectConfig, collect_dataset

    out = tmp_path_factory.mktemp("data") / "tiny"
    collect = CollectConfig(policy="mixed", n_sessions=300, seed=0)
    collect_dataset(out, small_config, collect, collection_policy(collect), progress=False)
    return out


def test_suite_end_to_end_and_reuse(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    kwargs = dict(steps=4, algos=["td3", "bo", "bc", "es"], online_steps={"bo": 3, "es": 1}, hidden=(8, 8),
                  overrides=TINY, rollouts=1, users=30, action_states=40, q_checkpoints=2, show_progress=False)
    result = run(tiny_dataset, out, **kwargs)
    methods = result["methods"]
    assert list(methods) == ["bo", "es", "td3", "bc", REFERENCE]
    assert result["control"] == "bo" and methods["bo"]["lifts_vs_control"] is None
    for name in ("es", "td3", "bc", REFERENCE):
        lifts = methods[name]["lifts_vs_control"]
        assert {"adtime_s", "upi_rate"} <= set(lifts) and np.isfinite(lifts["upi_rate"]["lift_pct"])
    # the online budgets next to the results; offline methods spend none
    assert methods["bo"]["online_budget"]["sessions"] == 3 * 40
    assert methods["es"]["online_budget"]["sessions"] == 2 * 20
    assert methods["td3"]["online_budget"] is None and methods["td3"]["step_unit"] == "gradient steps"
    assert methods["td3"]["overrides"]["hidden"] == [8, 8]
    # Figure 5's numbers: the critic's estimate against the true value; BC has no critic
    q = methods["td3"]["q"]
    assert np.isfinite(q["q_policy_at_initial_states"]) and np.isfinite(q["q_mean_over_training"])
    assert q["overestimate_at_initial_states"] == pytest.approx(
        q["q_policy_at_initial_states"] - methods["td3"]["true_value"]["value"])
    assert methods["bc"]["q"] is None and methods["bo"]["q"] is None
    # the critic was trained in 2 resumed chunks, with its estimate after each; the weights are one run's
    curves = json.loads((out / "q_curves.json").read_text())
    assert curves["td3"]["q_initial_states_step"] == [2, 4] and set(curves) == {"td3"}
    assert curves["td3"]["q_initial_states"][-1] == q["q_policy_at_initial_states"]
    from agents.registry import algo_class
    from benchmarks.evaluation.training import make_agent
    from mtf_env.dataset import load_dataset

    straight = make_agent("td3", {"hidden": (8, 8), "batch_size": 16})
    straight.fit(load_dataset(tiny_dataset, split="train").transitions(), 4, seed=0, show_progress=False)
    chunked = algo_class("td3").load(methods["td3"]["run_dir"]).state_dict()
    assert all(torch.equal(v, chunked[k]) for k, v in straight.state_dict().items())
    for name in ("results.json", "results.md", "ab.json", "ab.md", "q_curves.json", Q_FIGURE, ACTIONS_FIGURE):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert "| bo | online | 3 online rounds | 120 / " in (out / "results.md").read_text()
    with np.load(out / "actions.npz", allow_pickle=False) as f:
        assert list(f["names"]) == ["data", "bo", "es", "td3", "bc", REFERENCE]
        actions = f["actions"]
    assert actions.shape == (6, 40, 12) and np.all(np.abs(actions) <= 1)
    np.testing.assert_array_equal(actions[1], np.broadcast_to(actions[1][0], (40, 12)))  # BO is static

    again = run(tiny_dataset, out, plots=False, **kwargs)  # finished runs are loaded, not retrained
    assert all(again["methods"][n]["reused_run"] for n in ("bo", "es", "td3", "bc"))
    for name in methods:
        assert again["methods"][name]["true_value"] == methods[name]["true_value"]


def test_suite_settings_and_refusals(tiny_dataset, tmp_path):
    assert suite_algos(["bc", "iql", "bo", "batchrl-mtf"]) == ["bo", "batchrl-mtf", "iql", "bc"]
    with pytest.raises(ValueError, match="unknown algorithm"):
        suite_algos(["bo", "dqn"])
    assert network_overrides("bo", (64, 64), (128, 128)) == {}
    assert network_overrides("td3", (64, 64), (128, 128)) == {"hidden": (64, 64)}
    assert network_overrides("batchrl-mtf", (64, 64), (128, 128)) == {
        "actor_hidden": (64, 64), "critic_hidden": (64, 64), "vae_hidden": (128, 128)}
    assert parse_method_overrides(["bo:n_users=500", "bo:kappa=1.5", "es:hidden=[8]"]) == {
        "bo": {"n_users": 500, "kappa": 1.5}, "es": {"hidden": [8]}}
    with pytest.raises(ValueError, match="ALGO:KEY=VALUE"):
        parse_method_overrides(["n_users=500"])
    with pytest.raises(ValueError, match="not in this run"):
        run(tiny_dataset, tmp_path, algos=["bo"], overrides={"td3": {"batch_size": 8}}, show_progress=False)


SAC_TINY = {"n_envs": 2, "hidden": [8, 8], "batch_size": 8, "learning_starts": 2, "buffer_size": 200}


def test_suite_resumes_sac_online(tiny_dataset, tmp_path):
    """An unfinished sac-online run is resumed (not refused) and ends with the weights of a straight run."""
    from agents.registry import algo_class

    kwargs = dict(algos=["sac-online"], overrides={"sac-online": SAC_TINY}, rollouts=1, users=30, action_states=20,
                  q_checkpoints=1, show_progress=False, plots=False)
    first = run(tiny_dataset, tmp_path / "a", online_steps={"sac-online": 4}, **kwargs)
    assert first["methods"]["sac-online"]["steps"] == 4
    resumed = run(tiny_dataset, tmp_path / "a", online_steps={"sac-online": 8}, **kwargs)
    straight = run(tiny_dataset, tmp_path / "b", online_steps={"sac-online": 8}, **kwargs)
    assert resumed["methods"]["sac-online"]["reused_run"] is False
    assert resumed["methods"]["sac-online"]["online_budget"] == straight["methods"]["sac-online"]["online_budget"]
    want = algo_class("sac-online").load(straight["methods"]["sac-online"]["run_dir"]).state_dict()
    got = algo_class("sac-online").load(resumed["methods"]["sac-online"]["run_dir"]).state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert resumed["methods"]["sac-online"]["true_value"] == straight["methods"]["sac-online"]["true_value"]


def test_plots_read_result_files(tmp_path):
    (tmp_path / "q_curves.json").write_text(json.dumps({
        "td3": {"step": [10, 20, 30], "q_mean": [1.0, 50.0, 900.0], "q_policy_mean": [2.0, 80.0, 1500.0],
                "true_value": 2.5, "q_policy_at_initial_states": 1400.0, "q_initial_states_step": [10, 20, 30],
                "q_initial_states": [3.0, 90.0, 1400.0]},
        "cql-sac": {"step": [10, 20, 30], "q_mean": [0.5, 1.5, 2.0], "true_value": 2.6,
                    "q_policy_at_initial_states": None},
    }))
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(-1, 1, (30, 12)), np.full((30, 12), 0.2)]).astype(np.float32)
    np.savez_compressed(tmp_path / "actions.npz", names=np.array(["data", "bo"]), actions=actions,
                        state_index=np.arange(30))
    assert plot_q_vs_true(tmp_path).stat().st_size > 0
    assert plot_action_distributions(tmp_path).stat().st_size > 0
    np.savez_compressed(tmp_path / "actions.npz", names=np.array(["data"]), actions=actions, state_index=np.arange(30))
    with pytest.raises(ValueError, match="shape"):
        plot_action_distributions(tmp_path)
    with pytest.raises(FileNotFoundError):
        plot_q_vs_true(tmp_path / "missing")
