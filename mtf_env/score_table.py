"""The score table: the PLE scorer's ``log(o + beta)`` for every (profile cell, video), precomputed.

The scorer sees only observable features: the user's profile one-hot (so its predictions are
per profile cell) and the video's observable features. Its ``log(o + beta)`` for every
(profile cell, video) pair is computed once per configuration (numpy inference of
:mod:`mtf_env.ple`, cached on disk) and looked up per candidate by the step kernel, which
keeps scoring a candidate down to one row gather.
"""
from __future__ import annotations

import hashlib
import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import SimConfig
from .fusion import BETA
from .kernels import CACHE_LINE
from .ple import ScorerWeights, predict_table
from .tasks import N_TASKS
from .world import N_CELLS, cell_profiles, get_world, profile_onehot

ASSET_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_SCORER = ASSET_DIR / "ple_default.npz"


def cell_features() -> np.ndarray:
    """(N_CELLS, 14) float32 scorer user input of every profile cell."""
    return profile_onehot(cell_profiles())


def _load_scorer_weights(spec: str) -> ScorerWeights:
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
    print(f"mtf_env: building the scorer's table of {N_CELLS * n_items:,} user-profile x video scores (once per "
          f"world and scorer; cached in {table_cache_dir()})", file=sys.stderr, flush=True)
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
