"""Turn our :class:`~mtf_env.transitions.TransitionArrays` (or a loaded dataset) into a d3rlpy ``MDPDataset``.

Our logged data is a flat list of transitions ``(s, a, r, s', terminal, timeout)`` stored
session after session; ``episode_starts`` marks the first request of each session and the
last transition of a session has ``terminal`` (the user exited) or ``timeout`` (cut off at
the request limit) set. d3rlpy instead stores each episode as its observations
``s_0 .. s_{T-1}`` and reads the next observation of step ``t`` from row ``t + 1``
(``BasicTransitionPicker``). The two differ only at the end of an episode:

* terminal episode: d3rlpy uses a zero next observation and ``terminal = 1`` for the last
  step -- nothing is lost, since a terminal transition does not bootstrap;
* timeout episode: d3rlpy has no row holding ``s_T`` and drops the last transition
  (``transition_count = T - 1``). With ``pad_timeouts=True`` (default) we append ``s_T``
  as one extra padding row (action all zeros, reward 0) carrying the timeout flag, so the
  dataset keeps all ``T`` transitions and the last one bootstraps from the true ``s_T``.
  The padding row is never itself a transition; it appears only as the next observation
  (and as ``next_action``, which SARSA-style learners would read -- none of ours do).
  With ``pad_timeouts=False`` we follow d3rlpy's own convention and drop that transition
  (a one-step timeout session is then left empty, and d3rlpy drops the episode).

Because d3rlpy takes next observations from the following row, the data must be
consistent: ``next_observations[i] == observations[i + 1]`` inside every episode.
:func:`to_d3rlpy_dataset` checks this and refuses inconsistent data rather than
silently training on different next states.
"""
from __future__ import annotations

import numpy as np

from mtf_env.transitions import TransitionArrays

#: Rows compared at a time when checking next-observation continuity (bounds memory).
_CHUNK_ROWS = 1 << 20


def episode_bounds(data: TransitionArrays) -> tuple[np.ndarray, np.ndarray]:
    """Validate the session layout of ``data`` and return ``(start_rows, end_rows)``.

    Both are ``(n_episodes,)`` int64 arrays; episode ``e`` spans rows
    ``start_rows[e] .. end_rows[e]`` inclusive. Raises ValueError naming the first row where
    the layout is broken: an episode must start at row 0, every episode must end with a
    terminal or timeout transition, and a new episode starts exactly after each end.
    """
    n = len(data)
    if n == 0:
        raise ValueError("TransitionArrays is empty: no episodes to convert")
    starts = np.asarray(data.episode_starts, dtype=bool)
    ends = np.asarray(data.terminals, dtype=bool) | np.asarray(data.timeouts, dtype=bool)
    if not starts[0]:
        raise ValueError("episode_starts[0] is False: the first transition must start an episode")
    if not ends[-1]:
        raise ValueError(
            f"the last transition (row {n - 1}) is neither terminal nor timeout: the final episode is unfinished"
        )
    # Row i ends an episode exactly when row i + 1 starts one.
    broken = np.flatnonzero(starts[1:] != ends[:-1])
    if broken.size:
        i = int(broken[0])
        if ends[i]:
            raise ValueError(
                f"row {i} ends an episode (terminal/timeout) but row {i + 1} is not marked in episode_starts"
            )
        raise ValueError(
            f"row {i + 1} starts an episode but row {i} is neither terminal nor timeout "
            "(every episode must end with a terminal or timeout transition)"
        )
    start_rows = np.flatnonzero(starts).astype(np.int64)
    end_rows = np.flatnonzero(ends).astype(np.int64)
    return start_rows, end_rows


def continuing_rows(data: TransitionArrays) -> np.ndarray:
    """``(N,)`` bool: rows whose ``next_observations[i]`` equals ``observations[i + 1]`` exactly
    and that do not end their episode (so ``s'`` of row ``i`` is ``s`` of row ``i + 1``)."""
    n = len(data)
    ends = np.asarray(data.terminals, dtype=bool) | np.asarray(data.timeouts, dtype=bool)
    same = np.zeros(n, dtype=bool)
    for lo in range(0, n - 1, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, n - 1)
        same[lo:hi] = np.all(data.next_observations[lo:hi] == data.observations[lo + 1 : hi + 1], axis=1)
    return same & ~ends


def to_d3rlpy_dataset(data: TransitionArrays, *, pad_timeouts: bool = True, check_continuity: bool = True):
    """Build a d3rlpy ``MDPDataset`` (continuous actions) from session-ordered transitions.

    Args:
        data: N transitions stored episode after episode (see :func:`episode_bounds`).
        pad_timeouts: append ``s_T`` as a padding row to each timeout episode so that its
            last transition is kept (default); False drops it, as d3rlpy itself does.
        check_continuity: raise ValueError unless ``next_observations[i] ==
            observations[i + 1]`` inside every episode (d3rlpy reads ``s'`` from row ``i + 1``).

    Returns:
        ``d3rlpy.dataset.MDPDataset`` with one episode per session; its ``transition_count``
        is N with padding, N minus the number of timeout episodes without it.
    """
    import d3rlpy

    start_rows, end_rows = episode_bounds(data)
    if check_continuity:
        inside = np.ones(len(data), dtype=bool)
        inside[end_rows] = False
        bad = np.flatnonzero(inside & ~continuing_rows(data))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{bad.size} transitions have next_observations[i] != observations[i + 1] inside an episode "
                f"(first at row {i}); d3rlpy would silently use observations[i + 1] as their next state"
            )
    observations = np.asarray(data.observations, dtype=np.float32)
    actions = np.asarray(data.actions, dtype=np.float32)
    rewards = np.asarray(data.rewards, dtype=np.float32).reshape(-1)
    terminals = np.asarray(data.terminals, dtype=np.float32).reshape(-1)
    timeouts = np.asarray(data.timeouts, dtype=np.float32).reshape(-1)
    timeout_rows = np.flatnonzero(np.asarray(data.timeouts, dtype=bool))
    if pad_timeouts and timeout_rows.size:
        # Insert the padding row s_T right after each timeout row; the timeout flag moves to it.
        where = timeout_rows + 1
        observations = np.insert(observations, where, np.asarray(data.next_observations, np.float32)[timeout_rows], 0)
        actions = np.insert(actions, where, 0.0, axis=0)
        rewards = np.insert(rewards, where, 0.0)
        terminals = np.insert(terminals, where, 0.0)
        timeouts[timeout_rows] = 0.0
        timeouts = np.insert(timeouts, where, 1.0)
    return d3rlpy.dataset.MDPDataset(
        observations=observations,
        actions=actions,
        rewards=rewards.reshape(-1, 1),
        terminals=terminals,
        timeouts=timeouts,
        action_space=d3rlpy.constants.ActionSpace.CONTINUOUS,
        action_size=int(actions.shape[1]),
    )


def dataset_to_d3rlpy(dataset, pad_timeouts: bool = True):
    """A d3rlpy ``MDPDataset`` of a loaded :class:`mtf_env.dataset.Dataset` split (its relabelled transitions).

    Exits are terminals, cut-offs timeouts; see :func:`to_d3rlpy_dataset` for ``pad_timeouts``.
    """
    return to_d3rlpy_dataset(dataset.transitions(), pad_timeouts=pad_timeouts)
