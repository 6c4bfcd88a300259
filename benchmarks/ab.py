"""The online A/B platform: day-level evaluation, A/B tests with common random numbers, true values.

The paper judges policies by a month of online A/B tests on ADTime and UPIRate. Here the
simulator runs those tests exactly, on the same users with the same random numbers in
every arm, and it also gives the *true* value of a policy, which no real platform can.

Three entry points:

* :func:`evaluate` -- run a policy on ``users`` for ``days`` under the **day model** and
  return per-user totals (:class:`EvalResult`) from which every metric and its standard
  error is computed.
* :func:`ab_test` -- run a control and treatments on the same users with the same seed and
  report the lift of each treatment in percent with a paired 95% CI and p-value
  (:class:`ABResult`, Markdown shaped like the paper's Table 1, and JSON).
* :func:`true_value` -- the expected discounted session return of a policy from the
  initial states of fresh sessions (the session-level MDP, no day model), by Monte Carlo,
  for judging off-policy estimators.

The day model (one user-day)
----------------------------
A user-day starts one session. After every session the user comes back for another one
the same day with probability ``Simulator.return_probability(state)`` (end-of-session
satisfaction and fatigue), up to ``SimConfig.max_sessions_per_day`` sessions; a same-day
session starts with ``carry=True`` (history features kept, half the satisfaction and 30%
of the fatigue and topic saturation). Day 1 starts fresh (``carry=False``: the population's
initial history features). **Day d > 1** continues the same user: the observable history
features are those at the end of the previous day, while the hidden dynamic state
(satisfaction, fatigue, saturation) starts at zero (a night's rest). So long-run history
effects carry across days, fatigue does not.

A *vector step* serves one request to every user of a block that is still active that day
(``block_size`` users per block, default 4096); the policy is called **once per vector
step** for the whole batch of active rows (``policy.act(obs)`` with ``obs`` of shape
``(n_active, obs_dim)``, in block order; the rows of consecutive calls are not the same
users, so a stateful policy must keep no per-row memory across calls). Before each call,
``reset(mask)`` (if the policy has one) receives a ``(n_active,)`` bool mask of the rows of
that call whose session has just started.

Common random numbers
---------------------
Every uniform the simulator consumes comes from a counter-based generator keyed by
``(seed, slot, day, request_of_day)`` -- ``slot`` is the user's position in the ``users``
array and ``request_of_day`` the vector step of the day, which for an active user is the
number of requests they have made that day. So the user at a slot draws the same numbers
for their n-th request of the day in every arm, whatever the other users do, whatever the
block size, and whichever rows are active: an A/A test gives exactly zero lift, and two
runs with the same seed are identical. The return decision after a session uses one more
number of the same stream. (The generator is SplitMix64 seeded per request by a hash of
the key; ``Simulator.step`` takes the prepared numbers through its ``uniforms`` argument.)

Metrics (per user, summed over days; standard errors are over users)
---------------------------------------------------------------------
* ``adtime_s`` -- ADTime: play time in seconds per user per day (app dwell time; time
  between videos is not modelled, so dwell time is the summed play time).
* ``upi_rate`` -- UPIRate: share of video plays with at least one positive interaction
  (:data:`mtf_env.tasks.POSITIVE_INTERACTIONS`: like, share, comment, follow, collect,
  profile visit). A *play* is a watched video (``StepResult.watched``: shown and reached
  before the user exited; a skipped video counts as a play with no interaction). Pooled
  over users and days: ``sum(positive plays) / sum(plays)``.
* ``sessions_per_day`` -- the return rate: sessions per user per day (>= 1).
* ``requests_per_session``, ``videos_per_session`` -- session depth (pooled ratios).
* ``session_return`` / ``discounted_session_return`` -- mean undiscounted and discounted
  (``sum_k gamma^k r_k``, k = request index in the session) session return under the
  evaluation reward; ``session_return/<preset>`` etc. for every preset of
  :data:`mtf_env.rewards.REWARD_PRESETS`. Rewards are relabelled from the summed request
  feedback (``compute_reward``), which is linear, so one run gives every reward.

Ratio metrics ``sum_u x_u / sum_u y_u`` get delta-method standard errors
``sd(x_u - R y_u) / (sqrt(n) mean(y))``; with ``y_u = 1`` this is the ordinary standard
error of a mean.

Lifts (A/B)
-----------
``lift = R_T / R_C - 1`` in percent for each metric ``R`` (a ratio of per-user sums).
Its standard error is paired over users by the delta method: the per-user influence
``(R_T / R_C) * ((xT_u - R_T yT_u) / (R_T mean(yT)) - (xC_u - R_C yC_u) / (R_C mean(yC)))``
(written without dividing by ``R_T``), so users that are good in both arms cancel. The 95%
CI is ``lift +- 1.96 se`` and the p-value is two-sided normal. An A/A test has identical
per-user values, so lift, se and CI are exactly zero and p = 1.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numba as nb
import numpy as np
from tqdm.auto import tqdm

from mtf_env.files import write_json
from agents.policy import reset_policy
from mtf_env import kernels as K
from mtf_env.config import SimConfig
from mtf_env.core import SessionState, Simulator
from mtf_env.fusion import validate_action
from mtf_env.rewards import REWARD_PRESETS, compute_reward, reward_weights
from mtf_env.tasks import N_TASKS, POSITIVE_INTERACTIONS, TASK_INDEX

#: Default number of users simulated together (rows of one batch).
DEFAULT_BLOCK_SIZE = 4096
#: z of a two-sided 95% normal interval.
Z95 = 1.959963984540054
#: Columns of positive interactions in the feedback vector.
POSITIVE_COLUMNS = np.array([TASK_INDEX[name] for name in POSITIVE_INTERACTIONS], dtype=np.int64)
#: Stream tags mixed into the generator key (so evaluate and other users of a seed never share numbers).
_TAG_EVALUATE = 0xAB

# ---------------------------------------------------------------------------------------------
# Counter-based uniforms (SplitMix64): row stream keyed by (key, slot, day, step)
# ---------------------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2 ** -53


@nb.njit(nogil=True, cache=True, inline="always")
def _mix64(z):
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@nb.njit(nogil=True, cache=True)
def _fill_uniforms(key, slots, rows, day, step, u_cand, u_resp, u_return):
    """Fill the uniforms of the given rows from the stream of (key, slots[i], day, step).

    key: uint64; slots: (n,) int64 global user slots; rows: (n,) int64 rows of the outputs to
    fill; u_cand (B, K), u_resp (B, L, M), u_return (B,) float64 in [0, 1). Other rows are
    left as they are.
    """
    n_cand = u_cand.shape[1]
    page, n_unif = u_resp.shape[1], u_resp.shape[2]
    for i in range(slots.shape[0]):
        b = rows[i]
        s = _mix64(key + _GOLDEN * np.uint64(slots[i] + 1))
        s = _mix64(s + _GOLDEN * np.uint64(day + 1))
        s = _mix64(s + _GOLDEN * np.uint64(step + 1))
        for j in range(n_cand):
            s += _GOLDEN
            u_cand[b, j] = np.float64(_mix64(s) >> _S11) * _TWO_M53
        for l in range(page):
            for m in range(n_unif):
                s += _GOLDEN
                u_resp[b, l, m] = np.float64(_mix64(s) >> _S11) * _TWO_M53
        s += _GOLDEN
        u_return[b] = np.float64(_mix64(s) >> _S11) * _TWO_M53


def stream_key(seed: int, tag: int) -> np.uint64:
    """The 64-bit generator key of a seed (any non-negative int) and a stream tag."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence([int(seed), int(tag)]).generate_state(1, dtype=np.uint64)[0]


# ---------------------------------------------------------------------------------------------
# Estimates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """A metric with its standard error (over users)."""

    value: float
    se: float

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "se": self.se}


def ratio_estimate(num: np.ndarray, den: np.ndarray) -> Estimate:
    """``sum(num) / sum(den)`` over users (n,) with its delta-method standard error."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    n = len(num)
    if n == 0 or num.shape != den.shape:
        raise ValueError(f"need equal, non-empty per-user arrays, got {num.shape} and {den.shape}")
    mean_den = den.mean()
    if mean_den == 0:
        raise ValueError("the denominator of a ratio metric is zero for every user")
    ratio = num.sum() / den.sum()
    se = float(np.std(num - ratio * den, ddof=1) / (math.sqrt(n) * mean_den)) if n > 1 else float("nan")
    return Estimate(float(ratio), se)


@dataclass(frozen=True)
class Lift:
    """Relative lift of a treatment over the control, in percent, paired over users.

    control / treatment: the metric in each arm; lift_pct = 100 (treatment / control - 1);
    se_pct its delta-method standard error; ci_low_pct / ci_high_pct the 95% interval;
    p_value two-sided.
    """

    control: float
    treatment: float
    lift_pct: float
    se_pct: float
    ci_low_pct: float
    ci_high_pct: float
    p_value: float

    @property
    def half_width_pct(self) -> float:
        return Z95 * self.se_pct

    def to_json(self) -> dict[str, float]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["half_width_pct"] = self.half_width_pct
        return out


def paired_lift(num_t: np.ndarray, den_t: np.ndarray, num_c: np.ndarray, den_c: np.ndarray) -> Lift:
    """Lift of ``sum(num_t)/sum(den_t)`` over ``sum(num_c)/sum(den_c)`` with a paired delta-method CI.

    All four are per-user arrays (n,) over the same users (row u of every array is user u).
    """
    arrays = [np.asarray(a, np.float64) for a in (num_t, den_t, num_c, den_c)]
    num_t, den_t, num_c, den_c = arrays
    n = len(num_t)
    if n < 2 or any(a.shape != (n,) for a in arrays):
        raise ValueError(f"paired_lift needs four (n,) arrays with n >= 2, got {[a.shape for a in arrays]}")
    r_t, r_c = num_t.sum() / den_t.sum(), num_c.sum() / den_c.sum()
    if r_c == 0:
        raise ValueError("the control's metric is zero: its lift is undefined")
    ratio = r_t / r_c
    # influence of each user on R_T / R_C (first-order expansion of both ratios)
    infl_t = (num_t - r_t * den_t) / den_t.mean()
    infl_c = (num_c - r_c * den_c) / den_c.mean()
    infl = infl_t / r_c - ratio * infl_c / r_c
    se = float(np.std(infl, ddof=1) / math.sqrt(n))
    lift = float(ratio - 1.0)
    if se > 0:
        p = math.erfc(abs(lift) / se / math.sqrt(2.0))
    else:
        p = 1.0 if lift == 0 else 0.0
    return Lift(control=float(r_c), treatment=float(r_t), lift_pct=100 * lift, se_pct=100 * se,
                ci_low_pct=100 * (lift - Z95 * se), ci_high_pct=100 * (lift + Z95 * se), p_value=float(p))


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalResult:
    """Per-user totals of one evaluation (row u = ``user_ids[u]``, summed over all days).

    play_s: (n,) float64 play seconds; plays: (n,) int64 watched videos; positive_plays: (n,)
    int64 plays with a positive interaction; requests: (n,) int64; sessions: (n,) int64;
    feedback: (n, 12) float64 summed request feedback; discounted_feedback: (n, 12) float64,
    ``sum over sessions of sum_k gamma^k v_k``. Returns under any reward weights are these
    times the weights. reward: (12,) the evaluation reward's weights.
    """

    user_ids: np.ndarray
    days: int
    seed: int
    gamma: float
    reward: np.ndarray
    play_s: np.ndarray
    plays: np.ndarray
    positive_plays: np.ndarray
    requests: np.ndarray
    sessions: np.ndarray
    feedback: np.ndarray
    discounted_feedback: np.ndarray
    wall_s: float
    """Seconds the evaluation took (simulation and policy)."""
    policy_s: float
    """Seconds spent inside ``policy.act`` (and ``reset``)."""
    policy_calls: int
    """Number of ``policy.act`` calls (vector steps)."""
    policy_name: str = "policy"
    config: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def requests_per_s(self) -> float:
        """Throughput: user-requests served per wall-clock second."""
        return float(self.requests.sum() / self.wall_s) if self.wall_s > 0 else float("inf")

    def ratio_pairs(self, extra_rewards: Mapping[str, Any] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """metric name -> (numerator, denominator), per-user (n,) arrays; the metric is sum(num) / sum(den)."""
        ones = np.ones(self.n_users)
        pairs = {
            "adtime_s": (self.play_s / self.days, ones),
            "upi_rate": (self.positive_plays, self.plays),
            "sessions_per_day": (self.sessions / self.days, ones),
            "requests_per_session": (self.requests, self.sessions),
            "videos_per_session": (self.plays, self.sessions),
            "session_return": (compute_reward(self.feedback, self.reward), self.sessions),
            "discounted_session_return": (compute_reward(self.discounted_feedback, self.reward), self.sessions),
        }
        rewards = {name: w for name, w in REWARD_PRESETS.items()}
        rewards.update({name: reward_weights(spec) for name, spec in (extra_rewards or {}).items()})
        for name, w in rewards.items():
            pairs[f"session_return/{name}"] = (compute_reward(self.feedback, w), self.sessions)
            pairs[f"discounted_session_return/{name}"] = (compute_reward(self.discounted_feedback, w), self.sessions)
        return pairs

    def metrics(self) -> dict[str, Estimate]:
        """Every metric (see the module docstring) with its standard error over users."""
        return {name: ratio_estimate(num, den) for name, (num, den) in self.ratio_pairs().items()}

    def session_return(self, reward: Any = None, discounted: bool = False) -> Estimate:
        """Mean session return under ``reward`` (preset name, 12 weights or mapping; None: the evaluation reward)."""
        w = self.reward if reward is None else reward_weights(reward)
        fb = self.discounted_feedback if discounted else self.feedback
        return ratio_estimate(compute_reward(fb, w), self.sessions)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: metrics with standard errors, sizes, timing."""
        return {
            "policy": self.policy_name, "users": self.n_users, "days": self.days, "seed": self.seed,
            "gamma": self.gamma, "reward_weights": self.reward.tolist(),
            "metrics": {k: v.to_json() for k, v in self.metrics().items()},
            "totals": {"requests": int(self.requests.sum()), "sessions": int(self.sessions.sum()),
                       "plays": int(self.plays.sum())},
            "timing": {"wall_s": self.wall_s, "policy_s": self.policy_s, "policy_calls": self.policy_calls,
                       "requests_per_s": self.requests_per_s},
        }


def resolve_users(users: int | Sequence[int] | np.ndarray, n_population: int, seed: int) -> np.ndarray:
    """User ids (n,) int64: an explicit array (validated), or a count drawn without replacement with ``seed``."""
    if isinstance(users, (int, np.integer)):
        if users < 2:
            raise ValueError(f"need at least 2 users (standard errors are over users), got {users}")
        if users > n_population:
            raise ValueError(f"cannot draw {users} distinct users from a population of {n_population} "
                             "(raise SimConfig.n_users or pass an explicit array of user ids)")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x05E85]))
        return np.sort(rng.choice(n_population, size=int(users), replace=False)).astype(np.int64)
    ids = np.asarray(users)
    if ids.ndim != 1 or ids.size < 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"users must be a count or a 1-D integer array of at least 2 user ids, got "
                         f"shape {ids.shape} dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= n_population:
        raise ValueError(f"user ids must lie in [0, {n_population}) (SimConfig.n_users)")
    return ids.astype(np.int64)


def _take(state: SessionState, keep: np.ndarray) -> SessionState:
    """The rows ``keep`` (bool mask) of a state, as a new contiguous state."""
    return SessionState(**{f.name: np.ascontiguousarray(getattr(state, f.name)[keep]) for f in fields(state)})


def _check_common(days: int, gamma: float, block_size: int) -> None:
    if not isinstance(days, (int, np.integer)) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")


def evaluate(policy, users: int | Sequence[int] | np.ndarray, days: int, seed: int,
             config: SimConfig | None = None, reward: Any = None, gamma: float = 0.95,
             block_size: int = DEFAULT_BLOCK_SIZE, show_progress: bool = True,
             sim: Simulator | None = None) -> EvalResult:
    """Run ``policy`` on ``users`` for ``days`` days under the day model (see the module docstring).

    Args:
        policy: any :class:`agents.policy.Policy`; ``act`` is called once per vector step with
            the active rows' observations ``(n_active, obs_dim)`` float32.
        users: user ids (n,) (positions in the array are the CRN slots; repeats are allowed and
            get their own random streams), or a count drawn without replacement with ``seed``.
        days: days per user (>= 1); day d > 1 keeps the history features of day d - 1.
        seed: the random streams (and the drawn users).
        config: the simulator's config (default ``SimConfig()``); ignored when ``sim`` is given.
        reward: the evaluation reward (preset name, 12 weights or mapping); None = ``config.reward``.
            Every preset is reported too, relabelled from the same run.
        gamma: discount of the discounted session return.
        block_size: users simulated together; results do not depend on it.
        show_progress: tqdm bar over user-days.
        sim: an existing :class:`Simulator` (saves rebuilding the world).

    Returns:
        :class:`EvalResult` with per-user totals; ``.metrics()`` gives every metric with its SE.
    """
    _check_common(days, gamma, block_size)
    if sim is None:
        sim = Simulator(config if config is not None else SimConfig())
    cfg = sim.config
    weights = reward_weights(cfg.reward if reward is None else reward)
    user_ids = resolve_users(users, cfg.n_users, seed)
    key = stream_key(seed, _TAG_EVALUATE)
    n = len(user_ids)
    totals = {
        "play_s": np.zeros(n), "plays": np.zeros(n, np.int64), "positive_plays": np.zeros(n, np.int64),
        "requests": np.zeros(n, np.int64), "sessions": np.zeros(n, np.int64),
        "feedback": np.zeros((n, N_TASKS)), "discounted_feedback": np.zeros((n, N_TASKS)),
    }
    timing = {"policy_s": 0.0, "policy_calls": 0}
    start = time.perf_counter()
    bar = tqdm(total=n * days, desc=f"evaluate {getattr(policy, 'name', type(policy).__name__)}",
               unit="user-day", disable=not show_progress)
    for lo in range(0, n, block_size):
        slots = np.arange(lo, min(lo + block_size, n), dtype=np.int64)
        history = None  # (b, obs_dim) observations at the end of the previous day
        for day in range(days):
            history = _simulate_day(sim, policy, user_ids[slots], slots, day, history, key, gamma, totals, timing)
            bar.update(len(slots))
    bar.close()
    wall = time.perf_counter() - start
    return EvalResult(user_ids=user_ids, days=int(days), seed=int(seed), gamma=float(gamma), reward=weights,
                      wall_s=wall, policy_name=str(getattr(policy, "name", type(policy).__name__)),
                      config=cfg.to_json(), **totals, **timing)


def _simulate_day(sim: Simulator, policy, user_ids: np.ndarray, slots: np.ndarray, day: int,
                  history: np.ndarray | None, key: np.uint64, gamma: float, totals: dict[str, np.ndarray],
                  timing: dict[str, float]) -> np.ndarray:
    """One day of the users of a block; adds to ``totals`` at ``slots`` and returns the end-of-day observations.

    The live state holds only users still active today plus, between compactions, some who
    are done (masked out with ``active``); it is compacted once fewer than half are active.
    """
    cfg = sim.config
    b = len(user_ids)
    state = sim.empty_state(b)
    if history is None:
        sim.start_sessions(state, np.arange(b), user_ids, None, carry=False)
    else:
        # a new day: the history features of yesterday, a fresh hidden state (empty_state is all zero)
        state.obs[:] = history
        sim.start_sessions(state, np.arange(b), user_ids, None, carry=True)
    end_obs = np.empty((b, sim.obs_dim), np.float32)
    local = np.arange(b)                    # row -> position in this block
    active = np.ones(b, bool)               # row still in a session today
    new_session = np.ones(b, bool)          # row's session starts at this request
    req_in_session = np.zeros(b, np.int64)  # request index within the current session (discounting)
    sessions_today = np.zeros(b, np.int64)
    # uniform buffers, filled for the active rows only (the kernel ignores inactive rows)
    u_cand_buf = np.empty((b, cfg.n_candidates))
    u_resp_buf = np.empty((b, cfg.page_size, K.N_UNIFORMS))
    u_return_buf = np.empty(b)
    step = 0
    while True:
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        n_rows = len(active)
        # -- policy: one call for all active rows
        t0 = time.perf_counter()
        if rows.size == n_rows:
            reset_policy(policy, new_session)
            actions = validate_action(policy.act(state.obs.copy()), n_rows)
        else:
            reset_policy(policy, new_session[rows])
            actions = np.zeros((n_rows, N_TASKS), np.float32)
            actions[rows] = validate_action(policy.act(state.obs[rows]), rows.size)
        timing["policy_s"] += time.perf_counter() - t0
        timing["policy_calls"] += 1
        # -- simulator: uniforms of the active rows from their own streams
        u_cand, u_resp, u_return = u_cand_buf[:n_rows], u_resp_buf[:n_rows], u_return_buf[:n_rows]
        gslots = slots[local[rows]]
        _fill_uniforms(key, gslots, rows, day, step, u_cand, u_resp, u_return)
        res = sim.step(state, actions, None, active=active, uniforms=(u_cand, u_resp))
        # -- accumulate the active rows' feedback at their slots
        at = gslots
        fb = res.request_feedback[rows].astype(np.float64)
        watched = res.watched[rows]
        positive = (res.feedback[rows][:, :, POSITIVE_COLUMNS] > 0).any(axis=2) & watched
        totals["play_s"][at] += fb[:, TASK_INDEX["play_time"]]
        totals["plays"][at] += watched.sum(axis=1)
        totals["positive_plays"][at] += positive.sum(axis=1)
        totals["requests"][at] += 1
        totals["feedback"][at] += fb
        totals["discounted_feedback"][at] += (gamma ** req_in_session[rows])[:, None] * fb
        req_in_session[rows] += 1
        new_session[:] = False
        done = np.zeros(n_rows, bool)
        done[rows] = res.terminated[rows] | res.truncated[rows]
        if done.any():
            totals["sessions"][slots[local[done]]] += 1
            sessions_today[done] += 1
            back = done & (u_return < sim.return_probability(state)) & (sessions_today < cfg.max_sessions_per_day)
            if back.any():
                back_rows = np.flatnonzero(back)
                sim.start_sessions(state, back_rows, state.user_id[back_rows], None, carry=True)
                req_in_session[back_rows] = 0
                new_session[back_rows] = True
            leave = done & ~back
            if leave.any():
                end_obs[local[leave]] = state.obs[leave]
                active[leave] = False
                n_active = int(active.sum())
                if 0 < n_active < n_rows // 2:  # compact: drop the rows that are done for the day
                    state = _take(state, active)
                    local, new_session = local[active], new_session[active]
                    req_in_session, sessions_today = req_in_session[active], sessions_today[active]
                    active = np.ones(n_active, bool)
        step += 1
    return end_obs


# ---------------------------------------------------------------------------------------------
# A/B tests
# ---------------------------------------------------------------------------------------------
#: Metrics with lifts in an A/B test, in table order: key -> column title.
LIFT_METRICS: dict[str, str] = {
    "adtime_s": "ADTime",
    "upi_rate": "UPIRate",
    "session_return": "Session return",
    "discounted_session_return": "Disc. session return",
    "sessions_per_day": "Sessions/day",
    "requests_per_session": "Requests/session",
}
#: Per-arm metrics in the arm table: key -> (title, format).
ARM_METRICS: dict[str, tuple[str, str]] = {
    "adtime_s": ("ADTime (s/user/day)", "{:.1f}"),
    "upi_rate": ("UPIRate", "{:.4f}"),
    "session_return": ("Session return", "{:.3f}"),
    "discounted_session_return": ("Disc. session return", "{:.3f}"),
    "sessions_per_day": ("Sessions/day", "{:.3f}"),
    "requests_per_session": ("Requests/session", "{:.3f}"),
    "videos_per_session": ("Videos/session", "{:.2f}"),
}


@dataclass
class ABResult:
    """An A/B test: every arm's :class:`EvalResult` and each treatment's lifts over the control."""

    control: str
    arms: dict[str, EvalResult]
    lifts: dict[str, dict[str, Lift]]
    meta: dict[str, Any]

    @property
    def treatments(self) -> list[str]:
        return [name for name in self.arms if name != self.control]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.meta,
            "control": self.control,
            "treatments": self.treatments,
            "arms": {name: r.summary() for name, r in self.arms.items()},
            "lifts": {t: {m: lift.to_json() for m, lift in d.items()} for t, d in self.lifts.items()},
        }

    def to_markdown(self) -> str:
        """Table 1 of the paper (lift of each treatment over the control) plus the arms' absolute values."""
        m = self.meta
        lines = [f"### Lift over `{self.control}` (%, 95% CI half-width, paired p-value)", ""]
        cols = list(LIFT_METRICS)
        lines.append("| Method | " + " | ".join(LIFT_METRICS[c] for c in cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for t, d in self.lifts.items():
            cells = [_lift_cell(d[c]) for c in cols]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines += ["", f"{m['users']} users x {m['days']} day(s), seed {m['seed']}, common random numbers; reward "
                  f"`{m['reward']}`, gamma {m['gamma']}. Lift = treatment / control - 1; CI and p-value paired over "
                  "users (delta method).", "", "### Arms (value +- standard error over users)", ""]
        acols = list(ARM_METRICS)
        lines.append("| Arm | " + " | ".join(ARM_METRICS[c][0] for c in acols) + " |")
        lines.append("|---|" + "---:|" * len(acols))
        for name, r in self.arms.items():
            met = r.metrics()
            cells = [f"{ARM_METRICS[c][1].format(met[c].value)} +- {ARM_METRICS[c][1].format(met[c].se)}"
                     for c in acols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``ab.json`` and ``ab.md`` into ``out_dir``; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "ab.json", self.to_json())
        (out / "ab.md").write_text(self.to_markdown())
        return out / "ab.json", out / "ab.md"


def _lift_cell(lift: Lift) -> str:
    p = "p<0.001" if lift.p_value < 1e-3 else f"p={lift.p_value:.3f}"
    return f"{lift.lift_pct:+.3f}% +- {lift.half_width_pct:.3f} ({p})"


def ab_test(control, treatments: Mapping[str, Any], users: int | Sequence[int] | np.ndarray, days: int, seed: int,
            config: SimConfig | None = None, reward: Any = None, gamma: float = 0.95,
            block_size: int = DEFAULT_BLOCK_SIZE, show_progress: bool = True, control_name: str | None = None,
            sim: Simulator | None = None) -> ABResult:
    """Run the control and every treatment on the same users with the same seed (common random numbers).

    control: a Policy; treatments: name -> Policy (names must differ from the control's).
    Each arm runs on a deep copy of a stochastic policy (``stochastic = True``), so every arm
    starts from the same generator state and the caller's policy is not advanced; a
    deterministic policy is used as is. Other arguments as in :func:`evaluate`.
    Returns an :class:`ABResult` (``to_markdown()``, ``to_json()``, ``write(dir)``).
    """
    _check_common(days, gamma, block_size)
    if not treatments:
        raise ValueError("ab_test needs at least one treatment")
    control_name = control_name or str(getattr(control, "name", "control"))
    if control_name in treatments:
        raise ValueError(f"treatment name {control_name!r} is the control's name; rename it")
    if sim is None:
        sim = Simulator(config if config is not None else SimConfig())
    user_ids = resolve_users(users, sim.config.n_users, seed)
    arms: dict[str, EvalResult] = {}
    for name, policy in [(control_name, control), *treatments.items()]:
        if getattr(policy, "stochastic", False):
            policy = copy.deepcopy(policy)
        arms[name] = evaluate(policy, user_ids, days, seed, reward=reward, gamma=gamma, block_size=block_size,
                              show_progress=show_progress, sim=sim)
    base = arms[control_name].ratio_pairs()
    lifts = {}
    for name in treatments:
        pairs = arms[name].ratio_pairs()
        lifts[name] = {m: paired_lift(*pairs[m], *base[m]) for m in LIFT_METRICS}
    reward_spec = sim.config.reward if reward is None else reward
    meta = {"users": len(user_ids), "days": int(days), "seed": int(seed), "gamma": float(gamma),
            "reward": reward_spec if isinstance(reward_spec, (str, dict)) else np.asarray(reward_spec).tolist(),
            "config": sim.config.to_json(), "lift_method": "paired delta method over users, normal 95% CI"}
    return ABResult(control=control_name, arms=arms, lifts=lifts, meta=meta)


# ---------------------------------------------------------------------------------------------
# True value (session-level MDP)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrueValue:
    """Monte-Carlo value of a policy from given initial states.

    value: mean discounted session return over all rollouts; se: its standard error given the
    initial states (Monte-Carlo error only, from the within-state spread; needs
    n_rollouts >= 2; with one rollout per state it is the total spread, an upper bound);
    se_population: the standard error over the initial states (treating them as a sample of the
    initial-state distribution: spread of the per-state means); per_state: (n_states,) means.
    """

    value: float
    se: float
    se_population: float
    n_states: int
    n_rollouts: int
    gamma: float
    per_state: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "se": self.se, "se_population": self.se_population, "n_states": self.n_states,
                "n_rollouts": self.n_rollouts, "gamma": self.gamma}


def dataset_initial_states(dataset, split: str = "test") -> tuple[np.ndarray, SimConfig]:
    """The initial states of a logged dataset's ``split``: (user ids (n,) int64, the collection's SimConfig).

    dataset: a directory (opened with :func:`mtf_env.dataset.load_dataset`, structure checks
    only) or an already loaded ``mtf_env.dataset.Dataset`` (its own split is used). A fresh
    session of each of those users is exactly the logged initial state (datasets collect
    fresh sessions), so the true value needs only the user ids and the world.
    """
    if isinstance(dataset, (str, Path)):
        from mtf_env.dataset import load_dataset

        dataset = load_dataset(dataset, split=split, verify_checksums=False, validate="structure")
    ids = getattr(dataset, "initial_user_ids", None)
    config = getattr(dataset, "config", None)
    if ids is None or not isinstance(config, SimConfig):
        raise ValueError(f"{type(dataset).__name__} is not a dataset (no initial_user_ids / config)")
    return np.asarray(ids, dtype=np.int64), config


def true_value(policy, initial: str | Path | Sequence[int] | np.ndarray, gamma: float = 0.95, n_rollouts: int = 4,
               seed: int = 0, config: SimConfig | None = None, reward: Any = None, split: str = "test",
               block_size: int = 8192, show_progress: bool = False, sim: Simulator | None = None) -> TrueValue:
    """Expected discounted session return ``E[sum_k gamma^k r_k]`` of ``policy`` from fresh sessions.

    initial: user ids (n,) of the initial states, or a logged dataset (directory or loaded
    ``Dataset``): its ``split`` sessions' users in the dataset's own world (see
    :func:`dataset_initial_states`; a ``config`` that differs from the dataset's is refused). Each user gets ``n_rollouts`` independent
    sessions (``mtf_env.rollout.rollout_sessions``: fixed-shape draws, policy called once per
    request for the whole block). reward: preset/weights (None: ``config.reward``).
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    if not isinstance(n_rollouts, (int, np.integer)) or n_rollouts < 1:
        raise ValueError(f"n_rollouts must be a positive integer, got {n_rollouts!r}")
    from mtf_env.rollout import rollout_sessions

    if isinstance(initial, (np.ndarray, list, tuple)):
        ids = np.asarray(initial)
    else:  # a dataset: its split's users, in the world it was collected in
        ids, data_config = dataset_initial_states(initial, split)
        given = sim.config if sim is not None else config
        if given is not None and given.to_json() != data_config.to_json():
            raise ValueError("the dataset was collected with a different SimConfig than the one given; "
                             "pass config=None to use the dataset's")
        config = data_config
    if sim is None:
        sim = Simulator(config if config is not None else SimConfig())
    if ids.ndim != 1 or ids.size < 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"initial states must be a 1-D integer array of user ids, got shape {ids.shape} "
                         f"dtype {ids.dtype}")
    if n_rollouts == 1 and ids.size < 2:
        raise ValueError("need at least 2 rollouts in all to estimate a standard error")
    weights = reward_weights(sim.config.reward if reward is None else reward)
    n_states = ids.size
    rolled = rollout_sessions(sim, policy, np.tile(ids.astype(np.int64), n_rollouts),
                              seed=int(seed),
                              gamma=gamma, batch_size=block_size, show_progress=show_progress)
    returns = rolled.returns(weights, discounted=True).reshape(n_rollouts, n_states)
    per_state = returns.mean(axis=0)
    value = float(returns.mean())
    if n_rollouts >= 2:
        within = returns.var(axis=0, ddof=1).mean()
        se = float(math.sqrt(within / (n_states * n_rollouts)))
    else:
        se = float(returns.std(ddof=1) / math.sqrt(returns.size))
    se_pop = float(per_state.std(ddof=1) / math.sqrt(n_states)) if n_states > 1 else float("nan")
    return TrueValue(value=value, se=se, se_population=se_pop, n_states=n_states, n_rollouts=int(n_rollouts),
                     gamma=float(gamma), per_state=per_state)
