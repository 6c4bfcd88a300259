"""Tests of the estimator-validation harness (benchmarks/suites/ope_validation.py), its metrics and the policy zoo.

Metric functions are checked on hand-made cases with answers worked out by hand; the zoo on
determinism and the OOD measure; the harness end to end on a tiny collected dataset.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from agents.static import StaticPolicy
from benchmarks.evaluation import policy_zoo as zoo
from benchmarks.cli import main
from benchmarks.evaluation import stats
from benchmarks.suites import ope_validation as ov



# ----------------------------------------------------------------------------------------- metrics


def test_rank_correlations_on_one_swap():
    truth, est = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0]
    # Spearman: 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert stats.spearman(truth, est) == pytest.approx(0.8)
    # Kendall: 5 concordant, 1 discordant pair of 6
    assert stats.kendall(truth, est) == pytest.approx(4 / 6)
    assert stats.spearman(truth, truth) == pytest.approx(1.0)
    assert stats.spearman(truth, truth[::-1]) == pytest.approx(-1.0)
    assert stats.kendall(truth, truth[::-1]) == pytest.approx(-1.0)
    assert np.isnan(stats.spearman(truth, [2.0, 2.0, 2.0, 2.0]))  # constant estimate: undefined


def test_regret_at_k():
    truth, est = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0]
    # the estimator's best is truth 3: (4 - 3) / (4 - 1)
    assert stats.regret_at_k(truth, est, 1) == pytest.approx(1 / 3)
    assert stats.regret_at_k(truth, est, 2) == 0.0  # the truly best is second
    assert stats.regret_at_k(truth, truth[::-1], 1) == pytest.approx(1.0)  # picks the worst
    assert stats.regret_at_k(truth, truth[::-1], 3) == pytest.approx(1 / 3)  # best of {1, 2, 3}... is 3
    assert stats.regret_at_k(truth, est, 10) == 0.0  # k beyond the zoo: everything is picked
    # ties in the estimate are broken by zoo order
    assert stats.regret_at_k([4.0, 1.0, 2.0], [0.0, 5.0, 5.0], 1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must"):
        stats.regret_at_k(truth, est, 0)


def test_nmae_share_below_and_slack():
    truth, est = [0.0, 1.0, 2.0, 4.0], [1.0, 1.0, 2.0, 2.0]
    # |errors| 1, 0, 0, 2 -> mean 0.75, range 4
    assert stats.normalised_mae(truth, est) == pytest.approx(0.1875)
    assert stats.share_below(truth, est) == pytest.approx(0.25)  # only the last is strictly below
    # slack (truth - est) / 4 = -0.25, 0, 0, 0.5 -> median 0
    assert stats.median_normalised_slack(truth, est, 4.0) == pytest.approx(0.0)
    assert stats.median_normalised_slack([4.0, 4.0, 0.0], [3.0, 2.0, 0.0], 4.0) == pytest.approx(0.25)
    assert np.isnan(stats.share_below([], []))
    assert np.isnan(stats.median_normalised_slack([], [], 1.0))


def test_metric_input_errors():
    with pytest.raises(ValueError, match="same length"):
        stats.spearman([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="all true values are equal"):
        stats.normalised_mae([1.0, 1.0], [0.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        stats.spearman([1.0, np.nan], [1.0, 2.0])


def test_estimator_metrics_and_targets():
    truth = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    ood = np.array([False, False, True, True, True])
    perfect = stats.estimator_metrics(truth, truth, ood, n_bootstrap=200, seed=1)
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["kendall"] == pytest.approx(1.0)
    assert perfect["spearman_ci"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert perfect["regret_at_1"] == 0.0 and perfect["nmae"] == 0.0 and perfect["share_below"] == 0.0
    # pessimistic by 0.4 on the OOD-heavy ones: below truth, slack 0.1 of the range
    pessimistic = truth - 0.4 * ood
    m = stats.estimator_metrics(truth, pessimistic, ood, n_bootstrap=200, seed=1)
    assert m["share_below_ood"] == 1.0 and m["share_below_in_distribution"] == 0.0
    assert m["median_slack_ood"] == pytest.approx(0.1)
    assert m["share_below"] == pytest.approx(0.6)
    assert m["spearman"] == pytest.approx(1.0)
    lo, hi = m["spearman_ci"]
    assert lo <= m["spearman"] <= hi
    targets = ov.check_targets(m)
    assert all(t["met"] for t in targets.values())
    # reversed ranking misses the rank targets
    bad = ov.check_targets(stats.estimator_metrics(truth, -truth, ood, n_bootstrap=50, seed=1))
    assert not bad["spearman"]["met"] and not bad["regret_at_1"]["met"]


def test_bootstrap_ci_is_seeded_and_covers():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=30)
    est = truth + 0.5 * rng.normal(size=30)
    a = stats.bootstrap_ci(truth, est, stats.spearman, 300, 0.9, seed=4)
    b = stats.bootstrap_ci(truth, est, stats.spearman, 300, 0.9, seed=4)
    assert a == b
    assert a[0] < stats.spearman(truth, est) < a[1]


# ----------------------------------------------------------------------------------------- zoo


def test_hash_noise_is_a_function_of_the_state():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(500, 7)).astype(np.float32)
    pol = zoo.HashNoisePolicy(StaticPolicy.preset("uniform"), 0.2, salt=3)
    a = pol.act(obs)
    assert a.shape == (500, 12) and a.dtype == np.float32 and np.all(np.abs(a) <= 1.0)
    # same state -> same action, whatever else is in the batch and in which order
    np.testing.assert_array_equal(pol.act(obs[::-1])[::-1], a)
    np.testing.assert_array_equal(pol.act(obs[7:8]), a[7:8])
    # another salt is another noise function; the noise has the asked spread around the centre
    assert not np.array_equal(zoo.HashNoisePolicy(StaticPolicy.preset("uniform"), 0.2, salt=4).act(obs), a)
    z = zoo.state_hash_normals(obs, salt=3)
    assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="std"):
        zoo.HashNoisePolicy(StaticPolicy.preset("uniform"), -1.0, salt=0)


def test_zoo_is_large_deterministic_and_deterministic_policies():
    obs = np.random.default_rng(1).normal(size=(64, 9)).astype(np.float32)
    a, b = zoo.build_zoo(seed=3), zoo.build_zoo(seed=3)
    assert len(a) >= 20
    assert len({m.name for m in a}) == len(a)
    assert {m.family for m in a} == set(zoo.FAMILIES) - {"trained"}
    for x, y in zip(a, b):
        assert x.name == y.name and not getattr(x.policy, "stochastic", False)
        np.testing.assert_array_equal(x.policy.act(obs), y.policy.act(obs))
        np.testing.assert_array_equal(x.policy.act(obs), x.policy.act(obs))
    other = zoo.build_zoo(seed=4, families=["random-static"])
    assert not np.array_equal(other[0].policy.action, [m for m in a if m.family == "random-static"][0].policy.action)
    degraded = [m for m in a if m.family == "degraded"]
    np.testing.assert_allclose(degraded[0].policy.action,
                               0.5 * (StaticPolicy.preset("production").action + zoo.ANTI_ACTION), atol=1e-6)
    with pytest.raises(ValueError, match="families"):
        zoo.build_zoo(families=["nope"])


def test_ood_distance_and_threshold():
    rng = np.random.default_rng(2)
    logged = np.clip(rng.normal(0.0, 0.3, size=(3000, 12)), -1, 1).astype(np.float32)
    obs = rng.normal(size=(200, 5)).astype(np.float32)
    thr = zoo.ood_threshold(logged)
    assert thr > 0
    centre = StaticPolicy(np.zeros(12, np.float32))
    corner = StaticPolicy(np.ones(12, np.float32))
    assert zoo.ood_distance(centre, obs, logged) < thr < zoo.ood_distance(corner, obs, logged)
    # an action that is logged has distance 0
    assert zoo.ood_distance(StaticPolicy(logged[5]), obs, logged) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        zoo.ood_threshold(logged[:1])


def test_trained_members_skip_bad_runs(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"algo": "td3"}))
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    runs = zoo.find_run_dirs(tmp_path)
    assert runs == [tmp_path / "bad"]
    members, skipped = zoo.trained_members(runs)
    assert members == [] and len(skipped) == 1 and "bad" in skipped[0]
    with pytest.raises(ValueError, match="cannot load run"):
        zoo.trained_members(runs, on_error="raise")
    assert zoo.find_run_dirs(tmp_path / "absent") == []


# ----------------------------------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from mtf_env.config import SimConfig
    from agents.behaviour import collection_policy
    from mtf_env.dataset import CollectConfig, collect_dataset

    config = SimConfig(n_users=2000, n_items=3000)
    collect = CollectConfig(policy="mixed", n_sessions=600, seed=1, batch_size=600)
    return collect_dataset(tmp_path_factory.mktemp("ope_val") / "tiny", config, collect, collection_policy(collect),
                           progress=False)


def test_tiny_end_to_end_harness(tiny_dataset, tmp_path):
    t0 = time.perf_counter()
    settings = ov.ValidationSettings(n_steps=30, batch_size=64, hidden=(16, 16), target_update_every=10,
                                     n_initial=40, n_rollouts=2, sweep_alphas=(0.0, 1e-2), n_random=1,
                                     n_bootstrap=100, n_bootstrap_states=20, td3_steps=30, td3_hidden=(16, 16))
    out = tmp_path / "val"
    result = ov.run_validation(tiny_dataset, out, settings, run_roots=(), families=["preset", "corner", "trained"],
                               train_td3=True, max_members=4, show_progress=False)
    assert time.perf_counter() - t0 < 60
    assert len(result["policies"]) == 5
    assert result["policies"][-1]["name"] == "td3:quick" and result["policies"][-1]["family"] == "trained"
    assert set(result["metrics"]) == {"conservative", "fqe", "d3rlpy-fqe"}
    for m in result["metrics"].values():
        assert -1.0 <= m["spearman"] <= 1.0 and 0.0 <= m["regret_at_1"] <= 1.0 and m["nmae"] >= 0.0
    assert [r["alpha_c"] for r in result["alpha_sweep"]] == [0.0, 1e-2]
    assert result["dataset"]["initial_state_max_abs_diff"] == 0.0  # true values start in the logged states
    assert set(result["targets"]) == {"spearman", "regret_at_1", "share_below_ood", "median_slack_ood"}
    for name in ("result.json", "result.md", "scatter.png", "alpha_sweep.png"):
        assert (out / name).is_file()
    saved = json.loads((out / "result.json").read_text())
    assert saved["metrics"]["fqe"]["spearman"] == pytest.approx(result["metrics"]["fqe"]["spearman"])
    # the report is redrawn from the files alone
    (out / "result.md").unlink()
    assert main(["suite", "ope-validation", "--out", str(out), "--report-only"]) == 0
    assert (out / "result.md").read_text().startswith("# Conservative-OPEstimator validation")
    # the alpha_c = 0 sweep point is the plain FQE fit, reused
    fqe = [p["estimates"]["fqe"]["value"] for p in result["policies"]]
    assert "alpha_c=0" not in result["policies"][0]["estimates"]
    # a rerun reuses every finished fit and true value and gives the same numbers
    t1 = time.perf_counter()
    again = ov.run_validation(tiny_dataset, out, settings, run_roots=(), families=["preset", "corner", "trained"],
                              train_td3=True, max_members=4, show_progress=False, figures=False)
    assert [p["estimates"]["fqe"]["value"] for p in again["policies"]] == fqe
    assert again["timings_s"]["fits_s"] < 0.3 * result["timings_s"]["fits_s"] + 1.0
    assert time.perf_counter() - t1 < 30


def test_harness_takes_trained_runs_one_per_algorithm(tiny_dataset, tmp_path):
    settings = ov.ValidationSettings(n_steps=10, batch_size=32, hidden=(8,), target_update_every=5, n_initial=20,
                                     n_rollouts=2, n_bootstrap=20, n_bootstrap_states=10, td3_steps=10, td3_hidden=(8,))
    kw = dict(families=["corner", "trained"], max_members=2, sweep=False, estimators=["fqe"], show_progress=False,
              figures=False)
    first = ov.run_validation(tiny_dataset, tmp_path / "a", settings, run_roots=(), **kw)
    run = tmp_path / "a" / "td3_quick"
    assert first["policies"][-1]["name"] == "td3:quick"
    # the same run under two roots: capped at one per algorithm (no quick TD3: a td3 run exists) ...
    one = ov.run_validation(tiny_dataset, tmp_path / "b", settings, run_roots=(tmp_path / "a", run),
                            runs_per_algo=1, **kw)
    assert [p["name"] for p in one["policies"]][2:] == ["td3:td3_quick"]
    assert one["runs"]["used"] == [str(run)] and one["runs"]["not_used"] == [str(run)]
    # ... or all of them (the default), told apart by name
    every = ov.run_validation(tiny_dataset, tmp_path / "c", settings, run_roots=(tmp_path / "a", run), **kw)
    names = [p["name"] for p in every["policies"]][2:]
    assert len(names) == 2 and names[0] == "td3:td3_quick" and names[1].startswith("td3:td3_quick@")
    assert every["policies"][2]["truth"] == every["policies"][3]["truth"]


def test_harness_refuses_bad_inputs(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ov.run_validation(tmp_path / "missing", tmp_path / "o", run_roots=(), show_progress=False)
    with pytest.raises(ValueError, match="unknown estimators"):
        ov.run_validation(tiny_dataset, tmp_path / "o", estimators=["nope"], show_progress=False)
    with pytest.raises(ValueError, match="positive integer"):
        ov.ValidationSettings(n_steps=0)
    with pytest.raises(ValueError, match="alpha_c"):
        ov.ValidationSettings(sweep_alphas=(0.0, -1.0))


def test_tiny_grid_every_estimator_two_explorations(tmp_path):
    from benchmarks.evaluation.estimators import ESTIMATORS

    v = ov.ValidationSettings(n_steps=10, batch_size=32, hidden=(8,), target_update_every=5, n_initial=15,
                              n_rollouts=1, n_random=1, sweep_alphas=(), td3_steps=10, td3_hidden=(8,),
                              model_steps=10, model_hidden=(8,), n_members=2, n_bootstrap=30, n_bootstrap_states=10,
                              n_bootstrap_sessions=10)
    grid = ov.GridSettings(seeds=(0,), explorations=("mixed", "random"), n_sessions=60, validation=v)
    out = tmp_path / "grid"
    result = ov.run_grid(out, grid, show_progress=False)
    assert result["datasets_finished"] == ["mixed-s0", "random-s0"]
    assert set(result["tables"]) == {"mixed", "random"}
    for exploration in ("mixed", "random"):
        metrics = result["tables"][exploration]["metrics"]
        assert set(metrics) == set(ov.GRID_ESTIMATORS) and set(ov.GRID_ESTIMATORS) <= set(ESTIMATORS)
        assert metrics["bootstrap-fqe"]["lower below truth"]["n"] == 1
        assert metrics["model-based"]["lower below truth"]["mean"] is None  # no lower bound
    run = result["runs"]["mixed-s0"]
    assert len(run["policies"]) == 21  # 6 presets, 1 random, 5 noisy, 4 degraded, 4 corners, the quick TD3
    for p in run["policies"]:
        for e in ov.GRID_ESTIMATORS:
            assert isinstance(p["estimates"][e]["supported"], bool)
    assert {r["form"] for r in run["weight_settings"]} == {"tis", "sntis", "pdis", "snpdis"}
    assert (out / "result.md").read_text().startswith("# Off-policy estimators judged against the true values")
    assert (out / "scatter.png").is_file() and (out / "runs" / "random-s0" / "scatter.png").is_file()
    # the explorations of one seed share the true values (same users, same world)
    truth = {p["name"]: p["truth"] for p in run["policies"]}
    assert all(truth[p["name"]] == p["truth"] for p in result["runs"]["random-s0"]["policies"])
    # a grid stopped early: the report of the finished datasets from their files alone
    (out / "result.json").unlink()
    assert main(["suite", "ope-validation", "--out", str(out), "--report-only"]) == 0
    saved = json.loads((out / "result.json").read_text())
    # the default grid plans mixed-s0, random-s0, action-noise-s0, mixed-s1, mixed-s2: two finished
    assert saved["datasets_finished"] == ["mixed-s0", "random-s0"]
    assert ov.GridSettings().datasets() == [("mixed", 0), ("random", 0), ("action-noise", 0), ("mixed", 1), ("mixed", 2)]
    assert "**Partial**" in (out / "result.md").read_text()
