"""Every setting of the baselines that differs from its library's defaults, in one place.

Each baseline runs on a library (d3rlpy, stable-baselines3, scikit-learn, or the reference
code of the method's paper). Everything not listed here is that library's default. A
:class:`Setting` records our value, the library's default and why we changed it;
``tests/test_offline_baselines.py`` checks the recorded defaults against the installed
library, so the table cannot drift silently when a library is upgraded.

Sections: :data:`OFFLINE_SETTINGS` (offline methods on d3rlpy, ``agents/offline_d3rlpy.py``
and ``agents/uwac.py``). Online baselines (BO, ES, SAC-online) add their own section below.

Render the tables with ``python -m agents.baseline_settings`` (Markdown).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One setting that differs from (or is not defined by) the library."""

    name: str
    """Parameter name, as the library spells it (``gamma``, ``batch_size``, ...)."""
    value: Any
    """Our value."""
    library_default: Any
    """The library's default (for methods without a library: the reference code's default)."""
    reason: str
    """Why we differ."""


def values(settings: tuple[Setting, ...]) -> dict[str, Any]:
    """``{name: value}`` of a section."""
    return {s.name: s.value for s in settings}


# --------------------------------------------------------------------------- offline (d3rlpy 2.8.1)
#: Discount per request, the paper's, shared by every offline method (and BatchRL-MTF).
OFFLINE_GAMMA = 0.95
#: Transitions per minibatch, the paper's (BatchRL-MTF trains with 256).
OFFLINE_BATCH_SIZE = 256
#: Hidden widths of every actor, critic, value and imitation network: BCQ's (and
#: BatchRL-MTF's) 400-300, so that all offline methods have networks of the same size.
OFFLINE_HIDDEN_UNITS = (400, 300)

_GAMMA = Setting("gamma", OFFLINE_GAMMA, 0.99, "the paper's discount per request, the same for every method")
_HIDDEN = Setting(
    "encoder_factory.hidden_units", OFFLINE_HIDDEN_UNITS, (256, 256),
    "BCQ's / BatchRL-MTF's 400-300 for every network, so the methods differ in the algorithm only",
)

#: Settings of the UWAC-specific fields of :class:`agents.uwac.UWACTD3Config`; the "library"
#: is Wu et al.'s reference code (github.com/apple/ml-uwac, ``rlkit/torch/sac/uwac_dropout.py``
#: and ``examples/UWAC_hdf5_d4rl.py``), whose defaults the config fields carry. Two
#: implementation differences from that code (weight times the squared TD error, as in the
#: paper; full weight for terminal transitions) are not settings: see ``agents/uwac.py``.
UWAC_N_DROPOUT_SAMPLES = 10
UWAC_WEIGHT_FORM = "inverse"

OFFLINE_SETTINGS: dict[str, tuple[Setting, ...]] = {
    "td3": (_GAMMA, _HIDDEN),
    "uwac-td3": (
        _GAMMA, _HIDDEN,
        Setting(
            "weight_form", UWAC_WEIGHT_FORM, "exp",
            "the paper's weight clip(beta / Var, 0, max_weight) (its Eq. 5); the code defaults to clip(exp(-beta Var))",
        ),
        Setting(
            "n_dropout_samples", UWAC_N_DROPOUT_SAMPLES, 100,
            "Monte-Carlo dropout passes per variance estimate; 100 costs ~10x more critic passes than 10 "
            "on our 2-core CPU budget (the variance is only used through a clipped weight)",
        ),
    ),
    "cql-sac": (_GAMMA, _HIDDEN),
    "bc": (
        _GAMMA,  # unused by BC; set for uniformity of the recorded configs
        Setting("batch_size", OFFLINE_BATCH_SIZE, 100, "the paper's minibatch size, as for every offline method"),
        _HIDDEN,
    ),
    "td3-bc": (_GAMMA, _HIDDEN),
    "iql": (_GAMMA, _HIDDEN),
}
"""Per offline method: the d3rlpy config settings we change. ``encoder_factory.hidden_units``
applies to every encoder factory of the algorithm's config (actor, critic, value, imitator).
Everything else is d3rlpy's default for that algorithm (e.g. ``batch_size=256``, the paper's
value, for all but BC; CQL's ``conservative_weight=5``,
IQL's ``expectile=0.7``, TD3+BC's ``alpha=2.5``; no observation, action or reward scaler)."""


def markdown_table(section: dict[str, tuple[Setting, ...]]) -> str:
    """The section as a Markdown table (method, setting, ours, library default, why)."""
    lines = ["| method | setting | ours | library default | why |", "|---|---|---|---|---|"]
    for method, settings in section.items():
        for s in settings:
            lines.append(f"| `{method}` | `{s.name}` | {s.value!r} | {s.library_default!r} | {s.reason} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print("## Offline baselines (d3rlpy 2.8.1)\n")
    print(markdown_table(OFFLINE_SETTINGS))
