"""Retention across days: the hazard model, its calibration to KuaiRand's return gaps, CRN and determinism."""
import numpy as np
import pytest

from agents.static import StaticPolicy
from benchmarks.evaluation.ab import ab_test
from benchmarks.evaluation.days import evaluate
from mtf_env.config import ResponseParams, SimConfig
from mtf_env.core import Simulator
from mtf_env.retention import (KUAIRAND_RETURN_GAP, N_GAP_BINS, calibrate_logits, draw_gaps,
                               gap_probabilities)

SMALL = dict(n_users=3000, n_items=4000)


@pytest.fixture(scope="module")
def small_sim():
    return Simulator(SimConfig(**SMALL))


def test_calibrated_logits_reproduce_the_targets_exactly_on_their_scores():
    score = np.random.default_rng(0).normal(0.3, 0.8, 5000)
    logits = calibrate_logits(score)
    probs = gap_probabilities(logits, score).mean(0)
    assert np.allclose(probs[:-1], KUAIRAND_RETURN_GAP, atol=1e-9)
    assert np.isclose(probs[-1], 1.0 - KUAIRAND_RETURN_GAP.sum(), atol=1e-9)


def test_draw_by_inversion_matches_the_probabilities_and_is_monotone_in_the_score():
    params = ResponseParams()
    rng = np.random.default_rng(1)
    u = rng.random(200_000)
    score = np.full(len(u), 0.2)
    gaps = draw_gaps(params, score, u, max_gap=40)
    shares = np.bincount(np.minimum(gaps, N_GAP_BINS), minlength=N_GAP_BINS + 1)[1:] / len(u)
    expected = gap_probabilities(np.asarray(params.retention_logits), score[:1])[0]
    assert np.allclose(shares, expected, atol=4 * np.sqrt(expected * (1 - expected) / len(u)))
    # common random numbers: a better day never lengthens the gap drawn from the same uniform
    better = draw_gaps(params, score + 0.5, u, max_gap=40)
    assert np.all(better <= gaps) and np.any(better < gaps)
    assert gaps.max() <= 40


def test_day_model_with_retention_is_reproducible_under_a_seed(small_sim):
    policy = StaticPolicy.preset("production")
    a = evaluate(policy, 150, 12, seed=4, sim=small_sim, show_progress=False)
    b = evaluate(policy, 150, 12, seed=4, sim=small_sim, show_progress=False, block_size=64)
    c = evaluate(policy, 150, 12, seed=5, sim=small_sim, show_progress=False)
    for name in ("active_days", "return_gaps", "play_s", "sessions"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.active_days, c.active_days)
    # users skip days, absent days count zero in ADTime, every visit day draws one gap
    assert 1 <= a.active_days.min() and a.active_days.max() <= 12 and a.active_days.mean() < 11
    assert np.array_equal(a.return_gaps.sum(1), a.active_days)
    assert np.isclose(a.metrics()["adtime_s"].value, a.play_s.sum() / (150 * 12))


def test_aa_test_with_retention_over_many_days_is_exactly_zero(small_sim):
    res = ab_test(StaticPolicy.preset("production"), {"twin": StaticPolicy.preset("production")}, users=150,
                  days=10, seed=9, sim=small_sim, show_progress=False, control_name="prod")
    assert res.arms["prod"].active_days.mean() < 9.5  # retention is on
    for lift in res.lifts["twin"].values():
        assert lift.lift_pct == 0.0 and lift.se_pct == 0.0 and lift.p_value == 1.0


def test_return_gaps_under_production_match_kuairand_within_three_standard_errors():
    """Monte-Carlo check of the calibration on users and random numbers it was not fitted on."""
    res = evaluate(StaticPolicy.preset("production"), 3000, 30, seed=12345, config=SimConfig(),
                   show_progress=False)
    shares = res.return_gap_shares()
    targets = np.append(KUAIRAND_RETURN_GAP, 1.0 - KUAIRAND_RETURN_GAP.sum())
    for k, (est, target) in enumerate(zip(shares, targets)):
        assert abs(est.value - target) < 3 * est.se, f"gap bin {k + 1}: {est.value:.4f} vs {target} (se {est.se:.4f})"
