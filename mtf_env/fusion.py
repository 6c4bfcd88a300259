"""The fusion step: actions -> fusion weights (the step kernel ranks candidates with them).

``f(o | alpha) = sum_i alpha_i * log(o_i + beta_i)`` over the 12 task predictions ``o``
(order of :mod:`mtf_env.tasks`). The agent's action ``a`` lies in ``[-1, 1]^12`` and maps
affinely, per task, to ``alpha_i in [ALPHA_LOW_i, ALPHA_HIGH_i]``:
``alpha = low + (a + 1) / 2 * (high - low)``. Out-of-range actions are clipped to the box
first (see :func:`validate_action`). Negative tasks (skip, hate, exit) can take negative
weight; the other tasks cannot. Because a ranking is unchanged by scaling all weights by
the same positive factor, only the direction of ``alpha`` matters for what is shown.

``beta_i`` is a smoothing constant about a quarter of task ``i``'s base rate, so a rare task
(share, hate) still moves the score without ``log`` of a tiny probability dominating it.
"""
from __future__ import annotations

import numpy as np

from .tasks import N_TASKS, TASK_NAMES

#: Smoothing constants beta_i, one per task (documented in docs/simulator.md).
BETA = np.array(
    [0.05, 0.03, 0.08, 0.08, 0.005, 0.0003, 0.0007, 0.0003, 0.0015, 0.006, 0.0002, 0.01],
    dtype=np.float32,
)
#: Lower / upper bounds of the fusion weight of each task (action -1 / +1).
ALPHA_LOW = np.array([0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -1.0], dtype=np.float32)
ALPHA_HIGH = np.array([2.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5], dtype=np.float32)

#: The deployed static fusion weights a real platform would hand-tune (the ``production`` policy).
PRODUCTION_ALPHA = np.array(
    [1.0, 0.3, 0.3, -0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, -0.3, -0.3], dtype=np.float32
)

assert BETA.shape == ALPHA_LOW.shape == ALPHA_HIGH.shape == PRODUCTION_ALPHA.shape == (N_TASKS,)


def validate_action(action: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Check an action batch and clip it to ``[-1, 1]``.

    action: (B, 12) (or (12,) when ``batch_size`` is None) array of real numbers: a float or an
    integer dtype (integers are taken as the numbers they are). Raises ``ValueError`` for a
    wrong shape, any other dtype (bool, complex, strings, objects), NaN or infinity. Returns
    float32, clipped to [-1, 1].
    """
    arr = np.asarray(action)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"action must be an array of real numbers (a float or integer dtype), got dtype {arr.dtype}")
    expected = (N_TASKS,) if batch_size is None else (batch_size, N_TASKS)
    if arr.shape != expected:
        raise ValueError(f"action must have shape {expected} (one weight per task {TASK_NAMES}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("action contains NaN or infinite values")
    return np.clip(arr, -1.0, 1.0).astype(np.float32, copy=False)


def action_to_alpha(action: np.ndarray) -> np.ndarray:
    """Map actions in [-1, 1] (..., 12) to fusion weights alpha (..., 12) float32."""
    a = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
    return ALPHA_LOW + (a + 1.0) * 0.5 * (ALPHA_HIGH - ALPHA_LOW)


def alpha_to_action(alpha: np.ndarray) -> np.ndarray:
    """Inverse of :func:`action_to_alpha`; raises ``ValueError`` if alpha is outside its box."""
    alpha = np.asarray(alpha, dtype=np.float32)
    if np.any(alpha < ALPHA_LOW - 1e-6) or np.any(alpha > ALPHA_HIGH + 1e-6):
        raise ValueError(f"fusion weights outside [{ALPHA_LOW.tolist()}, {ALPHA_HIGH.tolist()}]")
    return (2.0 * (alpha - ALPHA_LOW) / (ALPHA_HIGH - ALPHA_LOW) - 1.0).astype(np.float32)


PRODUCTION_ACTION = alpha_to_action(PRODUCTION_ALPHA)
