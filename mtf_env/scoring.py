"""Glue between the simulator and the multi-task scorer: training impressions and the score table.

The scorer sees only observable features: the user's profile one-hot (so its predictions are
per profile cell) and the video's observable features. Its ``log(o + beta)`` for every
(profile cell, video) pair is computed once per configuration and looked up per candidate,
which keeps scoring a candidate down to one row gather (the item side is precomputed).
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import SimConfig
from .fusion import BETA
from .kernels import CACHE_LINE
from .tasks import N_TASKS, PLAY_TIME_SCALE_S, TASK_INDEX
from .world import N_CELLS, cell_profiles, get_world, profile_onehot

ASSET_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_SCORER = ASSET_DIR / "ple_default.npz"


def cell_features() -> np.ndarray:
    """(N_CELLS, 14) float32 scorer user input of every profile cell."""
    return profile_onehot(cell_profiles())


def sample_impressions(config: SimConfig, n: int, seed: int) -> dict[str, np.ndarray]:
    """Draw ``n`` logged impressions from the ground truth for training the scorer.

    Users are drawn uniformly from the population; videos as the retrieval would offer them
    (by the user's observed topic interests or from the popular pool); the hidden session
    state is drawn from the range sessions visit (satisfaction around 0, fatigue and topic
    saturation from 0 upward), which the scorer cannot see. Returns ``user_features``
    (n, 14), ``item_features`` (n, d_v), ``labels`` (n, 12) float32 with the play-time label
    ``min(play_time_s / PLAY_TIME_SCALE_S, 1)``, plus ``cell`` and ``item`` ids.
    """
    from . import kernels
    from .core import item_attributes, response_vector, trait_matrix

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


def _load_scorer_weights(spec: str):
    from .scorer import ScorerWeights

    path = DEFAULT_SCORER if spec == "default" else Path(spec)
    if spec == "default" and not path.exists():
        raise FileNotFoundError(
            f"the shipped scorer weights {path} are missing; reinstall the package or run `mtf-bench fit-scorer`"
        )
    return ScorerWeights.load(path)


def table_cache_dir() -> Path:
    """Where computed score tables are kept between processes (``MTF_BENCH_CACHE`` or ~/.cache/mtf-bench)."""
    return Path(os.environ.get("MTF_BENCH_CACHE", Path.home() / ".cache" / "mtf-bench"))


@lru_cache(maxsize=4)
def _scorer_table(spec: str, n_topics: int, n_items: int, n_users: int, n_candidates: int,
                  popular_pool_share: float, world_seed: int) -> np.ndarray:
    """Compute the table, or read it from the on-disk cache.

    The cache key hashes everything the table depends on (the weights file, the catalogue's
    scorer features, the cell features and beta), so a stale entry can never be read; the
    file is a plain .npy read without pickle.
    """
    from .scorer import predict_table

    config = SimConfig(n_topics=n_topics, n_items=n_items, n_users=n_users, n_candidates=n_candidates,
                       popular_pool_share=popular_pool_share, world_seed=world_seed)
    catalogue, _ = get_world(config)
    path = DEFAULT_SCORER if spec == "default" else Path(spec)
    key = hashlib.sha256()
    for part in (path.read_bytes() if path.is_file() else spec.encode(), catalogue.features.tobytes(),
                 cell_features().tobytes(), BETA.tobytes()):
        key.update(part)
    cached = table_cache_dir() / f"score_table-{key.hexdigest()[:32]}.npy"
    shape = (N_CELLS * n_items, N_TASKS)
    if cached.is_file():
        try:
            # copied into memory: random row reads from a file-backed memory map run 4x slower
            stored = np.load(cached, mmap_mode="r", allow_pickle=False)
            if stored.shape == shape and stored.dtype == np.float32:
                return _cache_line_rows(stored)
        except (OSError, ValueError):
            pass  # unreadable cache entry: recompute and replace it
    weights = _load_scorer_weights(spec)
    probs = predict_table(weights, cell_features(), catalogue.features)            # (C, I, 12)
    table = np.ascontiguousarray(np.log(probs.reshape(N_CELLS * n_items, N_TASKS) + BETA), dtype=np.float32)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, table, allow_pickle=False)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only home: keep the table in memory only
    return _cache_line_rows(table)


def _cache_line_rows(table: np.ndarray) -> np.ndarray:
    """A writeable (n, 12) float32 copy of ``table`` whose rows start on cache-line boundaries.

    Returned as the ``[:, :12]`` view of a 64-byte-aligned (n, 16) buffer: gathering one
    candidate's 12 scores then touches one cache line instead of 1.5 on average (48-byte rows
    straddle lines), which with the step kernel's prefetching makes scoring ~1.6x faster.
    Left writeable on purpose: numba's dispatcher re-types a read-only array on every call.
    Nothing writes to it.
    """
    n, width = table.shape
    row_floats = CACHE_LINE // 4
    raw = np.zeros(n * row_floats + row_floats, np.float32)
    start = (-raw.ctypes.data % CACHE_LINE) // 4
    padded = raw[start:start + n * row_floats].reshape(n, row_floats)
    padded[:, :width] = table
    return padded[:, :width]


def get_scorer_table(config: SimConfig) -> np.ndarray:
    """(N_CELLS * n_items, 12) float32 ``log(o + beta)``, row ``cell * n_items + item`` (cached).

    A view with a row stride of 64 bytes (see ``_cache_line_rows``), not a contiguous array.
    """
    return _scorer_table(str(config.scorer), config.n_topics, config.n_items, config.n_users,
                         config.n_candidates, float(config.popular_pool_share), int(config.world_seed))
