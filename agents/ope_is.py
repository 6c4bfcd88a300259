"""Importance sampling (IS) and doubly robust (DR) off-policy estimators for logged sessions (numpy only).

Notation: session ``i`` has steps ``t = 0 .. T_i - 1`` with rewards ``r_it``; the per-step
importance ratio is ``rho_it = pi_e(a_it | s_it) / pi_b(a_it | s_it)`` and the cumulative weight
``w_it = prod_{u <= t} rho_iu``. With ``n`` sessions and discount ``gamma``:

- trajectory-wise IS (``tis``): ``1/n sum_i w_{i,T_i-1} sum_t gamma^t r_it``;
- per-decision IS (``pdis``): ``1/n sum_i sum_t gamma^t w_it r_it``;
- their self-normalised forms (``sntis``, ``snpdis``): divide by the mean weight instead of
  ``n`` (for ``snpdis`` per step ``t``; a session that ended keeps its last weight and reward 0,
  so every step's denominator runs over all sessions);
- doubly robust (``dr``, Jiang & Li 2016, Thomas & Brunskill 2016) with a Q-model ``Q(s, a)``
  and ``V(s) = Q(s, pi_e(s))``:
  ``1/n sum_i [ V(s_i0) + sum_t gamma^t w_it (r_it + gamma * c_it * V(s'_it) - Q(s_it, a_it)) ]``,
  ``c_it = 1`` where the session continues after step ``t`` (0 at its end, whether the user
  exited or the session hit the request limit: the value judged is the logged session's
  discounted return). ``sndr`` uses the self-normalised weights ``w_it / mean_i w_it``.

Unbiasedness (with exact densities and no clipping): ``tis``, ``pdis`` and ``dr`` are unbiased
for any Q-model; the self-normalised forms are consistent, biased in small samples.

Deterministic target policies have no density: the target is smoothed with a Gaussian kernel
on the action, ``pi_e^h(a | s) = N(a; pi_e(s), h^2 I)`` (Kallus & Zhou 2018), which is what
SCOPE-RL's continuous estimators do as well. :func:`silverman_bandwidth` gives the documented
default ``h`` (Silverman's rule of thumb on the logged actions); a smaller ``h`` lowers the
smoothing bias and raises the variance. The behaviour density is the one stored in the data
(``behaviour_log_prob``: the Gaussian draw *before* it was clipped to the box); the kernel is
evaluated at the logged (clipped) action, an approximation for rows on the box's faces.

Ratios are clipped at ``clip`` (per step; ``None``: no clip), and the share of clipped ratios is
reported. :func:`effective_sample_size` is Kish's ``(sum w)^2 / sum w^2``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Names of the estimates :func:`is_estimates` returns (``dr``/``sndr`` need a Q-model).
IS_FORMS: tuple[str, ...] = ("tis", "sntis", "pdis", "snpdis")
DR_FORMS: tuple[str, ...] = ("dr", "sndr")


def silverman_bandwidth(actions: np.ndarray) -> float:
    """Silverman's rule of thumb for a d-dimensional Gaussian product kernel on ``actions`` (N, d).

    ``h = sigma * (4 / ((d + 2) * N)) ** (1 / (d + 4))`` with ``sigma`` the mean over the
    dimensions of the per-dimension standard deviation of the logged actions (action units).
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise ValueError(f"need at least 2 actions (N, d), got shape {a.shape}")
    n, d = a.shape
    sigma = float(np.mean(a.std(axis=0, ddof=1)))
    if sigma <= 0:
        raise ValueError("the logged actions do not vary: no bandwidth")
    return sigma * (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))


def gaussian_kernel_log_density(target_actions: np.ndarray, actions: np.ndarray, bandwidth: float) -> np.ndarray:
    """``log N(actions; target_actions, h^2 I)`` per row (nats): the kernel-smoothed deterministic policy.

    target_actions, actions: (N, d); returns (N,) float64.
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    diff = np.asarray(actions, np.float64) - np.asarray(target_actions, np.float64)
    d = diff.shape[1]
    return -0.5 * np.sum(diff * diff, axis=1) / bandwidth**2 - d * (math.log(bandwidth) + 0.5 * math.log(2 * math.pi))


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of non-negative weights (0 if all are 0)."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    s2 = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


@dataclass(frozen=True)
class SessionLayout:
    """Where each logged row sits: ``session`` (N,) index 0..n-1 and ``step`` (N,) within it, from
    ``episode_starts`` (N,) bool (rows of a session are contiguous, in order)."""

    session: np.ndarray
    step: np.ndarray
    n_sessions: int
    horizon: int

    @classmethod
    def from_starts(cls, episode_starts: np.ndarray) -> "SessionLayout":
        starts = np.asarray(episode_starts, dtype=bool).reshape(-1)
        if starts.size == 0 or not starts[0]:
            raise ValueError("episode_starts must begin with a session start")
        session = np.cumsum(starts) - 1
        first = np.flatnonzero(starts)
        step = np.arange(starts.size) - first[session]
        return cls(session=session, step=step, n_sessions=int(first.size), horizon=int(step.max()) + 1)

    def to_grid(self, values: np.ndarray, fill: float) -> np.ndarray:
        """(N,) row values -> (n_sessions, horizon) grid, ``fill`` after each session's end."""
        grid = np.full((self.n_sessions, self.horizon), fill, dtype=np.float64)
        grid[self.session, self.step] = values
        return grid

    def continues(self) -> np.ndarray:
        """(N,) bool: the next row belongs to the same session."""
        out = np.zeros(self.session.size, dtype=bool)
        out[:-1] = self.session[1:] == self.session[:-1]
        return out


def _cumulative_weights(layout: SessionLayout, log_ratios: np.ndarray, clip: float | None) -> tuple[np.ndarray, float]:
    """(n, H) cumulative weights w_it (a session's last weight carried past its end) and the clipped share."""
    log_rho = np.asarray(log_ratios, dtype=np.float64).reshape(-1)
    clipped = 0.0
    if clip is not None:
        log_clip = math.log(clip)
        clipped = float(np.mean(log_rho > log_clip))
        log_rho = np.minimum(log_rho, log_clip)
    with np.errstate(over="ignore"):
        w = np.exp(np.cumsum(layout.to_grid(log_rho, 0.0), axis=1))  # past the end: + 0 = last weight carried
    if not np.all(np.isfinite(w)):
        raise ValueError("importance weights overflow: clip the ratios (clip=...)")
    return w, clipped


@dataclass(frozen=True)
class _Grids:
    w: np.ndarray  # (n, H) cumulative weights
    r: np.ndarray  # (n, H) rewards, 0 past the end
    disc: np.ndarray  # (H,) gamma^t
    td: np.ndarray | None  # (n, H) r + gamma c V(s') - Q(s, a), 0 past the end
    v0: np.ndarray | None  # (n,) V(s_0)


def _grids(episode_starts, rewards, log_ratios, gamma, clip, q_logged, v_next, v_initial) -> tuple[_Grids, SessionLayout, float]:
    layout = SessionLayout.from_starts(episode_starts)
    rewards = np.asarray(rewards, np.float64).reshape(-1)
    w, clipped = _cumulative_weights(layout, log_ratios, clip)
    td = v0 = None
    if q_logged is not None:
        if v_next is None or v_initial is None:
            raise ValueError("DR needs q_logged, v_next and v_initial")
        v_next_rows = np.where(layout.continues(), np.asarray(v_next, np.float64).reshape(-1), 0.0)
        td = layout.to_grid(rewards + gamma * v_next_rows - np.asarray(q_logged, np.float64).reshape(-1), 0.0)
        v0 = np.asarray(v_initial, np.float64).reshape(-1)
        if v0.shape != (layout.n_sessions,):
            raise ValueError(f"v_initial has shape {v0.shape}, expected ({layout.n_sessions},)")
    disc = gamma ** np.arange(layout.horizon, dtype=np.float64)
    return _Grids(w, layout.to_grid(rewards, 0.0), disc, td, v0), layout, clipped


def _forms(g: _Grids, rows: np.ndarray | None = None) -> dict[str, float]:
    """The estimates on the sessions ``rows`` (None: all; a bootstrap passes resampled indices)."""
    w, r = (g.w, g.r) if rows is None else (g.w[rows], g.r[rows])
    n = len(w)
    ret = (r * g.disc).sum(axis=1)
    w_final = w[:, -1]
    w_mean = w.mean(axis=0)  # (H,)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_sn = np.where(w_mean > 0, w / w_mean, 0.0)
        out = {
            "tis": float(np.mean(w_final * ret)),
            "sntis": float(np.sum(w_final * ret) / np.sum(w_final)) if np.sum(w_final) > 0 else float("nan"),
            "pdis": float(np.mean((w * r * g.disc).sum(axis=1))),
            "snpdis": float(np.mean((w_sn * r * g.disc).sum(axis=1))) if w_mean[0] > 0 else float("nan"),
        }
    if g.td is not None:
        td, v0 = (g.td, g.v0) if rows is None else (g.td[rows], g.v0[rows])
        out["dr"] = float(np.mean(v0 + (w * td * g.disc).sum(axis=1)))
        out["sndr"] = float(np.mean(v0 + (w_sn * td * g.disc).sum(axis=1))) if w_mean[0] > 0 else float("nan")
    return out


def is_estimates(episode_starts: np.ndarray, rewards: np.ndarray, log_ratios: np.ndarray, gamma: float,
                 clip: float | None = None, q_logged: np.ndarray | None = None, v_next: np.ndarray | None = None,
                 v_initial: np.ndarray | None = None, n_bootstrap: int = 0, level: float = 0.95,
                 seed: int = 0) -> dict[str, Any]:
    """All IS-family estimates of ``V(pi_e)`` from logged sessions.

    episode_starts, rewards, log_ratios: (N,) per row (``log_ratios = log pi_e - log pi_b``);
    gamma: discount; clip: per-step ratio cap (None: none). For DR also give ``q_logged`` (N,)
    ``Q(s, a_logged)``, ``v_next`` (N,) ``Q(s', pi_e(s'))`` (any value where the session ends)
    and ``v_initial`` (n_sessions,) ``Q(s_0, pi_e(s_0))``.

    Returns the estimates (``tis``, ``sntis``, ``pdis``, ``snpdis`` and with a Q-model ``dr``,
    ``sndr``), ``ess_trajectory`` (ESS of the final weights), ``ess_first_step`` (ESS of the
    step-0 weights), ``n_sessions``, ``clip``, ``clipped_share``; with ``n_bootstrap > 0`` also
    ``ci`` (name -> (low, high)): percentile bootstrap over resampled whole sessions
    (``default_rng(SeedSequence([seed, ...]))``), the self-normalised denominators resampled too.
    """
    g, layout, clipped = _grids(episode_starts, rewards, log_ratios, gamma, clip, q_logged, v_next, v_initial)
    out: dict[str, Any] = dict(_forms(g))
    out.update({
        "ess_trajectory": effective_sample_size(g.w[:, -1]),
        "ess_first_step": effective_sample_size(g.w[:, 0]),
        "n_sessions": layout.n_sessions, "clip": clip, "clipped_share": clipped,
    })
    if n_bootstrap > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x15B007]))
        draws = [_forms(g, rng.integers(0, layout.n_sessions, size=layout.n_sessions)) for _ in range(n_bootstrap)]
        tail = (1.0 - level) / 2.0
        out["ci"] = {}
        for name in draws[0]:
            v = np.array([d[name] for d in draws])
            v = v[np.isfinite(v)]
            out["ci"][name] = ((float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail))) if v.size
                               else (float("nan"), float("nan")))
    return out
