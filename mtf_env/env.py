"""Gymnasium environments ``ShortVideoMTF-v0``: the single env and the native vector env.

Both are views of the batched :class:`~mtf_env.core.Simulator` whose loop the agent owns:
each ``step`` serves one request with :func:`mtf_env.drive.serve` (validate the action,
then the simulator step), the part of the policy loop the envs share with the collector,
the rollouts and the A/B platform.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from .config import SimConfig, make_config
from .core import SessionState, Simulator, StepResult
from .drive import serve
from .fusion import validate_action
from .tasks import N_TASKS


def _spaces(sim: Simulator) -> tuple[spaces.Box, spaces.Box]:
    obs_space = spaces.Box(sim.obs_low, sim.obs_high, dtype=np.float32)
    act_space = spaces.Box(-1.0, 1.0, shape=(N_TASKS,), dtype=np.float32)
    return obs_space, act_space


def _user_ids(options: dict[str, Any] | None, n: int) -> np.ndarray | None:
    if not options:
        return None
    unknown = sorted(set(options) - {"user_ids"})
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; the only option is 'user_ids'")
    ids = np.asarray(options["user_ids"], dtype=np.int64).reshape(-1)
    if ids.shape != (n,):
        raise ValueError(f"reset option 'user_ids' must hold {n} user id(s), got {ids.size}")
    return ids


def _ground_truth(state: SessionState, result: StepResult) -> dict[str, np.ndarray]:
    return {
        "user_id": state.user_id.copy(),
        "satisfaction": state.satisfaction.copy(),
        "fatigue": state.fatigue.copy(),
        "saturation": state.saturation.copy(),
        "utility": result.utility,
    }


class ShortVideoMTFEnv(gym.Env):
    """One short-video session of a user, with per-request multi-task fusion weights as the action.

    ## Description
    Each step is one request: K candidates are retrieved, a PLE-like multi-task model predicts
    12 task outputs ``o`` for each, the action's fusion weights ``alpha`` rank them by
    ``sum_i alpha_i log(o_i + beta_i)``, and the top L are shown. The user's hidden state
    (satisfaction, fatigue, topic saturation) drives the feedback and whether they exit
    (docs/simulator.md). This is the single env: the batch-of-one view of the batched core.

    ## Action Space
    ``Box(-1, 1, (12,), float32)``; action ``a_i`` maps affinely to ``alpha_i`` in
    ``[ALPHA_LOW_i, ALPHA_HIGH_i]`` (:mod:`mtf_env.fusion`). Out-of-range values are clipped;
    NaN, infinity, a wrong shape or a non-numeric dtype raise ``ValueError``.

    | Num | Task          | alpha range   | Num | Task          | alpha range   |
    |-----|---------------|---------------|-----|---------------|---------------|
    | 0   | play_time     | [0, 2]        | 6   | comment       | [0, 1]        |
    | 1   | finish        | [0, 1]        | 7   | follow        | [0, 1]        |
    | 2   | long_view     | [0, 1]        | 8   | collect       | [0, 1]        |
    | 3   | skip          | [-1, 0.5]     | 9   | profile_visit | [0, 1]        |
    | 4   | like          | [0, 1]        | 10  | hate          | [-1, 0.5]     |
    | 5   | share         | [0, 1]        | 11  | exit          | [-1, 0.5]     |

    ## Observation Space
    ``Box(float32)`` of ``14 + 2 * n_topics + 12`` features (58 by default), clipped to bounds:

    | Slice (default)| Features                                                            | Range   |
    |----------------|---------------------------------------------------------------------|---------|
    | 0-13           | profile one-hot: age bucket (4), gender (2), region (3), device (2), activity tier (3) | [0, 1] |
    | 14-29          | history: topic shares of the last ~500 watched videos               | [0, 1]  |
    | 30-34          | history: mean play fraction, skip, like and interaction rates, standardised mean log duration | [0, 1], last [-5, 5] |
    | 35-41          | session: request index / max, videos / (max * L), play time / 30 min, like rate, skip rate, last page play fraction, last page skip rate | [0, 1] (play time [0, 10]) |
    | 42-57          | session: topic shares of the videos watched in this session          | [0, 1]  |

    ## Rewards
    ``r = sum_i w_i v_i`` over the page's summed feedback ``v`` (play time in seconds, counts
    of finishes, long views, skips, likes, shares, comments, follows, collects, profile
    visits, hates, exit); ``w`` from the ``reward`` argument (:mod:`mtf_env.rewards`). Always finite.

    ## Starting State
    A user drawn uniformly from the population (or ``options={"user_ids": [id]}``) opens the
    app with no fatigue, no saturation and neutral satisfaction.

    ## Episode End
    Terminated when the user exits the app (after any video of the page); truncated after
    ``max_requests`` requests.

    ## Info
    ``feedback`` (L, 12) per shown video (zero rows for videos not watched), ``watched`` (L,),
    ``items`` (L,), ``request_feedback`` (12,), and ``ground_truth`` (hidden, for analysis
    only: ``user_id``, ``satisfaction``, ``fatigue``, ``saturation`` (T,), ``utility`` (L,)).

    ## Arguments
    Every field of :class:`mtf_env.config.SimConfig` as a keyword, e.g.
    ``gym.make("ShortVideoMTF-v0", reward="time", page_size=4)``; unknown keys raise ``ValueError``.
    """

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None, **config: Any):
        if render_mode is not None:
            raise ValueError(f"ShortVideoMTF-v0 has no render modes, got render_mode={render_mode!r}")
        self.config: SimConfig = make_config(**config)
        self.sim = Simulator(self.config)
        self.observation_space, self.action_space = _spaces(self.sim)
        self._state: SessionState | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._state is None:
            self._state = self.sim.empty_state(1)
        self.sim.start_sessions(self._state, np.array([0]), _user_ids(options, 1), self.np_random)
        return self._state.obs[0].copy(), {"user_id": int(self._state.user_id[0])}

    def step(self, action: np.ndarray):
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        state = self._state
        result = serve(self.sim, state, action, self.np_random, single=True)
        info = {
            "feedback": result.feedback[0],
            "watched": result.watched[0],
            "items": result.items[0],
            "request_feedback": result.request_feedback[0],
            "ground_truth": {k: v[0] for k, v in _ground_truth(state, result).items()},
        }
        return (state.obs[0].copy(), float(result.reward[0]), bool(result.terminated[0]),
                bool(result.truncated[0]), info)


class ShortVideoMTFVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` sessions stepped together by the batched core (same semantics as the single env).

    Autoreset follows Gymnasium 1.0's next-step mode: after a session ends, the next ``step``
    call starts a new session in that slot (its action is ignored) and returns the new first
    observation with reward 0 and both flags False. With ``num_envs=1`` the trajectories
    equal the single env's under the same seed (the single env is the batch of one).
    ``info`` holds the same keys as the single env's, each with a leading ``num_envs`` axis.
    """

    metadata = {"render_modes": [], "autoreset_mode": "next_step"}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **config: Any):
        if render_mode is not None:
            raise ValueError(f"ShortVideoMTF-v0 has no render modes, got render_mode={render_mode!r}")
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.config: SimConfig = make_config(**config)
        self.sim = Simulator(self.config)
        self.single_observation_space, self.single_action_space = _spaces(self.sim)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._state: SessionState | None = None
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            if not isinstance(seed, (int, np.integer)):
                raise ValueError(f"ShortVideoMTF vector env takes one integer seed, got {seed!r}")
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        self._state = self.sim.empty_state(self.num_envs)
        self.sim.start_sessions(self._state, np.arange(self.num_envs), _user_ids(options, self.num_envs),
                                self.np_random)
        self._needs_reset[:] = False
        return self._state.obs.copy(), {"user_id": self._state.user_id.copy()}

    def step(self, actions: np.ndarray):
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        state, restart = self._state, self._needs_reset
        # Rows whose session ended last step restart now instead of serving a request. When every
        # row restarts no request is served (no random draws, as in the single env's reset).
        if restart.all():
            validate_action(actions, self.num_envs)
            result = None
        else:
            result = serve(self.sim, state, actions, self.np_random, active=~restart)
        if result is None:
            reward, terminated, truncated = (np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, bool),
                                             np.zeros(self.num_envs, bool))
            info: dict[str, Any] = {}
        else:
            reward, terminated, truncated = result.reward, result.terminated, result.truncated
            info = {"feedback": result.feedback, "watched": result.watched, "items": result.items,
                    "request_feedback": result.request_feedback, "ground_truth": _ground_truth(state, result)}
        if restart.any():
            self.sim.start_sessions(state, restart, None, self.np_random)
        self._needs_reset = terminated | truncated
        info["autoreset"] = restart.copy()
        return state.obs.copy(), reward, terminated, truncated, info
