"""Agent configs from settings written as text: the config class of an agent, overrides, widths.

The training driver (:mod:`benchmarks.evaluation.training`), the suites and the command line
build an agent's frozen config dataclass from its defaults, a saved run's config and
``KEY=VALUE`` overrides (:func:`build_config`); values written as text are brought to each
field's type. Every function raises ValueError naming the bad key or value. Standard library
and numpy only, so the command line can check its arguments without importing torch.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Mapping, Sequence

import numpy as np


def config_class(cls: type) -> type:
    """The frozen config dataclass of an agent class (``cls.config_class`` or ``__init__``'s annotation)."""
    explicit = getattr(cls, "config_class", None)
    if explicit is not None:
        return explicit
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception as exc:  # unresolvable annotations
        raise ValueError(f"{cls.__name__}: cannot read the config type of __init__ ({exc}); "
                         "give the class a `config_class` attribute") from None
    hint = hints.get("config")
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    for candidate in candidates:
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    raise ValueError(f"{cls.__name__}.__init__ has no dataclass-typed `config` parameter; "
                     "give the class a `config_class` attribute")


def parse_widths(text: str) -> tuple[int, ...]:
    """``"256,256"`` -> ``(256, 256)``: hidden-layer widths written as text. Raises ValueError."""
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ValueError(f"expected widths such as 128,128, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"expected positive widths, got {text!r}")
    return widths


def parse_key_values(items: Sequence[str], what: str = "--set") -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; each value is read as JSON when it parses, else kept as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Bring a command-line value to the type of the field's default (int/float/bool/tuple)."""
    if isinstance(default, tuple):
        if isinstance(value, str):  # "64,64" on the command line
            parts = [p for p in value.replace(" ", "").split(",") if p]
            try:
                value = [json.loads(p) for p in parts]
            except json.JSONDecodeError:
                raise ValueError(f"config key {name!r} takes a list such as [64,64] or 64,64, got {value!r}") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {name!r} takes a list, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"config key {name!r} takes true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key {name!r} takes an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config key {name!r} takes a number, got {value!r}")
        return float(value)
    return value


def build_config(cls: type, overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None):
    """The agent's config: the class defaults, then ``base`` (e.g. a saved run's), then ``overrides``.

    Raises ValueError naming an unknown key (with the known ones) or a value the config refuses.
    """
    config_cls = config_class(cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = config_cls()
    values: dict[str, Any] = {}
    for source in (base or {}, overrides or {}):
        unknown = sorted(set(source) - set(fields))
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown} for {config_cls.__name__}; known keys: "
                             f"{', '.join(sorted(fields))}")
        for key, value in source.items():
            values[key] = _coerce(key, getattr(defaults, key), value)
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid {config_cls.__name__}: {exc}") from None


def reward_overrides(cls: type, overrides: Mapping[str, Any] | None, reward: Any) -> dict[str, Any]:
    """``overrides`` with the training reward for an agent whose config has a ``reward`` field (online agents).

    Offline agents learn from relabelled data and have no such field (``overrides`` is returned
    unchanged). A ``reward`` override that names other weights than ``reward`` is refused
    (ValueError): the reward is given once.
    """
    out = dict(overrides or {})
    if "reward" not in {f.name for f in dataclasses.fields(config_class(cls))}:
        return out
    if "reward" in out:
        from mtf_env.rewards import reward_weights

        if not np.array_equal(reward_weights(out["reward"]), reward_weights(reward)):
            raise ValueError(f"config override reward={out['reward']!r} conflicts with the training reward "
                             f"{reward!r}; give the reward once (--reward)")
    out["reward"] = reward
    return out
