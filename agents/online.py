"""What the online baselines (``bo``, ``es``, ``sac-online``) share: their base class, simulator, users and budget.

An online baseline needs no logged data: it learns by serving requests in the simulator,
which stands in for the live platform. Everything it spends there is its *online budget*
(:class:`OnlineBudget`: rounds, sessions and requests served), recorded next to its
results, because the paper's point is that batch RL needs none of it.

* :func:`resolve_sim_config` -- the world the agent interacts with (a :class:`SimConfig`,
  its JSON mapping, or ``None`` for the default world); the suite passes the logged
  dataset's own config, so online and offline methods are judged in the same world.
* :func:`draw_users` -- fresh users for one online round, drawn without replacement from
  the population with a generator keyed by ``(seed, stream, round)``: a round's users do
  not depend on anything that ran before it, so a resumed run draws the same users.
* :class:`OnlineAgent` -- the :class:`agents.base.Agent` that learns in the simulator: its run
  identity is the seed and the world, ``config.json`` records the world, every checkpoint is
  accompanied by ``budget.json``, and ``fit`` takes no data.
* :func:`rollout_objective` -- the objective of a round from a session rollout: the mean
  (discounted) session return, or the mean immediate reward per request.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from agents.base import Agent
from agents.config import ConfigBase
from agents.seeding import check_seed
from mtf_env.config import SimConfig, make_config
from mtf_env.core import Simulator, obs_dim as world_obs_dim
from mtf_env.files import write_json
from mtf_env.rewards import reward_weights
from mtf_env.rollout import SessionRollout
from mtf_env.transitions import TransitionArrays

#: Objectives an online round can measure (see :func:`rollout_objective`).
OBJECTIVES = ("session", "discounted", "immediate")
#: File with an online agent's budget, in its run directory.
BUDGET_NAME = "budget.json"


def resolve_sim_config(sim_config: SimConfig | Mapping[str, Any] | None) -> SimConfig:
    """A :class:`SimConfig` from a config, its ``to_json()`` mapping, or ``None`` (the default world)."""
    if sim_config is None:
        return SimConfig()
    if isinstance(sim_config, SimConfig):
        return sim_config
    if isinstance(sim_config, Mapping):
        return make_config(**dict(sim_config))
    raise ValueError(f"sim_config must be a SimConfig, a mapping of its fields or None, got {type(sim_config).__name__}")


def check_data(data: TransitionArrays | None, obs_dim: int, algo: str) -> None:
    """Online agents ignore logged data; if some is given its observation size must match the world's."""
    if data is None:
        return
    if not isinstance(data, TransitionArrays):
        raise ValueError(f"{algo} learns online and takes data=None (or a TransitionArrays), got {type(data).__name__}")
    if data.obs_dim != obs_dim:
        raise ValueError(f"{algo}: data has {data.obs_dim} observation features, the simulator's world has {obs_dim}")


def round_rng(seed: int, stream: int, round_index: int) -> np.random.Generator:
    """The generator of one round: ``SeedSequence([seed, stream, round_index])``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(round_index)]))


def draw_users(rng: np.random.Generator, n_users: int, n_population: int) -> np.ndarray:
    """``n_users`` distinct user ids (n,) int64, sorted, drawn without replacement."""
    if n_users > n_population:
        raise ValueError(f"cannot draw {n_users} distinct users from a population of {n_population} "
                         "(lower n_users or raise SimConfig.n_users)")
    return np.sort(rng.choice(n_population, size=int(n_users), replace=False)).astype(np.int64)


def rollout_objective(rollout: SessionRollout, weights: np.ndarray, objective: str) -> tuple[float, float]:
    """The objective of a round and its standard error over sessions.

    objective: ``session`` -- mean undiscounted session return; ``discounted`` -- mean
    discounted session return (``rollout.gamma``); ``immediate`` -- mean reward per request
    (all rewards of the rollout over all its requests, each request's immediate reward counted
    once: the myopic objective; its SE by the delta method over sessions).
    """
    if objective == "session" or objective == "discounted":
        returns = rollout.returns(weights, discounted=objective == "discounted")
        se = float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else float("nan")
        return float(returns.mean()), se
    if objective == "immediate":
        totals = rollout.returns(weights)                # (n,) reward summed over each session
        requests = rollout.requests.astype(np.float64)  # (n,)
        value = float(totals.sum() / requests.sum())
        n = len(totals)
        se = float(np.std(totals - value * requests, ddof=1) / (np.sqrt(n) * requests.mean())) if n > 1 else float("nan")
        return value, se
    raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")


@dataclass
class OnlineBudget:
    """Interaction an online agent spent in the simulator (the live platform's traffic).

    rounds: online evaluations (BO: A/B rounds; ES: candidate evaluations; SAC: vector env
    steps); sessions: sessions served (started, for SAC: finished); requests: requests served
    (= environment steps / transitions); users_per_round: users per evaluation (0 for SAC).
    """

    rounds: int = 0
    sessions: int = 0
    requests: int = 0
    users_per_round: int = 0

    def add_rollout(self, rollout: SessionRollout) -> None:
        """Count one evaluation: its sessions and requests."""
        self.rounds += 1
        self.sessions += int(len(rollout.requests))
        self.requests += int(rollout.requests.sum())

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> "OnlineBudget":
        return cls(**{f.name: int(values.get(f.name, 0)) for f in dataclasses.fields(cls)})


def normalise_reward(config: Any) -> None:
    """Validate a frozen config's ``reward`` field and store 12 weights as a tuple (JSON-ready).

    Called from the ``__post_init__`` of the online agents' configs; a preset name or a mapping
    is kept as given.
    """
    weights = reward_weights(config.reward)  # validates
    if not isinstance(config.reward, (str, Mapping)):
        object.__setattr__(config, "reward", tuple(float(w) for w in weights))


def sim_config_json(sim_config: SimConfig) -> str:
    """The world's config as a sorted-keys JSON string (how checkpoints store it, for resume checks)."""
    return json.dumps(sim_config.to_json(), sort_keys=True)


class OnlineAgent(Agent):
    """An :class:`agents.base.Agent` that learns by serving requests in the simulator (no logged data).

    ``fit`` runs ``n_steps`` rounds (``step_unit``), logs and checkpoints every round by default;
    a resumed run is refused when the seed, config or world (``sim_config``) differ.
    ``config.json`` holds the config, ``sim_config``, ``obs_dim`` and ``seed``; ``budget.json``
    (the online budget spent, :class:`OnlineBudget`) is written with every checkpoint.
    Subclasses build their simulator-facing state in ``_start_fit`` (after calling this one's).
    """

    requires_data = False
    step_unit = "round"
    default_log_every = 1
    default_checkpoint_every = 1
    budget_unit: ClassVar[str]
    """What the budget's rounds are, for ``budget.json``."""
    budget_steps_key: ClassVar[str | None] = None
    """``budget.json`` key of ``self.step`` (``iterations``, ``env_steps``), or ``None``."""

    def __init__(self, config: ConfigBase | None = None, sim_config: SimConfig | Mapping[str, Any] | None = None):
        super().__init__(config)
        self.sim_config = resolve_sim_config(sim_config)
        self.obs_dim = world_obs_dim(self.sim_config)
        self.budget = OnlineBudget()
        self._sim: Simulator | None = None

    def _start_fit(self, data: TransitionArrays | None, seed: int, n_steps: int, log_every: int) -> None:
        check_data(data, self.obs_dim, self.algo_name)
        self.seed, self.step = seed, 0
        self._sim = Simulator(self.sim_config)

    def _end_fit(self) -> None:
        self._sim = None

    def _run_identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "sim_config": sim_config_json(self.sim_config)}

    def _run_config_fields(self) -> dict[str, Any]:
        return {"sim_config": self.sim_config.to_json(), "obs_dim": self.obs_dim, "seed": self.seed}

    @classmethod
    def _from_run_config(cls, meta: dict[str, Any], device: str | None) -> "OnlineAgent":
        config = cls.config_class.from_dict(meta["config"])
        if device is not None and hasattr(config, "device"):
            config = dataclasses.replace(config, device=device)
        agent = cls(config, sim_config=meta["sim_config"])
        agent.seed = check_seed(meta["seed"])
        return agent

    def _write_extra_files(self, run_dir: Path) -> None:
        steps = {self.budget_steps_key: self.step} if self.budget_steps_key else {}
        write_json(run_dir / BUDGET_NAME, {"algo": self.algo_name, "unit": self.budget_unit, **steps,
                                           **self.budget.to_json()})
