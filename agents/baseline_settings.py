"""Every setting of the baselines that differs from its library's defaults, in one place.

Each baseline runs on a library (d3rlpy, stable-baselines3, scikit-learn, or the reference
code of the method's paper). Everything not listed here is that library's default. A
:class:`Setting` records our value, the library's default and why we changed it;
``tests/test_offline_baselines.py`` checks the recorded defaults against the installed
library, so the table cannot drift silently when a library is upgraded.

Sections: :data:`OFFLINE_SETTINGS` (offline methods on d3rlpy, ``agents/offline_d3rlpy.py``
and ``agents/uwac.py``) and :data:`ONLINE_SETTINGS` (``bo``, ``es``, ``sac-online``: ``agents/bo.py``,
``agents/es.py``, ``agents/sac_online.py``).

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


# --------------------------------------------------------------------------- online (bo, es, sac-online)
#: Online SAC (stable-baselines3 2.9.2 ``SAC``): discount, replay capacity, random warm-up steps
#: and the number of simulator sessions stepped together (``DummyVecEnv``).
SAC_ONLINE_GAMMA = OFFLINE_GAMMA
SAC_ONLINE_BUFFER_SIZE = 200_000
SAC_ONLINE_LEARNING_STARTS = 2_000
SAC_ONLINE_N_ENVS = 8
#: BO's Gaussian process (scikit-learn ``GaussianProcessRegressor``).
BO_KERNEL = "ConstantKernel * Matern(nu=2.5, one length scale per weight) + WhiteKernel"
BO_NORMALIZE_Y = True
BO_N_RESTARTS_OPTIMIZER = 1
#: ES (no library; the reference is OpenAI's evolution-strategies-starter, Salimans et al. 2017).
ES_SIGMA = 0.05
ES_OPTIMIZER = "sgd"
ES_L2_COEFF = 0.0

ONLINE_SETTINGS: dict[str, tuple[Setting, ...]] = {
    "sac-online": (
        Setting("gamma", SAC_ONLINE_GAMMA, 0.99, "the paper's discount per request, the same for every method"),
        Setting("buffer_size", SAC_ONLINE_BUFFER_SIZE, 1_000_000,
                "enough for the reduced budget (40,000 env steps) at a fifth of the memory; raise it with the budget"),
        Setting("learning_starts", SAC_ONLINE_LEARNING_STARTS, 100,
                "a few hundred random sessions before the first update, so the first minibatches are not all "
                "first requests"),
        Setting("n_envs", SAC_ONLINE_N_ENVS, 1,
                "8 sessions per vector step with one gradient step each: 8 transitions per gradient step, to fit "
                "the budget on a 2-core CPU (not an SAC argument; SB3's usual setup is one env)"),
    ),
    "bo": (
        Setting("kernel", BO_KERNEL, "ConstantKernel(1.0, fixed) * RBF(1.0, fixed)",
                "per-weight length scales (the 12 weights matter unequally) and a noise term: each round's return "
                "is a noisy Monte-Carlo estimate on fresh users"),
        Setting("normalize_y", BO_NORMALIZE_Y, False, "returns are far from zero mean and unit variance"),
        Setting("n_restarts_optimizer", BO_N_RESTARTS_OPTIMIZER, 0,
                "one restart of the 14 kernel hyperparameters' L-BFGS-B fit against local optima"),
    ),
    "es": (
        Setting("noise_stdev (sigma)", ES_SIGMA, 0.02,
                "larger steps in weight space, so that paired candidates differ measurably over a few hundred "
                "sessions (a judgement, not tuned)"),
        Setting("optimizer", ES_OPTIMIZER, "adam",
                "the plain natural-gradient step of NES on rank-shaped fitness (the paper's description)"),
        Setting("l2coeff", ES_L2_COEFF, 0.005, "the network is small; no weight decay"),
    ),
}
"""Online methods: the settings that differ from stable-baselines3's ``SAC``, scikit-learn's
``GaussianProcessRegressor`` and OpenAI's ES reference code. Everything else of SAC is SB3's default
(256-256 networks, Adam 3e-4, batch 256, tau 0.005, automatic entropy tuning)."""


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
    print("\n## Online baselines (stable-baselines3 2.9.2, scikit-learn, OpenAI ES reference)\n")
    print(markdown_table(ONLINE_SETTINGS))
