"""Retention across days: how many days pass before a user visits the app again.

After a user's last session of a day the day model (:mod:`benchmarks.evaluation.days`)
draws the number of days until their next visit (1 = tomorrow) from a discrete-time
hazard model driven by how the day went:

* the *day score* ``s`` (logit units) of the user-day::

      s = retention_user * return_base
          + retention_utility * (mean true utility per play of the day)
          + retention_interaction * (share of the day's plays with a positive interaction)
          - retention_hate * (number of "not interested" of the day)

  The mean true utility is what satisfaction tracks (it carries the clickbait
  disappointment, interest and quality of what was shown); interactions and hates are
  what the fusion weights trade against play time. ``return_base`` is the user's hidden
  return propensity (higher for more active users).
* the hazard of returning on day ``k`` after the visit, given no return before:
  ``h_k = sigmoid(retention_logits[k - 1] + s)`` for ``k = 1 .. 7`` and
  ``h_k = sigmoid(retention_logits[6] + s)`` for ``k > 7`` (the tail).

One uniform ``u`` per user-day gives the gap by inversion, ``gap = min k with F(k) > u``
(``F`` the gap's distribution function), so common random numbers couple arms
monotonically: a better day never lengthens the gap drawn from the same ``u``.

The baseline logits are calibrated (:func:`calibrate_logits`) so that under the
production fusion weights the pooled gap distribution matches KuaiRand's
(:data:`KUAIRAND_RETURN_GAP`); docs/simulator.md gives the figures.
"""
from __future__ import annotations

import numpy as np

from .config import ResponseParams

#: KuaiRand: share of returns after 1, 2, ..., 7 days (the rest, 2.6%, returns later).
KUAIRAND_RETURN_GAP = np.array([0.617, 0.165, 0.079, 0.047, 0.031, 0.021, 0.014])
#: Gaps are reported in bins 1 .. 7 days and "8 or more" (column 7).
N_GAP_BINS = len(KUAIRAND_RETURN_GAP) + 1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def day_score(params: ResponseParams, return_base: np.ndarray, utility_per_play: np.ndarray,
              positive_share: np.ndarray, hates: np.ndarray) -> np.ndarray:
    """The day score ``s`` (n,) in logit units (see the module docstring); all inputs (n,) per user-day."""
    return (params.retention_user * return_base + params.retention_utility * utility_per_play
            + params.retention_interaction * positive_share - params.retention_hate * hates)


def gap_probabilities(logits: np.ndarray, score: np.ndarray) -> np.ndarray:
    """P(gap = k) for k = 1 .. 7 and P(gap >= 8) in the last column: (n, 8) for scores (n,)."""
    h = _sigmoid(np.asarray(logits, np.float64)[None, :] + np.asarray(score, np.float64)[:, None])  # (n, 7)
    survive = np.cumprod(np.concatenate([np.ones((len(h), 1)), 1.0 - h], axis=1), axis=1)  # P(gap > k), k=0..7
    return np.concatenate([survive[:, :-1] * h, survive[:, -1:]], axis=1)


def draw_gaps(params: ResponseParams, score: np.ndarray, u: np.ndarray, max_gap: int) -> np.ndarray:
    """Days until the next visit (n,) int64 in [1, max_gap] by inversion of uniforms ``u`` (n,) in [0, 1).

    Gaps longer than ``max_gap`` are returned as ``max_gap`` (the caller's horizon: the user
    does not come back within it; ``max_gap >= 8`` keeps every bin of :data:`N_GAP_BINS` exact).
    """
    logits = np.asarray(params.retention_logits, np.float64)
    score = np.asarray(score, np.float64)
    gap = np.ones(len(score), np.int64)
    survive = np.ones(len(score))  # P(gap > k - 1)
    undecided = np.ones(len(score), bool)
    for k in range(1, max_gap + 1):
        h = _sigmoid(logits[min(k, len(logits)) - 1] + score)
        survive = survive * (1.0 - h)
        # F(k) = 1 - survive > u  <=>  returns on day k
        now = undecided & (1.0 - survive > u)
        gap[now] = k
        undecided &= ~now
        if not undecided.any():
            break
    gap[undecided] = max_gap
    return gap


def calibrate_logits(score: np.ndarray, target: np.ndarray = KUAIRAND_RETURN_GAP) -> np.ndarray:
    """Baseline logits (7,) such that the mean of :func:`gap_probabilities` over ``score`` (n,) equals ``target``.

    Solved one day at a time by bisection: the share returning on day k depends on the
    logits of days 1 .. k only, and increases in the k-th.
    """
    score = np.asarray(score, np.float64)
    logits = np.zeros(len(target))
    survive = np.ones(len(score))
    for k, share in enumerate(target):
        lo, hi = -20.0, 20.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if float(np.mean(survive * _sigmoid(mid + score))) < share:
                lo = mid
            else:
                hi = mid
        logits[k] = 0.5 * (lo + hi)
        survive = survive * (1.0 - _sigmoid(logits[k] + score))
    return logits
