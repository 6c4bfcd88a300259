"""The trainable algorithms by name, and loading a fixed policy from its spec.

``ALGOS`` maps an algorithm name to its class (imported on first use); a trained run
directory names its algorithm in ``config.json``. Fixed policy specs (no exploration noise):
``static:NAME`` (a preset of :data:`agents.static.STATIC_PRESETS`, also the bare ``NAME``),
a JSON file of static weights or of a reference policy (:mod:`agents.reference`), or a trained
run directory. Behaviour (exploration) specs are
resolved on top of these by :mod:`agents.behaviour`; :func:`agents.registry.load_policy` takes both.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, so that listing ALGOS (the command line's help) stays instant
    from mtf_env.policy import Policy

#: Trainable algorithms: name -> "module:Class" (imported on first use).
ALGOS: dict[str, str] = {
    "batchrl-mtf": "agents.batchrl_mtf:BatchRLMTF",
    "bo": "agents.bo:BayesianOptimisation",
    "es": "agents.es:EvolutionStrategy",
    "sac-online": "agents.sac_online:SACOnline",
    "td3": "agents.offline_d3rlpy:TD3Agent",
    "uwac-td3": "agents.offline_d3rlpy:UWACTD3Agent",
    "cql-sac": "agents.offline_d3rlpy:CQLSACAgent",
    "bc": "agents.offline_d3rlpy:BCAgent",
    "td3-bc": "agents.offline_d3rlpy:TD3PlusBCAgent",
    "iql": "agents.offline_d3rlpy:IQLAgent",
}


def algo_class(name: str):
    if name not in ALGOS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {sorted(ALGOS)}")
    module, cls = ALGOS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _json_format(path: Path) -> object:
    """The ``format`` field of a JSON policy file (None when it has none or is unreadable)."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return spec.get("format") if isinstance(spec, dict) else None


def load_fixed_policy(spec: str) -> Policy:
    """Resolve a fixed policy spec (see module docstring) to a Policy; ValueError naming the spec otherwise."""
    from .reference import LINEAR_POLICY_FORMAT, LinearFeaturePolicy
    from .static import STATIC_PRESETS, StaticPolicy

    if spec.startswith("static:"):
        return StaticPolicy.preset(spec.split(":", 1)[1])
    if spec in STATIC_PRESETS:
        return StaticPolicy.preset(spec)
    path = Path(spec)
    if path.is_file() and path.suffix == ".json":
        if _json_format(path) == LINEAR_POLICY_FORMAT:  # a reference policy of the ceiling
            return LinearFeaturePolicy.load(path)
        return StaticPolicy.from_json(path)
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ValueError(f"{path} is not a run directory (no config.json)")
        try:
            algo = json.loads(config_path.read_text())["algo"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{config_path} does not name its algorithm ('algo'): {exc}") from None
        return algo_class(algo).load(path)
    if "/" in spec or "\\" in spec or path.suffix == ".json":
        raise ValueError(f"unknown policy {spec!r}: no such run directory or weights file")
    raise ValueError(
        f"unknown policy {spec!r}: use static:NAME ({', '.join(sorted(STATIC_PRESETS))}), random, "
        "a JSON file of weights, or a trained run directory"
    )
