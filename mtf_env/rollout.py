"""Session-level Monte-Carlo rollouts of a policy on the batched simulator.

One function, :func:`rollout_sessions`, serves every session-level measurement (the
simulator diagnostics, true policy values): one fresh session per given user, all rows
started together and stepped with fixed-shape random draws, so two policies run with the
same seed and users see common random numbers row by row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .core import Simulator
from .drive import drive
from .rewards import compute_reward
from .tasks import N_TASKS


@dataclass(frozen=True)
class SessionRollout:
    """Per-session totals of n sessions.

    feedback: (n, 12) float64 summed feedback (play time in s); first_feedback: (n, 12) the
    first request's; discounted_feedback: (n, 12) ``sum_t gamma^t v_t``; requests: (n,) int;
    videos: (n,) int; terminated: (n,) bool (the user exited before the request limit).
    Returns under any reward weights ``w`` are linear: ``feedback @ w`` etc.
    """

    user_ids: np.ndarray
    feedback: np.ndarray
    first_feedback: np.ndarray
    discounted_feedback: np.ndarray
    requests: np.ndarray
    videos: np.ndarray
    terminated: np.ndarray
    gamma: float

    def returns(self, weights: np.ndarray, discounted: bool = False) -> np.ndarray:
        """(n,) session returns under reward weights (12,)."""
        return compute_reward(self.discounted_feedback if discounted else self.feedback, weights).astype(np.float64)

    def immediate(self, weights: np.ndarray) -> np.ndarray:
        """(n,) reward of the first request of each session."""
        return compute_reward(self.first_feedback, weights).astype(np.float64)


def rollout_sessions(sim: Simulator, policy, user_ids: np.ndarray, seed: int, gamma: float = 0.95,
                     batch_size: int = 8192, show_progress: bool = False) -> SessionRollout:
    """Run one fresh session for each user in ``user_ids`` (n,) under ``policy``.

    Users are processed in blocks of ``batch_size`` rows; block j uses the generator
    ``SeedSequence([seed, j])``, so results depend only on (seed, user_ids, batch_size).
    The policy is called once per request for the whole block (``policy.act(obs)``).
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    n = len(user_ids)
    out = {k: np.zeros((n, N_TASKS)) for k in ("feedback", "first_feedback", "discounted_feedback")}
    requests = np.zeros(n, np.int64)
    videos = np.zeros(n, np.int64)
    terminated = np.zeros(n, bool)
    bar = tqdm(total=n, desc="sessions", disable=not show_progress, unit="session")
    for j, start in enumerate(range(0, n, batch_size)):
        rows = slice(start, min(start + batch_size, n))
        ids = user_ids[rows]
        b = len(ids)
        rng = np.random.default_rng(np.random.SeedSequence([seed, j]))
        state = sim.empty_state(b)
        sim.start_sessions(state, np.arange(b), ids, rng)
        discount = np.ones(b)
        fb, disc = out["feedback"][rows], out["discounted_feedback"][rows]
        for served in drive(sim, state, policy, rng=rng, act_on_all_rows=True, compact="never"):
            res = served.result
            req = res.request_feedback.astype(np.float64)
            fb += req
            disc += discount[:, None] * req
            if served.t == 0:
                out["first_feedback"][rows] = req
            discount *= gamma
            requests[start + served.rows] += 1
            videos[rows] += res.watched.sum(1)
            terminated[rows] |= res.terminated
        bar.update(b)
    bar.close()
    return SessionRollout(user_ids=user_ids, requests=requests, videos=videos, terminated=terminated, gamma=gamma,
                          **out)
