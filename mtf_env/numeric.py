"""Numeric helpers shared by the simulator's numpy code: the logistic function in its two forms.

``sigmoid`` is the plain ``1 / (1 + exp(-x))`` the world generator and the day model use;
``sigmoid_f32`` is the PLE scorer's overflow-free float32 form, which keeps relative
precision for very small probabilities (``exp(x) / (1 + exp(x))`` for negative ``x``).
They round differently, and each must keep its own rounding: the world and the score
table (and with them every dataset card) are reproduced bit for bit. The compiled
kernels have their own scalar sigmoid in :mod:`mtf_env.kernels`.
"""
from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` elementwise, in the dtype of ``x``."""
    return 1.0 / (1.0 + np.exp(-x))


def sigmoid_f32(x: np.ndarray) -> np.ndarray:
    """Overflow-free sigmoid as float32 that keeps relative precision for very small probabilities."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)
