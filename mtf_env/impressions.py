"""Ground-truth impressions for training the PLE scorer (``mtf-bench fit-scorer``).

An impression is one (user, video) pair as the retrieval would offer it, with the feedback
the true (hidden) response model gives; the scorer learns to predict it from observable
features only (the user's profile one-hot and the video's observable features).
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .config import SimConfig
from .core import item_attributes, response_vector, trait_matrix
from .tasks import PLAY_TIME_SCALE_S, TASK_INDEX
from .world import get_world, profile_onehot


def sample_impressions(config: SimConfig, n: int, seed: int) -> dict[str, np.ndarray]:
    """Draw ``n`` logged impressions from the ground truth for training the scorer.

    Users are drawn uniformly from the population; videos as the retrieval would offer them
    (by the user's observed topic interests or from the popular pool); the hidden session
    state is drawn from the range sessions visit (satisfaction around 0, fatigue and topic
    saturation from 0 upward), which the scorer cannot see. Returns ``user_features``
    (n, 14), ``item_features`` (n, d_v), ``labels`` (n, 12) float32 with the play-time label
    ``min(play_time_s / PLAY_TIME_SCALE_S, 1)``, plus ``cell`` and ``item`` ids.
    """
    catalogue, population = get_world(config)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5C0]))
    users = rng.integers(0, population.n_users, size=n)
    topic_freq = population.hist0[users, : config.n_topics]
    cum = np.cumsum(topic_freq, axis=1)
    topic = np.minimum((rng.random(n)[:, None] * cum[:, -1:] > cum).sum(1), config.n_topics - 1)
    items = catalogue.topic_start[topic] + (rng.random(n) * catalogue.topic_count[topic]).astype(np.int64)
    from_pool = rng.random(n) >= config.interest_share
    items[from_pool] = catalogue.popular_pool[rng.integers(0, len(catalogue.popular_pool), from_pool.sum())]
    satisfaction = rng.normal(0.0, 0.3, n)
    fatigue = rng.exponential(0.4, n)
    saturation = rng.exponential(0.15, n)
    traits = trait_matrix(population)[users]
    m = population.interest[users, catalogue.topic[items]] - traits[:, kernels.TR_BOREDOM] * saturation
    feedback = np.empty((n, 12), np.float32)
    utility = np.empty(n, np.float32)
    kernels.respond_batch(m.astype(np.float64), items, item_attributes(catalogue), traits, satisfaction, fatigue,
                          response_vector(config.response), rng.random((n, kernels.N_UNIFORMS)), feedback, utility)
    labels = feedback.copy()
    labels[:, TASK_INDEX["play_time"]] = np.minimum(feedback[:, TASK_INDEX["play_time"]] / PLAY_TIME_SCALE_S, 1.0)
    cells = population.cell[users]
    return {
        "user_features": profile_onehot(population.profile[users]),
        "item_features": catalogue.features[items],
        "labels": labels.astype(np.float32),
        "cell": cells,
        "item": items,
    }
