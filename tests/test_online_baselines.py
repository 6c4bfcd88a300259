"""Online baselines (bo, es, sac-online): the agent contract in a small world, resume, budgets,
the optimisers on known objectives, refusals."""
from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from agents.checkpoint import CheckpointError
from agents.bo import BayesianOptimisation, BOConfig
from agents.es import EvolutionStrategy, ESConfig, centred_ranks
from agents.online import OnlineBudget, rollout_objective
from agents.registry import ALGOS, algo_class, load_policy
from agents.sac_online import SACOnline, SACOnlineConfig
from agents.static import StaticPolicy
from mtf_env.core import obs_dim as world_obs_dim
from mtf_env.rollout import SessionRollout
from mtf_env.transitions import TransitionArrays
from tests.agent_contract import check_agent_contract

TINY_BO = BOConfig(n_users=60, n_init=2, n_candidates=64, gp_restarts=0)
TINY_ES = ESConfig(n_users=40, n_pairs=2, hidden=(4,))
TINY_SAC = SACOnlineConfig(n_envs=2, hidden=(8, 8), batch_size=8, learning_starts=2, buffer_size=200)



@pytest.fixture(scope="module")
def data(small_config) -> TransitionArrays:
    """Observations of the small world's width (the online agents only act on them)."""
    rng = np.random.default_rng(0)
    n, d = 40, world_obs_dim(small_config)
    obs = rng.random((n, d), dtype=np.float32)
    return TransitionArrays(
        observations=obs, actions=np.zeros((n, 12), np.float32), rewards=np.zeros(n, np.float32),
        next_observations=obs, terminals=np.ones(n, bool), timeouts=np.zeros(n, bool),
        episode_starts=np.ones(n, bool),
    )


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("algo, make", [
    ("bo", lambda cfg: BayesianOptimisation(TINY_BO, sim_config=cfg)),
    ("es", lambda cfg: EvolutionStrategy(TINY_ES, sim_config=cfg)),
    ("sac-online", lambda cfg: SACOnline(TINY_SAC, sim_config=cfg)),
])
def test_agent_contract(algo, make, small_config, data, tmp_path):
    steps = 4 if algo == "sac-online" else 3
    check_agent_contract(lambda seed: make(small_config), data, tmp_path, n_steps=steps)
    assert algo_class(algo).requires_data is False
    # the registry loads the run directory, and the budget is recorded next to the results
    policy = load_policy(str(tmp_path / "run"))
    assert type(policy) is algo_class(algo) and ALGOS[algo].endswith(type(policy).__name__)
    budget = json.loads((tmp_path / "run" / "budget.json").read_text())
    last = _rows(tmp_path / "run" / "metrics.csv")[-1]
    assert budget["requests"] == int(float(last["online/requests"])) > 0
    assert budget["sessions"] == int(float(last["online/sessions"]))


def test_bo_budget_policy_file_and_resume(small_config, tmp_path):
    straight = BayesianOptimisation(TINY_BO, sim_config=small_config)
    straight.fit(n_steps=4, seed=7, out_dir=tmp_path / "straight", show_progress=False)
    assert straight.budget == OnlineBudget(rounds=4, sessions=4 * TINY_BO.n_users, users_per_round=TINY_BO.n_users,
                                           requests=straight.budget.requests)
    assert straight.budget.requests >= straight.budget.sessions
    # the production weights are the first design point; the result is one of the evaluated points
    np.testing.assert_allclose(straight.observed_actions[0], StaticPolicy.preset("production").action, atol=1e-6)
    assert any(np.allclose(straight.action, x) for x in straight.observed_actions)
    # policy.json is a plain static policy with the same action
    static = StaticPolicy.from_json(tmp_path / "straight" / "policy.json")
    np.testing.assert_array_equal(static.action, straight.action)
    rows = _rows(tmp_path / "straight" / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert np.isnan(float(rows[0]["bo/ucb"])) and np.isfinite(float(rows[-1]["bo/ucb"]))

    resumed = BayesianOptimisation(TINY_BO, sim_config=small_config)
    resumed.fit(n_steps=2, seed=7, out_dir=tmp_path / "resumed", show_progress=False)
    resumed = BayesianOptimisation(TINY_BO, sim_config=small_config)
    resumed.fit(n_steps=4, seed=7, out_dir=tmp_path / "resumed", resume=True, show_progress=False)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert resumed.budget == straight.budget
    assert _rows(tmp_path / "resumed" / "metrics.csv") == rows
    with pytest.raises(ValueError, match="seed"):
        BayesianOptimisation(TINY_BO, sim_config=small_config).fit(
            n_steps=5, seed=8, out_dir=tmp_path / "resumed", resume=True, show_progress=False)


def test_bo_concentrates_on_the_good_region_of_a_known_objective(small_config, monkeypatch):
    """With the online round replaced by a noisy quadratic, UCB's points beat the random design."""
    optimum = np.linspace(-0.6, 0.6, 12)
    noise = np.random.default_rng(0)

    def quadratic(self, sim, point, round_index):
        return float(-np.sum((point - optimum) ** 2) + 0.01 * noise.standard_normal()), 0.01

    monkeypatch.setattr(BayesianOptimisation, "_evaluate_point", quadratic)
    bo = BayesianOptimisation(BOConfig(n_init=6, include_production=False, n_candidates=256, gp_restarts=0,
                                       kappa=1.0), sim_config=small_config)
    bo.fit(n_steps=14, seed=0, show_progress=False)
    design, chosen = bo.observed_values[:6], bo.observed_values[6:]
    assert chosen.mean() > design.mean() + 1.0
    assert chosen.max() > design.max()
    assert np.sum((bo.action - optimum) ** 2) == pytest.approx(-bo.observed_values.max(), abs=0.05)


def test_es_ranks_and_ascent_on_a_known_objective(small_config, monkeypatch):
    np.testing.assert_allclose(centred_ranks(np.array([3.0, -1.0, 10.0, 0.0])), [1 / 6, -0.5, 0.5, -1 / 6])
    target = None

    def fitness(self, sim, theta, users, seed):
        return float(-np.sum((theta - target) ** 2))

    monkeypatch.setattr(EvolutionStrategy, "_evaluate", fitness)
    es = EvolutionStrategy(ESConfig(n_pairs=8, sigma=0.05, lr=0.01, hidden=(4,)), sim_config=small_config)
    target = es._initial_theta(0) + 0.5  # every parameter 0.5 away
    es.fit(n_steps=20, seed=0, show_progress=False)
    start = np.sum((es._initial_theta(0) - target) ** 2)
    assert np.sum((es.theta - target) ** 2) < 0.8 * start


def test_es_starts_at_production_and_resumes_exactly(small_config, data, tmp_path):
    es = EvolutionStrategy(TINY_ES, sim_config=small_config)
    es.theta = es._initial_theta(0)
    production = StaticPolicy.preset("production").action
    np.testing.assert_allclose(es.act(data.observations[:5]), np.broadcast_to(production, (5, 12)), atol=2e-3)

    straight = EvolutionStrategy(TINY_ES, sim_config=small_config)
    straight.fit(n_steps=2, seed=3, out_dir=tmp_path / "straight", show_progress=False)
    resumed = EvolutionStrategy(TINY_ES, sim_config=small_config)
    resumed.fit(n_steps=1, seed=3, out_dir=tmp_path / "resumed", show_progress=False)
    resumed = EvolutionStrategy(TINY_ES, sim_config=small_config)
    resumed.fit(n_steps=2, seed=3, out_dir=tmp_path / "resumed", resume=True, show_progress=False)
    np.testing.assert_array_equal(straight.theta, resumed.theta)
    assert straight.budget == resumed.budget
    assert straight.budget.rounds == 2 * 2 * TINY_ES.n_pairs and straight.budget.sessions == 4 * 2 * 40


def test_rollout_objectives():
    fb = np.zeros((3, 12))
    fb[:, 4] = [1.0, 2.0, 3.0]  # likes per session
    rolled = SessionRollout(user_ids=np.arange(3), feedback=fb, first_feedback=fb, discounted_feedback=fb / 2,
                            requests=np.array([1, 2, 3]), videos=np.array([1, 2, 3]),
                            terminated=np.ones(3, bool), gamma=0.95)
    w = np.zeros(12)
    w[4] = 1.0
    assert rollout_objective(rolled, w, "session")[0] == pytest.approx(2.0)
    assert rollout_objective(rolled, w, "discounted")[0] == pytest.approx(1.0)
    assert rollout_objective(rolled, w, "immediate")[0] == pytest.approx(1.0)  # 6 likes over 6 requests
    with pytest.raises(ValueError, match="objective"):
        rollout_objective(rolled, w, "greedy")


def test_settings_table_matches_the_libraries_and_the_configs():
    """The recorded library defaults are the installed libraries'; our values are the configs' defaults."""
    import inspect

    from sklearn.gaussian_process import GaussianProcessRegressor
    from stable_baselines3 import SAC

    from agents.baseline_settings import ONLINE_SETTINGS, values

    sac_defaults = inspect.signature(SAC.__init__).parameters
    for s in ONLINE_SETTINGS["sac-online"]:
        if s.name in sac_defaults:
            assert sac_defaults[s.name].default == s.library_default, s.name
            assert getattr(SACOnlineConfig(), s.name) == s.value, s.name
    assert SACOnlineConfig().n_envs == values(ONLINE_SETTINGS["sac-online"])["n_envs"]
    gp = GaussianProcessRegressor()
    bo = values(ONLINE_SETTINGS["bo"])
    assert gp.kernel is None and gp.normalize_y is False and gp.n_restarts_optimizer == 0
    assert BOConfig().gp_restarts == bo["n_restarts_optimizer"]
    assert ESConfig().sigma == values(ONLINE_SETTINGS["es"])["noise_stdev (sigma)"]


def test_refusals(small_config, tmp_path):
    wrong = TransitionArrays(observations=np.zeros((2, 5), np.float32), actions=np.zeros((2, 12), np.float32),
                             rewards=np.zeros(2, np.float32), next_observations=np.zeros((2, 5), np.float32),
                             terminals=np.ones(2, bool), timeouts=np.zeros(2, bool), episode_starts=np.ones(2, bool))
    with pytest.raises(ValueError, match="observation features"):
        BayesianOptimisation(TINY_BO, sim_config=small_config).fit(wrong, 1, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="objective"):
        ESConfig(objective="greedy")
    with pytest.raises(ValueError, match="objective"):
        BOConfig(objective="immediate")
    with pytest.raises(ValueError, match="unknown BOConfig"):
        BOConfig.from_dict({"n_users": 10, "kapa": 1.0})
    sac = SACOnline(TINY_SAC, sim_config=small_config)
    with pytest.raises(ValueError, match="multiples of n_envs"):
        sac.fit(n_steps=5, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="multiples of n_envs"):
        sac.fit(n_steps=4, seed=0, checkpoint_every=3, show_progress=False)
    with pytest.raises(RuntimeError, match="fit"):
        sac.act(np.zeros((1, sac.obs_dim), np.float32))
    # a run directory of another algorithm, and a damaged checkpoint
    bo = BayesianOptimisation(TINY_BO, sim_config=small_config)
    bo.fit(n_steps=1, seed=0, out_dir=tmp_path / "bo", show_progress=False)
    with pytest.raises(CheckpointError, match="not 'es'"):
        EvolutionStrategy.load(tmp_path / "bo")
    (tmp_path / "bo" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        BayesianOptimisation.load(tmp_path / "bo")


def test_sac_online_resumes_exactly_after_a_crash(small_config, tmp_path, monkeypatch):
    """A run that crashes after a mid-window checkpoint and is resumed gives the weights, budget
    and metrics rows of an uninterrupted run (one learn call), with the replay buffer wrapped around."""
    config = replace(TINY_SAC, buffer_size=20)  # 10 rows x 2 envs: 24 env steps wrap the buffer
    straight = SACOnline(config, sim_config=small_config)
    straight.fit(n_steps=24, seed=5, out_dir=tmp_path / "straight", show_progress=False, log_every=8,
                 checkpoint_every=0)

    saves = []
    original_save = SACOnline._save_checkpoint

    def save_then_crash(self, run_dir, training):
        original_save(self, run_dir, training)
        saves.append(self.step)
        if len(saves) == 2:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(SACOnline, "_save_checkpoint", save_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        SACOnline(config, sim_config=small_config).fit(n_steps=24, seed=5, out_dir=tmp_path / "resumed",
                                                        show_progress=False, log_every=8, checkpoint_every=6)
    monkeypatch.undo()
    assert saves == [6, 12]  # the checkpoint at 12 holds an open logging window (steps 9-12)

    resumed = SACOnline(config, sim_config=small_config)
    resumed.fit(n_steps=24, seed=5, out_dir=tmp_path / "resumed", resume=True, show_progress=False, log_every=8,
                checkpoint_every=6)
    want, got = straight.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert resumed.budget == straight.budget and resumed.step == 24
    assert _rows(tmp_path / "resumed" / "metrics.csv") == _rows(tmp_path / "straight" / "metrics.csv")
    assert [int(r["step"]) for r in _rows(tmp_path / "straight" / "metrics.csv")] == [8, 16, 24]
    # a finished run extends: resuming to 32 equals a straight run to 32
    resumed.fit(n_steps=32, seed=5, out_dir=tmp_path / "resumed", resume=True, show_progress=False, log_every=8)
    longer = SACOnline(config, sim_config=small_config)
    longer.fit(n_steps=32, seed=5, show_progress=False, checkpoint_every=0)
    assert all(torch.equal(longer.state_dict()[k], v) for k, v in resumed.state_dict().items())

    # refusals: another seed, and a run saved with weights only
    with pytest.raises(ValueError, match="cannot resume.*seed"):
        SACOnline(config, sim_config=small_config).fit(n_steps=40, seed=6, out_dir=tmp_path / "resumed",
                                                        resume=True, show_progress=False)
    resumed.save(tmp_path / "weights_only")
    with pytest.raises(ValueError, match="weights only"):
        SACOnline(config, sim_config=small_config).fit(n_steps=40, seed=5, out_dir=tmp_path / "weights_only",
                                                        resume=True, show_progress=False)
    assert np.array_equal(SACOnline.load(tmp_path / "weights_only").act(np.zeros((2, resumed.obs_dim), np.float32)),
                          resumed.act(np.zeros((2, resumed.obs_dim), np.float32)))
