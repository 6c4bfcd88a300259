"""The shared policy loop (mtf_env.drive): compaction keeps rows aligned, restarts, argument errors."""
import numpy as np
import pytest

from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.drive import drive
from mtf_env.fusion import PRODUCTION_ACTION


class Production:
    """Deterministic policy that records its reset masks and batch sizes."""

    def __init__(self):
        self.resets, self.sizes = [], []

    def reset(self, mask):
        self.resets.append(np.asarray(mask).copy())

    def act(self, obs):
        self.sizes.append(len(obs))
        return np.tile(PRODUCTION_ACTION, (len(obs), 1))


@pytest.fixture(scope="module")
def sim():
    return Simulator(SimConfig(n_users=3000, n_items=4000))


def _run(sim, compact, restarts=False):
    b, cfg = 48, sim.config
    rng = np.random.default_rng(3)
    steps = 2 * cfg.max_requests
    u_cand = rng.random((b, steps, cfg.n_candidates))
    u_resp = rng.random((b, steps, cfg.page_size, 12))
    state = sim.empty_state(b)
    sim.start_sessions(state, np.arange(b), np.arange(b) * 7, None)
    totals = np.zeros((b, 12))
    sessions = np.zeros(b, np.int64)
    policy = Production()
    # the uniforms of a row depend on its caller row and the request number only
    uniforms = lambda rows, index, t: (u_cand[index, t], u_resp[index, t])  # noqa: E731
    for served in drive(sim, state, policy, uniforms=uniforms, compact=compact):
        at = served.index[served.rows]
        totals[at] += served.result.request_feedback[served.rows]
        ended = np.flatnonzero(served.ended)
        sessions[served.index[ended]] += 1
        if restarts:  # every even caller row plays exactly two sessions
            again = ended[(served.index[ended] % 2 == 0) & (sessions[served.index[ended]] < 2)]
            sim.start_sessions(served.state, again, served.state.user_id[again], None, carry=True)
            served.restart(again)
    return totals, sessions, policy


@pytest.mark.parametrize("restarts", [False, True])
def test_compaction_keeps_every_row_on_its_own_stream(sim, restarts):
    never, s_never, p_never = _run(sim, "never", restarts)
    for mode in ("always", "half"):
        totals, sessions, policy = _run(sim, mode, restarts)
        assert totals.tobytes() == never.tobytes() and np.array_equal(sessions, s_never)
        assert sum(policy.sizes) == sum(p_never.sizes)  # the policy saw the active rows only
    assert np.array_equal(s_never, np.where(np.arange(48) % 2 == 0, 2, 1) if restarts else np.ones(48))
    assert p_never.resets[0].all() and len(p_never.resets) == len(p_never.sizes)
    if restarts:  # a restarted row is a new session for the policy at its next request
        assert sum(int(r.sum()) for r in p_never.resets[1:]) == 24


def test_bad_arguments_are_refused(sim):
    state = sim.empty_state(2)
    sim.start_sessions(state, np.arange(2), None, np.random.default_rng(0))
    with pytest.raises(ValueError, match="compact"):
        next(drive(sim, state, Production(), rng=np.random.default_rng(0), compact="sometimes"))
    with pytest.raises(ValueError, match="exactly one of rng and uniforms"):
        next(drive(sim, state, Production()))
