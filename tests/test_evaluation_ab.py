"""The online A/B platform: CRN (A/A = 0 exactly), determinism, day model, lifts, true value, CLI."""
import json

import numpy as np
import pytest

from agents.behaviour import collection_policy
from agents.static import GaussianPolicy, StaticPolicy
from benchmarks.evaluation.ab import ABResult, ab_test
from benchmarks.evaluation.days import evaluate, resolve_users
from benchmarks.evaluation.stats import paired_lift, ratio_estimate
from benchmarks.evaluation.true_value import true_value
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.fusion import validate_action

SMALL = dict(n_users=3000, n_items=4000)


@pytest.fixture(scope="module")
def sim():
    return Simulator(SimConfig(**SMALL))


@pytest.fixture(scope="module")
def production():
    return StaticPolicy.preset("production")


class RecordingPolicy:
    """Wraps a policy and records the batch shapes of act() and the reset masks."""

    def __init__(self, inner):
        self.inner, self.act_shapes, self.resets = inner, [], []

    def reset(self, mask):
        self.resets.append(np.asarray(mask).copy())

    def act(self, obs):
        self.act_shapes.append(obs.shape)
        return self.inner.act(obs)


def _same(a, b):
    for name in ("play_s", "plays", "positive_plays", "requests", "sessions", "feedback", "discounted_feedback",
                 "active_days", "return_gaps"):
        if not np.array_equal(getattr(a, name), getattr(b, name)):
            return False
    return True


def test_same_seed_identical_and_block_size_invariant(sim, production):
    a = evaluate(production, 100, 2, seed=5, sim=sim, show_progress=False)
    b = evaluate(production, 100, 2, seed=5, sim=sim, show_progress=False, block_size=37)
    c = evaluate(production, 100, 2, seed=6, sim=sim, show_progress=False)
    assert _same(a, b)
    assert not _same(a, c)


def test_aa_test_gives_exactly_zero_lift(sim, production):
    twin = StaticPolicy.preset("production")
    res = ab_test(production, {"twin": twin}, users=120, days=2, seed=3, sim=sim, show_progress=False,
                  control_name="prod")
    for lift in res.lifts["twin"].values():
        assert lift.lift_pct == 0.0 and lift.se_pct == 0.0 and lift.p_value == 1.0
        assert lift.ci_low_pct == 0.0 and lift.ci_high_pct == 0.0


def test_aa_with_stochastic_policy_is_zero_too(sim):
    noisy = GaussianPolicy(np.zeros(12, np.float32), 0.3, seed=11)
    res = ab_test(noisy, {"same": noisy}, users=60, days=1, seed=1, sim=sim, show_progress=False)
    assert all(lift.lift_pct == 0.0 for lift in res.lifts["same"].values())


def test_day_model_metrics_are_sane(sim, production):
    res = evaluate(production, 300, 2, seed=0, sim=sim, show_progress=False)
    m = res.metrics()
    assert 0.0 < m["upi_rate"].value < 0.5 and m["upi_rate"].se > 0
    assert 1.0 <= m["sessions_per_day"].value <= sim.config.max_sessions_per_day
    assert m["sessions_per_day"].value > 1.05  # users do come back within a day
    assert 1.0 <= m["requests_per_session"].value <= sim.config.max_requests
    assert m["videos_per_session"].value >= m["requests_per_session"].value
    assert m["adtime_s"].value > 0 and m["adtime_s"].se > 0
    # ADTime is per user per day: total play seconds / (users * days)
    assert np.isclose(m["adtime_s"].value, res.play_s.sum() / (300 * 2))
    # >= 1 session per visit day; every user visits on day 1 (retention decides the later days)
    assert np.all(res.positive_plays <= res.plays) and np.all(res.sessions >= res.active_days)
    assert np.all((res.active_days >= 1) & (res.active_days <= 2))
    # discounting only shrinks positive rewards; presets are relabelled from the same run
    assert m["discounted_session_return/time"].value < m["session_return/time"].value
    assert m["session_return/default"].value == m["session_return"].value


def test_one_session_per_day_without_returns(production):
    sim1 = Simulator(SimConfig(**SMALL, max_sessions_per_day=1, retention=False))
    res = evaluate(production, 100, 3, seed=2, sim=sim1, show_progress=False)
    assert np.all(res.sessions == 3) and np.all(res.active_days == 3) and not res.return_gaps.any()


def test_policy_called_once_per_vector_step_with_the_active_batch(sim, production):
    rec = RecordingPolicy(production)
    res = evaluate(rec, 64, 1, seed=4, sim=sim, show_progress=False, block_size=64)
    assert res.policy_calls == len(rec.act_shapes) == len(rec.resets)
    assert rec.act_shapes[0] == (64, sim.obs_dim)
    assert rec.resets[0].all() and rec.resets[0].shape == (64,)
    assert all(len(mask) == shape[0] for mask, shape in zip(rec.resets, rec.act_shapes))
    # every user-request is served by one of those calls, and at least one session restarts mid-day
    assert sum(s[0] for s in rec.act_shapes) == res.requests.sum()
    assert sum(int(m.sum()) for m in rec.resets) == res.sessions.sum()
    assert sum(s[0] for s in rec.act_shapes) > len(rec.act_shapes)  # batched, not per user


def test_different_policies_lift_table_and_json(sim, production, tmp_path):
    res = ab_test(production, {"time-only": StaticPolicy.preset("time-only"),
                               "interaction": StaticPolicy.preset("interaction")},
                  users=200, days=1, seed=0, sim=sim, show_progress=False, control_name="production")
    assert isinstance(res, ABResult) and res.treatments == ["time-only", "interaction"]
    lift = res.lifts["time-only"]["adtime_s"]
    assert lift.lift_pct != 0.0 and lift.se_pct > 0 and lift.ci_low_pct < lift.lift_pct < lift.ci_high_pct
    md = res.to_markdown()
    assert "| time-only |" in md and "ADTime" in md and "UPIRate" in md
    json_path, md_path = res.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert set(data["lifts"]) == {"time-only", "interaction"}
    assert data["arms"]["production"]["metrics"]["adtime_s"]["value"] > 0
    assert md_path.read_text() == md


def test_paired_lift_and_ratio_estimate_statistics():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 50.0, size=4000)
    ones = np.ones_like(x)
    exact = paired_lift(1.1 * x, ones, x, ones)
    assert np.isclose(exact.lift_pct, 10.0) and exact.se_pct < 1e-9
    est = ratio_estimate(x, ones)
    assert np.isclose(est.se, x.std(ddof=1) / np.sqrt(len(x)))
    # paired SE is small against the unpaired one when the arms share per-user noise
    t = x * (1.02 + 0.01 * rng.standard_normal(len(x)))
    lift = paired_lift(t, ones, x, ones)
    unpaired_se_pct = 100 * np.hypot(t.std(), x.std()) / np.sqrt(len(x)) / x.mean()
    assert lift.se_pct < 0.2 * unpaired_se_pct
    assert abs(lift.lift_pct - 2.0) < 4 * lift.se_pct and lift.p_value < 1e-6
    # ratio of sums: delta-method SE against a bootstrap
    den = rng.integers(1, 30, size=4000).astype(float)
    num = rng.binomial(den.astype(int), 0.05).astype(float)
    est = ratio_estimate(num, den)
    boot = [num[i].sum() / den[i].sum() for i in (rng.integers(0, 4000, 4000) for _ in range(300))]
    assert 0.8 < est.se / np.std(boot) < 1.25


def test_bad_input_is_refused(sim, production):
    with pytest.raises(ValueError, match="days"):
        evaluate(production, 10, 0, seed=0, sim=sim, show_progress=False)
    with pytest.raises(ValueError, match="user ids"):
        evaluate(production, np.array([0, 10**7]), 1, seed=0, sim=sim, show_progress=False)
    with pytest.raises(ValueError, match="distinct users"):
        resolve_users(10**6, 3000, 0)
    with pytest.raises(ValueError, match="gamma"):
        evaluate(production, 10, 1, seed=0, gamma=1.5, sim=sim, show_progress=False)

    class Broken:
        def act(self, obs):
            return np.zeros((obs.shape[0], 11), np.float32)

    with pytest.raises(ValueError, match="shape"):
        evaluate(Broken(), 10, 1, seed=0, sim=sim, show_progress=False)
    with pytest.raises(ValueError, match="control's name"):
        ab_test(production, {"p": production}, 10, 1, 0, sim=sim, control_name="p", show_progress=False)


def test_true_value_matches_a_naive_rollout(sim, production):
    ids = np.arange(0, 3000, 15)  # 200 initial states
    tv = true_value(production, ids, gamma=0.95, n_rollouts=3, seed=0, sim=sim, reward="default")
    again = true_value(production, ids, gamma=0.95, n_rollouts=3, seed=0, sim=sim, reward="default")
    assert tv.value == again.value and tv.se > 0 and tv.se_population > 0
    # independent check with the simulator's own reward and a plain generator
    rng = np.random.default_rng(123)
    n = 600
    state = sim.empty_state(n)
    sim.start_sessions(state, np.arange(n), np.tile(ids, 3), rng)
    returns, discount, alive = np.zeros(n), np.ones(n), np.ones(n, bool)
    while alive.any():
        res = sim.step(state, validate_action(production.act(state.obs), n), rng, active=alive)
        returns += np.where(alive, discount * res.reward, 0.0)
        discount *= 0.95
        alive &= ~(res.terminated | res.truncated)
    naive_se = returns.std(ddof=1) / np.sqrt(n)
    assert abs(returns.mean() - tv.value) < 4 * np.hypot(naive_se, tv.se_population)
    with pytest.raises(ValueError):
        true_value(production, "no/such/dataset", sim=sim)
    with pytest.raises(ValueError, match="1-D integer"):
        true_value(production, np.array([0.5, 1.5]), sim=sim)


def test_true_value_from_a_dataset_split(tmp_path, production):
    dataset = pytest.importorskip("mtf_env.dataset")
    config = SimConfig(**SMALL)
    collect = dataset.CollectConfig(policy="production", n_sessions=300, n_days=1)
    path = dataset.collect_dataset(tmp_path / "ds", config, collect, collection_policy(collect), progress=False)
    test_ids = dataset.load_dataset(path, split="test").initial_user_ids
    assert len(test_ids) == 30
    from_path = true_value(production, path, n_rollouts=2, seed=1)
    from_ids = true_value(production, test_ids, n_rollouts=2, seed=1, config=config)
    assert from_path.value == from_ids.value and from_path.n_states == 30
    with pytest.raises(ValueError, match="different SimConfig"):
        true_value(production, path, config=SimConfig(**SMALL, max_requests=7))


def test_cli_ab_writes_files(tmp_path, capsys):
    from benchmarks.cli import main

    out = tmp_path / "ab"
    rc = main(["ab", "--control", "static:production", "--treatment", "static:production", "--treatment",
               "static:integrity", "--users", "50", "--days", "1", "--seed", "0", "--out", str(out),
               "--config", json.dumps(SMALL), "--no-progress"])
    assert rc == 0
    data = json.loads((out / "ab.json").read_text())
    assert data["lifts"]["static:production#2"]["adtime_s"]["lift_pct"] == 0.0
    assert "static:integrity" in (out / "ab.md").read_text()
    assert "ADTime" in capsys.readouterr().out
