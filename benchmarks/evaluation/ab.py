"""The online A/B test: a control and treatments on the same users with common random numbers.

The paper judges policies by a month of online A/B tests on ADTime and UPIRate. Here the
simulator runs those tests exactly: :func:`ab_test` runs every arm under the day model
(:func:`benchmarks.evaluation.days.evaluate`) on the same users with the same random
numbers, and reports the lift of each treatment in percent with a paired 95% CI and
p-value (:func:`benchmarks.evaluation.stats.paired_lift`). :class:`ABResult` holds the
arms and lifts and writes them as Markdown shaped like the paper's Table 1 and as JSON.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mtf_env.files import write_json
from mtf_env.config import SimConfig
from mtf_env.core import Simulator

from .days import DEFAULT_BLOCK_SIZE, EvalResult, _check_common, evaluate, resolve_users
from .stats import Lift, paired_lift

#: Metrics with lifts in an A/B test, in table order: key -> column title.
LIFT_METRICS: dict[str, str] = {
    "adtime_s": "ADTime",
    "upi_rate": "UPIRate",
    "active_days": "Active days",
    "session_return": "Session return",
    "discounted_session_return": "Disc. session return",
    "sessions_per_day": "Sessions/active day",
    "requests_per_session": "Requests/session",
}
#: Per-arm metrics in the arm table: key -> (title, format).
ARM_METRICS: dict[str, tuple[str, str]] = {
    "adtime_s": ("ADTime (s/user/day)", "{:.1f}"),
    "upi_rate": ("UPIRate", "{:.4f}"),
    "active_days": ("Active days/user", "{:.2f}"),
    "session_return": ("Session return", "{:.3f}"),
    "discounted_session_return": ("Disc. session return", "{:.3f}"),
    "sessions_per_day": ("Sessions/active day", "{:.3f}"),
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


def arm_names(control: str, treatments: Sequence[str]) -> list[str]:
    """Unique display names for the treatment specs (a repeat of a spec gets ``#2``, ``#3``, ...)."""
    names: list[str] = []
    for spec in treatments:
        name, k = spec, 1
        while name == control or name in names:
            k += 1
            name = f"{spec}#{k}"
        names.append(name)
    return names
