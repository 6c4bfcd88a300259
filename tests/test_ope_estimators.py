"""Correctness of the off-policy estimators beyond FQE: the IS family (agents/ope_is.py), bootstrap
FQE (agents/ope.py), model-based (agents/ope_model.py) and the one interface
(benchmarks/evaluation/estimators.py).

The IS family is checked on a small session MDP with Gaussian behaviour and target policies, whose
densities are known exactly: x_0 ~ U(0, 1), x_{t+1} = 0.5 x_t + U(-0.1, 0.1); after each step the
session continues with probability ``CONTINUE`` (at most ``H`` steps); r_t = b x_t + u . a_t + noise.
Actions do not move the state, so E[r_t] = b E[x_t] + u . E[a_t] and the value is a short sum
(:func:`bandit_truth`). The unbiased forms' mean over many seeds must lie within 4 standard errors
of the truth; the same check with a wrong behaviour density must fail (the test can fail).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.ope import BootstrapFQE
from agents.ope_is import (effective_sample_size, gaussian_kernel_log_density, is_estimates, silverman_bandwidth)
from agents.ope_model import ModelBasedConfig, ModelBasedOPE
from mtf_env.transitions import TransitionArrays
from tests.test_ope import SyntheticMDP, closed_form_problem, eval_policy, small_config

D_A = 2          # action dimensions of the IS tests
H = 3            # longest session
CONTINUE = 0.7   # probability a session goes on after a step
GAMMA = 0.9
B_STATE = 1.0
U = np.array([1.0, -0.5])
SIGMA_B = 0.6    # behaviour: N(0, SIGMA_B^2 I)
TARGET_C = np.array([0.3, -0.2])
TARGET_P = np.array([0.4, 0.2])  # target mean c + P x
SIGMA_E = 0.3    # stochastic target: N(c + P x, SIGMA_E^2 I)


def normal_log_density(a: np.ndarray, mean: np.ndarray, std: float) -> np.ndarray:
    return (-0.5 * np.sum((a - mean) ** 2, axis=1) / std**2 - a.shape[1] * math.log(std * math.sqrt(2 * math.pi)))


def bandit_truth() -> float:
    """Exact value of the stochastic (and the deterministic) target: E[x_t] = 0.5^t * 0.5."""
    total = 0.0
    for t in range(H):
        ex = 0.5**t * 0.5
        total += (GAMMA * CONTINUE) ** t * (B_STATE * ex + U @ (TARGET_C + TARGET_P * ex))
    return float(total)


def sessions(seed: int, n: int, deterministic_target: bool = False, bandwidth: float | None = None):
    """Logged rows of ``n`` sessions, session after session:
    (episode_starts, rewards, log_ratios, x, actions (N, D_A), continues)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("i", "t", "start", "r", "lr", "x", "a", "cont")}
    x = rng.uniform(0, 1, n)
    alive = np.ones(n, bool)
    for t in range(H):
        idx = np.flatnonzero(alive)
        a = rng.normal(0.0, SIGMA_B, (idx.size, D_A))
        mean_e = TARGET_C[None] + TARGET_P[None] * x[idx, None]
        log_b = normal_log_density(a, np.zeros(D_A), SIGMA_B)
        log_e = (gaussian_kernel_log_density(mean_e, a, bandwidth) if deterministic_target
                 else normal_log_density(a, mean_e, SIGMA_E))
        goes_on = (rng.uniform(size=idx.size) < CONTINUE) & (t < H - 1)
        for k, v in (("i", idx), ("t", np.full(idx.size, t)), ("start", np.full(idx.size, t == 0)),
                     ("r", B_STATE * x[idx] + a @ U + 0.1 * rng.standard_normal(idx.size)), ("lr", log_e - log_b),
                     ("x", x[idx]), ("a", a), ("cont", goes_on)):
            cols[k].append(v)
        alive[idx] = goes_on
        x = 0.5 * x + rng.uniform(-0.1, 0.1, n)
    flat = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.lexsort((flat["t"], flat["i"]))  # session-major rows
    return (flat["start"][order].astype(bool), flat["r"][order], flat["lr"][order], flat["x"][order],
            flat["a"][order], flat["cont"][order].astype(bool))


def _mean_and_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))


N_SEEDS = 150
N_SESSIONS = 400


@pytest.fixture(scope="module")
def stochastic_runs():
    return [sessions(seed, N_SESSIONS) for seed in range(N_SEEDS)]


@pytest.mark.parametrize("form", ["tis", "pdis", "dr"])
def test_is_family_is_unbiased_for_a_stochastic_target(stochastic_runs, form):
    truth = bandit_truth()
    values = []
    for starts, r, lr, x, a, cont in stochastic_runs:
        kw = {}
        if form == "dr":  # a deliberately wrong Q-model (with V = E_{pi_e} Q, as DR requires): DR stays unbiased
            q = 0.3 + 0.2 * x + 0.1 * a[:, 0]
            v = 0.3 + 0.2 * x + 0.1 * (TARGET_C[0] + TARGET_P[0] * x)
            kw = {"q_logged": q, "v_next": np.roll(v, -1), "v_initial": v[starts]}
        values.append(is_estimates(starts, r, lr, GAMMA, **kw)[form])
    mean, se = _mean_and_se(values)
    assert abs(mean - truth) < 4 * se, (form, mean, truth, se)


def test_a_wrong_behaviour_density_is_detected(stochastic_runs):
    """The unbiasedness check can fail: behaviour densities off by a factor e^0.3 bias TIS by far more than 4 se."""
    truth = bandit_truth()
    values = [is_estimates(starts, r, lr - 0.3, GAMMA)["pdis"] for starts, r, lr, *_ in stochastic_runs]
    mean, se = _mean_and_se(values)
    assert abs(mean - truth) > 4 * se


def test_self_normalised_forms_are_consistent():
    truth = bandit_truth()
    starts, r, lr, x, a, cont = sessions(123, 40_000)
    kw = {"q_logged": np.zeros(len(x)), "v_next": np.zeros(len(x)), "v_initial": np.zeros(int(starts.sum()))}
    out = is_estimates(starts, r, lr, GAMMA, n_bootstrap=100, seed=0, **kw)
    for form in ("sntis", "snpdis", "sndr"):
        low, high = out["ci"][form]
        pad = 0.5 * (high - low)
        assert low - pad < truth < high + pad, (form, out[form], truth, low, high)
        assert abs(out[form] - truth) < 0.05


def test_kernel_smoothing_of_a_deterministic_target_on_a_linear_reward():
    """With a reward linear in the action the Gaussian-smoothed policy has the deterministic one's value,
    so kernel TIS / PDIS are unbiased for it (any bandwidth)."""
    truth = bandit_truth()
    for form in ("tis", "pdis"):
        values = [is_estimates(*sessions(seed, N_SESSIONS, deterministic_target=True, bandwidth=0.4)[:3],
                               GAMMA)[form] for seed in range(N_SEEDS)]
        mean, se = _mean_and_se(values)
        assert abs(mean - truth) < 4 * se, (form, mean, truth, se)


def test_dr_with_the_exact_q_has_less_variance_than_pdis(stochastic_runs):
    def v_rest(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Expected discounted reward of the target from step t on (session alive at t, x_t = x), (n,)."""
        total, ex = np.zeros_like(x), x.copy()
        for k in range(H):
            on = k >= t
            total += np.where(on, (GAMMA * CONTINUE) ** np.maximum(k - t, 0) * (B_STATE * ex + U @ TARGET_C
                                                                                 + (U @ TARGET_P) * ex), 0.0)
            ex = np.where(on, 0.5 * ex, ex)
        return total

    dr, pdis = [], []
    for starts, r, lr, x, a, cont in stochastic_runs[:60]:
        session = np.cumsum(starts) - 1
        t = np.arange(len(x)) - np.flatnonzero(starts)[session]
        last = t + 1 >= H
        q = B_STATE * x + a @ U + np.where(last, 0.0, GAMMA * CONTINUE * v_rest(0.5 * x, t + 1))
        v_next = np.where(cont, v_rest(np.roll(x, -1), t + 1), 0.0)  # V at the logged next state
        out = is_estimates(starts, r, lr, GAMMA, q_logged=q, v_next=v_next, v_initial=v_rest(x[starts], t[starts]))
        dr.append(out["dr"]); pdis.append(out["pdis"])
    assert abs(np.mean(dr) - bandit_truth()) < 4 * np.std(dr, ddof=1) / math.sqrt(len(dr))
    assert np.std(dr) < 0.5 * np.std(pdis)


def test_weights_helpers():
    assert effective_sample_size(np.ones(10)) == pytest.approx(10.0)
    assert effective_sample_size(np.array([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_sample_size(np.zeros(3)) == 0.0
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.5, (5000, 12))
    h = silverman_bandwidth(a)
    assert h == pytest.approx(0.5 * (4 / (14 * 5000)) ** (1 / 16), rel=0.05)
    # log kernel density: a normal density
    assert gaussian_kernel_log_density(np.zeros((1, 2)), np.zeros((1, 2)), 1.0)[0] == pytest.approx(-math.log(2 * math.pi))
    starts, r, lr, *_ = sessions(0, 200)
    clipped = is_estimates(starts, r, lr, GAMMA, clip=1.0)
    assert 0.0 < clipped["clipped_share"] < 1.0 and clipped["clip"] == 1.0
    with pytest.raises(ValueError, match="bandwidth"):
        gaussian_kernel_log_density(np.zeros((1, 2)), np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match="DR needs"):
        is_estimates(starts, r, lr, GAMMA, q_logged=np.zeros(len(r)))


def test_scope_rl_self_normalised_forms_agree_with_ours():
    """Cross-check with SCOPE-RL (optional extra ``scope``) on fixed-length sessions: the self-normalised
    forms agree; its plain TIS differs from ours by its kernel's one-dimensional normaliser."""
    pytest.importorskip("scope_rl")
    from scope_rl.ope.continuous import SelfNormalizedPDIS, SelfNormalizedTIS, TrajectoryWiseImportanceSampling

    rng = np.random.default_rng(0)
    n, T, d, h = 3000, 2, 2, 0.5
    a = rng.normal(0, 1, (n * T, d))
    target = np.tile([0.3, -0.1], (n * T, 1))
    r = a.sum(1) + rng.normal(0, 0.1, n * T)
    pscore = np.exp(-0.5 * a**2) / math.sqrt(2 * math.pi)  # per-dimension behaviour densities
    kw = dict(step_per_trajectory=T, action=a, reward=r, pscore=pscore, evaluation_policy_action=target, gamma=0.9,
              bandwidth=h)
    starts = np.tile([True, False], n)
    ours = is_estimates(starts, r, gaussian_kernel_log_density(target, a, h) - np.log(pscore).sum(1), 0.9)
    assert SelfNormalizedTIS().estimate_policy_value(**kw) == pytest.approx(ours["sntis"], rel=1e-6)
    assert SelfNormalizedPDIS().estimate_policy_value(**kw) == pytest.approx(ours["snpdis"], rel=1e-6)
    theirs_tis = TrajectoryWiseImportanceSampling().estimate_policy_value(**kw)
    factor = (2 * math.pi * h**2) ** ((d - 1) / 2 * T)  # their kernel lacks (2 pi h^2)^(-(d-1)/2) per step
    assert theirs_tis == pytest.approx(ours["tis"] * factor, rel=1e-6)


# ----------------------------------------------------------------------------------------- bootstrap FQE


@pytest.mark.parametrize("mdp", [SyntheticMDP(horizon=3, end="terminal", gamma=0.95)], ids=["3step"])
def test_bootstrap_fqe_recovers_true_value(mdp):
    pol, data, x0, truth, tol = closed_form_problem(mdp)
    est = BootstrapFQE(small_config(gamma=mdp.gamma), seed=0, n_members=4)
    est.fit(data, pol)
    out = est.estimate(x0, pol)
    assert abs(out["value"] - truth) < tol, (out["value"], truth, tol)
    assert out["lower"] < out["value"] and out["member_std"] > 0 and len(out["member_values"]) == 4
    quick = small_config(gamma=mdp.gamma, n_steps=20, hidden=(8,))
    again, twice = BootstrapFQE(quick, seed=0, n_members=3), BootstrapFQE(quick, seed=0, n_members=3)
    again.fit(data, pol)
    twice.fit(data, pol)
    assert again.estimate(x0, pol)["member_values"] == twice.estimate(x0, pol)["member_values"]  # same seed


def test_bootstrap_fqe_refuses_bad_settings():
    with pytest.raises(ValueError, match="n_members"):
        BootstrapFQE(n_members=1)
    with pytest.raises(ValueError, match="level"):
        BootstrapFQE(level=0.3)


# ----------------------------------------------------------------------------------------- model-based


@pytest.mark.parametrize("mdp", [SyntheticMDP(horizon=3, end="terminal", gamma=0.95)], ids=["3step"])
def test_model_based_recovers_true_value(mdp):
    pol, data, x0, truth, tol = closed_form_problem(mdp)
    est = ModelBasedOPE(ModelBasedConfig(hidden=(64, 64), n_steps=1000, gamma=mdp.gamma, n_bootstrap=50), seed=0)
    est.fit(data)
    assert est.horizon == mdp.horizon
    out = est.estimate(x0, pol)
    assert abs(out["value"] - truth) < tol, (out["value"], truth, tol)
    again = ModelBasedOPE(ModelBasedConfig(hidden=(8,), n_steps=20, gamma=mdp.gamma, n_bootstrap=10), seed=0)
    again.fit(data)
    twice = ModelBasedOPE(again.config, seed=0)
    twice.fit(data)
    assert again.estimate(x0, pol)["value"] == twice.estimate(x0, pol)["value"]  # same seed, same model


# ----------------------------------------------------------------------------------------- the interface


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from agents.behaviour import collection_policy
    from mtf_env.config import SimConfig
    from mtf_env.dataset import CollectConfig, collect_dataset

    collect = CollectConfig(policy="mixed", n_sessions=300, seed=3, batch_size=300)
    return collect_dataset(tmp_path_factory.mktemp("ope_est") / "tiny", SimConfig(n_users=2000, n_items=3000),
                           collect, collection_policy(collect), progress=False)


def test_every_estimator_behind_one_interface(tiny_dataset):
    from agents.ope import ConservativeFQEConfig
    from agents.static import StaticPolicy
    from benchmarks.cli import ope as cli_ope
    from benchmarks.evaluation import estimators as E
    from benchmarks.evaluation.policy_zoo import CORNER_ACTIONS

    assert set(cli_ope.ESTIMATORS) == set(E.ESTIMATORS) | set(E.ESTIMATOR_ALIASES)
    before = torch.get_num_threads()
    split = E.load_test_split(tiny_dataset, 20, seed=0)
    fqe = ConservativeFQEConfig(n_steps=20, batch_size=32, hidden=(8,), target_update_every=5, n_bootstrap=20)
    settings = E.EstimatorSettings(fqe=fqe, n_members=2, model=ModelBasedConfig(hidden=(8,), n_steps=20, n_bootstrap=20),
                                   n_bootstrap_sessions=20)
    ctx = E.OPEContext(split, settings, seed=0)
    near, far = StaticPolicy.preset("production"), StaticPolicy(CORNER_ACTIONS["all-max"])
    for name in E.ESTIMATORS:
        if name == "d3rlpy-fqe":
            continue  # covered by tests/test_cli_ope.py
        for key, pol in (("near", near), ("far", far)):
            out = ctx.estimate(name, pol, key)
            assert np.isfinite(out["value"]) and out["ci_low"] <= out["ci_high"], (name, out)
            assert (out["lower"] is None) == (name == "model-based")
            assert set(out["support"]) >= {"ess_first_step", "ess_trajectory", "ood_distance", "ood_threshold"}
            assert out["supported"] == ctx.is_supported(name, out["support"])
    s_near, s_far = ctx.support(near, "near"), ctx.support(far, "far")
    assert s_near["ood_distance"] < s_near["ood_threshold"] < s_far["ood_distance"]
    assert s_far["ess_first_step"] < s_near["ess_first_step"]
    assert ctx.estimate("fqe", near, "near")["supported"] and not ctx.estimate("fqe", far, "far")["supported"]
    assert not ctx.estimate("pdis", far, "far")["supported"]  # nearly no weight on an all-max corner
    with pytest.raises(ValueError, match="unknown estimator"):
        ctx.estimate("nope", near, "near")
    torch.set_num_threads(before)


def test_ope_command_runs_a_named_estimator(tiny_dataset, tmp_path):
    import json

    from benchmarks.cli import main

    before = torch.get_num_threads()
    out = tmp_path / "ope.json"
    assert main(["ope", "--policy", "static:production", "--policy", "static:time-only", "--data", str(tiny_dataset),
                 "--estimator", "snpdis", "--bandwidth-scale", "2", "--steps", "10", "--hidden", "8",
                 "--n-initial", "20", "--n-bootstrap", "20", "--out", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["estimator"] == "snpdis" and len(res["results"]) == 2
    assert res["results"][0]["bandwidth"] == pytest.approx(2 * res["dataset"]["silverman_bandwidth"])
    assert "| supported |" in out.with_suffix(".md").read_text()
    assert main(["ope", "--policy", "static:production", "--data", str(tiny_dataset), "--estimator", "snpdis",
                 "--bandwidth-scale", "0", "--out", str(out)]) == 2
    torch.set_num_threads(before)
