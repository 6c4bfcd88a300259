"""The day model: run a policy on users for days in the simulator and total each user's feedback.

:func:`evaluate` runs a policy on ``users`` for ``days`` under the **day model** and returns
per-user totals (:class:`EvalResult`) from which every metric and its standard error is
computed (:mod:`benchmarks.evaluation.stats`). The A/B test
(:mod:`benchmarks.evaluation.ab`) runs it once per arm; the session-level true value is in
:mod:`benchmarks.evaluation.true_value`.

The day model (one user-day)
----------------------------
A user-day starts one session. After every session the user comes back for another one
the same day with probability ``Simulator.return_probability(state)`` (end-of-session
satisfaction and fatigue), up to ``SimConfig.max_sessions_per_day`` sessions; a same-day
session starts with ``carry=True`` (history features kept, half the satisfaction and 30%
of the fatigue and topic saturation). Day 1 starts fresh (``carry=False``: the population's
initial history features) and every user visits on day 1. **Retention across days**
(``SimConfig.retention``, default on): after the last session of a visit day the number of
days until the user's next visit is drawn from :mod:`mtf_env.retention` (a hazard model
driven by the day's mean true utility per play, share of plays with a positive interaction,
"not interested" count and the user's return propensity; calibrated to KuaiRand's return
gaps under the production weights); the days in between the user does not use the app
and contributes zero play time. With ``retention=False`` every user visits every day. A
**later visit day** continues the same user: the observable history features are those at
the end of the previous visit day, while the hidden dynamic state (satisfaction, fatigue,
saturation) starts at zero (a night's rest). So long-run history effects carry across
days, fatigue does not.

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
number of the same stream; the retention draw after a visit day uses one number keyed by
``(seed, slot, day)`` (:func:`~benchmarks.evaluation.streams.slot_day_uniforms`). (The generator is SplitMix64 seeded per request by a hash of
the key, :mod:`benchmarks.evaluation.streams`; ``Simulator.step`` takes the prepared numbers
through its ``uniforms`` argument.)

Metrics (per user, summed over days; standard errors are over users)
---------------------------------------------------------------------
* ``adtime_s`` -- ADTime: play time in seconds per user per calendar day (app dwell time;
  time between videos is not modelled, so dwell time is the summed play time). Days a user
  does not visit count as zero, so retention enters ADTime.
* ``active_days`` -- days with a visit per user over the test (``days`` without retention).
* ``upi_rate`` -- UPIRate: share of video plays with at least one positive interaction
  (:data:`mtf_env.tasks.POSITIVE_INTERACTIONS`: like, share, comment, follow, collect,
  profile visit). A *play* is a watched video (``StepResult.watched``: shown and reached
  before the user exited; a skipped video counts as a play with no interaction). Pooled
  over users and days: ``sum(positive plays) / sum(plays)``.
* ``sessions_per_day`` -- the same-day return rate: sessions per user per active day (>= 1).
* ``requests_per_session``, ``videos_per_session`` -- session depth (pooled ratios).
* ``session_return`` / ``discounted_session_return`` -- mean undiscounted and discounted
  (``sum_k gamma^k r_k``, k = request index in the session) session return under the
  evaluation reward; ``session_return/<preset>`` etc. for every preset of
  :data:`mtf_env.rewards.REWARD_PRESETS`. Rewards are relabelled from the summed request
  feedback (``compute_reward``), which is linear, so one run gives every reward.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from mtf_env import kernels as K
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.drive import drive
from mtf_env.retention import N_GAP_BINS, day_score, draw_gaps
from mtf_env.rewards import REWARD_PRESETS, compute_reward, reward_weights
from mtf_env.tasks import N_TASKS, POSITIVE_INTERACTIONS, TASK_INDEX

from .stats import Estimate, ratio_estimate
from .streams import fill_uniforms as _fill_uniforms
from .streams import slot_day_uniforms, stream_key

#: Default number of users simulated together (rows of one batch).
DEFAULT_BLOCK_SIZE = 4096
#: Columns of positive interactions in the feedback vector.
POSITIVE_COLUMNS = np.array([TASK_INDEX[name] for name in POSITIVE_INTERACTIONS], dtype=np.int64)
#: Stream tags mixed into the generator key (so evaluate and other users of a seed never share numbers).
_TAG_EVALUATE = 0xAB
_TAG_RETENTION = 0xAC


@dataclass(frozen=True)
class EvalResult:
    """Per-user totals of one evaluation (row u = ``user_ids[u]``, summed over all days).

    play_s: (n,) float64 play seconds; plays: (n,) int64 watched videos; positive_plays: (n,)
    int64 plays with a positive interaction; requests: (n,) int64; sessions: (n,) int64;
    feedback: (n, 12) float64 summed request feedback; discounted_feedback: (n, 12) float64,
    ``sum over sessions of sum_k gamma^k v_k``. Returns under any reward weights are these
    times the weights. reward: (12,) the evaluation reward's weights. active_days: (n,) int64
    days with a visit; return_gaps: (n, 8) int64 drawn days until the next visit after each
    visit day, counted in bins 1, 2, ..., 7 and 8 or more days (all zero without retention).
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
    active_days: np.ndarray
    return_gaps: np.ndarray
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
            "active_days": (self.active_days.astype(np.float64), ones),
            "upi_rate": (self.positive_plays, self.plays),
            "sessions_per_day": (self.sessions, self.active_days),
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

    def return_gap_shares(self) -> list[Estimate]:
        """Share of the drawn return gaps of 1, 2, ..., 7 and >= 8 days (8 estimates, SE over users)."""
        drawn = self.return_gaps.sum(axis=1).astype(np.float64)
        if drawn.sum() == 0:
            raise ValueError("no return gaps were drawn (SimConfig.retention is off)")
        return [ratio_estimate(self.return_gaps[:, k].astype(np.float64), drawn) for k in range(N_GAP_BINS)]

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
                       "plays": int(self.plays.sum()), "active_days": int(self.active_days.sum())},
            "return_gap_shares": ([e.to_json() for e in self.return_gap_shares()]
                                  if self.return_gaps.any() else None),
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
             sim: Simulator | None = None, day_scores: list | None = None) -> EvalResult:
    """Run ``policy`` on ``users`` for ``days`` days under the day model (see the module docstring).

    Args:
        policy: any :class:`mtf_env.policy.Policy`; ``act`` is called once per vector step with
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
        day_scores: if a list, the retention day score ``s`` (:func:`mtf_env.retention.day_score`)
            of every visit day is appended to it, one (n_visitors,) array per block and day
            (for calibrating the retention logits).

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
    retention_key = stream_key(seed, _TAG_RETENTION)
    n = len(user_ids)
    totals = {
        "play_s": np.zeros(n), "plays": np.zeros(n, np.int64), "positive_plays": np.zeros(n, np.int64),
        "requests": np.zeros(n, np.int64), "sessions": np.zeros(n, np.int64),
        "feedback": np.zeros((n, N_TASKS)), "discounted_feedback": np.zeros((n, N_TASKS)),
        "active_days": np.zeros(n, np.int64), "return_gaps": np.zeros((n, N_GAP_BINS), np.int64),
    }
    timing = {"policy_s": 0.0, "policy_calls": 0}
    start = time.perf_counter()
    bar = tqdm(total=n * days, desc=f"evaluate {getattr(policy, 'name', type(policy).__name__)}",
               unit="user-day", disable=not show_progress)
    for lo in range(0, n, block_size):
        slots = np.arange(lo, min(lo + block_size, n), dtype=np.int64)
        history = np.zeros((len(slots), sim.obs_dim), np.float32)  # observations at the end of the last visit
        next_visit = np.zeros(len(slots), np.int64)  # every user visits on the first day
        for day in range(days):
            here = np.flatnonzero(next_visit == day)
            if here.size:
                visit = _simulate_day(sim, policy, user_ids[slots[here]], slots[here], day,
                                      None if day == 0 else history[here], key, gamma, totals, timing)
                history[here] = visit.end_obs
                totals["active_days"][slots[here]] += 1
                next_visit[here] = day + _next_visit_gap(sim, user_ids[slots[here]], slots[here], day, days, visit,
                                                         retention_key, totals, day_scores)
            bar.update(len(slots))
    bar.close()
    wall = time.perf_counter() - start
    return EvalResult(user_ids=user_ids, days=int(days), seed=int(seed), gamma=float(gamma), reward=weights,
                      wall_s=wall, policy_name=str(getattr(policy, "name", type(policy).__name__)),
                      config=cfg.to_json(), **totals, **timing)


@dataclass
class _Visit:
    """One visit day of some users (rows as the ``slots`` of :func:`_simulate_day`): end_obs (n, obs_dim)
    float32 observations at the end of the day; utility (n,) summed true utility of the plays; plays,
    positive_plays, hates (n,) counts of the day."""

    end_obs: np.ndarray
    utility: np.ndarray
    plays: np.ndarray
    positive_plays: np.ndarray
    hates: np.ndarray


def _next_visit_gap(sim: Simulator, user_ids: np.ndarray, slots: np.ndarray, day: int, days: int, visit: _Visit,
                    key: np.uint64, totals: dict[str, np.ndarray], day_scores: list | None) -> np.ndarray:
    """Days (n,) int64 until the users' next visit (1 without retention); records the drawn gaps in ``totals``."""
    if not sim.config.retention:
        return np.ones(len(slots), np.int64)
    plays = np.maximum(visit.plays, 1)
    score = day_score(sim.params, sim.population.return_base[user_ids].astype(np.float64), visit.utility / plays,
                      visit.positive_plays / plays, visit.hates)
    if day_scores is not None:
        day_scores.append(score)
    gap = draw_gaps(sim.params, score, slot_day_uniforms(key, slots, day), max_gap=max(days - day, N_GAP_BINS))
    np.add.at(totals["return_gaps"], (slots, np.minimum(gap, N_GAP_BINS) - 1), 1)
    return gap


def _simulate_day(sim: Simulator, policy, user_ids: np.ndarray, slots: np.ndarray, day: int,
                  history: np.ndarray | None, key: np.uint64, gamma: float, totals: dict[str, np.ndarray],
                  timing: dict[str, float]) -> _Visit:
    """One day of the given users; adds to ``totals`` at ``slots`` and returns the day's :class:`_Visit`.

    The shared policy loop (:func:`mtf_env.drive.drive`) serves the users' requests; a user
    whose session ends may return for another (the day model), else is done for the day. The
    live state is compacted once fewer than half its rows are active.
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
    day_utility, day_plays = np.zeros(b), np.zeros(b, np.int64)
    day_positive, day_hates = np.zeros(b, np.int64), np.zeros(b, np.int64)
    req_in_session = np.zeros(b, np.int64)  # per block position: request index within the session (discounting)
    sessions_today = np.zeros(b, np.int64)
    # uniform buffers, filled for the active rows only (the kernel ignores inactive rows)
    u_cand_buf = np.empty((b, cfg.n_candidates))
    u_resp_buf = np.empty((b, cfg.page_size, K.N_UNIFORMS))
    u_return_buf = np.empty(b)

    def uniforms(rows: np.ndarray, index: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        n_rows = len(index)
        u_cand, u_resp = u_cand_buf[:n_rows], u_resp_buf[:n_rows]
        _fill_uniforms(key, slots[index[rows]], rows, day, step, u_cand, u_resp, u_return_buf[:n_rows])
        return u_cand, u_resp

    for served in drive(sim, state, policy, uniforms=uniforms, compact="half"):
        timing["policy_s"] += served.policy_s
        timing["policy_calls"] += 1
        res, rows, local, state = served.result, served.rows, served.index, served.state
        # -- accumulate the active rows' feedback at their slots
        at = slots[local[rows]]
        fb = res.request_feedback[rows].astype(np.float64)
        watched = res.watched[rows]
        positive = (res.feedback[rows][:, :, POSITIVE_COLUMNS] > 0).any(axis=2) & watched
        totals["play_s"][at] += fb[:, TASK_INDEX["play_time"]]
        totals["plays"][at] += watched.sum(axis=1)
        totals["positive_plays"][at] += positive.sum(axis=1)
        here = local[rows]
        day_utility[here] += res.utility[rows].sum(axis=1)  # zero for videos not watched
        day_plays[here] += watched.sum(axis=1)
        day_positive[here] += positive.sum(axis=1)
        day_hates[here] += fb[:, TASK_INDEX["hate"]].astype(np.int64)
        totals["requests"][at] += 1
        totals["feedback"][at] += fb
        totals["discounted_feedback"][at] += (gamma ** req_in_session[local[rows]])[:, None] * fb
        req_in_session[local[rows]] += 1
        done = served.ended
        if done.any():
            totals["sessions"][slots[local[done]]] += 1
            sessions_today[local[done]] += 1
            u_return = u_return_buf[:len(local)]
            back = (done & (u_return < sim.return_probability(state))
                    & (sessions_today[local] < cfg.max_sessions_per_day))
            if back.any():
                back_rows = np.flatnonzero(back)
                sim.start_sessions(state, back_rows, state.user_id[back_rows], None, carry=True)
                req_in_session[local[back_rows]] = 0
                served.restart(back_rows)
            leave = done & ~back
            end_obs[local[leave]] = state.obs[leave]
    return _Visit(end_obs=end_obs, utility=day_utility, plays=day_plays, positive_plays=day_positive,
                  hates=day_hates)
