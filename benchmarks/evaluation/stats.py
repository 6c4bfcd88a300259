"""Statistics of the evaluation: estimates with standard errors, paired lifts, rank metrics of estimators.

Estimates and lifts (over users)
--------------------------------
Ratio metrics ``sum_u x_u / sum_u y_u`` get delta-method standard errors
``sd(x_u - R y_u) / (sqrt(n) mean(y))``; with ``y_u = 1`` this is the ordinary standard
error of a mean.

``lift = R_T / R_C - 1`` in percent for each metric ``R`` (a ratio of per-user sums).
Its standard error is paired over users by the delta method: the per-user influence
``(R_T / R_C) * ((xT_u - R_T yT_u) / (R_T mean(yT)) - (xC_u - R_C yC_u) / (R_C mean(yC)))``
(written without dividing by ``R_T``), so users that are good in both arms cancel. The 95%
CI is ``lift +- 1.96 se`` and the p-value is two-sided normal. An A/A test has identical
per-user values, so lift, se and CI are exactly zero and p = 1.

Rank metrics (over policies, the DOPE protocol)
-----------------------------------------------
How well an off-policy estimator orders and values a set of policies whose true values are
known: Spearman and Kendall rank correlations with percentile bootstrap intervals over the
policies, normalised regret@k, normalised mean absolute error, and the share and median
slack of estimates below the truth (:func:`estimator_metrics` gathers them all).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np

#: z of a two-sided 95% normal interval.
Z95 = 1.959963984540054


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


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of ``a - b`` over paired rows (n,) with its standard error and 95% CI."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"need two (n,) arrays with n >= 2, got shape {d.shape}")
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    return {"mean": mean, "se": se, "ci_low": mean - Z95 * se, "ci_high": mean + Z95 * se,
            "p_value": math.erfc(abs(mean) / se / math.sqrt(2.0)) if se > 0 else float(mean == 0),
            "n_states": int(d.size)}


# ---------------------------------------------------------------------------------------------
# Rank metrics of estimators over policies
# ---------------------------------------------------------------------------------------------
def _pair(truth: Sequence[float], estimate: Sequence[float], min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    t, e = np.asarray(truth, dtype=np.float64).reshape(-1), np.asarray(estimate, dtype=np.float64).reshape(-1)
    if t.shape != e.shape:
        raise ValueError(f"truth and estimate must have the same length, got {t.size} and {e.size}")
    if t.size < min_n:
        raise ValueError(f"need at least {min_n} policies, got {t.size}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(e))):
        raise ValueError("truth and estimate must be finite")
    return t, e


def value_range(truth: Sequence[float]) -> float:
    """``max - min`` of the true values: DOPE's normaliser. Raises ValueError when it is zero."""
    t = np.asarray(truth, dtype=np.float64)
    span = float(t.max() - t.min()) if t.size else 0.0
    if not span > 0.0:
        raise ValueError("all true values are equal: the normalised metrics are undefined")
    return span


def spearman(truth: Sequence[float], estimate: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    t, e = _pair(truth, estimate)
    if np.ptp(t) == 0 or np.ptp(e) == 0:
        return float("nan")
    return float(spearmanr(t, e).statistic)


def kendall(truth: Sequence[float], estimate: Sequence[float]) -> float:
    """Kendall's tau-b (tie-corrected); NaN when either side is constant."""
    from scipy.stats import kendalltau

    t, e = _pair(truth, estimate)
    if np.ptp(t) == 0 or np.ptp(e) == 0:
        return float("nan")
    return float(kendalltau(t, e).statistic)


def regret_at_k(truth: Sequence[float], estimate: Sequence[float], k: int) -> float:
    """DOPE's normalised regret@k: ``(max truth - max truth among the k best by estimate) / range``.

    0 when the truly best policy is among the estimator's top k; ties in the estimate are
    broken by order (stable sort), which is the order of the zoo.
    """
    t, e = _pair(truth, estimate)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    top = np.argsort(-e, kind="stable")[: min(int(k), t.size)]
    return float((t.max() - t[top].max()) / value_range(t))


def normalised_mae(truth: Sequence[float], estimate: Sequence[float]) -> float:
    """``mean |estimate - truth| / range`` (DOPE's normalised absolute error)."""
    t, e = _pair(truth, estimate)
    return float(np.mean(np.abs(e - t)) / value_range(t))


def share_below(truth: Sequence[float], estimate: Sequence[float]) -> float:
    """Share of policies whose estimate lies strictly below the truth (NaN for no policies)."""
    t, e = _pair(truth, estimate, min_n=0)
    return float(np.mean(e < t)) if t.size else float("nan")


def median_normalised_slack(truth: Sequence[float], estimate: Sequence[float], span: float) -> float:
    """Median of ``(truth - estimate) / span`` (positive: the estimate is below the truth); NaN if empty."""
    t, e = _pair(truth, estimate, min_n=0)
    if not span > 0:
        raise ValueError(f"span must be positive, got {span}")
    return float(np.median((t - e) / span)) if t.size else float("nan")


def bootstrap_ci(truth: Sequence[float], estimate: Sequence[float], stat: Callable[[np.ndarray, np.ndarray], float],
                 n_bootstrap: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(truth, estimate)`` over resampled policies.

    Resamples on which the statistic is undefined (NaN, e.g. all drawn policies equal) are
    dropped; returns (nan, nan) if all are.
    """
    t, e = _pair(truth, estimate)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB0075]))
    stats = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        idx = rng.integers(0, t.size, size=t.size)
        stats[b] = stat(t[idx], e[idx])
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1.0 - tail))


def estimator_metrics(truth: Sequence[float], estimate: Sequence[float], ood_heavy: Sequence[bool],
                      n_bootstrap: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """All metrics of one estimator over the zoo: truth (n,), estimate (n,), ood_heavy (n,) bool."""
    t, e = _pair(truth, estimate, min_n=3)
    ood = np.asarray(ood_heavy, dtype=bool).reshape(-1)
    if ood.shape != t.shape:
        raise ValueError(f"ood_heavy has {ood.size} entries for {t.size} policies")
    span = value_range(t)
    sp_ci = bootstrap_ci(t, e, spearman, n_bootstrap, level, seed)
    kt_ci = bootstrap_ci(t, e, kendall, n_bootstrap, level, seed)
    return {
        "n_policies": int(t.size), "n_ood_heavy": int(ood.sum()), "truth_range": span,
        "spearman": spearman(t, e), "spearman_ci": list(sp_ci),
        "kendall": kendall(t, e), "kendall_ci": list(kt_ci), "ci_level": level,
        "regret_at_1": regret_at_k(t, e, 1), "regret_at_3": regret_at_k(t, e, 3),
        "nmae": normalised_mae(t, e),
        "mean_signed_error": float(np.mean(e - t)), "normalised_mean_signed_error": float(np.mean(e - t) / span),
        "share_below": share_below(t, e), "share_below_ood": share_below(t[ood], e[ood]),
        "share_below_in_distribution": share_below(t[~ood], e[~ood]),
        "median_slack": median_normalised_slack(t, e, span),
        "median_slack_ood": median_normalised_slack(t[ood], e[ood], span),
    }
