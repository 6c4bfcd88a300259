"""Tests of the Conservative-OPEstimator (agents/ope.py) and the d3rlpy adapter.

The synthetic MDP has a closed-form value for linear policies: x' = 0.5 x + U(-w, w)^d noise,
x_0 ~ U(0, 1)^d, reward r = b.x + u.a + sigma * N(0, 1). For pi_e(x) = c + P x,
E[r_t | x_0] = (b + P^T u) . 0.5^t x_0 + u . c, so V(x_0) is a geometric sum
(:meth:`SyntheticMDP.value`). Sessions either end in a terminal after ``horizon`` steps (the
observation then carries the time t / horizon to stay Markov) or are cut off by a timeout
after ``horizon`` steps of a time-homogeneous process, whose true value is the untruncated one.
"""
from __future__ import annotations

import logging

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from agents.d3rlpy_adapter import episode_bounds, to_d3rlpy_dataset
from agents.ope import (
    ConservativeFQE,
    ConservativeFQEConfig,
    D3rlpyFQE,
    select_initial_observations,
)
from mtf_env.transitions import TransitionArrays

A = 12  # action dim of the protocol
D = 3   # state features of the synthetic MDP
SIGMA = 0.1  # reward noise
MLP_SE_FACTOR = 2.5  # standard error of the MLP fit / least-squares standard error (SyntheticMDP.tolerance)
#: Small, fast settings for the tests (the paper's defaults take minutes).
SMALL = dict(hidden=(64, 64), batch_size=128, target_update_every=25, learning_rate=1e-3, n_bootstrap=200)



def small_config(**kw) -> ConservativeFQEConfig:
    return ConservativeFQEConfig(**{**SMALL, "n_steps": 1000, "alpha_c": 0.0, **kw})


class LinearPolicy:
    """pi_e(x) = c + P x on the state features (a time feature, if present, is ignored)."""

    def __init__(self, c: np.ndarray, P: np.ndarray):
        self.c = np.asarray(c, dtype=np.float32)
        self.P = np.asarray(P, dtype=np.float32)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return (self.c[None] + obs[:, :D] @ self.P.T).astype(np.float32)


def eval_policy() -> LinearPolicy:
    rng = np.random.default_rng(1)
    return LinearPolicy(rng.uniform(-0.5, 0.5, A), rng.uniform(-0.2, 0.2, (A, D)))


def closed_form_problem(mdp: "SyntheticMDP", n_episodes: int = 1000):
    """The evaluation policy, ``n_episodes`` logged episodes of ``mdp``, their initial states, the true value
    from them (closed form) and the Monte-Carlo tolerance of an estimate: ``(pol, data, x0, truth, tol)``."""
    pol = eval_policy()
    data = mdp.generate(10, n_episodes)
    x0 = data.initial_observations()
    return pol, data, x0, float(mdp.value(x0, pol).mean()), mdp.tolerance(data, pol, n_episodes)


@dataclass(frozen=True)
class SyntheticMDP:
    horizon: int
    end: str  # "terminal" or "timeout"
    gamma: float
    sigma: float = SIGMA
    noise_w: float = 0.1
    act_low: float = -1.0
    act_high: float = 1.0
    param_seed: int = 0

    @property
    def b(self) -> np.ndarray:
        return np.random.default_rng(self.param_seed).uniform(-1, 1, D)

    @property
    def u(self) -> np.ndarray:
        return 0.5 * np.random.default_rng(self.param_seed + 1).uniform(-1, 1, A)

    @property
    def time_feature(self) -> bool:
        return self.end == "terminal"

    def _obs(self, x: np.ndarray, t: int) -> np.ndarray:
        if self.time_feature:
            return np.concatenate([x, np.full((len(x), 1), t / self.horizon)], 1)
        return x

    def generate(self, seed: int, n_episodes: int) -> TransitionArrays:
        """``n_episodes`` sessions of exactly ``horizon`` steps, stored session after session."""
        rng = np.random.default_rng(seed)
        b, u = self.b, self.u
        x = rng.uniform(0, 1, (n_episodes, D))
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("o", "a", "r", "n", "te", "to", "st")}
        for t in range(self.horizon):
            a = rng.uniform(self.act_low, self.act_high, (n_episodes, A))
            r = x @ b + a @ u + self.sigma * rng.standard_normal(n_episodes)
            x2 = 0.5 * x + rng.uniform(-self.noise_w, self.noise_w, x.shape)
            last = np.full(n_episodes, t == self.horizon - 1)
            rows["o"].append(self._obs(x, t)); rows["a"].append(a); rows["r"].append(r)
            rows["n"].append(self._obs(x2, t + 1)); rows["st"].append(np.full(n_episodes, t == 0))
            rows["te"].append(last & (self.end == "terminal")); rows["to"].append(last & (self.end == "timeout"))
            x = x2
        flat = {k: np.stack(v, 1).reshape(n_episodes * self.horizon, *v[0].shape[1:]) for k, v in rows.items()}
        return TransitionArrays(
            observations=flat["o"].astype(np.float32), actions=flat["a"].astype(np.float32),
            rewards=flat["r"].astype(np.float32), next_observations=flat["n"].astype(np.float32),
            terminals=flat["te"].astype(bool), timeouts=flat["to"].astype(bool),
            episode_starts=flat["st"].astype(bool),
        )

    def value(self, obs: np.ndarray, pol: LinearPolicy, truncate_at: int | None = None) -> np.ndarray:
        """Exact V^pi(obs), (n,): sum over the remaining steps R of gamma^k E[r_k] (R infinite
        for the timeout process unless ``truncate_at``; H - t for terminal sessions)."""
        obs = np.asarray(obs, dtype=np.float64)
        slope = self.b + pol.P.T.astype(np.float64) @ self.u
        const = self.u @ pol.c.astype(np.float64)
        if self.time_feature:
            remaining = self.horizon - np.rint(obs[:, D] * self.horizon)
        else:
            remaining = np.inf if truncate_at is None else float(truncate_at)

        def geo(q: float) -> np.ndarray:  # sum_{k < R} q^k
            return (1.0 - q**remaining) / (1.0 - q)

        return obs[:, :D] @ slope * geo(0.5 * self.gamma) + const * geo(self.gamma)

    def target_noise_std(self, data: TransitionArrays, pol: LinearPolicy) -> float:
        """Std of the true Bellman target around its mean: reward noise plus
        gamma * (V(s') - V(E[s' | s])) for bootstrapping rows; measured on the data."""
        x = data.observations[:, :D].astype(np.float64)
        r_noise = data.rewards - (x @ self.b + data.actions.astype(np.float64) @ self.u)
        mean_next = np.array(data.next_observations, dtype=np.float64)
        mean_next[:, :D] = 0.5 * x
        v_noise = self.value(data.next_observations, pol) - self.value(mean_next, pol)
        return float(np.std(r_noise + self.gamma * (~data.terminals) * v_noise))

    def tolerance(self, data: TransitionArrays, pol: LinearPolicy, n_episodes: int) -> float:
        """4 standard errors of the estimate, from the noise of the data.

        A least-squares fit of Q at one point has standard error noise * sqrt(p / n) (p
        regression inputs, n samples per step), summed over the discounted horizon. The small
        MLP fitted for a few hundred steps errs more than least squares: over 8 independent
        data sets (the settings of test_plain_fqe_recovers_true_value) its rms error was 2.9,
        1.8 and 3.0 least-squares standard errors for the three MDPs, so its standard error
        is taken as MLP_SE_FACTOR = 2.5 times the least-squares one.
        """
        p = data.obs_dim + data.action_dim + 1
        steps = float(np.sum(self.gamma ** np.arange(self.horizon))) if self.end == "terminal" else 1 / (1 - self.gamma)
        ls_se = self.target_noise_std(data, pol) * np.sqrt(p / n_episodes) * steps
        return 4.0 * MLP_SE_FACTOR * ls_se


# ----------------------------------------------------------------------------------------
# plain FQE recovers closed-form values


@pytest.mark.parametrize(
    "mdp",
    [
        SyntheticMDP(horizon=1, end="terminal", gamma=0.95),  # one-step sessions: a regression of the reward
        SyntheticMDP(horizon=3, end="terminal", gamma=0.95),  # three-step sessions: bootstrapping through Q_k
        SyntheticMDP(horizon=2, end="timeout", gamma=0.6),    # cut-off sessions: timeouts bootstrap
    ],
    ids=["1step", "3step_terminal", "2step_timeout"],
)
def test_plain_fqe_recovers_true_value(mdp):
    pol, data, x0, truth, tol = closed_form_problem(mdp)
    est = ConservativeFQE(small_config(gamma=mdp.gamma), seed=0)
    est.fit(data, pol, show_progress=False)
    out = est.estimate(x0, pol)
    assert abs(out["value"] - truth) < tol, (out["value"], truth, tol)
    assert out["per_state_values"].shape == (1000,)  # one initial state per logged episode
    assert out["ci_low"] <= out["value"] <= out["ci_high"]
    if mdp.end == "timeout":
        # the test can tell bootstrapping at timeouts from stopping there
        truncated = float(mdp.value(x0, pol, truncate_at=mdp.horizon).mean())
        assert abs(truncated - truth) > 1.5 * tol
        assert abs(out["value"] - truth) < abs(out["value"] - truncated)


# ----------------------------------------------------------------------------------------
# the CQL regulariser


NARROW = SyntheticMDP(horizon=1, end="terminal", gamma=0.95, act_low=-0.25, act_high=0.25)


def test_cql_lowers_estimate_monotonically_for_ood_policy():
    data = NARROW.generate(3, 1000)
    ood = LinearPolicy(np.full(A, 0.9), np.zeros((A, D)))  # logged actions lie in [-0.25, 0.25]
    x0 = data.initial_observations()
    values = []
    for alpha in (0.0, 0.5e-3, 2e-3, 1e-2):
        est = ConservativeFQE(small_config(alpha_c=alpha, n_steps=200, batch_size=64), seed=0)
        est.fit(data, ood, show_progress=False)
        values.append(est.estimate(x0, ood)["value"])
    assert all(v1 < v0 for v0, v1 in zip(values, values[1:])), values


def test_small_alpha_barely_moves_in_support_policy():
    data = NARROW.generate(3, 1000)
    inside = LinearPolicy(np.zeros(A), np.zeros((A, D)))  # the centre of the logged actions
    x0 = data.initial_observations()
    values = {}
    for alpha in (0.0, 0.5e-3):
        est = ConservativeFQE(small_config(alpha_c=alpha, n_steps=200, batch_size=64), seed=0)
        est.fit(data, inside, show_progress=False)
        values[alpha] = est.estimate(x0, inside)["value"]
    tol = NARROW.tolerance(data, inside, len(x0))
    assert abs(values[0.5e-3] - values[0.0]) < tol, values
    assert abs(values[0.0] - NARROW.value(x0, inside).mean()) < tol


# ----------------------------------------------------------------------------------------
# determinism, policy calls, persistence


def small_problem(end: str = "terminal", horizon: int = 3, n: int = 200):
    return SyntheticMDP(horizon=horizon, end=end, gamma=0.95).generate(5, n), eval_policy()


def test_same_seed_same_weights_and_estimate():
    data, pol = small_problem()
    cfg = small_config(n_steps=60, alpha_c=0.01, hidden=(16, 16), batch_size=32)
    runs = []
    for seed in (7, 7, 8):
        est = ConservativeFQE(cfg, seed=seed)
        est.fit(data, pol, show_progress=False)
        runs.append((est.q_net.state_dict(), est.estimate(data.initial_observations(), pol)))
    (w0, e0), (w1, e1), (w2, e2) = runs
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert e0["value"] == e1["value"] and e0["ci_low"] == e1["ci_low"] and e0["ci_high"] == e1["ci_high"]
    assert e2["value"] != e0["value"]


class CountingPolicy:
    def __init__(self, inner, stochastic: bool = False):
        self.inner, self.calls, self.rows, self.stochastic = inner, 0, 0, stochastic

    def act(self, obs):
        self.calls += 1
        self.rows += len(obs)
        return self.inner.act(obs)


@pytest.mark.parametrize("end,horizon,expected_calls", [("terminal", 3, 1), ("timeout", 2, 2)])
def test_policy_is_called_up_front_only(end, horizon, expected_calls):
    data, pol = small_problem(end, horizon)
    counting = CountingPolicy(pol)
    est = ConservativeFQE(small_config(n_steps=50, hidden=(8,), batch_size=16), seed=0)
    est.fit(data, counting, show_progress=False)
    # pi_e(s) once for all rows; pi_e(s') only for timeout rows (continuing rows reuse pi_e(s_{i+1}))
    assert counting.calls == expected_calls
    assert counting.rows == len(data) + int(data.timeouts.sum())


def test_stochastic_policy_is_drawn_n_times():
    data, pol = small_problem("timeout", 2)
    counting = CountingPolicy(pol, stochastic=True)
    est = ConservativeFQE(small_config(n_steps=20, hidden=(8,), batch_size=16, n_policy_action_samples=3), seed=0)
    est.fit(data, counting, show_progress=False)
    assert counting.rows == 3 * len(data) + 3 * int((~data.terminals).sum())
    counting.rows = 0
    est.estimate(data.initial_observations()[:10], counting)
    assert counting.rows == 30


def test_out_dir_metrics_checkpoint_and_load(tmp_path):
    data, pol = small_problem()
    est = ConservativeFQE(small_config(n_steps=40, log_every=10, hidden=(16,), batch_size=32), seed=0)
    est.fit(data, pol, show_progress=False, out_dir=tmp_path)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step"
    assert sorted(header[1:]) == ["ope/cql_gap", "ope/q_data_mean", "ope/q_policy_mean", "ope/td_loss"]
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 5
    assert (tmp_path / "config.json").is_file()
    loaded = ConservativeFQE.load(tmp_path / "checkpoint.pt")
    x0 = data.initial_observations()
    assert loaded.estimate(x0, pol)["value"] == est.estimate(x0, pol)["value"]
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    from agents.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        ConservativeFQE.load(tmp_path / "bad.pt")


# ----------------------------------------------------------------------------------------
# bad input


class BadPolicy:
    def __init__(self, kind: str):
        self.kind = kind

    def act(self, obs):
        if self.kind == "shape":
            return np.zeros((len(obs), A - 1), np.float32)
        if self.kind == "nan":
            out = np.zeros((len(obs), A), np.float32)
            out[0, 3] = np.nan
            return out
        return np.full((len(obs), A), 1.5, np.float32)


@pytest.mark.parametrize("kind,match", [("shape", r"shape \(\d+, 11\).*expected \(\d+, 12\)"),
                                        ("nan", "non-finite"), ("range", r"outside \[-1, 1\]")])
def test_bad_policy_output_is_refused(kind, match):
    data, _ = small_problem()
    est = ConservativeFQE(small_config(n_steps=5), seed=0)
    with pytest.raises(ValueError, match=match):
        est.fit(data, BadPolicy(kind), show_progress=False)


def test_bad_observations_and_state_are_refused():
    data, pol = small_problem()
    est = ConservativeFQE(small_config(n_steps=5, hidden=(8,)), seed=0)
    with pytest.raises(ValueError, match="not fitted"):
        est.estimate(data.initial_observations(), pol)
    est.fit(data, pol, show_progress=False)
    with pytest.raises(ValueError, match="features"):
        est.estimate(np.zeros((4, data.obs_dim + 1), np.float32), pol)
    with pytest.raises(ValueError, match="shape"):
        est.estimate(np.zeros(data.obs_dim, np.float32), pol)
    with pytest.raises(ValueError, match="non-finite"):
        est.estimate(np.full((2, data.obs_dim), np.nan, np.float32), pol)
    broken = TransitionArrays(**{**data.__dict__, "rewards": np.where(np.arange(len(data)) == 3, np.nan, data.rewards)})
    with pytest.raises(ValueError, match="rewards"):
        est.fit(broken, pol, show_progress=False)


@pytest.mark.parametrize("field,value", [("gamma", 1.0), ("alpha_c", -0.1), ("n_steps", 0), ("hidden", ()),
                                         ("ci_level", 1.0), ("learning_rate", 0.0)])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        ConservativeFQEConfig(**{field: value})


def test_paper_defaults():
    cfg = ConservativeFQEConfig()
    assert (cfg.batch_size, cfg.n_initial_states, cfg.gamma, cfg.alpha_c, cfg.n_steps, cfg.learning_rate) == (
        512, 5000, 0.95, 0.5e-3, 5000, 1e-4)


def test_select_initial_observations():
    data, _ = small_problem(n=50)
    s0 = select_initial_observations(data, 20, seed=3)
    assert s0.shape == (20, data.obs_dim)
    starts = data.initial_observations()
    assert all(any(np.array_equal(row, st) for st in starts) for row in s0)
    np.testing.assert_array_equal(s0, select_initial_observations(data, 20, seed=3))
    assert select_initial_observations(data, 500, seed=3).shape == (50, data.obs_dim)


# ----------------------------------------------------------------------------------------
# d3rlpy adapter and the d3rlpy FQE reference


def mixed_episodes() -> TransitionArrays:
    """Three sessions: lengths 2 (terminal), 3 (timeout), 1 (timeout); obs_dim 2."""
    lengths, ends = [2, 3, 1], ["te", "to", "to"]
    obs, nxt, term, tout, start = [], [], [], [], []
    k = 0.0
    for length, end in zip(lengths, ends):
        states = [np.array([k + t, -(k + t)], np.float32) for t in range(length + 1)]
        for t in range(length):
            obs.append(states[t]); nxt.append(states[t + 1])
            last = t == length - 1
            term.append(last and end == "te"); tout.append(last and end == "to"); start.append(t == 0)
        k += 100.0
    n = len(obs)
    return TransitionArrays(
        observations=np.stack(obs), actions=np.linspace(-1, 1, n * A, dtype=np.float32).reshape(n, A),
        rewards=np.arange(n, dtype=np.float32), next_observations=np.stack(nxt),
        terminals=np.array(term), timeouts=np.array(tout), episode_starts=np.array(start),
    )


def test_d3rlpy_dataset_keeps_every_transition():
    from d3rlpy.dataset import BasicTransitionPicker

    data = mixed_episodes()
    ds = to_d3rlpy_dataset(data)
    assert len(ds.episodes) == 3
    assert ds.transition_count == len(data) == 6
    assert [e.size() for e in ds.episodes] == [2, 4, 2]  # timeout episodes carry one padding row
    assert [e.terminated for e in ds.episodes] == [True, False, False]
    assert ds.dataset_info.action_size == A
    picker = BasicTransitionPicker()
    # walk every transition: (episode, index) in d3rlpy order == our rows in order
    row = 0
    for ep in ds.episodes:
        for i in range(ep.transition_count):
            tr = picker(ep, i)
            np.testing.assert_array_equal(tr.observation, data.observations[row])
            np.testing.assert_array_equal(tr.action, data.actions[row])
            assert float(tr.reward[0]) == data.rewards[row]
            assert tr.terminal == float(data.terminals[row])
            if data.terminals[row]:
                np.testing.assert_array_equal(tr.next_observation, 0.0)  # d3rlpy zeroes terminal s'
            else:
                np.testing.assert_array_equal(tr.next_observation, data.next_observations[row])
            row += 1
    assert row == len(data)


def test_d3rlpy_dataset_without_padding_drops_timeout_steps():
    data = mixed_episodes()
    ds = to_d3rlpy_dataset(data, pad_timeouts=False)
    # each timeout session loses its last step; the one-step timeout session is left with no
    # transition and d3rlpy drops it
    assert ds.transition_count == len(data) - 2
    assert [e.size() for e in ds.episodes] == [2, 3]


@pytest.mark.parametrize("broken,match", [
    ("first", "episode_starts\\[0\\]"), ("unfinished", "unfinished"), ("missing_start", "not marked"),
    ("missing_end", "neither terminal nor timeout"), ("next_obs", "next_observations\\[i\\] != observations"),
])
def test_d3rlpy_adapter_refuses_broken_layout(broken, match):
    data = mixed_episodes()
    f = {k: np.array(v, copy=True) for k, v in data.__dict__.items()}
    if broken == "first":
        f["episode_starts"][0] = False
    elif broken == "unfinished":
        f["timeouts"][-1] = False
    elif broken == "missing_start":
        f["episode_starts"][2] = False
    elif broken == "missing_end":
        f["terminals"][1] = False
    else:
        f["next_observations"][2] += 1.0
    with pytest.raises(ValueError, match=match):
        to_d3rlpy_dataset(TransitionArrays(**f))
    if broken != "next_obs":
        with pytest.raises(ValueError, match=match):
            episode_bounds(TransitionArrays(**f))


class RecordingPolicy:
    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def act(self, obs):
        self.seen.append(np.array(obs, copy=True))
        return self.inner.act(obs)


def test_d3rlpy_fqe_reference_matches_ours():
    mdp = SyntheticMDP(horizon=2, end="timeout", gamma=0.6)
    pol = eval_policy()
    n_episodes = 400
    data = mdp.generate(10, n_episodes)
    x0 = data.initial_observations()
    cfg = small_config(gamma=mdp.gamma, n_steps=300, batch_size=64, target_update_every=15, learning_rate=3e-3)
    recording = RecordingPolicy(pol)
    ref = D3rlpyFQE(cfg, seed=0)
    ref.fit(data, recording, show_progress=False)
    # d3rlpy hands the policy standardised s'; the wrapper must undo that: every state the
    # policy saw is one of the logged next observations
    seen = np.unique(np.round(np.concatenate(recording.seen), 4), axis=0)
    dist = np.abs(seen[:, None, :] - data.next_observations[None, :, :]).max(axis=2).min(axis=1)
    assert dist.max() < 1e-4
    out = ref.estimate(x0, pol)
    ours = ConservativeFQE(cfg, seed=0)
    ours.fit(data, pol, show_progress=False)
    mine = ours.estimate(x0, pol)
    assert set(mine) == set(out)
    tol = mdp.tolerance(data, pol, n_episodes)
    assert abs(out["value"] - mine["value"]) < tol, (out["value"], mine["value"], tol)


def test_d3rlpy_fqe_refuses_cql_weight():
    with pytest.raises(ValueError, match="alpha_c"):
        D3rlpyFQE(ConservativeFQEConfig(alpha_c=0.5e-3))


def test_d3rlpy_fqe_without_progress_prints_no_log_lines(capfd):
    import d3rlpy  # noqa: F401  (configures structlog when imported: the caller's configuration is the one after it)
    import structlog

    data, pol = small_problem()
    cfg = small_config(n_steps=20, alpha_c=0.0, hidden=(8, 8), batch_size=16)
    outer = structlog.get_config()
    # an in-process CLI test may have quietened structlog for the whole process: let every level through
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET))
    try:
        before = structlog.get_config()
        D3rlpyFQE(cfg, seed=0).fit(data, pol, show_progress=False)
        quiet = capfd.readouterr().out
        assert structlog.get_config() == before, "the caller's structlog configuration is restored"
        D3rlpyFQE(cfg, seed=0).fit(data, pol, show_progress=True)
        loud = capfd.readouterr().out
    finally:
        structlog.configure(**outer)
    assert "Parameters" in loud  # d3rlpy's settings line: what the quiet fit must not print
    assert "Parameters" not in quiet and "fqe: epoch=1" not in quiet
