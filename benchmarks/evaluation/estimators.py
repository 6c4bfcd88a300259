"""Off-policy estimators behind one interface: fit on a dataset's test split, estimate any policy.

An estimator is used in two steps (:class:`OPEContext` holds what they share)::

    split = load_test_split("datasets/small", n_initial=5000, seed=0)
    ctx = OPEContext(split, EstimatorSettings(), seed=0)   # the "fit on the test split" part
    ctx.estimate("snpdis", policy, key="static:production")  # -> value, lower, support diagnostics

Every estimate is a dict with ``value``, ``lower`` (a lower confidence bound, or None where the
estimator has none), ``ci_low`` / ``ci_high`` (its two-sided interval), ``support`` (the
policy's diagnostics, :meth:`OPEContext.support`), ``supported`` (the rule of
:data:`SUPPORT_RULES` for this estimator), ``fit_s`` and estimator-specific extras.

Estimators (:data:`ESTIMATORS`; which parts are ours and which a library's: README "Off-policy
estimators"):

==================  ================================================================================
``fqe``             plain FQE (:class:`agents.ope.ConservativeFQE`, alpha_c = 0); lower = the
                    state-bootstrap interval's low end (it reflects only the initial states drawn).
``conservative-fqe`` the Conservative-OPEstimator (CQL-regularised FQE, ``alpha_c``); alias
                    ``conservative``; lower as ``fqe``.
``d3rlpy-fqe``      d3rlpy's FQE (outside reference); lower as ``fqe``.
``bootstrap-fqe``   :class:`agents.ope.BootstrapFQE`: FQE members on resampled sessions;
                    lower = one-sided normal bound over the members.
``model-based``     :class:`agents.ope_model.ModelBasedOPE`: a learned one-step model (fitted once
                    per dataset) rolled out under the policy; no lower bound.
``tis`` ``sntis``   trajectory-wise IS and its self-normalised form (:mod:`agents.ope_is`);
``pdis`` ``snpdis`` per-decision IS and its self-normalised form;
``dr`` ``sndr``     doubly robust with the ``fqe`` fit of the same policy as Q-model.
                    IS-family lower = the low end of a percentile bootstrap over sessions.
==================  ================================================================================

Deterministic policies are kernel-smoothed on the action (Gaussian, bandwidth
``bandwidth_scale`` times Silverman's rule on the split's logged actions,
:func:`agents.ope_is.silverman_bandwidth`); a policy with ``stochastic = True`` must also have
``log_prob(obs, actions) -> (N,)`` (nats) and is weighted by its own density. The behaviour
density is the stored ``behaviour_log_prob``.

Support (:meth:`OPEContext.support`, :data:`SUPPORT_RULES`): every estimate carries the
policy's effective sample sizes (Kish) of the kernel importance weights (first step and whole
session) and its OOD distance (mean distance of its actions on the test states to the nearest
logged action, :func:`benchmarks.evaluation.policy_zoo.ood_distance`) with the dataset's
threshold. An estimate is labelled *unsupported* when the evidence it rests on is missing:

- IS family: fewer than :data:`MIN_ESS` effective sessions in its weights (``ess_trajectory``
  for ``tis``/``sntis``, ``ess_first_step`` for the per-decision forms and DR);
- FQE family and model-based: an OOD distance above the threshold (the policy's typical action
  lies further from the logged actions than 95% of the logged actions lie from each other), where
  their Q-function or model extrapolates.

:func:`run_ope` estimates several policy specs and writes a JSON file and a Markdown table.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mtf_env.files import write_json

#: Minimum effective number of sessions behind an IS-family estimate (below: unsupported). The
#: usual rule of thumb for a mean to be roughly normal; fixed before any validation run.
MIN_ESS = 30.0
#: Old name -> estimator name.
ESTIMATOR_ALIASES: dict[str, str] = {"conservative": "conservative-fqe"}
#: Estimator name -> which support rule labels it (see the module docstring).
SUPPORT_RULES: dict[str, str] = {
    "fqe": "ood", "conservative-fqe": "ood", "d3rlpy-fqe": "ood", "bootstrap-fqe": "ood", "model-based": "ood",
    "tis": "ess_trajectory", "sntis": "ess_trajectory", "pdis": "ess_first_step", "snpdis": "ess_first_step",
    "dr": "ess_first_step", "sndr": "ess_first_step",
}
#: Every estimator name (aliases excluded).
ESTIMATORS: tuple[str, ...] = tuple(SUPPORT_RULES)
#: IS-family estimator names (computed together from one set of weights).
IS_FAMILY: tuple[str, ...] = ("tis", "sntis", "pdis", "snpdis", "dr", "sndr")


def canonical_estimator(name: str) -> str:
    """The estimator's name (aliases resolved); ValueError naming the choices for an unknown one."""
    name = ESTIMATOR_ALIASES.get(name, name)
    if name not in SUPPORT_RULES:
        raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)} "
                         f"(or {', '.join(ESTIMATOR_ALIASES)})")
    return name


@dataclass(frozen=True)
class TestSplit:
    """A dataset's test split prepared for the estimator.

    data: TransitionArrays of the split (rewards relabelled with ``reward``);
    initial_observations: (n, obs_dim) float32 session-start states the value averages over;
    initial_user_ids: (n,) int64 their users (a fresh session of user ``u`` starts in exactly the
    logged state, so :func:`benchmarks.evaluation.true_value.true_value` on these ids evaluates the same states);
    dataset: the loaded :class:`mtf_env.dataset.Dataset`.
    """

    data: Any
    initial_observations: np.ndarray
    initial_user_ids: np.ndarray
    dataset: Any


def load_test_split(data_dir: str | Path, n_initial: int, seed: int, reward: Any = "default",
                    split: str = "test") -> TestSplit:
    """Load ``split`` of the dataset in ``data_dir`` and draw ``n_initial`` initial states.

    The states are the first requests of ``min(n_initial, n_sessions)`` sessions drawn without
    replacement with ``default_rng(seed)`` (all sessions when there are no more than
    ``n_initial``), in session order. Raises ValueError (``DatasetError``) for a missing or
    invalid dataset.
    """
    from mtf_env.dataset import load_dataset

    if not isinstance(n_initial, (int, np.integer)) or n_initial < 1:
        raise ValueError(f"the number of initial states must be a positive integer, got {n_initial!r}")
    path = Path(data_dir)
    if not path.is_dir():
        raise ValueError(f"dataset directory {path} does not exist (collect one with `mtf-bench collect`)")
    dataset = load_dataset(path, reward=reward, split=split)
    data = dataset.transitions()
    starts = np.flatnonzero(np.asarray(data.episode_starts, dtype=bool))
    user_ids = np.asarray(dataset.initial_user_ids, dtype=np.int64)
    if len(starts) != len(user_ids):
        raise ValueError(f"{path}: {len(starts)} session starts in the requests but {len(user_ids)} sessions")
    sessions = np.arange(len(starts))
    if n_initial < len(starts):
        sessions = np.sort(np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E55])).choice(
            len(starts), size=int(n_initial), replace=False))
    return TestSplit(data=data, initial_observations=np.asarray(data.observations[starts[sessions]], np.float32),
                     initial_user_ids=user_ids[sessions], dataset=dataset)


def make_estimator(kind: str, config, seed: int):
    """A fresh FQE-type estimator: ``conservative`` (:class:`~agents.ope.ConservativeFQE`, any alpha_c) or
    ``d3rlpy-fqe`` (:class:`~agents.ope.D3rlpyFQE`, alpha_c must be 0)."""
    from agents.ope import ConservativeFQE, D3rlpyFQE

    if kind == "conservative":
        return ConservativeFQE(config, seed=seed)
    if kind == "d3rlpy-fqe":
        return D3rlpyFQE(config, seed=seed)
    raise ValueError(f"unknown FQE kind {kind!r}; choose conservative or d3rlpy-fqe")


def fit_and_estimate(kind: str, config, seed: int, data, initial_observations: np.ndarray, policy,
                     show_progress: bool = False, keep: bool = False) -> dict[str, Any]:
    """Fit one FQE-type estimator (:func:`make_estimator`) on ``data`` for ``policy`` and estimate V(pi_e).

    Returns the estimate's summary (``value``, ``ci_low``, ``ci_high``, ``ci_level``,
    ``std_error``, ``n_states``, ``n_bootstrap``; no per-state values) plus ``fit_s`` (wall
    seconds of fit + estimate) and the estimator's ``fit_stats``; with ``keep`` also
    ``estimator`` (the fitted object).
    """
    t0 = time.perf_counter()
    est = make_estimator(kind, config, seed)
    est.fit(data, policy, show_progress=show_progress)
    summary = est.estimate(initial_observations, policy)
    out = {k: v for k, v in summary.items() if k != "per_state_values"}
    out["fit_s"] = time.perf_counter() - t0
    out["fit_stats"] = dict(est.fit_stats)
    if keep:
        out["estimator"] = est
    return out


@dataclass(frozen=True)
class EstimatorSettings:
    """Settings of every estimator of :class:`OPEContext` (defaults: the validation harness's budget)."""

    fqe: Any = None
    """:class:`agents.ope.ConservativeFQEConfig` of the FQE family (None: its defaults); its ``alpha_c``
    is the conservative estimator's (plain FQE, d3rlpy and bootstrap FQE use 0)."""
    n_members: int = 5
    """Members of bootstrap FQE."""
    lower_level: float = 0.95
    """One-sided level of bootstrap FQE's lower bound."""
    model: Any = None
    """:class:`agents.ope_model.ModelBasedConfig` (None: its defaults with the FQE's gamma)."""
    bandwidth_scale: float = 1.0
    """Kernel bandwidth = this times Silverman's rule on the logged actions."""
    clip: float | None = None
    """Per-step importance ratio cap (None: no clip)."""
    n_bootstrap_sessions: int = 200
    """Bootstrap resamples of the sessions for the IS family's intervals."""
    ci_level: float = 0.95
    """Two-sided level of the IS family's intervals."""

    def __post_init__(self) -> None:
        from agents.ope import ConservativeFQEConfig
        from agents.ope_model import ModelBasedConfig

        if self.fqe is None:
            object.__setattr__(self, "fqe", ConservativeFQEConfig())
        if self.model is None:
            object.__setattr__(self, "model", ModelBasedConfig(gamma=self.fqe.gamma))
        if not isinstance(self.n_members, (int, np.integer)) or self.n_members < 2:
            raise ValueError(f"n_members must be an integer >= 2, got {self.n_members!r}")
        if not self.bandwidth_scale > 0:
            raise ValueError(f"bandwidth_scale must be > 0, got {self.bandwidth_scale}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {self.clip}")
        if not isinstance(self.n_bootstrap_sessions, (int, np.integer)) or self.n_bootstrap_sessions < 1:
            raise ValueError(f"n_bootstrap_sessions must be a positive integer, got {self.n_bootstrap_sessions!r}")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["fqe"], out["model"] = self.fqe.to_dict(), self.model.to_dict()
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}


def policy_log_ratios(policy, observations: np.ndarray, actions: np.ndarray, behaviour_log_prob: np.ndarray,
                      bandwidth: float, chunk: int = 65536) -> np.ndarray:
    """``log pi_e(a | s) - log pi_b(a | s)`` per logged row (N,).

    A deterministic policy is smoothed with a Gaussian kernel of ``bandwidth`` around ``pi_e(s)``;
    a stochastic one (``stochastic = True``) must provide ``log_prob(obs, actions) -> (N,)`` nats.
    """
    from agents.ope import policy_actions
    from agents.ope_is import gaussian_kernel_log_density

    if getattr(policy, "stochastic", False):
        log_prob = getattr(policy, "log_prob", None)
        if log_prob is None:
            raise ValueError("a stochastic policy needs log_prob(obs, actions) for importance sampling")
        log_pe = np.asarray(log_prob(observations, actions), dtype=np.float64).reshape(-1)
    else:
        target = policy_actions(policy, observations, actions.shape[1], chunk, "pi_e(s) [IS]")
        log_pe = gaussian_kernel_log_density(target, actions, bandwidth)
    return log_pe - np.asarray(behaviour_log_prob, dtype=np.float64).reshape(-1)


class OPEContext:
    """Everything the estimators share on one test split: the split, settings, seed and caches.

    ``estimate(name, policy, key)`` runs estimator ``name`` (:data:`ESTIMATORS`) for ``policy``;
    ``key`` identifies the policy for the caches (the FQE fit that DR reuses, the IS weights,
    the support diagnostics), so it must differ between different policies.
    """

    def __init__(self, split: TestSplit, settings: EstimatorSettings | None = None, seed: int = 0):
        self.split = split
        self.settings = settings if settings is not None else EstimatorSettings()
        self.seed = int(seed)
        data = split.data
        self.behaviour_log_prob = np.asarray(split.dataset.column("behaviour_log_prob"), dtype=np.float64)
        if self.behaviour_log_prob.shape != (len(data),):
            raise ValueError(f"behaviour_log_prob has {self.behaviour_log_prob.shape} rows for {len(data)} transitions")
        from agents.ope_is import silverman_bandwidth

        self.silverman = silverman_bandwidth(data.actions)
        self._model = None
        self._cache: dict[tuple, Any] = {}
        self._ood_threshold: float | None = None

    @property
    def bandwidth(self) -> float:
        return self.settings.bandwidth_scale * self.silverman

    @property
    def ood_threshold(self) -> float:
        from benchmarks.evaluation.policy_zoo import ood_threshold

        if self._ood_threshold is None:
            self._ood_threshold = ood_threshold(self.split.data.actions, seed=self.seed)
        return self._ood_threshold

    # -- shared pieces --------------------------------------------------------------------------

    def fqe(self, policy, key: str, alpha_c: float = 0.0, kind: str = "conservative") -> dict[str, Any]:
        """The FQE-type fit for ``policy`` (cached per key, alpha_c and kind), with the fitted ``estimator``."""
        cache_key = ("fqe", kind, float(alpha_c), key)
        if cache_key not in self._cache:
            config = dataclasses.replace(self.settings.fqe, alpha_c=float(alpha_c))
            self._cache[cache_key] = fit_and_estimate(kind, config, self.seed, self.split.data,
                                                      self.split.initial_observations, policy, keep=True)
        return self._cache[cache_key]

    def model(self):
        """The model-based estimator, fitted once on the split."""
        from agents.ope_model import ModelBasedOPE

        if self._model is None:
            t0 = time.perf_counter()
            self._model = ModelBasedOPE(self.settings.model, seed=self.seed)
            self._model.fit(self.split.data)
            self._model.fit_stats["fit_s"] = time.perf_counter() - t0
        return self._model

    def log_ratios(self, policy, key: str, bandwidth_scale: float | None = None) -> np.ndarray:
        scale = self.settings.bandwidth_scale if bandwidth_scale is None else bandwidth_scale
        cache_key = ("log_ratios", key, float(scale))
        if cache_key not in self._cache:
            data = self.split.data
            self._cache[cache_key] = policy_log_ratios(policy, data.observations, data.actions,
                                                       self.behaviour_log_prob, scale * self.silverman)
        return self._cache[cache_key]

    def is_family(self, policy, key: str, with_dr: bool = True, bandwidth_scale: float | None = None,
                  clip: float | None | str = "settings", n_bootstrap: int | None = None) -> dict[str, Any]:
        """:func:`agents.ope_is.is_estimates` for ``policy`` (DR with the plain ``fqe`` fit as Q-model)."""
        from agents.ope import policy_actions
        from agents.ope_is import is_estimates

        clip = self.settings.clip if clip == "settings" else clip
        n_boot = self.settings.n_bootstrap_sessions if n_bootstrap is None else n_bootstrap
        cache_key = ("is", key, with_dr, bandwidth_scale, clip, n_boot)
        if cache_key in self._cache:
            return self._cache[cache_key]
        data = self.split.data
        kw: dict[str, Any] = {}
        if with_dr:
            est = self.fqe(policy, key)["estimator"]
            a_dim, chunk = data.action_dim, est.config.policy_batch_size
            s0 = data.observations[np.asarray(data.episode_starts, bool)]
            kw = {"q_logged": est.q_values(data.observations, data.actions),
                  "v_next": est.q_values(data.next_observations, policy_actions(policy, data.next_observations, a_dim,
                                                                                 chunk, "pi_e(s') [DR]")),
                  "v_initial": est.q_values(s0, policy_actions(policy, s0, a_dim, chunk, "pi_e(s0) [DR]"))}
        out = is_estimates(data.episode_starts, data.rewards, self.log_ratios(policy, key, bandwidth_scale),
                           self.settings.fqe.gamma, clip=clip, n_bootstrap=n_boot, level=self.settings.ci_level,
                           seed=self.seed, **kw)
        out["bandwidth"] = (self.settings.bandwidth_scale if bandwidth_scale is None else bandwidth_scale) * self.silverman
        self._cache[cache_key] = out
        return out

    def support(self, policy, key: str) -> dict[str, Any]:
        """The policy's support diagnostics (cached): ESS of the unclipped kernel weights at the
        settings' bandwidth (first step, whole session, as counts and shares of the sessions),
        the OOD distance and its threshold."""
        from benchmarks.evaluation.policy_zoo import ood_distance

        cache_key = ("support", key)
        if cache_key not in self._cache:
            w = self.is_family(policy, key, with_dr=False, clip=None, n_bootstrap=0)
            data = self.split.data
            dist = ood_distance(policy, data.observations, data.actions, seed=self.seed)
            n = w["n_sessions"]
            self._cache[cache_key] = {
                "ess_first_step": w["ess_first_step"], "ess_trajectory": w["ess_trajectory"],
                "ess_first_step_share": w["ess_first_step"] / n, "ess_trajectory_share": w["ess_trajectory"] / n,
                "n_sessions": n, "bandwidth": w["bandwidth"], "ood_distance": dist,
                "ood_threshold": self.ood_threshold, "min_ess": MIN_ESS,
            }
        return self._cache[cache_key]

    def is_supported(self, name: str, support: dict[str, Any]) -> bool:
        """The label of :data:`SUPPORT_RULES` for estimator ``name`` given a policy's ``support``."""
        rule = SUPPORT_RULES[canonical_estimator(name)]
        if rule == "ood":
            return bool(support["ood_distance"] <= support["ood_threshold"])
        return bool(support[rule] >= MIN_ESS)

    # -- the interface --------------------------------------------------------------------------

    def estimate(self, name: str, policy, key: str, alpha_c: float | None = None) -> dict[str, Any]:
        """Estimator ``name``'s estimate of ``policy`` (see the module docstring for the fields).

        alpha_c: the conservative estimator's CQL weight (None: the settings' ``fqe.alpha_c``).
        """
        name = canonical_estimator(name)
        t0 = time.perf_counter()
        lower: float | None
        extra: dict[str, Any] = {}
        if name in ("fqe", "conservative-fqe", "d3rlpy-fqe"):
            kind = "d3rlpy-fqe" if name == "d3rlpy-fqe" else "conservative"
            alpha = 0.0 if name != "conservative-fqe" else (self.settings.fqe.alpha_c if alpha_c is None else alpha_c)
            fit = self.fqe(policy, key, alpha, kind)
            value, ci_low, ci_high = fit["value"], fit["ci_low"], fit["ci_high"]
            lower = ci_low
            extra = {"alpha_c": alpha, "fit_stats": fit["fit_stats"], "ci_level": fit["ci_level"],
                     "n_states": fit["n_states"], "std_error": fit["std_error"]}
        elif name == "bootstrap-fqe":
            from agents.ope import BootstrapFQE

            est = BootstrapFQE(dataclasses.replace(self.settings.fqe, alpha_c=0.0), seed=self.seed,
                               n_members=self.settings.n_members, level=self.settings.lower_level)
            est.fit(self.split.data, policy)
            out = est.estimate(self.split.initial_observations, policy)
            value, ci_low, ci_high, lower = out["value"], out["ci_low"], out["ci_high"], out["lower"]
            extra = {"member_values": out["member_values"], "member_std": out["member_std"],
                     "lower_level": out["lower_level"], "fit_stats": est.fit_stats, "ci_level": out["ci_level"],
                     "n_states": out["n_states"]}
        elif name == "model-based":
            model = self.model()
            out = model.estimate(self.split.initial_observations, policy)
            value, ci_low, ci_high, lower = out["value"], out["ci_low"], out["ci_high"], None
            extra = {"horizon": model.horizon, "model_fit_s": model.fit_stats["fit_s"], "ci_level": out["ci_level"],
                     "n_states": out["n_states"]}
        else:  # the IS family
            out = self.is_family(policy, key, with_dr=name in ("dr", "sndr"))
            value = out[name]
            ci_low, ci_high = out["ci"][name]
            lower = ci_low
            extra = {"bandwidth": out["bandwidth"], "clip": out["clip"], "clipped_share": out["clipped_share"],
                     "ci_level": self.settings.ci_level, "n_sessions": out["n_sessions"]}
        support = self.support(policy, key)
        return {"estimator": name, "value": float(value), "lower": None if lower is None else float(lower),
                "ci_low": float(ci_low), "ci_high": float(ci_high), "support": support,
                "supported": self.is_supported(name, support), "fit_s": time.perf_counter() - t0, **extra}


def run_ope(policies: Sequence[str], data_dir: str | Path, config, seed: int, out: str | Path,
            estimator: str = "conservative", n_initial: int | None = None, reward: Any = "default",
            show_progress: bool = True, settings: EstimatorSettings | None = None) -> dict[str, Any]:
    """Estimate every policy spec in ``policies`` with ``estimator``; write ``out`` (JSON) and ``out`` with ``.md``.

    config: the FQE family's :class:`agents.ope.ConservativeFQEConfig` (also in ``settings``, which
    it replaces there). Every spec is resolved and the dataset loaded before the first fit, so a
    bad input fails fast. Returns the result dict that was written.
    """
    from tqdm.auto import tqdm

    from agents.registry import load_policy

    if not policies:
        raise ValueError("give at least one --policy")
    try:
        name = canonical_estimator(estimator)
    except ValueError as exc:
        raise ValueError(f"--estimator: {exc}") from None
    if name == "d3rlpy-fqe" and config.alpha_c != 0.0:
        raise ValueError("d3rlpy-fqe is plain FQE: use --alpha-c 0")
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise ValueError(f"--out must name a .json file, got {out}")
    if out.exists() and out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name ending in .json")
    resolved = []
    for spec in policies:
        try:
            resolved.append((spec, load_policy(spec, seed=seed)))
        except ValueError as exc:
            raise ValueError(f"--policy {spec!r}: {exc}") from None
    split = load_test_split(data_dir, n_initial if n_initial is not None else config.n_initial_states, seed, reward)
    settings = dataclasses.replace(settings if settings is not None else EstimatorSettings(), fqe=config)
    ctx = OPEContext(split, settings, seed)
    rows = []
    bar = tqdm(resolved, desc=f"ope/{name}", unit="policy", disable=not show_progress)
    for spec, policy in bar:
        bar.set_postfix_str(spec[-40:])
        est = ctx.estimate(name, policy, key=spec)
        rows.append({"policy": spec, "stochastic": bool(getattr(policy, "stochastic", False)), **est})
    result = {
        "command": "mtf-bench ope",
        "estimator": name,
        "seed": int(seed),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()},
        "settings": settings.to_dict(),
        "dataset": {"path": str(data_dir), "split": "test", "reward": reward,
                    "n_transitions": len(split.data), "n_sessions": int(split.dataset.n_sessions),
                    "n_initial_states": int(len(split.initial_observations)),
                    "silverman_bandwidth": ctx.silverman},
        "results": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    out.with_suffix(".md").write_text(markdown_table(result))
    return result


def _fmt(x: Any, fmt: str = ".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown_table(result: dict[str, Any]) -> str:
    """The results of :func:`run_ope` as a Markdown table (value, interval, lower bound, support)."""
    cfg = result["config"]
    level = result["results"][0]["ci_level"] if result["results"] else cfg["ci_level"]
    lines = [
        f"Off-policy estimate ({result['estimator']}; FQE family: alpha_c = {cfg['alpha_c']:g}, K = {cfg['n_steps']}, "
        f"lr = {cfg['learning_rate']:g}, m = {cfg['batch_size']}, hidden = {cfg['hidden']}) on "
        f"{result['dataset']['path']} (test split, {result['dataset']['n_transitions']} transitions, "
        f"{result['dataset']['n_initial_states']} initial states), seed {result['seed']}",
        "",
        f"| policy | V(pi_e) | {100 * level:g}% CI | lower bound | ESS first step | ESS session | OOD dist "
        f"(threshold) | supported | fit s |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in result["results"]:
        sup = r["support"]
        lines.append(f"| {r['policy']} | {r['value']:.4f} | [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | "
                     f"{_fmt(r['lower'])} | {sup['ess_first_step']:.1f} | {sup['ess_trajectory']:.1f} | "
                     f"{sup['ood_distance']:.3f} ({sup['ood_threshold']:.3f}) | {'yes' if r['supported'] else 'NO'} | "
                     f"{r['fit_s']:.1f} |")
    return "\n".join(lines) + "\n"
