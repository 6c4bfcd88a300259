"""Behaviour (exploration) policies that log the data the offline agents learn from.

Every behaviour policy implements :class:`~mtf_env.policy.Policy` (``act(obs) -> (B, 12)``)
and :class:`~mtf_env.policy.BehaviourPolicy`, which the dataset collector reads. It is stochastic: ``act_with_log_prob(obs)`` also returns the log-density of each action it
took (the density of the Gaussian draw before clipping to the action box, summed over the
12 dimensions, in nats). Each draws from its own seeded generator, so the same seed and the
same sequence of batch shapes give the same actions.

=================  ===========================================================================
spec               policy
=================  ===========================================================================
``production``     the deployed static weights plus small noise, as a real platform logs:
                   ``clip(a_prod + N(0, PRODUCTION_NOISE_STD^2 I))``, ``a_prod`` =
                   ``mtf_env.fusion.PRODUCTION_ACTION`` (the static ``production`` preset).
``random``         random exploration, Gaussian actions with no prior:
                   ``clip(N(0, RANDOM_STD^2 I))`` around the centre of the action box.
                   ``random:STD`` sets another standard deviation.
``action-noise``   ``clip(pi*(s) + N(0, ACTION_NOISE_STD^2 I))`` around a target policy
                   ``pi*``, by default ``static:production``; ``action-noise:TARGET`` takes any
                   policy spec of :func:`agents.algos.load_fixed_policy` (``static:NAME``, a
                   weights JSON, a trained run directory).
``mixed``          two user groups of equal expected size (the paper's mixed exploration):
                   users with an even id get ``random``, users with an odd id get
                   ``action-noise`` (``mixed:TARGET`` sets its target). The population is
                   drawn i.i.d. per user id, so id parity is independent of every user trait.
=================  ===========================================================================

``RANDOM_STD = 0.5`` puts about 95% of each coordinate's draws inside ``[-1, 1]``, so random
exploration covers the whole box (the rest is clipped to its faces) without a prior
towards any fusion weights. ``ACTION_NOISE_STD = 0.1`` is the paper's ``N(0, 0.1)``.

Group-dependent policies need to know whose request each row is: the collector calls
``set_users(user_ids)`` before ``act`` (:func:`mtf_env.policy.behaviour_step` does both) and
reads the group of each row from ``group_ids(user_ids)``; ``group_names[k]`` names group ``k``.
:func:`collection_policy` builds the behaviour policy a :class:`~mtf_env.dataset.CollectConfig` names.
"""
from __future__ import annotations

import numpy as np

from mtf_env.dataset_collect import CollectConfig, collection_seeds
from mtf_env.fusion import PRODUCTION_ACTION
from mtf_env.policy import Policy, check_obs_batch
from mtf_env.tasks import N_TASKS

from .algos import load_fixed_policy
from .static import STATIC_PRESETS, GaussianPolicy

#: Standard deviation of the ``random`` behaviour (per action coordinate, action units).
RANDOM_STD = 0.5
#: Standard deviation of the ``action-noise`` behaviour around its target (the paper's N(0, 0.1)).
ACTION_NOISE_STD = 0.1
#: Standard deviation of the noise the ``production`` behaviour adds to the deployed weights.
PRODUCTION_NOISE_STD = 0.05
#: Default target of ``action-noise`` and of the action-noise half of ``mixed``.
DEFAULT_TARGET = "static:production"
#: Base names :func:`make_behaviour_policy` accepts (a ``:SUFFIX`` may follow, see module docstring).
BEHAVIOUR_NAMES: tuple[str, ...] = ("production", "random", "action-noise", "mixed")


class GaussianBehaviour:
    """One exploration group: ``clip(mean(s) + N(0, std^2 I), -1, 1)`` with log-densities.

    mean: (12,) action or a :class:`Policy` (whose action is the mean); std: scalar or (12,).
    """

    stochastic = True

    def __init__(self, name: str, mean: np.ndarray | Policy, std: float | np.ndarray,
                 seed: int | np.random.SeedSequence, spec: str | None = None):
        self.name = name
        self.spec = spec or name
        self.group_names: tuple[str, ...] = (name,)
        self.std = std
        self.seed = seed if isinstance(seed, (int, np.integer)) else None
        self._gaussian = GaussianPolicy(mean, std, seed=seed, name=name)

    @property
    def mean(self):
        return self._gaussian.mean

    def act_with_log_prob(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions (B, 12) float32 in [-1, 1] and their log-densities (B,) float32."""
        return self._gaussian.act_with_log_prob(obs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.act_with_log_prob(obs)[0]

    def group_ids(self, user_ids: np.ndarray) -> np.ndarray:
        """(B,) int8 group of each row (always 0: one group)."""
        return np.zeros(len(user_ids), dtype=np.int8)

    def set_users(self, user_ids: np.ndarray) -> None:
        """Nothing to do: this policy treats every user alike."""


class MixedBehaviour:
    """Mixed exploration: ``random`` for users with an even id, ``action-noise`` for odd ids.

    Each half draws noise (and evaluates its target) only for the rows of its own group, in
    row order, from its own generator. Call ``set_users(user_ids)`` before ``act``.
    """

    stochastic = True
    group_names: tuple[str, ...] = ("random", "action-noise")

    def __init__(self, random_part: GaussianBehaviour, noise_part: GaussianBehaviour, spec: str = "mixed",
                 seed: int | None = None):
        self.name = "mixed"
        self.spec = spec
        self.seed = seed
        self.parts = (random_part, noise_part)
        self._user_ids: np.ndarray | None = None

    def set_users(self, user_ids: np.ndarray) -> None:
        """Tell the policy whose requests the rows of the next ``act`` call are: (B,) int user ids."""
        self._user_ids = np.asarray(user_ids).reshape(-1)

    @staticmethod
    def group_ids(user_ids: np.ndarray) -> np.ndarray:
        """(B,) int8: 0 (``random``) for an even user id, 1 (``action-noise``) for an odd one."""
        return (np.asarray(user_ids, dtype=np.int64) & 1).astype(np.int8)

    def act_with_log_prob(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = check_obs_batch(obs)
        if self._user_ids is None or len(self._user_ids) != len(obs):
            have = "no user ids" if self._user_ids is None else f"{len(self._user_ids)} user ids"
            raise ValueError(f"mixed behaviour needs the user id of every row: call set_users(user_ids) with "
                             f"{len(obs)} ids before act (got {have})")
        group = self.group_ids(self._user_ids)
        actions = np.empty((len(obs), N_TASKS), np.float32)
        log_prob = np.empty(len(obs), np.float32)
        for g, part in enumerate(self.parts):
            rows = np.flatnonzero(group == g)
            if rows.size:
                actions[rows], log_prob[rows] = part.act_with_log_prob(obs[rows])
        return actions, log_prob

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.act_with_log_prob(obs)[0]


def is_behaviour_spec(spec: str) -> bool:
    """Whether ``spec`` names a behaviour policy (``random[:STD]``, ``action-noise[:TARGET]``, ``mixed[:TARGET]``).

    ``production`` is the static preset of that name here (a fixed policy), not the
    ``production`` behaviour, which only :func:`make_behaviour_policy` builds.
    """
    return spec == "random" or spec.startswith(("random:", "action-noise", "mixed"))


def policy_from_spec(spec: str, seed: int = 0) -> Policy:
    """Any policy spec: a behaviour spec (:func:`is_behaviour_spec`) built with ``seed``, else a fixed policy."""
    if not spec.startswith("static:") and spec not in STATIC_PRESETS and is_behaviour_spec(spec):
        return make_behaviour_policy(spec, seed=seed)
    return load_fixed_policy(spec)


def _resolve_target(target: str | Policy | None, seed: int) -> tuple[Policy, str]:
    if target is None:
        target = DEFAULT_TARGET
    if isinstance(target, str):
        return policy_from_spec(target, seed), target
    if not callable(getattr(target, "act", None)):
        raise ValueError(f"target must be a policy spec or an object with act(obs), got {type(target).__name__}")
    return target, getattr(target, "name", type(target).__name__)


def _parse_std(text: str, spec: str) -> float:
    try:
        std = float(text)
    except ValueError:
        raise ValueError(f"behaviour spec {spec!r}: {text!r} is not a standard deviation") from None
    if not np.isfinite(std) or std <= 0:
        raise ValueError(f"behaviour spec {spec!r}: the standard deviation must be positive and finite")
    return std


def make_behaviour_policy(spec: str, seed: int, target: str | Policy | None = None):
    """Build the behaviour policy named by ``spec`` (see the module docstring) with its own seed.

    target: the target of ``action-noise`` / ``mixed`` (a policy spec or a Policy); it may
    also be given in the spec as ``action-noise:TARGET``, but not both. Returns an object with
    ``act``, ``act_with_log_prob``, ``set_users``, ``group_ids``, ``group_names`` and ``spec``
    (the canonical spec string, recorded in dataset manifests).
    """
    if not isinstance(spec, str):
        raise ValueError(f"behaviour spec must be a string, got {type(spec).__name__}")
    name, _, suffix = spec.partition(":")
    if name not in BEHAVIOUR_NAMES:
        raise ValueError(f"unknown behaviour policy {spec!r}; choose one of {list(BEHAVIOUR_NAMES)} "
                         "(random:STD, action-noise:TARGET, mixed:TARGET)")
    if name == "production":
        if suffix or target is not None:
            raise ValueError("the production behaviour takes no target or suffix (use action-noise:TARGET)")
        return GaussianBehaviour("production", PRODUCTION_ACTION, PRODUCTION_NOISE_STD, seed, spec="production")
    if name == "random":
        if target is not None:
            raise ValueError("the random behaviour has no target policy")
        std = _parse_std(suffix, spec) if suffix else RANDOM_STD
        canonical = "random" if std == RANDOM_STD else f"random:{std:g}"
        return GaussianBehaviour("random", np.zeros(N_TASKS, np.float32), std, seed, spec=canonical)
    if suffix and target is not None:
        raise ValueError(f"behaviour spec {spec!r} names a target and target= names another; give one")
    policy, target_name = _resolve_target(suffix or target, seed)
    if name == "action-noise":
        return GaussianBehaviour("action-noise", policy, ACTION_NOISE_STD, seed, spec=f"action-noise:{target_name}")
    # mixed: independent streams for its two halves
    s_random, s_noise = np.random.SeedSequence(seed).spawn(2)
    random_part = GaussianBehaviour("random", np.zeros(N_TASKS, np.float32), RANDOM_STD, s_random)
    noise_part = GaussianBehaviour("action-noise", policy, ACTION_NOISE_STD, s_noise,
                                   spec=f"action-noise:{target_name}")
    return MixedBehaviour(random_part, noise_part, spec=f"mixed:{target_name}", seed=seed)


def collection_policy(collect: CollectConfig):
    """The behaviour policy ``collect.policy`` (target ``collect.target``) seeded from ``collect.seed``.

    Its seed is the policy stream of :func:`mtf_env.dataset_collect.collection_seeds`, so
    ``collect_dataset(out, sim_config, collect, collection_policy(collect))`` reproduces the
    dataset cards byte for byte.
    """
    return make_behaviour_policy(collect.policy, seed=collection_seeds(collect.seed)[2], target=collect.target)
