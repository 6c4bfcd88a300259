"""The batched simulator core: one request of B sessions at a time.

Everything has a leading batch dimension B. The single Gymnasium env is the batch of one;
the native vector env, the dataset collector and the A/B platform drive the same
:class:`Simulator`. Randomness comes only from the ``numpy.random.Generator`` passed in;
the per-row work runs in the compiled kernels of :mod:`mtf_env.kernels`.

One request (``Simulator.step``):
1. retrieval: K candidates, ``interest_share`` of them drawn by the user's observed topic
   interests (history features as of the session start), the rest from the popular pool;
2. scoring: the multi-task scorer's ``log(o + beta)`` for each candidate, looked up in a
   table precomputed per (profile cell, video) (:mod:`mtf_env.score_table`);
3. fusion: ``f = sum_i alpha_i log(o_i + beta_i)``; the top L form the page, best first;
4. response: the true (hidden) model samples the feedback of each shown video; the user
   watches the page in order and stops after the video where they exit;
5. update: hidden state (satisfaction, fatigue, topic saturation) and observable history
   and session features move once per request, from the page's feedback.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from . import kernels as K
from .config import ResponseParams, SimConfig
from .fusion import ALPHA_HIGH, ALPHA_LOW, BETA
from .tasks import N_TASKS
from .numeric import sigmoid
from .score_table import get_scorer_table
from .world import N_PROFILE_ONEHOT, Catalogue, Population, get_world, profile_onehot

#: Size of the per-session topic lookup table used for interest retrieval.
RETRIEVAL_LUT = 64
#: Non-topic history features: mean play fraction, skip, like, interaction rates, mean log length.
N_HIST_STATS = 5
#: Non-topic session features.
N_SESSION_STATS = 7
TRAIT_NAMES = ("patience", "pref_log_len", "interactivity", "clickbait_susc", "boredom", "exit_base", "return_base")


def obs_layout(config: SimConfig) -> dict[str, slice]:
    """Named slices of the observation vector."""
    t = config.n_topics
    edges = np.cumsum([0, N_PROFILE_ONEHOT, t, N_HIST_STATS, N_SESSION_STATS, t])
    names = ["profile", "history_topics", "history_stats", "session_stats", "session_topics"]
    return {n: slice(int(a), int(b)) for n, a, b in zip(names, edges[:-1], edges[1:])}


def obs_dim(config: SimConfig) -> int:
    return N_PROFILE_ONEHOT + 2 * config.n_topics + N_HIST_STATS + N_SESSION_STATS


def obs_bounds(config: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float32 bounds of every observation feature (observations are clipped to them)."""
    low = np.zeros(obs_dim(config), dtype=np.float32)
    high = np.ones(obs_dim(config), dtype=np.float32)
    lay = obs_layout(config)
    hs = lay["history_stats"].start
    low[hs + 4], high[hs + 4] = -5.0, 5.0  # standardised mean log duration
    high[lay["session_stats"].start + 2] = 10.0  # session play time in units of 30 minutes
    return low, high


def response_vector(params: ResponseParams) -> np.ndarray:
    """ResponseParams as the (N_PARAMS,) float64 vector the kernels read."""
    flat: list[float] = []
    for f in fields(params):
        value = getattr(params, f.name)
        flat.extend(value if isinstance(value, tuple) else [value])
    if len(flat) != K.N_PARAMS:
        raise ValueError(f"ResponseParams has {len(flat)} numbers, the kernels expect {K.N_PARAMS}")
    return np.asarray(flat, dtype=np.float64)


def item_attributes(catalogue: Catalogue) -> np.ndarray:
    """(I, N_ITEM_ATTR) float64 packed video attributes for the kernels."""
    cols = [catalogue.quality, catalogue.clickbait, catalogue.log_duration, catalogue.duration_s, catalogue.appeal,
            catalogue.topic]
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float64)


def trait_matrix(population: Population) -> np.ndarray:
    """(U, N_TRAITS) float64 hidden traits in TRAIT_NAMES order."""
    return np.ascontiguousarray(np.stack([getattr(population, n) for n in TRAIT_NAMES], axis=1), dtype=np.float64)


@dataclass
class SessionState:
    """State of B sessions; every array leads with B.

    Hidden: ``interest`` (B, T), ``traits`` (B, 7) in TRAIT_NAMES order, ``dyn`` (B, 7) =
    satisfaction, fatigue, request index, session videos, session play time (s), session
    likes, session skips; ``saturation`` (B, T). Observable: ``obs`` (B, obs_dim) float32.
    """

    user_id: np.ndarray
    cell: np.ndarray
    interest: np.ndarray
    traits: np.ndarray
    dyn: np.ndarray
    saturation: np.ndarray
    retrieval_lut: np.ndarray
    obs: np.ndarray

    @property
    def satisfaction(self) -> np.ndarray:
        return self.dyn[:, K.DY_SATISFACTION]

    @property
    def fatigue(self) -> np.ndarray:
        return self.dyn[:, K.DY_FATIGUE]

    @property
    def request_index(self) -> np.ndarray:
        return self.dyn[:, K.DY_REQUEST].astype(np.int64)

    def trait(self, name: str) -> np.ndarray:
        return self.traits[:, TRAIT_NAMES.index(name)]

    def copy(self) -> "SessionState":
        return SessionState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})


@dataclass(frozen=True)
class StepResult:
    """Outcome of one request for B sessions.

    items: (B, L) int64 shown videos, best first; feedback: (B, L, 12) float32 per-video
    feedback (play time in s, the rest 0/1), zero for videos not watched; watched: (B, L) bool;
    request_feedback: (B, 12) page sums; reward: (B,) float32; terminated: (B,) bool (exit);
    truncated: (B,) bool (request limit reached without exit); utility: (B, L) float32 hidden
    true utility of each watched video.
    """

    items: np.ndarray
    feedback: np.ndarray
    watched: np.ndarray
    request_feedback: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    utility: np.ndarray


class Simulator:
    """Batched short-video session simulator for one :class:`SimConfig`.

    Holds the fixed world (catalogue, population, scorer table) and the request step.
    Session state lives in :class:`SessionState` objects owned by the caller and is updated
    in place.
    """

    def __init__(self, config: SimConfig):
        self.config = config
        self.catalogue, self.population = get_world(config)
        self.params = config.response
        self.reward_weights = config.reward_weights.astype(np.float64)
        #: (N_CELLS * I, 12) float32 log(o + beta) of the scorer for every (cell, video)
        self.score_table = get_scorer_table(config)
        self.obs_dim = obs_dim(config)
        self.layout = obs_layout(config)
        self.obs_low, self.obs_high = obs_bounds(config)
        self.n_interest = int(round(config.interest_share * config.n_candidates))
        self._p = response_vector(config.response)
        self._item_attr = item_attributes(self.catalogue)
        self._pop_traits = trait_matrix(self.population)
        self._pop_interest = np.ascontiguousarray(self.population.interest, dtype=np.float64)
        self._pop_obs0 = np.ascontiguousarray(np.concatenate(
            [self._profile_onehot(), self.population.hist0], axis=1), dtype=np.float32)
        lay = self.layout
        self._layout_starts = np.array([lay["history_topics"].start, lay["history_stats"].start,
                                        lay["session_stats"].start, lay["session_topics"].start], dtype=np.int64)

    def _profile_onehot(self) -> np.ndarray:
        return profile_onehot(self.population.profile)

    def __reduce__(self):
        # pickles as its config: the world and the score table are rebuilt (and cached) on load
        return (Simulator, (self.config,))

    # ------------------------------------------------------------------ sessions
    def empty_state(self, batch_size: int) -> SessionState:
        b, t = batch_size, self.config.n_topics
        return SessionState(
            user_id=np.zeros(b, np.int64), cell=np.zeros(b, np.int64), interest=np.zeros((b, t)),
            traits=np.zeros((b, K.N_TRAITS)), dyn=np.zeros((b, K.N_DYN)), saturation=np.zeros((b, t)),
            retrieval_lut=np.zeros((b, RETRIEVAL_LUT), np.int64), obs=np.zeros((b, self.obs_dim), np.float32),
        )

    def start_sessions(self, state: SessionState, rows: np.ndarray, user_ids: np.ndarray | None,
                       rng: np.random.Generator, carry: bool = False) -> None:
        """Start new sessions in the given rows (index array or bool mask), in place.

        user_ids: the users to seat (one per row); None draws them uniformly from the
        population with ``rng``. carry=True keeps the user's history features and part of the
        hidden state (half the satisfaction, 30% of fatigue and saturation) from the previous
        session in that row (the day model); otherwise the user arrives fresh.
        """
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64).reshape(-1)
        if rows.size == 0:
            return
        if user_ids is None:
            user_ids = rng.integers(0, self.population.n_users, size=rows.size)
        user_ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        if user_ids.shape != rows.shape:
            raise ValueError(f"got {user_ids.size} user ids for {rows.size} rows")
        if user_ids.min() < 0 or user_ids.max() >= self.population.n_users:
            raise ValueError(f"user ids must lie in [0, {self.population.n_users})")
        state.user_id[rows] = user_ids
        K.start_kernel(rows, user_ids, carry, self.population.cell, self._pop_interest, self._pop_traits,
                       self._pop_obs0, state.cell, state.interest, state.traits, state.dyn, state.saturation,
                       state.retrieval_lut, state.obs, self._layout_starts[0], self._layout_starts[2])

    # ------------------------------------------------------------------ request
    def step(self, state: SessionState, action: np.ndarray, rng: np.random.Generator | None,
             active: np.ndarray | None = None,
             uniforms: tuple[np.ndarray, np.ndarray] | None = None) -> StepResult:
        """Serve one request to every session in ``state`` (in place).

        action: (B, 12) float32 in [-1, 1] (validated by the caller, see ``fusion.validate_action``).
        active: optional (B,) bool; rows not active are left untouched and report zero feedback,
        reward and flags (items -1). Always draws (B, K) then (B, L, 12) uniforms from ``rng``
        whatever ``active`` is, so row b's randomness at its n-th draw is the same whichever rows
        are active (common random numbers across policies whose sessions end at different times).
        uniforms: optional prepared ``(u_cand (B, K), u_resp (B, L, 12))`` in [0, 1) used instead
        of drawing from ``rng`` (pass ``rng=None``), for callers with their own random streams.
        """
        cfg = self.config
        b, page = len(state.user_id), cfg.page_size
        if uniforms is None:
            u_cand = rng.random((b, cfg.n_candidates))
            u_resp = rng.random((b, page, K.N_UNIFORMS))
        else:
            u_cand, u_resp = uniforms
            if u_cand.shape != (b, cfg.n_candidates) or u_resp.shape != (b, page, K.N_UNIFORMS):
                raise ValueError(f"prepared uniforms must have shapes {(b, cfg.n_candidates)} and "
                                 f"{(b, page, K.N_UNIFORMS)}, got {u_cand.shape} and {u_resp.shape}")
        items = np.empty((b, page), np.int64)
        feedback = np.empty((b, page, N_TASKS), np.float32)
        watched = np.empty((b, page), np.bool_)
        utility = np.empty((b, page), np.float32)
        request_feedback = np.empty((b, N_TASKS), np.float32)
        reward = np.empty(b, np.float32)
        terminated = np.empty(b, np.bool_)
        truncated = np.empty(b, np.bool_)
        cat = self.catalogue
        if active is None:
            active = np.ones(b, np.bool_)
        K.step_kernel(np.ascontiguousarray(active, dtype=np.bool_), action, ALPHA_LOW, ALPHA_HIGH, u_cand, u_resp,
                      state.cell, self.score_table, cfg.n_items,
                      self.n_interest, cat.topic_start, cat.topic_count, cat.popular_pool, self._item_attr,
                      state.interest, state.traits, state.dyn, state.saturation, state.retrieval_lut, state.obs,
                      self.obs_low, self.obs_high, self._layout_starts, self.reward_weights, self._p,
                      cfg.max_requests, float(cfg.history_window), items, feedback, watched, utility,
                      request_feedback, reward, terminated, truncated)
        return StepResult(items=items, feedback=feedback, watched=watched, request_feedback=request_feedback,
                          reward=reward, terminated=terminated, truncated=truncated, utility=utility)

    def predictions(self, user_ids: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The multi-task scorer's 12 predictions ``o`` of videos for users, as the step kernel ranks them.

        user_ids: (B,) int; items: (B, L) int video ids (e.g. ``StepResult.items`` or the env's
        ``info["items"]`` with a leading axis). Returns (B, L, 12) float32 in task order
        (:mod:`mtf_env.tasks`; play time as ``play_time_s / 120``, the rest probabilities):
        ``exp(score_table row) - beta``. The scorer sees the user's profile cell only, so two
        users of one cell get the same predictions. Fusion ranks a request's candidates by
        ``log(o + beta) @ alpha`` (:mod:`mtf_env.fusion`).
        """
        user_ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64)
        if items.ndim != 2 or len(items) != len(user_ids):
            raise ValueError(f"items must have shape (B, L) with B = {len(user_ids)} users, got {items.shape}")
        if user_ids.size and (user_ids.min() < 0 or user_ids.max() >= self.population.n_users):
            raise ValueError(f"user ids must lie in [0, {self.population.n_users})")
        if items.size and (items.min() < 0 or items.max() >= self.config.n_items):
            raise ValueError(f"video ids must lie in [0, {self.config.n_items})")
        rows = self.population.cell[user_ids][:, None] * self.config.n_items + items  # (B, L)
        return (np.exp(self.score_table[rows]) - BETA).astype(np.float32)

    def return_probability(self, state: SessionState) -> np.ndarray:
        """Day model: (B,) probability that each user starts another session the same day."""
        p = self.params
        return sigmoid(p.return_bias + state.trait("return_base") + p.return_satisfaction * state.satisfaction
                       - p.return_fatigue * state.fatigue)
