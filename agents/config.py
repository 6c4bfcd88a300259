"""The base of every agent and estimator config: ``from_dict`` and the shared field checks.

A config is a frozen dataclass deriving from :class:`ConfigBase`. ``from_dict`` is the inverse of
``dataclasses.asdict`` (how ``config.json`` and checkpoints store a config): an unknown key is
refused naming it. A field renamed in ``renamed_fields`` (old name -> new name) is still
accepted under its old name -- by ``from_dict``, as a constructor keyword and as an attribute --
with a ``DeprecationWarning``, so run directories and callers from before a rename keep working.
``__post_init__`` validates with the ``check_*`` helpers, whose errors name the class and field.

Hidden layer widths are named ``hidden`` (one network, or every network of the algorithm) or
``<network>_hidden`` (``actor_hidden``, ``critic_hidden``, ``vae_hidden``), tuples of positive ints.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping, TypeVar

T = TypeVar("T")


def _rename_old_keys(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the keys in ``cls.renamed_fields`` (old name -> new name) renamed, each with a
    ``DeprecationWarning``; both names at once raise ``ValueError``."""
    for old, new in getattr(cls, "renamed_fields", {}).items():
        if old in values:
            if new in values:
                raise ValueError(f"{cls.__name__} got both {old!r} and its new name {new!r}")
            warnings.warn(f"{cls.__name__} field {old!r} is deprecated; it is now {new!r}", DeprecationWarning,
                          stacklevel=4)
            values[new] = values.pop(old)
    return values


def config_from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
    """A config dataclass from its ``dataclasses.asdict``; unknown keys raise ``ValueError`` naming them.

    Keys in ``cls.renamed_fields`` (old name -> new name) are renamed first, with a ``DeprecationWarning``.
    """
    values = _rename_old_keys(cls, dict(values))
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}")
    return cls(**values)


class _ConfigMeta(type):
    """Accepts a renamed field's old name as a constructor keyword (see ``ConfigBase.renamed_fields``)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **_rename_old_keys(cls, kwargs))


@dataclass(frozen=True)
class ConfigBase(metaclass=_ConfigMeta):
    """Frozen-dataclass base of the configs: :meth:`from_dict`, :meth:`to_dict` and field checks."""

    #: Old field name -> current name, for configs stored (or code written) before a rename.
    renamed_fields: ClassVar[dict[str, str]] = {}

    def __getattr__(self, name: str) -> Any:  # only called for names that are not attributes
        new = type(self).renamed_fields.get(name)
        if new is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(f"{type(self).__name__}.{name} is deprecated; it is now {new!r}", DeprecationWarning,
                      stacklevel=2)
        return getattr(self, new)

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any]) -> T:
        """Inverse of ``dataclasses.asdict``; unknown keys raise ``ValueError`` naming them."""
        return config_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ checks for __post_init__
    def _fail(self, name: str, requirement: str) -> None:
        raise ValueError(f"{type(self).__name__}.{name} must be {requirement}, got {getattr(self, name)!r}")

    def check_positive_ints(self, *names: str, minimum: int = 1) -> None:
        """Each field is an integer ``>= minimum`` (an integral float such as ``5e2`` is stored as an int)."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or int(value) != value:
                self._fail(name, "an integer")
            if value < minimum:
                self._fail(name, "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
            object.__setattr__(self, name, int(value))

    def check_positive(self, *names: str) -> None:
        """Each field is a finite number ``> 0``."""
        for name in names:
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                self._fail(name, "> 0")

    def check_range(self, name: str, low: float, high: float, *, low_open: bool = False,
                    high_open: bool = False) -> None:
        """The field lies in the interval from ``low`` to ``high`` (closed unless ``*_open``)."""
        value = getattr(self, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok:
            self._fail(name, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")

    def check_widths(self, *names: str) -> None:
        """Each field is a non-empty sequence of positive layer widths; stored as a tuple of ints."""
        for name in names:
            value = getattr(self, name)
            try:
                sizes = tuple(int(h) for h in value)
            except (TypeError, ValueError):
                sizes = ()
            if not sizes or min(sizes) < 1:
                self._fail(name, "non-empty positive widths")
            object.__setattr__(self, name, sizes)  # lists from JSON become tuples
