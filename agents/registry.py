"""Turn a policy spec on the command line into a :class:`~mtf_env.policy.Policy`.

Specs: ``static:NAME`` (a preset of :data:`agents.static.STATIC_PRESETS`), a behaviour
(exploration) spec of :mod:`agents.behaviour` (``random[:STD]``, ``action-noise[:TARGET]``,
``mixed[:TARGET]``), a JSON file of static weights, or a trained run directory (its
``config.json`` names the algorithm, whose class loads the run; see :mod:`agents.algos`).
"""
from __future__ import annotations

from mtf_env.policy import Policy

from .algos import ALGOS, algo_class, load_fixed_policy
from .behaviour import policy_from_spec

__all__ = ["ALGOS", "algo_class", "load_fixed_policy", "load_policy"]


def load_policy(spec: str, seed: int = 0) -> Policy:
    """Resolve ``spec`` (see module docstring) to a Policy; ``seed`` seeds a behaviour policy's generator."""
    return policy_from_spec(spec, seed)
