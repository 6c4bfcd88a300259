"""Frozen configuration of the simulator (``SimConfig``) and of its true response model.

``SimConfig`` holds what a user of the benchmark changes (catalogue size, candidates per
request, page size, reward, ...). ``ResponseParams`` holds the calibration constants of the
hidden ground truth; their defaults are calibrated as docs/simulator.md explains (session
length under the production weights, feedback rates against KuaiRand-Pure).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .rewards import reward_weights

#: Observable profile fields and their number of categories (one-hot in the observation).
PROFILE_FIELDS: dict[str, int] = {"age_bucket": 4, "gender": 2, "region": 3, "device": 2, "activity_tier": 3}


@dataclass(frozen=True)
class ResponseParams:
    """Constants of the true (hidden) user response model; all in logit units unless stated."""

    skip_bias: float = 0.75
    """Hook logit offset: P(skip) = sigmoid(-(skip_bias + hook))."""
    watch_bias: float = -1.4
    """Offset of the watch-fraction logit."""
    watch_noise: float = 0.9
    """Scale of the logistic noise on the watch-fraction logit."""
    finish_threshold: float = 0.8
    """A watch fraction above this counts as a finish (play time = full duration)."""
    length_penalty: float = 0.6
    """Penalty per squared log-ratio of video duration to the user's preferred length."""
    clickbait_hook: float = 1.6
    """How much clickbait lowers the skip rate (times the user's susceptibility)."""
    clickbait_disappointment: float = 3.0
    """How much clickbait lowers the true utility of a video (and so satisfaction)."""
    clickbait_pull: float = 3.0
    """How much clickbait raises the watch fraction now (times the user's susceptibility): the myopic trap."""
    interaction_bias: tuple[float, ...] = (-5.51, -8.56, -7.61, -8.46, -6.81, -5.16)
    """Logit base of like, share, comment, follow, collect, profile visit on a non-skipped play."""
    hate_bias: float = -10.5
    """Logit base of "not interested"."""
    exit_bias: float = -3.72
    """Logit base of the per-video exit hazard."""
    exit_fatigue: float = 1.0
    """Exit logit per unit of fatigue."""
    exit_satisfaction: float = 2.5
    """Exit logit decrease per unit of satisfaction."""
    exit_after_skip: float = 0.35
    """Extra exit logit after a skipped video."""
    exit_after_hate: float = 2.0
    """Extra exit logit after a "not interested"."""
    fatigue_per_minute: float = 0.15
    """Fatigue added per minute of play time."""
    satisfaction_decay: float = 0.7
    """Satisfaction kept per request (the rest is replaced by the page's mean utility)."""
    saturation_gain: float = 0.18
    """Saturation added to a topic per watched video of that topic."""
    saturation_decay: float = 0.85
    """Saturation kept per request."""
    fatigue_length_shift: float = 0.5
    """Drift within a session: the preferred video length shrinks by this many log units per unit of
    fatigue (``d_len = log dur - (pref_log_len - fatigue_length_shift * F)``); 0 switches it off."""
    return_bias: float = -0.4
    """Logit base of starting another session the same day (day model)."""
    return_satisfaction: float = 1.0
    """Return logit per unit of end-of-session satisfaction."""
    return_fatigue: float = 0.6
    """Return logit decrease per unit of end-of-session fatigue."""
    retention_logits: tuple[float, ...] = (0.0752, -0.446, -0.5766, -0.557, -0.4491, -0.3103, -0.1837)
    """Retention across days: baseline logits of the hazard of the next visit 1, 2, ..., 7 days after a
    visit (the last one also for later days); calibrated to KuaiRand's return gaps under production."""
    retention_user: float = 1.0
    """Hazard logit per unit of the user's hidden return propensity (``return_base``)."""
    retention_utility: float = 1.0
    """Hazard logit per unit of the day's mean true utility per play (satisfaction's driver)."""
    retention_interaction: float = 4.0
    """Hazard logit per unit of the day's share of plays with a positive interaction."""
    retention_hate: float = 0.5
    """Hazard logit decrease per "not interested" of the day."""


@dataclass(frozen=True)
class SimConfig:
    """Configuration of ``ShortVideoMTF-v0`` and of the batched simulator core."""

    n_topics: int = 16
    """Content topics (interest dimensions)."""
    n_items: int = 20_000
    """Videos in the catalogue."""
    n_users: int = 100_000
    """Users in the population; each session draws one (env) or the A/B platform picks them."""
    n_candidates: int = 100
    """K: candidates retrieved per request and scored by the multi-task model."""
    interest_share: float = 0.6
    """Share of candidates retrieved by the user's observed topic interests (the rest from the popular pool)."""
    popular_pool_share: float = 0.2
    """The popular pool is this share of the catalogue with the highest popularity."""
    page_size: int = 6
    """L: videos shown per request (KuaiRand shows at most 6 per page)."""
    max_requests: int = 20
    """Sessions are truncated after this many requests."""
    max_sessions_per_day: int = 12
    """Day model: at most this many sessions per user per day."""
    retention: bool = True
    """Day model: after a visit day the user skips days as the retention model draws
    (:mod:`mtf_env.retention`); False: every user visits every day."""
    history_window: int = 500
    """The history features summarise about this many last watched videos (exponential window)."""
    reward: Any = "default"
    """Reward preset name (default, time, integrity, interaction), 12 weights, or a task -> weight mapping."""
    world_seed: int = 0
    """Seed of the catalogue and the user population (fixed world; episode randomness comes from reset seeds)."""
    scorer: str = "default"
    """Multi-task scorer weights: ``default`` (shipped), ``oracle-free-random`` is not offered; or a path to an .npz."""
    response: ResponseParams = field(default_factory=ResponseParams)
    """Calibration constants of the true response model."""

    def __post_init__(self) -> None:
        for name in ("n_topics", "n_items", "n_users", "n_candidates", "page_size", "max_requests", "history_window",
                     "max_sessions_per_day"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"SimConfig.{name} must be a positive integer, got {value!r}")
        if self.page_size > self.n_candidates:
            raise ValueError(f"page_size ({self.page_size}) cannot exceed n_candidates ({self.n_candidates})")
        if self.n_items < 10 * self.n_topics:
            raise ValueError(f"n_items ({self.n_items}) must be at least 10 per topic ({10 * self.n_topics})")
        for name in ("interest_share", "popular_pool_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SimConfig.{name} must lie in [0, 1]")
        reward_weights(self.reward)  # validates
        if isinstance(self.response, Mapping):
            object.__setattr__(self, "response", make_response_params(self.response))

    @property
    def reward_weights(self) -> np.ndarray:
        return reward_weights(self.reward)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(self.reward, np.ndarray):
            out["reward"] = self.reward.tolist()
        return out


def make_response_params(values: Mapping[str, Any]) -> ResponseParams:
    valid = {f.name for f in dataclasses.fields(ResponseParams)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise ValueError(f"unknown response parameter(s) {unknown}; valid: {sorted(valid)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return ResponseParams(**values)


def make_config(**kwargs: Any) -> SimConfig:
    """``SimConfig(**kwargs)`` with a clear ``ValueError`` for unknown keys."""
    valid = {f.name for f in dataclasses.fields(SimConfig)}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ValueError(f"unknown ShortVideoMTF config key(s) {unknown}; valid keys: {sorted(valid)}")
    if isinstance(kwargs.get("response"), Mapping):
        kwargs["response"] = make_response_params(kwargs["response"])
    return SimConfig(**kwargs)
