"""The fixed world of a simulator configuration: video catalogue and user population.

Both are drawn once from ``SimConfig.world_seed`` and cached per configuration, so every
environment, dataset and A/B test built on the same config sees the same videos and users.
Hidden quantities (quality, clickbait, interests, patience, ...) are ground truth that the
multi-task scorer and the agents never see; the observable ones are listed in
docs/simulator.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import PROFILE_FIELDS, SimConfig
from .numeric import sigmoid

N_PROFILE_ONEHOT = sum(PROFILE_FIELDS.values())
N_CELLS = int(np.prod(list(PROFILE_FIELDS.values())))
LOG_LEN_MEAN = float(np.log(60.0))
LOG_LEN_STD = 0.8


@dataclass(frozen=True)
class Catalogue:
    """I videos, sorted by topic (videos of topic t are ids ``topic_start[t] .. + topic_count[t]``).

    Hidden: quality (I,), clickbait (I,) in [0, 1], appeal (I,) interaction appeal (logit).
    Observable: topic (I,) int, duration_s (I,), cover (I,) cover attractiveness, creator_pop (I,),
    quality_est (I,) and appeal_est (I,) noisy historical estimates, popularity (I,).
    ``features`` (I, d_v) float32 is the scorer's item input.
    """

    topic: np.ndarray
    duration_s: np.ndarray
    log_duration: np.ndarray
    quality: np.ndarray
    clickbait: np.ndarray
    appeal: np.ndarray
    cover: np.ndarray
    creator_pop: np.ndarray
    quality_est: np.ndarray
    appeal_est: np.ndarray
    popularity: np.ndarray
    topic_start: np.ndarray
    topic_count: np.ndarray
    popular_pool: np.ndarray
    features: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.topic)


@dataclass(frozen=True)
class Population:
    """U users. Observable: profile (U, 5) category codes, cell (U,) profile cell id,
    hist0 (U, T + 5) initial history features (see :func:`history_features`).
    Hidden traits: interest (U, T) logit interest per topic, patience (U,), pref_log_len (U,)
    log preferred duration (log s), interactivity (U,), clickbait_susc (U,) in [0, 1],
    boredom (U,) saturation sensitivity, exit_base (U,) exit logit offset, return_base (U,).
    """

    profile: np.ndarray
    cell: np.ndarray
    interest: np.ndarray
    patience: np.ndarray
    pref_log_len: np.ndarray
    interactivity: np.ndarray
    clickbait_susc: np.ndarray
    boredom: np.ndarray
    exit_base: np.ndarray
    return_base: np.ndarray
    hist0: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.cell)


def cell_profiles() -> np.ndarray:
    """(N_CELLS, 5) category codes of every profile cell, in cell-id order."""
    sizes = list(PROFILE_FIELDS.values())
    grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(np.int64)


def profile_cell(profile: np.ndarray) -> np.ndarray:
    """Cell id (...,) of profile codes (..., 5) (row-major over PROFILE_FIELDS)."""
    sizes = np.array(list(PROFILE_FIELDS.values()))
    strides = np.cumprod(sizes[::-1])[::-1][1:].tolist() + [1]
    return (np.asarray(profile) * np.array(strides)).sum(-1)


def profile_onehot(profile: np.ndarray) -> np.ndarray:
    """One-hot (..., 14) float32 of profile codes (..., 5)."""
    profile = np.asarray(profile)
    out = np.zeros(profile.shape[:-1] + (N_PROFILE_ONEHOT,), dtype=np.float32)
    offset = 0
    for j, size in enumerate(PROFILE_FIELDS.values()):
        np.put_along_axis(out, (profile[..., j:j + 1] + offset).astype(np.int64), 1.0, axis=-1)
        offset += size
    return out


def make_catalogue(config: SimConfig, rng: np.random.Generator) -> Catalogue:
    n, t = config.n_items, config.n_topics
    topic_weight = 1.0 / np.arange(1, t + 1) ** 0.6
    topic_weight /= topic_weight.sum()
    counts = np.maximum(rng.multinomial(n - 5 * t, topic_weight) + 5, 5)
    topic = np.repeat(np.arange(t), counts).astype(np.int64)
    log_duration = np.clip(rng.normal(LOG_LEN_MEAN, LOG_LEN_STD, n), np.log(5.0), np.log(600.0))
    quality = rng.normal(0.0, 0.6, n)
    clickbait = rng.beta(1.2, 5.0, n)
    # short videos collect more likes and shares per play (phenomenon 6: stickiness vs activeness)
    appeal = rng.normal(0.0, 0.5, n) - 0.5 * (log_duration - LOG_LEN_MEAN)
    cover = 0.5 * quality + 2.0 * clickbait + rng.normal(0.0, 0.4, n)
    creator_pop = 0.4 * quality + rng.normal(0.0, 1.0, n)
    quality_est = quality + rng.normal(0.0, 0.5, n)
    appeal_est = appeal + rng.normal(0.0, 0.5, n)
    popularity = 0.8 * quality + 0.8 * clickbait + 0.6 * creator_pop + rng.normal(0.0, 0.5, n)
    n_pool = max(int(config.popular_pool_share * n), config.n_candidates)
    popular_pool = np.sort(np.argsort(-popularity)[:n_pool])
    topic_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    features = np.concatenate(
        [
            np.eye(t, dtype=np.float32)[topic],
            np.stack(
                [
                    (log_duration - LOG_LEN_MEAN) / LOG_LEN_STD,
                    cover,
                    creator_pop,
                    quality_est,
                    appeal_est,
                    popularity,
                ],
                axis=1,
            ).astype(np.float32),
        ],
        axis=1,
    )
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Catalogue(
        topic=topic, duration_s=f32(np.exp(log_duration)), log_duration=f32(log_duration), quality=f32(quality),
        clickbait=f32(clickbait), appeal=f32(appeal), cover=f32(cover), creator_pop=f32(creator_pop),
        quality_est=f32(quality_est), appeal_est=f32(appeal_est), popularity=f32(popularity),
        topic_start=topic_start, topic_count=counts.astype(np.int64), popular_pool=popular_pool.astype(np.int64),
        features=f32(features),
    )


def make_population(config: SimConfig, rng: np.random.Generator) -> Population:
    u, t = config.n_users, config.n_topics
    probs = {
        "age_bucket": [0.2, 0.35, 0.3, 0.15],
        "gender": [0.5, 0.5],
        "region": [0.45, 0.35, 0.2],
        "device": [0.6, 0.4],
        "activity_tier": [0.3, 0.45, 0.25],
    }
    profile = np.stack([rng.choice(len(p), size=u, p=p) for p in probs.values()], axis=1).astype(np.int64)
    age, gender, region, device, activity = (profile[:, j].astype(np.float64) for j in range(5))
    # segment-level interest priors: (age x gender) and region shift which topics users like
    seg_prior = rng.normal(0.0, 0.9, size=(8, t))
    region_prior = rng.normal(0.0, 0.4, size=(3, t))
    seg = (profile[:, 0] * 2 + profile[:, 1]).astype(np.int64)
    interest = seg_prior[seg] + region_prior[profile[:, 2]] + rng.normal(0.0, 0.6, size=(u, t)) - 0.3
    patience = 0.25 * (activity - 1.0) + 0.1 * (age - 1.5) + rng.normal(0.0, 0.35, u)
    # younger users prefer shorter videos
    pref_log_len = LOG_LEN_MEAN + 0.5 * (age - 1.5) + rng.normal(0.0, 0.3, u)
    interactivity = -0.45 * (age - 1.5) + 0.2 * (gender - 0.5) + 0.2 * (activity - 1.0) + rng.normal(0.0, 0.4, u)
    clickbait_susc = sigmoid(-0.6 + 0.8 * device - 0.3 * (age - 1.5) + rng.normal(0.0, 0.6, u))
    boredom = np.exp(0.15 * (1.5 - age) + rng.normal(0.0, 0.3, u))
    exit_base = -0.3 * (activity - 1.0) + 0.1 * (region - 1.0) + rng.normal(0.0, 0.3, u)
    return_base = 0.5 * (activity - 1.0) + rng.normal(0.0, 0.4, u)
    # Initial history features: a stand-in for summarising the user's last ~500 plays, drawn
    # from the user's traits with sampling noise instead of simulating 500 plays per user.
    topic_freq = np.exp(1.2 * interest + rng.normal(0.0, 0.3, size=(u, t)))
    topic_freq /= topic_freq.sum(1, keepdims=True)
    hist_play_frac = sigmoid(-0.4 + 0.8 * patience + rng.normal(0.0, 0.15, u))
    hist_skip = sigmoid(-0.7 - 0.6 * patience + rng.normal(0.0, 0.15, u))
    hist_like = sigmoid(-3.6 + interactivity + rng.normal(0.0, 0.15, u))
    hist_interact = sigmoid(-2.7 + interactivity + rng.normal(0.0, 0.15, u))
    hist_len = (pref_log_len + rng.normal(0.0, 0.2, u) - LOG_LEN_MEAN) / LOG_LEN_STD
    hist0 = np.concatenate(
        [topic_freq, np.stack([hist_play_frac, hist_skip, hist_like, hist_interact, hist_len], axis=1)], axis=1
    )
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Population(
        profile=profile, cell=profile_cell(profile).astype(np.int64), interest=f32(interest), patience=f32(patience),
        pref_log_len=f32(pref_log_len), interactivity=f32(interactivity), clickbait_susc=f32(clickbait_susc),
        boredom=f32(boredom), exit_base=f32(exit_base), return_base=f32(return_base), hist0=f32(hist0),
    )


@lru_cache(maxsize=8)
def _world(n_topics: int, n_items: int, n_users: int, n_candidates: int, popular_pool_share: float,
           world_seed: int) -> tuple[Catalogue, Population]:
    config = SimConfig(n_topics=n_topics, n_items=n_items, n_users=n_users, n_candidates=n_candidates,
                       popular_pool_share=popular_pool_share, world_seed=world_seed)
    cat_seq, pop_seq = np.random.SeedSequence([world_seed, 0x57]).spawn(2)
    return make_catalogue(config, np.random.default_rng(cat_seq)), make_population(config, np.random.default_rng(pop_seq))


def get_world(config: SimConfig) -> tuple[Catalogue, Population]:
    """The (cached) catalogue and population of a configuration."""
    return _world(config.n_topics, config.n_items, config.n_users, config.n_candidates,
                  float(config.popular_pool_share), int(config.world_seed))
