"""The one loop that drives a policy on the batched simulator.

Every policy-driven run (the dataset collector, the session rollouts, the A/B platform's
day model) is the same outline over B rows of sessions::

    observe -> the policy acts -> validate the action -> simulator step -> retire finished rows

:func:`drive` writes it once, as a generator that yields a :class:`DriveStep` after every
request; the caller does its bookkeeping on the step (sums feedback, logs rows, restarts
sessions with :meth:`DriveStep.restart`) and the loop goes on until no row is active.
The Gymnasium envs invert the control (the agent owns the loop and passes actions in), so
they share only the "validate the action -> simulator step" part, :func:`serve`.

Rows: the loop keeps the caller's rows in order; ``DriveStep.index`` maps the rows of the
current (possibly compacted) state back to the caller's row numbers ``0 .. B-1``.
Compaction drops rows whose day is over from the state (``compact``): ``"always"`` as soon
as any row retires (the collector: the simulator serves only live sessions), ``"half"``
once fewer than half the rows are active (the A/B platform), ``"never"`` (the rollouts:
fixed shapes, so each row's random draws are the same whichever rows are still active).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Callable, Iterator

import numpy as np

from .core import SessionState, Simulator, StepResult
from .fusion import validate_action
from .policy import reset_policy
from .tasks import N_TASKS

#: ``act(obs (n, obs_dim) float32, user_ids (n,) int64)`` -> actions (n, 12), or a tuple whose first item is them.
ActFn = Callable[[np.ndarray, np.ndarray], object]
#: ``uniforms(rows (n,), index (R,), t)`` -> ``(u_cand (R, K), u_resp (R, L, 12))`` for the R rows of the state
#: (``rows``: the active ones; ``index``: the caller row of each state row; ``t``: the request number).
UniformsFn = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]

COMPACT_MODES = ("always", "half", "never")


def serve(sim: Simulator, state: SessionState, actions: np.ndarray, rng: np.random.Generator | None,
          active: np.ndarray | None = None, uniforms: tuple[np.ndarray, np.ndarray] | None = None,
          single: bool = False) -> StepResult:
    """Validate an action batch and serve one request (``rng``, ``active``, ``uniforms``: see :meth:`Simulator.step`).

    actions: (B, 12), or (12,) with ``single=True`` (the single env, a state of one row);
    clipped to the action box, ValueError on NaN or infinity, a wrong shape or a non-numeric dtype.
    """
    actions = validate_action(actions, None if single else len(state.user_id))
    return sim.step(state, actions[None] if single else actions, rng, active=active, uniforms=uniforms)


def take_rows(state: SessionState, keep: np.ndarray) -> SessionState:
    """The rows ``keep`` (bool mask or index array) of a session state, as a new compact state."""
    return SessionState(**{f.name: getattr(state, f.name)[keep] for f in fields(state)})


@dataclass
class DriveStep:
    """One request served to the active rows of a driven batch.

    t: requests served before this one (0 at the first); state: the session state after
    the step (rows of the current, possibly compacted state, R of them); index: (R,) int64
    caller row of each state row; rows: (n,) int64 state rows that were served (active);
    obs: (n, obs_dim) float32 observations the policy saw for them (copies; with
    ``act_on_all_rows`` all R rows); policy_output: what ``act`` returned (the actions or a
    tuple starting with them); actions: (R, 12) float32 validated actions (zero for rows not
    served); result: the simulator's :class:`StepResult` over the R rows (zero for rows not
    served); ended: (R,) bool served rows whose session ended (terminated or truncated);
    policy_s / simulator_s: wall seconds in the policy and the simulator; restarted: (R,) bool
    ended rows the caller started a new session in (set through :meth:`restart`).
    """

    t: int
    state: SessionState
    index: np.ndarray
    rows: np.ndarray
    obs: np.ndarray
    policy_output: object
    actions: np.ndarray
    result: StepResult
    ended: np.ndarray
    policy_s: float
    simulator_s: float
    restarted: np.ndarray

    def restart(self, rows: np.ndarray) -> None:
        """Mark ended rows (state rows, index array) whose next session the caller started: they stay active."""
        self.restarted[rows] = True


def drive(sim: Simulator, state: SessionState, policy: object, *, rng: np.random.Generator | None = None,
          uniforms: UniformsFn | None = None, act: ActFn | None = None, act_on_all_rows: bool = False,
          compact: str = "always", max_steps: int | None = None) -> Iterator[DriveStep]:
    """Drive ``policy`` on every row of ``state`` (sessions already started) until no row is active.

    Args:
        sim: the simulator; state: B rows of started sessions (stepped in place until compacted).
        policy: the policy; before every ``act`` its ``reset(mask)`` (when it has one) is called
            with the rows whose session starts at this request; ``act(obs)`` unless ``act`` is given.
        rng: the generator of the simulator's draws; or ``uniforms``: a function giving the
            prepared uniforms of the state's rows (for callers with their own random streams).
        act: ``act(obs, user_ids)`` instead of ``policy.act(obs)``: actions (n, 12), or a tuple
            whose first item is the actions (the whole tuple is ``DriveStep.policy_output``).
        act_on_all_rows: the policy sees every row of the state at every step, finished ones
            too (fixed shapes, with ``compact="never"``); otherwise only the active rows.
        compact: ``always``, ``half`` or ``never`` (module docstring).
        max_steps: RuntimeError if rows are still active after this many requests.

    Yields :class:`DriveStep` after each request; rows ended at that step retire when the
    caller resumes the loop, unless it restarted their session (:meth:`DriveStep.restart`).
    """
    if compact not in COMPACT_MODES:
        raise ValueError(f"compact must be one of {COMPACT_MODES}, got {compact!r}")
    if (rng is None) == (uniforms is None):
        raise ValueError("give exactly one of rng and uniforms")
    n_rows = len(state.user_id)
    index = np.arange(n_rows)
    active = np.ones(n_rows, bool)
    new_session = np.ones(n_rows, bool)
    t = 0
    while True:
        rows = np.flatnonzero(active)
        if rows.size == 0:
            return
        if max_steps is not None and t >= max_steps:
            raise RuntimeError(f"sessions still running after {max_steps} requests")
        n_rows = len(active)
        everyone = act_on_all_rows or rows.size == n_rows
        t0 = time.perf_counter()
        reset_policy(policy, new_session if everyone else new_session[rows])
        obs = state.obs.copy() if everyone else state.obs[rows]  # the simulator updates state.obs in place
        user_ids = state.user_id if everyone else state.user_id[rows]
        output = act(obs, user_ids) if act is not None else policy.act(obs)
        chosen = output[0] if isinstance(output, tuple) else output
        if everyone:
            actions = validate_action(chosen, n_rows)
        else:
            actions = np.zeros((n_rows, N_TASKS), np.float32)
            actions[rows] = validate_action(chosen, rows.size)
        t1 = time.perf_counter()
        if uniforms is None:
            result = sim.step(state, actions, rng, active=None if rows.size == n_rows else active)
        else:
            result = sim.step(state, actions, None, active=active, uniforms=uniforms(rows, index, t))
        t2 = time.perf_counter()
        ended = (result.terminated | result.truncated) & active
        step = DriveStep(t=t, state=state, index=index, rows=rows, obs=obs, policy_output=output, actions=actions,
                         result=result, ended=ended, policy_s=t1 - t0, simulator_s=t2 - t1,
                         restarted=np.zeros(n_rows, bool))
        yield step
        new_session = step.restarted & ended
        active &= ~(ended & ~new_session)
        t += 1
        n_active = int(active.sum())
        if n_active < n_rows and n_active > 0 and (
                compact == "always" or (compact == "half" and n_active < n_rows // 2)):
            state = take_rows(state, active)
            index, new_session = index[active], new_session[active]
            active = np.ones(n_active, bool)
