"""Compiled (numba) kernels of the simulator core: the true response model and the request step.

These are the hot loops of :mod:`mtf_env.core`, written once as plain per-row code and
compiled with numba (``parallel=True`` over the batch rows, ``cache=True`` so a process
compiles them once per machine). They draw no random numbers: every uniform comes in from
the caller's ``numpy.random.Generator``, so seeding stays in numpy and a row's outcome
depends only on its own inputs (the batch of one equals any row of a larger batch).

Column layouts of the packed arrays are the constants below; :mod:`mtf_env.core` names them.
"""
from __future__ import annotations

import math
import os
import sys
import types

import numba
import numba as nb
import numba.core.event
import numpy as np
from llvmlite import ir
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic

# GNU OpenMP (numba's default layer where it is installed) aborts a process that forks after
# using it (gymnasium's AsyncVectorEnv forks workers); "forksafe" picks a fork-safe layer.
if "NUMBA_THREADING_LAYER" not in os.environ:
    nb.config.THREADING_LAYER = "forksafe"

# hidden user traits, (B, N_TRAITS)
TR_PATIENCE, TR_PREF_LOG_LEN, TR_INTERACTIVITY, TR_CLICKBAIT_SUSC, TR_BOREDOM, TR_EXIT_BASE, TR_RETURN_BASE = range(7)
N_TRAITS = 7
# per-session dynamic state, (B, N_DYN)
DY_SATISFACTION, DY_FATIGUE, DY_REQUEST, DY_VIDEOS, DY_PLAY_S, DY_LIKES, DY_SKIPS = range(7)
N_DYN = 7
# video attributes, (I, N_ITEM_ATTR)
IT_QUALITY, IT_CLICKBAIT, IT_LOG_LEN, IT_DURATION, IT_APPEAL, IT_TOPIC = range(6)
N_ITEM_ATTR = 6
# response parameters, (N_PARAMS,) in ResponseParams field order
(PA_SKIP_BIAS, PA_WATCH_BIAS, PA_WATCH_NOISE, PA_FINISH_THR, PA_LENGTH_PEN, PA_CB_HOOK, PA_CB_DISAPPOINT,
 PA_CB_PULL) = range(8)
PA_INTERACT = 8  # six interaction biases: like, share, comment, follow, collect, profile_visit
(PA_HATE_BIAS, PA_EXIT_BIAS, PA_EXIT_FATIGUE, PA_EXIT_SAT, PA_EXIT_SKIP, PA_EXIT_HATE, PA_FATIGUE_PER_MIN,
 PA_SAT_DECAY, PA_SATURATION_GAIN, PA_SATURATION_DECAY, PA_FATIGUE_LEN) = range(14, 25)
# + return_bias, return_satisfaction, return_fatigue, 7 retention logits, retention_user, _utility,
# _interaction, _hate (used by the day model in numpy)
N_PARAMS = 39
N_UNIFORMS = 12   # uniforms per shown video
N_TASKS = 12
F_PLAY, F_FINISH, F_LONG, F_SKIP, F_LIKE = 0, 1, 2, 3, 4
F_HATE, F_EXIT = 10, 11
LOG_LEN_MEAN = math.log(60.0)
LOG_LEN_STD = 0.8
#: Bytes per CPU cache line: the prefetch granularity, and the row size of the padded score table.
CACHE_LINE = 64
#: Rows per chunk of the request step (the unit of work per thread, and of look-ahead).
ROW_CHUNK = 32

_JIT = dict(nogil=True, cache=True, fastmath=False, error_model="numpy")


class _CompileNotice(numba.core.event.Listener):
    """Say once per process, on stderr, that the simulator's kernels are being compiled: numba's
    "numba:compile" event fires only when a kernel is really compiled (not on an on-disk cache
    hit), so the line appears on a first run, after an install or a code change, and not otherwise."""

    announced = False

    def on_start(self, event) -> None:
        dispatcher = (event.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not _CompileNotice.announced and module.startswith("mtf_env."):
            _CompileNotice.announced = True
            print("mtf_env: compiling the simulator's numba kernels (once after an install or a code change, "
                  "typically 20-60 s; cached afterwards)", file=sys.stderr, flush=True)

    def on_end(self, event) -> None:
        pass


numba.core.event.register("numba:compile", _CompileNotice())


@intrinsic
def _prefetch(typingctx, address):
    """Hint the CPU to start loading the cache line at ``address`` (intp) (LLVM's prefetch:
    read, keep in every cache level). Changes no result; lets independent gathers overlap."""
    sig = nbtypes.void(nbtypes.intp)

    def codegen(context, builder, signature, args):
        i8_ptr = ir.PointerType(ir.IntType(8))
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8_ptr, i32, i32, i32]), "llvm.prefetch.p0")
        ptr = builder.inttoptr(args[0], i8_ptr)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@nb.njit(**_JIT, inline="always")
def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


@nb.njit(**_JIT)
def respond_one(m, item_attr, traits, satisfaction, fatigue, p, u, out):
    """True response to one video; writes feedback (12,) into ``out``, returns the true utility.

    m: the user's hidden interest in the video's topic minus boredom x saturation (logit);
    item_attr: (N_ITEM_ATTR,) attributes of the video; traits: (N_TRAITS,) hidden traits;
    p: (N_PARAMS,) response parameters; u: (N_UNIFORMS,) uniforms in [0, 1).
    Feedback: play time (s), finish, long view, skip, six interactions, hate, and the exit draw.
    """
    q = item_attr[IT_QUALITY]
    cb = item_attr[IT_CLICKBAIT]
    dur = item_attr[IT_DURATION]
    state_term = 0.3 * satisfaction - 0.3 * fatigue
    hook = (p[PA_SKIP_BIAS] + 0.7 * m + 0.4 * q + p[PA_CB_HOOK] * traits[TR_CLICKBAIT_SUSC] * cb
            + 0.3 * traits[TR_PATIENCE] + state_term)
    skip = u[0] < _sig(-hook)
    u1 = min(max(u[1], 1e-6), 1.0 - 1e-6)
    # drift within the session: fatigue shortens the preferred length
    d_len = item_attr[IT_LOG_LEN] - (traits[TR_PREF_LOG_LEN] - p[PA_FATIGUE_LEN] * fatigue)
    z = (p[PA_WATCH_BIAS] + 0.8 * m + 0.7 * q + traits[TR_PATIENCE] + p[PA_CB_PULL] * traits[TR_CLICKBAIT_SUSC] * cb
         - p[PA_LENGTH_PEN] * d_len * d_len + state_term - 0.1 * fatigue + p[PA_WATCH_NOISE] * math.log(u1 / (1.0 - u1)))
    frac = _sig(z)
    finish = (not skip) and frac > p[PA_FINISH_THR]
    if skip:
        play = 0.5 + 2.5 * u[2]
    elif finish:
        play = dur
    else:
        play = frac * dur
    out[F_PLAY] = play
    out[F_FINISH] = 1.0 if finish else 0.0
    out[F_LONG] = 1.0 if (not skip) and (play >= 18.0 or finish) else 0.0
    out[F_SKIP] = 1.0 if skip else 0.0
    base = traits[TR_INTERACTIVITY] + item_attr[IT_APPEAL] + 0.5 * m + 0.4 * q + 1.5 * frac + 0.2 * satisfaction
    for k in range(6):
        out[F_LIKE + k] = 1.0 if (not skip) and u[3 + k] < _sig(p[PA_INTERACT + k] + base) else 0.0
    hate = u[9] < _sig(p[PA_HATE_BIAS] - 1.0 * m - 0.6 * q + 2.5 * cb + (1.5 if skip else 0.0) + 0.5 * fatigue)
    out[F_HATE] = 1.0 if hate else 0.0
    exit_logit = (p[PA_EXIT_BIAS] + traits[TR_EXIT_BASE] + p[PA_EXIT_FATIGUE] * fatigue - p[PA_EXIT_SAT] * satisfaction
                  + (p[PA_EXIT_SKIP] if skip else 0.0) + (p[PA_EXIT_HATE] if hate else 0.0))
    out[F_EXIT] = 1.0 if u[10] < _sig(exit_logit) else 0.0
    if skip:
        return -0.3
    return (0.6 * m + 0.6 * q - p[PA_CB_DISAPPOINT] * cb) * (0.5 + frac)


@nb.njit(**_JIT, parallel=True)
def respond_batch(m, items, item_attr, traits, satisfaction, fatigue, p, u, feedback, utility):
    """``respond_one`` over n independent impressions (scorer training data). Shapes: m (n,),
    items (n,), traits (n, N_TRAITS), satisfaction / fatigue (n,), u (n, N_UNIFORMS);
    writes feedback (n, 12) and utility (n,)."""
    for i in nb.prange(items.shape[0]):
        utility[i] = respond_one(m[i], item_attr[items[i]], traits[i], satisfaction[i], fatigue[i], p, u[i],
                                 feedback[i])


@nb.njit(**_JIT, inline="always")
def _row_address(array, row):
    """Address (intp) of ``array[row]``'s first element, for any row stride (integer arithmetic:
    numba's uintp + int64 gives float64)."""
    return np.intp(array.ctypes.data) + row * array.strides[0]


@nb.njit(**_JIT, inline="always")
def _prefetch_row(array, row):
    """Prefetch every cache line of ``array[row]`` (a C-contiguous array with rows along axis 0)."""
    start = _row_address(array, row)
    for offset in range(0, array.strides[0], CACHE_LINE):
        _prefetch(start + offset)


@nb.njit(**_JIT, inline="always")
def _retrieve(b, u_cand, n_interest, retrieval_lut, topic_start, topic_count, popular_pool, cand):
    """Retrieve row b's K candidates (video ids) into ``cand`` (K,)."""
    n_lut = retrieval_lut.shape[1]
    n_pool = popular_pool.shape[0]
    for j in range(u_cand.shape[1]):
        x = u_cand[b, j]
        if j < n_interest:
            x = x * n_lut
            slot = int(x)
            topic = retrieval_lut[b, slot]
            item = topic_start[topic] + min(int((x - slot) * topic_count[topic]), topic_count[topic] - 1)
        else:
            item = popular_pool[min(int(x * n_pool), n_pool - 1)]
        cand[j] = item


@nb.njit(**_JIT, inline="always")
def _prefetch_score_row(score_table, cell, n_items, item):
    """Prefetch the score-table row (one cache line) of video ``item`` for profile ``cell``."""
    _prefetch(_row_address(score_table, cell * n_items + item))


def _step_rows(active, action, alpha_low, alpha_high, u_cand, u_resp, cell, score_table, n_items, n_interest,
                topic_start, topic_count, popular_pool, item_attr, interest, traits, dyn, saturation,
                retrieval_lut, obs, obs_low, obs_high, layout, reward_w, p, max_requests, history_window,
                items_out, feedback_out, watched_out, utility_out, request_fb_out, reward_out, term_out, trunc_out):
    """One request for every row b (see :class:`mtf_env.core.Simulator` for the model).

    active (B,) bool: rows to serve (the others are left untouched and report zeros);
    action (B, 12) already validated; u_cand (B, K); u_resp (B, L, N_UNIFORMS); layout:
    (history_topics, history_stats, session_stats, session_topics) start columns of ``obs``.
    State arrays (dyn, saturation, obs) are updated in place; outputs are written to *_out.
    """
    n_rows, k_cand = u_cand.shape
    page = items_out.shape[1]
    # Rows run in chunks (the parallel kernel hands whole chunks to threads). The kernel is bound
    # by the K random reads of the score table per row, so inside a chunk the next row's
    # candidates are retrieved before the current row is served, and the current row's scoring
    # loop prefetches the next row's table rows one by one (paced, so the CPU's miss buffers do
    # not overflow and drop them) together with the next row's state. ~2x over plain loads.
    n_chunks = (n_rows + ROW_CHUNK - 1) // ROW_CHUNK
    for c in nb.prange(n_chunks):
        start, stop = c * ROW_CHUNK, min((c + 1) * ROW_CHUNK, n_rows)
        # per-chunk scratch: small, reused row after row, so it stays in cache
        cand = np.empty((stop - start, k_cand), np.int64)  # candidates of the chunk's rows
        alpha = np.empty(N_TASKS, np.float64)
        scores = np.empty(k_cand, np.float64)
        top_score = np.empty(page, np.float64)
        top_item = np.empty(page, np.int64)
        for b in range(start, stop):
            if b == start and active[b]:
                _retrieve(b, u_cand, n_interest, retrieval_lut, topic_start, topic_count, popular_pool, cand[0])
                for j in range(k_cand):
                    _prefetch_score_row(score_table, cell[b], n_items, cand[0, j])
            nxt = b + 1
            if nxt < stop and active[nxt]:
                _retrieve(nxt, u_cand, n_interest, retrieval_lut, topic_start, topic_count, popular_pool,
                          cand[nxt - start])
                _prefetch_row(u_resp, nxt)
                _prefetch_row(feedback_out, nxt)
                _prefetch_row(interest, nxt)
                _prefetch_row(saturation, nxt)
                _prefetch_row(obs, nxt)
                next_cand, next_cell = cand[nxt - start], cell[nxt]
            else:
                next_cand, next_cell = cand[0, :0], 0
            _serve_row(b, cand[b - start], next_cand, next_cell, active, action, alpha_low, alpha_high, u_resp, cell,
                       score_table, n_items, item_attr, interest, traits, dyn, saturation, obs, obs_low, obs_high,
                       layout, reward_w, p, max_requests, history_window, items_out, feedback_out, watched_out,
                       utility_out, request_fb_out, reward_out, term_out, trunc_out, alpha, scores, top_score,
                       top_item)


@nb.njit(**_JIT)
def _serve_row(b, cand, next_cand, next_cell, active, action, alpha_low, alpha_high, u_resp, cell, score_table,
               n_items, item_attr, interest, traits, dyn, saturation, obs, obs_low, obs_high, layout, reward_w, p,
               max_requests, history_window, items_out, feedback_out, watched_out, utility_out, request_fb_out,
               reward_out, term_out, trunc_out, alpha, scores, top_score, top_item):
    """Score, rank, show and respond for row b, whose candidates (K,) are ``cand``; while scoring,
    prefetch the score-table rows of the next row's candidates ``next_cand`` (K,) for profile
    cell ``next_cell`` (an empty ``next_cand`` when there is none). alpha (12,), scores (K,),
    top_score and top_item (L,) are scratch."""
    k_cand = cand.shape[0]
    page = items_out.shape[1]
    n_topics = interest.shape[1]
    h_top, h_stats, s_stats, s_top = layout[0], layout[1], layout[2], layout[3]
    if not active[b]:
        for l in range(page):
            items_out[b, l] = -1
            watched_out[b, l] = False
            utility_out[b, l] = 0.0
            for t in range(N_TASKS):
                feedback_out[b, l, t] = 0.0
        for t in range(N_TASKS):
            request_fb_out[b, t] = 0.0
        reward_out[b] = 0.0
        term_out[b] = False
        trunc_out[b] = False
        return
    for t in range(N_TASKS):
        a = min(max(action[b, t], -1.0), 1.0)
        alpha[t] = alpha_low[t] + (a + 1.0) * 0.5 * (alpha_high[t] - alpha_low[t])
    # ---- scoring (this row's table rows were prefetched while the previous row was scored)
    row0 = cell[b] * n_items
    for j in range(k_cand):
        if j < next_cand.shape[0]:
            _prefetch_score_row(score_table, next_cell, n_items, next_cand[j])
        item = cand[j]
        s = 0.0
        for t in range(N_TASKS):
            s += score_table[row0 + item, t] * alpha[t]
        scores[j] = s
    # ---- fusion: keep the top `page`, best first (earlier candidates win exact ties)
    for l in range(page):
        top_score[l] = -np.inf
        top_item[l] = 0
    for j in range(k_cand):
        s = scores[j]
        if s > top_score[page - 1]:
            pos = page - 1
            while pos > 0 and s > top_score[pos - 1]:
                top_score[pos] = top_score[pos - 1]
                top_item[pos] = top_item[pos - 1]
                pos -= 1
            top_score[pos] = s
            top_item[pos] = cand[j]
    # ---- the user watches the page in order, with the state as of the request
    sat0 = dyn[b, DY_SATISFACTION]
    fat0 = dyn[b, DY_FATIGUE]
    for t in range(N_TASKS):
        request_fb_out[b, t] = 0.0
    n_watched = 0
    util_sum = 0.0
    frac_sum = 0.0
    loglen_sum = 0.0
    exited = False
    for l in range(page):
        item = top_item[l]
        items_out[b, l] = item
        if exited:
            watched_out[b, l] = False
            utility_out[b, l] = 0.0
            for t in range(N_TASKS):
                feedback_out[b, l, t] = 0.0
            continue
        topic = int(item_attr[item, IT_TOPIC])
        m = interest[b, topic] - traits[b, TR_BOREDOM] * saturation[b, topic]
        util = respond_one(m, item_attr[item], traits[b], sat0, fat0, p, u_resp[b, l], feedback_out[b, l])
        watched_out[b, l] = True
        utility_out[b, l] = util
        for t in range(N_TASKS):
            request_fb_out[b, t] += feedback_out[b, l, t]
        n_watched += 1
        util_sum += util
        frac_sum += feedback_out[b, l, F_PLAY] / item_attr[item, IT_DURATION]
        loglen_sum += item_attr[item, IT_LOG_LEN]
        exited = feedback_out[b, l, F_EXIT] > 0.0
    # ---- hidden state: once per request, from the page's feedback
    play_s = request_fb_out[b, F_PLAY]
    dyn[b, DY_FATIGUE] = fat0 + p[PA_FATIGUE_PER_MIN] * play_s / 60.0
    dyn[b, DY_SATISFACTION] = p[PA_SAT_DECAY] * sat0 + (1.0 - p[PA_SAT_DECAY]) * util_sum / n_watched
    for t in range(n_topics):
        saturation[b, t] *= p[PA_SATURATION_DECAY]
    prev_videos = dyn[b, DY_VIDEOS]
    videos = prev_videos + n_watched
    for t in range(n_topics):
        obs[b, s_top + t] *= prev_videos
    keep = (1.0 - 1.0 / history_window) ** n_watched
    for t in range(n_topics):
        obs[b, h_top + t] *= keep
    for l in range(n_watched):
        topic = int(item_attr[top_item[l], IT_TOPIC])
        saturation[b, topic] += p[PA_SATURATION_GAIN]
        obs[b, h_top + topic] += (1.0 - keep) / n_watched
        obs[b, s_top + topic] += 1.0
    for t in range(n_topics):
        obs[b, s_top + t] /= videos
    dyn[b, DY_REQUEST] += 1.0
    dyn[b, DY_VIDEOS] = videos
    dyn[b, DY_PLAY_S] += play_s
    dyn[b, DY_LIKES] += request_fb_out[b, F_LIKE]
    dyn[b, DY_SKIPS] += request_fb_out[b, F_SKIP]
    skips = request_fb_out[b, F_SKIP]
    interactions = 0.0
    for k in range(6):
        interactions += request_fb_out[b, F_LIKE + k]
    play_frac = frac_sum / n_watched
    new_stats = (play_frac, skips / n_watched, request_fb_out[b, F_LIKE] / n_watched,
                 interactions / n_watched, (loglen_sum / n_watched - LOG_LEN_MEAN) / LOG_LEN_STD)
    for k in range(5):
        obs[b, h_stats + k] = keep * obs[b, h_stats + k] + (1.0 - keep) * new_stats[k]
    obs[b, s_stats + 0] = dyn[b, DY_REQUEST] / max_requests
    obs[b, s_stats + 1] = videos / (max_requests * page)
    obs[b, s_stats + 2] = dyn[b, DY_PLAY_S] / 1800.0
    obs[b, s_stats + 3] = dyn[b, DY_LIKES] / videos
    obs[b, s_stats + 4] = dyn[b, DY_SKIPS] / videos
    obs[b, s_stats + 5] = play_frac
    obs[b, s_stats + 6] = skips / n_watched
    for d in range(obs.shape[1]):
        obs[b, d] = min(max(obs[b, d], obs_low[d]), obs_high[d])
    # r = w . v inlined: this loop runs per row inside the compiled step, where calling the numpy
    # mtf_env.rewards.compute_reward is not possible; both accumulate in float64 task by task in
    # task order, so they agree bit for bit (tests/test_env.py checks it)
    r = 0.0
    for t in range(N_TASKS):
        r += request_fb_out[b, t] * reward_w[t]
    reward_out[b] = r
    term_out[b] = exited
    trunc_out[b] = (not exited) and dyn[b, DY_REQUEST] >= max_requests


def _named_copy(fn, name: str):
    """``fn`` under another name. numba's on-disk cache keys a function by its module, name and
    line and NOT by the ``parallel`` flag, so two dispatchers over one Python function share one
    cache entry: the serial step then loaded the parallel build (a thread-pool start per call,
    ~80 us at batch 1) or the other way round. Distinct names give distinct cache entries."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = fn.__doc__
    return copy


#: The request step, compiled twice: serial for small batches (no thread start-up cost, the
#: single env) and parallel over rows for large ones. Both give identical results.
step_serial = nb.njit(**_JIT)(_named_copy(_step_rows, "_step_rows_serial"))
step_parallel = nb.njit(**_JIT, parallel=True)(_named_copy(_step_rows, "_step_rows_parallel"))
#: Batches at least this large use the parallel kernel.
PARALLEL_MIN_BATCH = 256


def step_kernel(*args):
    """Dispatch to the serial or parallel compiled step by batch size (``args[0]`` is ``active``, one entry per row)."""
    kernel = step_parallel if args[0].shape[0] >= PARALLEL_MIN_BATCH else step_serial
    kernel(*args)


@nb.njit(**_JIT)
def start_kernel(rows, user_ids, carry, pop_cell, pop_interest, pop_traits, pop_obs0, cell, interest, traits, dyn,
                 saturation, retrieval_lut, obs, h_top, s_stats):
    """Seat ``user_ids`` in ``rows`` and start their sessions (see ``Simulator.start_sessions``)."""
    n_topics = interest.shape[1]
    n_lut = retrieval_lut.shape[1]
    n_prefix = pop_obs0.shape[1]
    for i in range(rows.shape[0]):
        b = rows[i]
        uid = user_ids[i]
        cell[b] = pop_cell[uid]
        for t in range(n_topics):
            interest[b, t] = pop_interest[uid, t]
        for k in range(traits.shape[1]):
            traits[b, k] = pop_traits[uid, k]
        if carry:
            dyn[b, DY_SATISFACTION] *= 0.5
            dyn[b, DY_FATIGUE] *= 0.3
            for t in range(n_topics):
                saturation[b, t] *= 0.3
        else:
            dyn[b, DY_SATISFACTION] = 0.0
            dyn[b, DY_FATIGUE] = 0.0
            for t in range(n_topics):
                saturation[b, t] = 0.0
            for d in range(n_prefix):
                obs[b, d] = pop_obs0[uid, d]
        for k in range(DY_REQUEST, N_DYN):
            dyn[b, k] = 0.0
        for d in range(s_stats, obs.shape[1]):
            obs[b, d] = 0.0
        # interest retrieval samples topics by the observed topic history as of the session start
        total = 0.0
        for t in range(n_topics):
            total += obs[b, h_top + t]
        cum = 0.0
        t = 0
        for k in range(n_lut):
            target = (k + 0.5) / n_lut * total
            while t < n_topics - 1 and cum + obs[b, h_top + t] < target:
                cum += obs[b, h_top + t]
                t += 1
            retrieval_lut[b, k] = t
