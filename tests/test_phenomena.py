"""Phenomena 1, 2 and 3 of DESIGN.md on the default configuration, with Monte-Carlo margins.

Each effect is measured on held-out users (choices made on a separate selection half) and
must exceed three standard errors of its paired Monte-Carlo estimate; nothing about the
outcome is hard-coded. Phenomenon 6 is measured and reported by ``mtf-bench diagnose``.
"""
import pytest

from benchmarks.evaluation.diagnose import diagnose

Z = 3.0  # margin in standard errors


@pytest.fixture(scope="module")
def report():
    # no schedule search here (it would double the run time; `mtf-bench diagnose` runs it)
    return diagnose(n_sessions=16_000, n_random=10, seed=0, show_progress=False, schedule_steps=()).report


def test_production_sessions_average_three_to_four_requests(report):
    req = report["production"]["requests_per_session"]
    assert 3.0 + Z * req["se"] < req["mean"] < 4.0 - Z * req["se"]


def test_phenomenon_1_fusion_weights_matter(report):
    gap = report["phenomenon_1_fusion_weights_matter"]["gap"]
    assert gap["effect"] > Z * gap["se"]


def test_phenomenon_2_personalisation_pays(report):
    ph = report["phenomenon_2_personalisation_pays"]
    assert ph["n_distinct_segment_best"] >= 2, "the best static weights should differ across segments"
    assert ph["gain"]["effect"] > Z * ph["gain"]["se"]


def test_phenomenon_3_greedy_is_not_optimal(report):
    """The weights best for the first request's reward are not the weights best for the session,
    and what they win on the first request they lose on the rest of the session."""
    ph = report["phenomenon_3_greedy_not_optimal"]
    assert ph["myopic_best"] != ph["long_horizon_best"]
    gain = ph["immediate_gain_of_myopic"]
    assert gain["effect"] > Z * gain["se"]
    later = ph["later_reward_loss_of_myopic"]
    assert later["effect"] > Z * later["se"]


def test_request_schedule_follows_the_request_index():
    """The schedule of the within-session headroom reads the request index from the observation."""
    import numpy as np

    from benchmarks.evaluation.diagnose import SCHEDULE_HORIZON, RequestSchedulePolicy
    from mtf_env.config import SimConfig
    from mtf_env.core import Simulator

    sim = Simulator(SimConfig(n_users=3000, n_items=4000))
    base, slope = np.full(12, 0.1), np.linspace(-0.6, 0.6, 12)
    policy = RequestSchedulePolicy(base, slope, sim)
    state = sim.empty_state(3)
    sim.start_sessions(state, np.arange(3), np.array([0, 1, 2]), np.random.default_rng(0))
    obs = np.repeat(state.obs[:1], 3, axis=0)
    col = sim.layout["session_stats"].start
    obs[:, col] = np.array([0, SCHEDULE_HORIZON // 2, SCHEDULE_HORIZON + 3]) / sim.config.max_requests
    act = policy.act(obs)
    assert np.allclose(act[0], base) and np.allclose(act[2], base + slope, atol=1e-6)
    assert np.allclose(act[1], base + 0.5 * slope, atol=1e-6)


def test_diagnose_cli_checks_the_retention_options(capsys):
    from benchmarks.cli import main

    assert main(["diagnose", "--retention-users", "1"]) == 2
    assert main(["diagnose", "--retention-days", "0"]) == 2
    err = capsys.readouterr().err
    assert "--retention-users" in err and "--retention-days" in err
