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
the key, :mod:`benchmarks.evaluation.streams`; ``Simulator.step`` takes the prepared numbers
through its ``uniforms`` argument.)

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
from mtf_env.rewards import REWARD_PRESETS, compute_reward, reward_weights
from mtf_env.tasks import N_TASKS, POSITIVE_INTERACTIONS, TASK_INDEX

from .stats import Estimate, ratio_estimate
from .streams import fill_uniforms as _fill_uniforms
from .streams import stream_key

#: Default number of users simulated together (rows of one batch).
DEFAULT_BLOCK_SIZE = 4096
#: Columns of positive interactions in the feedback vector.
POSITIVE_COLUMNS = np.array([TASK_INDEX[name] for name in POSITIVE_INTERACTIONS], dtype=np.int64)
#: Stream tags mixed into the generator key (so evaluate and other users of a seed never share numbers).
_TAG_EVALUATE = 0xAB


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
    return end_obs
