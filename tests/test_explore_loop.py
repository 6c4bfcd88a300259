"""The ceiling (reference policies by direct search) and the daily explore -> retrain loop, at tiny budgets."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from agents.reference import LinearFeaturePolicy
from agents.registry import load_policy
from benchmarks.evaluation.ceiling import CeilingConfig, find_ceiling, load_ceiling, split_users
from benchmarks.evaluation.explore_loop import LoopConfig, run_loop

TINY_NETS = {"actor_hidden": [16, 16], "critic_hidden": [16, 16], "vae_hidden": [16, 16], "batch_size": 32}


def _loop_config(**kw) -> LoopConfig:
    base = dict(algo="batchrl-mtf", rounds=2, users=120, steps=30, eval_users=60, eval_rollouts=1, ab_users=0,
                ope_steps=0, overrides=TINY_NETS, seed=3)
    return LoopConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory, small_config):
    out = tmp_path_factory.mktemp("ceiling")
    return find_ceiling(out, CeilingConfig(n_users=80, generations=(2, 2, 1), popsize=4), small_config,
                        show_progress=False)


def _round(out, day: int) -> dict:
    record = json.loads((out / f"round_{day:02d}" / "round.json").read_text())
    for key in ("wall_s", "train_wall_s"):
        record.pop(key, None)
    if "ope" in record:
        record["ope"].pop("fit_s", None)
    if "ab_vs_bo" in record:
        record["ab_vs_bo"].pop("bo_dir")  # where the loop's BO arm lives
    return record


# ------------------------------------------------------------------------------------------- ceiling
def test_split_users_are_disjoint_and_seeded():
    search, judge = split_users(5, 500, 3000)
    assert len(search) == len(judge) == 500
    assert not set(search.tolist()) & set(judge.tolist())
    again = split_users(5, 500, 3000)
    assert np.array_equal(search, again[0]) and np.array_equal(judge, again[1])
    with pytest.raises(ValueError, match="distinct users"):
        split_users(0, 2000, 3000)


def test_ceiling_users_disjoint_result_loads_as_policy_and_is_cached(ceiling, small_config):
    summary = ceiling.summary
    search, judge = set(ceiling.search_ids.tolist()), set(ceiling.judge_ids.tolist())
    assert len(search) == len(judge) == 80 and not search & judge
    assert set(summary["references"]) == {"static:production", "reference:static", "reference:personalised",
                                          "reference:scheduled"}
    assert summary["best"] == max((n for n in summary["references"] if n.startswith("reference:")),
                                  key=lambda n: summary["references"][n]["value"])
    policy = load_policy(str(ceiling.directory / "best_policy.json"))
    assert isinstance(policy, LinearFeaturePolicy)
    obs = np.random.default_rng(0).random((5, policy.obs_dim), dtype=np.float32)
    assert np.array_equal(policy.act(obs), ceiling.policy().act(obs))
    scheduled = load_policy(str(ceiling.directory / "scheduled.json"))
    assert scheduled.request_index is not None and len(scheduled.features) > 0
    stamp = (ceiling.directory / "ceiling.json").stat().st_mtime_ns
    again = find_ceiling(ceiling.directory, CeilingConfig(n_users=80, generations=(2, 2, 1), popsize=4),
                         small_config, show_progress=False)
    assert (ceiling.directory / "ceiling.json").stat().st_mtime_ns == stamp  # the cached result, not a new search
    assert again.summary["config_hash"] == summary["config_hash"]


def test_regret_to_ceiling_is_paired_with_the_judgement(ceiling, small_config):
    from agents.static import StaticPolicy
    from benchmarks.evaluation.ceiling import regret_to_ceiling

    got = regret_to_ceiling({"best": ceiling.policy(), "production": StaticPolicy.preset("production")}, ceiling,
                            small_config)
    assert got["best"]["regret"]["mean"] == 0.0 and got["best"]["regret"]["se"] == 0.0
    judged = ceiling.summary["references"]["static:production"]
    assert got["production"]["true_value"]["value"] == pytest.approx(judged["value"], abs=1e-12)
    assert got["production"]["regret"]["mean"] == pytest.approx(-judged["vs_best"]["mean"], abs=1e-12)
    with pytest.raises(ValueError, match="another world"):
        regret_to_ceiling({"p": ceiling.policy()}, ceiling, None)


def test_linear_feature_policy_round_trip_and_schedule(tmp_path):
    obs_dim = 6
    policy = LinearFeaturePolicy(obs_dim, bias=np.full(12, 0.1), features=[0, 1], mean=[0.5, 0.5], scale=[1, 2],
                                 weights=np.ones((12, 2)), request_index=5, schedule=np.tile([1.0, 0.0], (12, 1)))
    obs = np.zeros((2, obs_dim), np.float32)
    obs[1, 5] = 0.5  # a later request
    act = policy.act(obs)
    assert np.allclose(act[0], 0.1 - 0.5 - 0.25)
    assert np.allclose(act[1] - act[0], 0.5)
    path = policy.save(tmp_path / "p.json")
    assert np.array_equal(load_policy(str(path)).act(obs), act)
    path.write_text(json.dumps({"format": "mtf-linear-policy/1", "obs_dim": 3}))
    with pytest.raises(ValueError, match="p.json"):
        load_policy(str(path))


# ------------------------------------------------------------------------------------------- the loop
def test_mixed_exploration_is_centred_on_the_deployed_policy(tmp_path, small_config):
    from agents.static import StaticPolicy
    from mtf_env.dataset import load_dataset

    out = tmp_path / "loop"
    run_loop(_loop_config(), out, sim_config=small_config, show_progress=False)
    ds = load_dataset(out / "round_01" / "data", split="all", behaviour="action-noise")
    obs, actions = ds.observations, ds.actions
    deployed = load_policy(str(out / "round_00" / "policy")).act(obs)
    production = StaticPolicy.preset("production").act(obs)
    inside = np.abs(actions) < 1.0  # unclipped coordinates
    residual = (actions - deployed)[inside]
    assert abs(residual.mean()) < 0.02 and 0.08 < residual.std() < 0.12  # N(0, 0.1) around the deployed policy
    # the deployed policy differs from production, so a production-centred collector would fail the check above
    assert np.abs(deployed - production).mean() > 0.1
    assert abs((actions - production)[inside].std() - 0.1) > 0.03 or abs((actions - production)[inside].mean()) > 0.03
    day0 = load_dataset(out / "round_00" / "data", split="all", behaviour="action-noise")
    res0 = (day0.actions - StaticPolicy.preset("production").act(day0.observations))[np.abs(day0.actions) < 1.0]
    assert abs(res0.mean()) < 0.02 and 0.08 < res0.std() < 0.12  # day 0 explores around production
    random_group = load_dataset(out / "round_01" / "data", split="all", behaviour="random")
    assert 0.3 < random_group.actions.std() < 0.6


def test_random_exploration_logs_no_action_noise_group(tmp_path, small_config):
    from mtf_env.dataset import load_dataset

    out = tmp_path / "re"
    run_loop(_loop_config(rounds=1, exploration="random"), out, sim_config=small_config, show_progress=False)
    ds = load_dataset(out / "round_00" / "data", split="all")
    assert ds.group_names == ["random"] and 0.3 < ds.actions.std() < 0.6


def test_resume_equals_an_uninterrupted_run_and_seed_fixes_the_rounds(tmp_path, small_config, ceiling):
    cfg = _loop_config(ab_users=40, ope_steps=20, warm_start=True)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run_loop(cfg, whole, sim_config=small_config, ceiling_dir=ceiling.directory, show_progress=False)
    run_loop(_loop_config(ab_users=40, ope_steps=20, warm_start=True, rounds=1), parts, sim_config=small_config,
             ceiling_dir=ceiling.directory, show_progress=False)
    (parts / "round_01").mkdir()
    (parts / "round_01" / "half-written").write_text("an interrupted round")
    run_loop(cfg, parts, sim_config=small_config, ceiling_dir=ceiling.directory, show_progress=False)
    assert not (parts / "round_01" / "half-written").exists()
    for day in (0, 1):
        a, b = _round(whole, day), _round(parts, day)
        assert a == b
    rec = _round(whole, 1)
    assert {"true_value", "regret", "ab_vs_bo", "coverage", "ope", "vs_production"} <= set(rec)
    assert rec["window_days"] == [0, 1] and rec["users_served"] == 240
    assert set(rec["ab_vs_bo"]) >= {"adtime_s", "upi_rate"}
    assert (whole / "report.md").is_file() and (whole / "report.png").stat().st_size > 0
    # another seed gives other rounds
    other = tmp_path / "other"
    run_loop(_loop_config(rounds=1, seed=4), other, sim_config=small_config, show_progress=False)
    assert _round(other, 0)["per_state"] != _round(whole, 0)["per_state"]
    # a loop directory with other settings is refused before anything is written
    with pytest.raises(ValueError, match="other settings"):
        run_loop(_loop_config(users=130), whole, sim_config=small_config, show_progress=False)


def test_online_arm_serves_the_same_traffic(tmp_path, small_config):
    out = tmp_path / "bo"
    cfg = _loop_config(algo="bo", rounds=2, users=80, overrides={})
    run_loop(cfg, out, sim_config=small_config, show_progress=False)
    for day in (0, 1):
        rec = _round(out, day)
        assert rec["online_budget"]["sessions"] == (day + 1) * 80 == rec["users_served"]


def _random_transitions(n: int = 256, d: int = 5):
    from mtf_env.transitions import TransitionArrays

    rng = np.random.default_rng(0)
    return TransitionArrays(rng.random((n, d), dtype=np.float32), rng.uniform(-1, 1, (n, 12)).astype(np.float32),
                            rng.random(n, dtype=np.float32), rng.random((n, d), dtype=np.float32),
                            np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool))


def _make_agent(algo: str):
    if algo == "batchrl-mtf":
        from agents.batchrl_mtf import BatchRLMTF, BatchRLMTFConfig

        return BatchRLMTF(BatchRLMTFConfig(actor_hidden=(16,), critic_hidden=(16,), vae_hidden=(16,), batch_size=16))
    from agents.offline_d3rlpy import TD3Agent, TD3AgentConfig

    return TD3Agent(TD3AgentConfig(hidden=(16,), batch_size=16))


@pytest.mark.parametrize("algo", ["batchrl-mtf", "td3"])
def test_warm_start_loads_the_previous_networks(tmp_path, algo):
    data = _random_transitions()
    first = _make_agent(algo)
    first.fit(data, 5, seed=0, out_dir=tmp_path / "a", show_progress=False)
    warm = _make_agent(algo)
    warm.fit(data, 1, seed=1, out_dir=tmp_path / "b", show_progress=False, init_from=tmp_path / "a")
    cold = _make_agent(algo)
    cold.fit(data, 1, seed=1, out_dir=tmp_path / "c", show_progress=False)
    a, w, c = first.state_dict(), warm.state_dict(), cold.state_dict()
    warm_gap = max(float((a[k] - w[k]).abs().max()) for k in a)
    cold_gap = max(float((a[k] - c[k]).abs().max()) for k in a)
    assert warm_gap < 0.02 < cold_gap
    # the warm-started run is its own run: resumable, and its checkpoint names this run's data
    assert warm.step == 1
    with pytest.raises(ValueError, match="checkpoint"):
        _make_agent(algo).fit(data, 1, seed=1, show_progress=False, init_from=tmp_path / "nothing")


def test_pool_seeds_averages_each_method_over_its_seeds_with_the_seeds_paired_errors():
    from benchmarks.evaluation.explore_loop import pool_seeds, pooled_markdown
    from benchmarks.evaluation.stats import Z95

    def report(algo, seed, gains, regrets, exploration="mixed"):
        rounds = [{"day": d, "users_served": 100 * (d + 1), "true_value": {"value": 1.0, "se": 0.1},
                   "vs_production": {"mean": g, "se": 0.03}, "regret": {"mean": r, "se": 0.04}}
                  for d, (g, r) in enumerate(zip(gains, regrets))]
        return {"config": {"algo": algo, "seed": seed, "exploration": exploration}, "rounds": rounds}

    pooled = pool_seeds([report("batchrl-mtf", 0, [0.1, 0.2, 0.3], [0.5, 0.4, 0.3]),
                         report("batchrl-mtf", 1, [0.3, 0.0], [0.3, 0.6]),
                         report("batchrl-mtf", 0, [-0.1], [0.7], exploration="random")])
    assert set(pooled) == {"batchrl-mtf", "batchrl-mtf-RE"}
    main = pooled["batchrl-mtf"]
    assert main["seeds"] == [0, 1] and len(main["days"]) == 2  # day 2 is only in seed 0: not pooled
    day1 = main["days"][1]
    assert day1["vs_production"]["mean"] == pytest.approx(0.1) and day1["regret"]["mean"] == pytest.approx(0.5)
    assert day1["regret"]["per_seed"] == [0.4, 0.6]
    se = np.sqrt(2 * 0.04 ** 2) / 2
    assert day1["regret"]["se"] == pytest.approx(se)
    assert day1["regret"]["ci_high"] - day1["regret"]["ci_low"] == pytest.approx(2 * Z95 * se)
    assert pooled["batchrl-mtf-RE"]["days"][0]["vs_production"]["per_seed"] == [-0.1]
    text = pooled_markdown(pooled)
    assert "| batchrl-mtf | 0,1 | +0.200 +- 0.042 [+0.100, +0.300] | +0.100 +- 0.042 [+0.200, +0.000] |" in text
