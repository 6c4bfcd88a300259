"""Conservative-OPEstimator: fitted Q evaluation (FQE) with a CQL regulariser.

The paper's offline estimator (Zhang et al. 2022, Sec. "Conservative-OPEstimator") fits the
Q-function of the evaluated policy ``pi_e`` on logged transitions by iterating

    Q_{k+1} <- argmin_Q  alpha_c * (E_{s~D, a~pi_e(s)} Q(s, a) - E_{(s,a)~D} Q(s, a))
                         + 1/2 * E_{(s,a,r,s')~D} [(Q(s, a) - (r + gamma * not_done * Q_k(s', pi_e(s'))))^2]

and reports ``V(pi_e) = mean over n initial states s0 of Q(s0, pi_e(s0))``. ``alpha_c = 0`` is
plain FQE (Le et al. 2019). The regulariser pushes Q down at the evaluated policy's actions
and up at the logged actions, so where ``pi_e`` leaves the data the estimate is lowered
(a pessimistic estimate) instead of extrapolated.

How the K iterations are run (as d3rlpy's ``FQE`` does, ``d3rlpy/ope/torch/fqe_impl.py``):
the ``argmin`` is approximated by Adam steps on mini-batches of ``m`` transitions, and the
frozen previous iterate ``Q_k`` is a target network hard-copied from the online network
every ``target_update_every`` gradient steps. ``n_steps`` (the paper's ``K``) is the number
of gradient steps, so the number of Bellman backups is ``n_steps / target_update_every``.

The policy is evaluated once, before training: ``pi_e(s)`` for every logged ``s`` and
``pi_e(s')`` for every bootstrapping ``s'`` are computed up front (in chunks of
``policy_batch_size`` rows) and stored, so a gradient step never calls the policy. This
needs a memoryless policy (``act`` depends on the observation only; ``reset`` is never
called), which is what the session MDP's observation is designed for.

The estimate's bias under ``alpha_c > 0``: the regulariser is linear in Q, so where
``pi_e``'s actions lie away from the logged ones nothing bounds Q(s, pi_e(s)) from below
and Adam lowers it at a rate set mostly by the learning rate (Adam normalises the gradient
size), not by ``alpha_c``; the estimate for an out-of-distribution policy therefore keeps
falling with ``n_steps``. This is the estimator as the paper states it (its Table 1 values
for TD3 and UWAC+TD3, -648 and -297, are of that kind); read such values as "off the
data", not as a value.

Also here: :class:`D3rlpyFQE`, d3rlpy's own FQE run on the same data and policy, as an
outside reference with the same ``fit`` / ``estimate`` interface.
"""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch import nn

from agents.checkpoint import (CHECKPOINT_NAME, CheckpointError, check_checkpoint, load_checkpoint, load_module_state,
                               save_checkpoint)
from agents.config import ConfigBase
from agents.data import check_transitions, sample_batch_indices
from agents.run_dir import CONFIG_NAME, METRICS_NAME, MetricsLogger
from agents.seeding import global_rng_scope, torch_rng_scope
from agents.training_loop import FitResult, fit_loop
from agents.d3rlpy_adapter import continuing_rows, to_d3rlpy_dataset
from mtf_env.policy import Policy, check_obs_batch
from mtf_env.files import write_json
from mtf_env.transitions import TransitionArrays

#: Added to the per-feature standard deviation when standardising observations (as d3rlpy's
#: ``StandardObservationScaler``), so constant features do not divide by zero.
OBS_STD_EPS = 1e-3
#: Tolerance on the action box: a policy action outside [-1 - tol, 1 + tol] is refused.
ACTION_BOUND_TOL = 1e-4
#: Format tag of a :class:`ConservativeFQE` checkpoint.
CHECKPOINT_FORMAT = "conservative_fqe/v1"


@dataclass(frozen=True)
class ConservativeFQEConfig(ConfigBase):
    """Settings of the Conservative-OPEstimator (defaults: the paper's values where it gives them)."""

    batch_size: int = 512
    """m, transitions per gradient step (paper: m = 512)."""
    n_initial_states: int = 5000
    """n, initial states averaged for V(pi_e) (paper: n = 5000); used by :func:`select_initial_observations`."""
    gamma: float = 0.95
    """Discount factor (paper: 0.95, the same as the agents)."""
    alpha_c: float = 0.5e-3
    """Weight of the CQL regulariser (paper: alpha_c = 0.5e-3); 0 gives plain FQE."""
    n_steps: int = 5000
    """K, gradient steps of the FQE iteration (paper: K = 5000); one step = one mini-batch of m."""
    learning_rate: float = 1e-4
    """Adam learning rate of the Q-network (paper: 1e-4)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the Q-network MLP, ReLU (our choice; d3rlpy's default encoder)."""
    target_update_every: int = 100
    """Gradient steps between hard copies of the Q-network into the frozen target Q_k (d3rlpy
    FQE's ``target_update_interval``, default 100); n_steps / target_update_every backups."""
    n_policy_action_samples: int = 1
    """Draws of pi_e(s) per state for a stochastic policy (``policy.stochastic = True``): E_{a~pi_e}
    is the mean over the draws, precomputed up front. A deterministic policy is drawn once."""
    normalize_observations: bool = True
    """Standardise Q-network inputs with the data's per-feature mean and std (our choice;
    simulator features have different units). Stored with the weights."""
    policy_batch_size: int = 65536
    """Rows per ``policy.act`` call in the up-front evaluation of pi_e (bounds the policy's memory)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples of the initial states for the confidence interval of V(pi_e)."""
    ci_level: float = 0.95
    """Two-sided level of the percentile bootstrap interval."""
    log_every: int = 100
    """Gradient steps per row of metrics.csv (metrics are averaged over the window)."""

    renamed_fields: ClassVar[dict[str, str]] = {"hidden_sizes": "hidden"}

    def __post_init__(self) -> None:
        self.check_positive_ints("batch_size", "n_initial_states", "n_steps", "target_update_every",
                                 "n_policy_action_samples", "policy_batch_size", "n_bootstrap", "log_every")
        self.check_range("gamma", 0.0, 1.0, high_open=True)
        self.check_range("alpha_c", 0.0, float("inf"))
        self.check_positive("learning_rate")
        self.check_range("ci_level", 0.0, 1.0, low_open=True, high_open=True)
        self.check_widths("hidden")


# ----------------------------------------------------------------------------------------
# policy evaluation helpers


def check_initial_observations(initial_observations: np.ndarray, obs_dim: int) -> np.ndarray:
    """The ``(n, obs_dim)`` initial observations an estimate starts from, checked (shape, dtype) and non-empty."""
    obs = check_obs_batch(initial_observations, obs_dim)
    if len(obs) == 0:
        raise ValueError("initial_observations is empty")
    return obs


def policy_actions(policy: Policy, obs: np.ndarray, action_dim: int, chunk: int, what: str) -> np.ndarray:
    """``policy.act`` over ``obs`` (N, obs_dim) in chunks of ``chunk`` rows -> (N, action_dim) float32.

    Raises ValueError naming ``what`` (e.g. "pi_e(s')") if the policy returns a wrong shape,
    non-finite values or actions outside [-1, 1].
    """
    n = len(obs)
    out = np.empty((n, action_dim), dtype=np.float32)
    for lo in range(0, n, chunk):
        batch = obs[lo : lo + chunk]
        act = np.asarray(policy.act(batch))
        if act.shape != (len(batch), action_dim):
            raise ValueError(
                f"policy.act returned shape {act.shape} for {what} on {len(batch)} observations, "
                f"expected ({len(batch)}, {action_dim})"
            )
        if not np.all(np.isfinite(act)):
            bad = int(np.sum(~np.all(np.isfinite(act), axis=1)))
            raise ValueError(f"policy.act returned non-finite actions (NaN/inf) for {what} in {bad} rows")
        if np.any(np.abs(act) > 1.0 + ACTION_BOUND_TOL):
            raise ValueError(
                f"policy.act returned actions outside [-1, 1] for {what} (max |a| = {float(np.max(np.abs(act))):.4g})"
            )
        out[lo : lo + len(batch)] = act
    return out


def _is_stochastic(policy: Policy) -> bool:
    return bool(getattr(policy, "stochastic", False))


def select_initial_observations(data: TransitionArrays, n: int, seed: int) -> np.ndarray:
    """``(min(n, n_sessions), obs_dim)`` session-start observations drawn without replacement.

    The paper averages Q(s0, pi_e(s0)) over n = 5000 initial states; these are the first
    requests of logged sessions (``data.episode_starts``), sampled with a seeded generator.
    """
    rows = np.flatnonzero(np.asarray(data.episode_starts, dtype=bool))
    if rows.size == 0:
        raise ValueError("the data has no episode_starts: no initial states to evaluate")
    if n < rows.size:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return np.asarray(data.observations[rows], dtype=np.float32)


def bootstrap_summary(values: np.ndarray, n_bootstrap: int, ci_level: float, seed: int) -> dict[str, Any]:
    """Mean of per-state values with a percentile bootstrap interval over the states.

    The interval reflects only which initial states were drawn, not the error of the fitted
    Q-function itself (that is what the validation against simulator true values measures).
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    n = values.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_bootstrap, dtype=np.float64)
    for lo in range(0, n_bootstrap, 256):  # chunks bound the (chunk, n) index matrix
        hi = min(lo + 256, n_bootstrap)
        means[lo:hi] = values[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    tail = (1.0 - ci_level) / 2.0
    return {
        "value": float(values.mean()),
        "per_state_values": values,
        "ci_low": float(np.quantile(means, tail)),
        "ci_high": float(np.quantile(means, 1.0 - tail)),
        "ci_level": float(ci_level),
        "std_error": float(means.std(ddof=1)) if n_bootstrap > 1 else float("nan"),
        "n_states": int(n),
        "n_bootstrap": int(n_bootstrap),
    }


def _bootstrap_seed(seed: int) -> int:
    # An independent stream for the bootstrap, derived from the estimator's seed.
    return int(np.random.SeedSequence([seed, 0xB007]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------
# the Q-network


class QNetwork(nn.Module):
    """MLP ``Q(s, a)``: ``(B, obs_dim), (B, action_dim) -> (B,)``, inputs standardised by stored buffers."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        layers: list[nn.Module] = []
        width = obs_dim + action_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(obs - self.obs_mean) / self.obs_std, action], dim=1)  # (B, obs_dim + action_dim)
        return self.mlp(x).squeeze(1)  # (B,)


# ----------------------------------------------------------------------------------------
# the estimator


class ConservativeFQE:
    """Conservative-OPEstimator (CQL-regularised FQE); ``alpha_c = 0`` is plain FQE.

    Usage::

        est = ConservativeFQE(ConservativeFQEConfig(), seed=0)
        est.fit(train_data, policy)
        s0 = select_initial_observations(eval_data, est.config.n_initial_states, seed=0)
        est.estimate(s0, policy)["value"]

    Same seed, data and policy give identical weights and estimates.

    An estimator, not an :class:`agents.base.Agent`: it evaluates a given policy instead of
    being one (no ``act``, no registry name), is seeded at construction, is fitted once with
    no resume, and its run directory is tagged ``"estimator"`` with a checkpoint of its own
    format. It is built from the same pieces: :class:`agents.config.ConfigBase`, the
    checkpoint functions of :mod:`agents.checkpoint`, ``metrics.csv`` and the training loop.
    """

    def __init__(self, config: ConservativeFQEConfig | None = None, seed: int = 0):
        self.config = config if config is not None else ConservativeFQEConfig()
        self.seed = int(seed)
        self.q_net: QNetwork | None = None
        self.fit_stats: dict[str, float] = {}

    # -- training ---------------------------------------------------------------------------

    def _build(self, obs_dim: int, action_dim: int) -> QNetwork:
        """A Q-network initialised from torch's generator seeded with ``seed``, in a scope that leaves
        the process-global generator as it was."""
        with torch_rng_scope():
            torch.manual_seed(self.seed)
            return QNetwork(obs_dim, action_dim, self.config.hidden)

    def _policy_targets(self, data: TransitionArrays, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
        """pi_e(s) and pi_e(s') for every row: two ``(S, N, action_dim)`` float32 arrays.

        For a deterministic policy, pi_e(s'_i) is taken from pi_e(s_{i+1}) where the next row
        continues the episode with the identical observation, so the policy only sees the
        bootstrapping next states it has not seen already (mostly timeout states). Rows whose
        s' is terminal do not bootstrap; their pi_e(s') is left at 0 (multiplied by not_done = 0).
        """
        cfg = self.config
        a_dim = data.action_dim
        stochastic = _is_stochastic(policy)
        n_samples = cfg.n_policy_action_samples if stochastic else 1
        obs = np.asarray(data.observations, dtype=np.float32)
        next_obs = np.asarray(data.next_observations, dtype=np.float32)
        bootstraps = ~np.asarray(data.terminals, dtype=bool)
        pi_s = np.stack([policy_actions(policy, obs, a_dim, cfg.policy_batch_size, "pi_e(s)") for _ in range(n_samples)])
        pi_next = np.zeros_like(pi_s)
        if stochastic:
            need = np.flatnonzero(bootstraps)
        else:
            reuse = continuing_rows(data)
            pi_next[0, reuse] = pi_s[0, np.flatnonzero(reuse) + 1]
            need = np.flatnonzero(bootstraps & ~reuse)
        for j in range(n_samples):
            if need.size:
                pi_next[j, need] = policy_actions(policy, next_obs[need], a_dim, cfg.policy_batch_size, "pi_e(s')")
        return pi_s, pi_next

    def fit(
        self,
        data: TransitionArrays,
        policy: Policy,
        *,
        show_progress: bool = True,
        out_dir: str | Path | None = None,
    ) -> FitResult:
        """Fit Q^{pi_e} on ``data`` (``config.n_steps`` gradient steps).

        ``terminals`` stop the bootstrap, ``timeouts`` bootstrap from ``next_observations``.
        With ``out_dir``, writes ``config.json``, ``metrics.csv`` (``ope/td_loss``,
        ``ope/cql_gap`` = mean Q(s, pi_e(s)) - mean Q(s, a_data) on the batch,
        ``ope/q_data_mean``, ``ope/q_policy_mean``; averaged over each logging window, except
        that with ``alpha_c = 0`` the last two policy terms come from the window's last batch)
        and the final ``checkpoint.pt``.
        Speed is recorded in ``self.fit_stats`` (``steps_per_s``, ``policy_eval_s``).
        """
        cfg = self.config
        check_transitions(data, actions_in_box=False)
        obs_dim, a_dim = data.obs_dim, data.action_dim

        t0 = time.perf_counter()
        pi_s, pi_next = self._policy_targets(data, policy)
        policy_eval_s = time.perf_counter() - t0

        q_net = self._build(obs_dim, a_dim)
        if cfg.normalize_observations:
            obs64 = np.asarray(data.observations, dtype=np.float64)
            q_net.obs_mean.copy_(torch.as_tensor(obs64.mean(axis=0), dtype=torch.float32))
            q_net.obs_std.copy_(torch.as_tensor(obs64.std(axis=0) + OBS_STD_EPS, dtype=torch.float32))
            del obs64
        target = copy.deepcopy(q_net).requires_grad_(False)
        optim = torch.optim.Adam(q_net.parameters(), lr=cfg.learning_rate)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xF0E]))

        # torch views of the numpy arrays (no copy for float32 inputs)
        obs_t = torch.as_tensor(np.asarray(data.observations, dtype=np.float32))
        act_t = torch.as_tensor(np.asarray(data.actions, dtype=np.float32))
        rew_t = torch.as_tensor(np.asarray(data.rewards, dtype=np.float32).reshape(-1))
        next_obs_t = torch.as_tensor(np.asarray(data.next_observations, dtype=np.float32))
        not_done_t = torch.as_tensor(1.0 - np.asarray(data.terminals, dtype=np.float32).reshape(-1))
        pi_s_t, pi_next_t = torch.from_numpy(pi_s), torch.from_numpy(pi_next)
        n, m, n_samples = len(data), cfg.batch_size, pi_s.shape[0]
        gamma, alpha = cfg.gamma, cfg.alpha_c

        def update(step: int) -> dict[str, float]:
            idx = torch.from_numpy(sample_batch_indices(rng, n, m))
            obs, act, rew, not_done = obs_t[idx], act_t[idx], rew_t[idx], not_done_t[idx]
            pi_a = pi_s_t[:, idx].reshape(n_samples * m, a_dim)  # (S*m, A), sample-major
            obs_rep = obs.repeat(n_samples, 1)  # (S*m, obs_dim) matching pi_a
            with torch.no_grad():
                next_a = pi_next_t[:, idx].reshape(n_samples * m, a_dim)
                q_next = target(next_obs_t[idx].repeat(n_samples, 1), next_a).reshape(n_samples, m).mean(0)  # (m,)
                y = rew + gamma * not_done * q_next  # (m,)
            # plain FQE does not need Q(s, pi_e(s)) to train: it is measured for the metrics on
            # the last batch of each logging window only (saves a forward pass per step)
            measure = alpha > 0.0 or (step + 1) % cfg.log_every == 0 or step + 1 == cfg.n_steps
            if alpha > 0.0:
                q_all = q_net(torch.cat([obs, obs_rep]), torch.cat([act, pi_a]))  # (m + S*m,)
                q_data, q_pi = q_all[:m], q_all[m:].reshape(n_samples, m).mean(0)  # (m,), (m,)
                td_loss = 0.5 * (q_data - y).pow(2).mean()
                loss = td_loss + alpha * (q_pi.mean() - q_data.mean())
            else:
                q_data = q_net(obs, act)  # (m,)
                td_loss = loss = 0.5 * (q_data - y).pow(2).mean()
                if measure:
                    with torch.no_grad():
                        q_pi = q_net(obs_rep, pi_a).reshape(n_samples, m).mean(0)
            metrics = {"ope/td_loss": td_loss.item(), "ope/q_data_mean": q_data.mean().item()}
            if measure:
                metrics["ope/cql_gap"] = (q_pi.mean() - q_data.mean()).item()
                metrics["ope/q_policy_mean"] = q_pi.mean().item()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if (step + 1) % cfg.target_update_every == 0:
                target.load_state_dict(q_net.state_dict())  # Q_k <- Q_{k+1}
            return metrics

        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / CONFIG_NAME, {"estimator": "conservative_fqe", "seed": self.seed, "config": cfg.to_dict(),
                                            "n_transitions": n, "obs_dim": obs_dim, "action_dim": a_dim})
        logger = MetricsLogger(out / METRICS_NAME if out is not None else None)
        self.q_net = q_net
        t1 = time.perf_counter()
        result = fit_loop(update, cfg.n_steps, log_every=cfg.log_every, logger=logger,
                          desc="ope/fqe" if alpha == 0 else "ope/cfqe", show_progress=show_progress)
        train_s = time.perf_counter() - t1
        q_net.eval()
        self.fit_stats = {"policy_eval_s": policy_eval_s, "train_s": train_s,
                          "steps_per_s": cfg.n_steps / max(train_s, 1e-9)}
        if out is not None:
            self.save(out / CHECKPOINT_NAME)
        return result

    # -- estimation -------------------------------------------------------------------------

    def q_values(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``Q(s, a)`` for ``(n, obs_dim)`` observations and ``(n, action_dim)`` actions -> ``(n,)`` float64."""
        if self.q_net is None:
            raise ValueError("the estimator is not fitted: call fit() or load() first")
        obs = check_obs_batch(observations, self.q_net.obs_dim)
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (len(obs), self.q_net.action_dim):
            raise ValueError(f"actions have shape {actions.shape}, expected ({len(obs)}, {self.q_net.action_dim})")
        out = np.empty(len(obs), dtype=np.float64)
        chunk = self.config.policy_batch_size
        with torch.no_grad():
            for lo in range(0, len(obs), chunk):
                q = self.q_net(torch.from_numpy(obs[lo : lo + chunk]), torch.from_numpy(actions[lo : lo + chunk]))
                out[lo : lo + chunk] = q.numpy()
        return out

    def estimate(self, initial_observations: np.ndarray, policy: Policy) -> dict[str, Any]:
        """V(pi_e) = mean over the rows of ``initial_observations`` (n, obs_dim) of Q(s0, pi_e(s0)).

        Returns ``value``, ``per_state_values`` (n,), a percentile bootstrap interval over the
        initial states (``ci_low``, ``ci_high``, ``ci_level``, ``std_error``, ``n_bootstrap``,
        seeded by the estimator's seed) and ``n_states``.
        """
        if self.q_net is None:
            raise ValueError("the estimator is not fitted: call fit() or load() first")
        obs = check_initial_observations(initial_observations, self.q_net.obs_dim)
        if not np.all(np.isfinite(obs)):
            raise ValueError("initial_observations hold non-finite values (NaN/inf)")
        cfg = self.config
        a_dim = self.q_net.action_dim
        n_samples = cfg.n_policy_action_samples if _is_stochastic(policy) else 1
        values = np.zeros(len(obs), dtype=np.float64)
        for _ in range(n_samples):
            values += self.q_values(obs, policy_actions(policy, obs, a_dim, cfg.policy_batch_size, "pi_e(s0)"))
        values /= n_samples
        return bootstrap_summary(values, cfg.n_bootstrap, cfg.ci_level, _bootstrap_seed(self.seed))

    # -- persistence ------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        if self.q_net is None:
            raise ValueError("the estimator is not fitted: nothing to save")
        save_checkpoint(Path(path), {
            "format": CHECKPOINT_FORMAT,
            "seed": self.seed,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.config.to_dict().items()},
            "obs_dim": self.q_net.obs_dim,
            "action_dim": self.q_net.action_dim,
            "q_net": self.q_net.state_dict(),
        })

    @classmethod
    def load(cls, path: str | Path) -> "ConservativeFQE":
        """Restore a fitted estimator written by :meth:`save` (``torch.load(weights_only=True)``)."""
        state = load_checkpoint(Path(path))
        check_checkpoint(state, path, CHECKPOINT_FORMAT, ("seed", "config", "obs_dim", "action_dim", "q_net"),
                         "a Conservative-OPEstimator checkpoint")
        try:
            config = ConservativeFQEConfig.from_dict(state["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: stored config is invalid ({exc})") from None
        est = cls(config, seed=int(state["seed"]))
        q_net = QNetwork(int(state["obs_dim"]), int(state["action_dim"]), config.hidden)
        load_module_state(q_net, state["q_net"], "Conservative-OPEstimator Q-network")
        est.q_net = q_net.eval()
        return est


# ----------------------------------------------------------------------------------------
# d3rlpy's FQE as an outside reference


class _PolicyAsD3rlpyImpl:
    """What d3rlpy's ``FQEImpl`` calls on the evaluated algorithm: ``predict_best_action(x)``.

    ``x`` is a torch batch of next observations already standardised by the FQE's own
    observation scaler (``TorchMiniBatch.from_batch``), so we undo that before asking the policy.
    """

    def __init__(self, policy: Policy, action_dim: int, scaler: Any):
        self.policy = policy
        self.action_dim = action_dim
        self.scaler = scaler

    def predict_best_action(self, x: torch.Tensor) -> torch.Tensor:
        if self.scaler is not None:
            x = self.scaler.reverse_transform(x)
        obs = x.detach().cpu().numpy().astype(np.float32, copy=False)
        act = policy_actions(self.policy, obs, self.action_dim, len(obs) or 1, "pi_e(s') [d3rlpy]")
        return torch.from_numpy(act).to(x.device)


class _PolicyAsD3rlpyAlgo:
    """The minimal stand-in for a d3rlpy algorithm that ``d3rlpy.ope.FQE`` accepts: it reads
    ``algo.impl`` (asserted non-empty, then ``impl.predict_best_action`` each update) and
    forwards ``predict`` / ``sample_action`` (numpy) to it."""

    def __init__(self, policy: Policy, action_dim: int, scaler: Any):
        self.policy = policy
        self.impl = _PolicyAsD3rlpyImpl(policy, action_dim, scaler)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.policy.act(np.asarray(x, dtype=np.float32)), dtype=np.float32)

    sample_action = predict


@contextmanager
def quiet_d3rlpy_logs(quiet: bool = True) -> Iterator[None]:
    """Inside the block d3rlpy's info and debug log lines (its settings, per-epoch metrics) are not
    printed; warnings and errors still are. The caller's structlog configuration is restored on exit.

    d3rlpy logs through structlog, whose loggers are rebuilt from the current configuration on
    every call (d3rlpy does not cache them), so a scoped filtering configuration is enough.
    """
    if not quiet:
        yield
        return
    import logging

    import structlog

    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


class D3rlpyFQE:
    """d3rlpy's ``FQE`` evaluating a :class:`Policy`, with :class:`ConservativeFQE`'s interface.

    Settings map one to one: batch_size, gamma, learning_rate (Adam), hidden (d3rlpy's
    ``VectorEncoderFactory``), target_update_every -> ``target_update_interval``, n_steps, and
    ``normalize_observations`` -> a prebuilt ``StandardObservationScaler`` with the data's mean
    and std. d3rlpy has no CQL term, so ``alpha_c`` must be 0. Differences that remain: d3rlpy
    minimises the mean squared TD error without our factor 1/2 (same minimiser; Adam is
    nearly scale-free), calls the policy on every mini-batch instead of once up front, and
    takes its randomness from the global numpy / torch generators, which ``fit`` seeds with
    ``d3rlpy.seed(seed)`` inside :func:`agents.seeding.global_rng_scope` (the caller's global
    generators are restored afterwards). Timeout episodes keep their last transition (see
    :func:`agents.d3rlpy_adapter.to_d3rlpy_dataset`, ``pad_timeouts=True``).
    """

    def __init__(self, config: ConservativeFQEConfig | None = None, seed: int = 0):
        self.config = config if config is not None else ConservativeFQEConfig(alpha_c=0.0)
        if self.config.alpha_c != 0.0:
            raise ValueError(
                f"D3rlpyFQE is plain FQE: d3rlpy has no CQL term, so alpha_c must be 0 (got {self.config.alpha_c})"
            )
        self.seed = int(seed)
        self.fqe: Any = None
        self.obs_dim: int | None = None
        self.action_dim: int | None = None
        self.fit_stats: dict[str, float] = {}

    def fit(self, data: TransitionArrays, policy: Policy, *, show_progress: bool = True,
            out_dir: str | Path | None = None) -> None:
        """Fit d3rlpy's FQE for ``config.n_steps`` gradient steps (one d3rlpy epoch).

        With ``out_dir``, d3rlpy writes its own logs under ``out_dir/d3rlpy``. Without
        ``show_progress`` d3rlpy's console log lines are silenced too (:func:`quiet_d3rlpy_logs`).
        """
        import d3rlpy
        from d3rlpy.logging import FileAdapterFactory, NoopAdapterFactory

        cfg = self.config
        check_transitions(data, actions_in_box=False)
        # d3rlpy draws from (and d3rlpy.seed seeds) the global generators: scoped, restored on exit
        with global_rng_scope(), quiet_d3rlpy_logs(not show_progress):
            dataset = to_d3rlpy_dataset(data)
            scaler = None
            if cfg.normalize_observations:
                obs64 = np.asarray(data.observations, dtype=np.float64)
                scaler = d3rlpy.preprocessing.StandardObservationScaler(
                    mean=obs64.mean(axis=0).astype(np.float32), std=obs64.std(axis=0).astype(np.float32), eps=OBS_STD_EPS
                )
            fqe_config = d3rlpy.ope.FQEConfig(
                learning_rate=cfg.learning_rate,
                batch_size=cfg.batch_size,
                gamma=cfg.gamma,
                target_update_interval=cfg.target_update_every,
                encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=list(cfg.hidden)),
                observation_scaler=scaler,
            )
            algo = _PolicyAsD3rlpyAlgo(policy, data.action_dim, scaler)
            adapter = (FileAdapterFactory(root_dir=str(Path(out_dir) / "d3rlpy")) if out_dir is not None
                       else NoopAdapterFactory())
            t0 = time.perf_counter()
            d3rlpy.seed(self.seed)
            self.fqe = d3rlpy.ope.FQE(algo=algo, config=fqe_config, device=False)
            self.fqe.fit(dataset, n_steps=cfg.n_steps, n_steps_per_epoch=cfg.n_steps, logger_adapter=adapter,
                         show_progress=show_progress, with_timestamp=False, experiment_name="fqe")
        train_s = time.perf_counter() - t0
        self.obs_dim, self.action_dim = data.obs_dim, data.action_dim
        self.fit_stats = {"train_s": train_s, "steps_per_s": cfg.n_steps / max(train_s, 1e-9)}

    def estimate(self, initial_observations: np.ndarray, policy: Policy) -> dict[str, Any]:
        """Same output as :meth:`ConservativeFQE.estimate`, from d3rlpy's ``predict_value``."""
        if self.fqe is None:
            raise ValueError("the estimator is not fitted: call fit() first")
        obs = check_initial_observations(initial_observations, self.obs_dim)
        cfg = self.config
        actions = policy_actions(policy, obs, self.action_dim, cfg.policy_batch_size, "pi_e(s0)")
        values = np.asarray(self.fqe.predict_value(obs, actions), dtype=np.float64).reshape(-1)
        return bootstrap_summary(values, cfg.n_bootstrap, cfg.ci_level, _bootstrap_seed(self.seed))


# ----------------------------------------------------------------------------------------
# bootstrap FQE: an ensemble of plain FQE fits on resampled sessions, for a lower bound


class EnsembleQNetwork(nn.Module):
    """``n_members`` independent MLPs ``Q_b(s, a)`` evaluated together with batched matmuls.

    forward: ``(B, m, obs_dim), (B, m, action_dim) -> (B, m)``; every member is initialised as
    :class:`QNetwork`'s ``nn.Linear`` layers are (uniform in +-1/sqrt(fan_in)), inputs standardised
    by stored buffers shared by the members.
    """

    def __init__(self, n_members: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.n_members, self.obs_dim, self.action_dim = n_members, obs_dim, action_dim
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        widths = [obs_dim + action_dim, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / np.sqrt(w_in)
            self.weights.append(nn.Parameter(torch.empty(n_members, w_in, w_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_members, 1, w_out).uniform_(-bound, bound)))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(obs - self.obs_mean) / self.obs_std, action], dim=2)  # (B, m, in)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = torch.relu(x)
        return x.squeeze(2)  # (B, m)


class BootstrapFQE:
    """Plain FQE fitted ``n_members`` times, each on a bootstrap resample of the logged *sessions*.

    Member ``b`` draws its mini-batches from the rows of ``n_sessions`` sessions drawn with
    replacement; all members share the settings of :class:`ConservativeFQEConfig` (``alpha_c``
    is ignored: plain FQE) and are trained together (:class:`EnsembleQNetwork`), each with its
    own initialisation and batches. :meth:`estimate` returns the members' mean as ``value`` and
    the one-sided normal lower confidence bound ``lower = mean - z_level * std_members``
    (``level`` default 0.95, ``std`` with ddof 1): with few members a percentile of the members
    would be the minimum, so the normal form is used. The bound reflects the sampling of the
    data (sessions) and the fit's randomness, not the bias of extrapolating Q off the data.
    """

    def __init__(self, config: ConservativeFQEConfig | None = None, seed: int = 0, n_members: int = 5,
                 level: float = 0.95):
        self.config = config if config is not None else ConservativeFQEConfig(alpha_c=0.0)
        if n_members < 2:
            raise ValueError(f"BootstrapFQE needs n_members >= 2, got {n_members}")
        if not 0.5 < level < 1.0:
            raise ValueError(f"level must lie in (0.5, 1), got {level}")
        self.seed, self.n_members, self.level = int(seed), int(n_members), float(level)
        self.q_net: EnsembleQNetwork | None = None
        self.fit_stats: dict[str, float] = {}

    def fit(self, data: TransitionArrays, policy: Policy, *, show_progress: bool = False) -> FitResult:
        """Fit the members for ``config.n_steps`` gradient steps each (one batched step trains all)."""
        cfg = self.config
        check_transitions(data, actions_in_box=False)
        t0 = time.perf_counter()
        pi_s, pi_next = ConservativeFQE(cfg, seed=self.seed)._policy_targets(data, policy)
        policy_eval_s = time.perf_counter() - t0
        n_samples, n, a_dim, B, m = pi_s.shape[0], len(data), data.action_dim, self.n_members, cfg.batch_size
        with torch_rng_scope():
            torch.manual_seed(self.seed)
            q_net = EnsembleQNetwork(B, data.obs_dim, a_dim, cfg.hidden)
        if cfg.normalize_observations:
            obs64 = np.asarray(data.observations, dtype=np.float64)
            q_net.obs_mean.copy_(torch.as_tensor(obs64.mean(axis=0), dtype=torch.float32))
            q_net.obs_std.copy_(torch.as_tensor(obs64.std(axis=0) + OBS_STD_EPS, dtype=torch.float32))
        target = copy.deepcopy(q_net).requires_grad_(False)
        optim = torch.optim.Adam(q_net.parameters(), lr=cfg.learning_rate)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xB0F0E]))
        # each member's rows: those of n_sessions sessions drawn with replacement
        starts = np.flatnonzero(np.asarray(data.episode_starts, dtype=bool))
        ends = np.append(starts[1:], n)
        member_rows = []
        for _ in range(B):
            pick = rng.integers(0, len(starts), size=len(starts))
            member_rows.append(np.concatenate([np.arange(starts[i], ends[i]) for i in pick]))
        obs_t = torch.as_tensor(np.asarray(data.observations, dtype=np.float32))
        act_t = torch.as_tensor(np.asarray(data.actions, dtype=np.float32))
        rew_t = torch.as_tensor(np.asarray(data.rewards, dtype=np.float32).reshape(-1))
        next_obs_t = torch.as_tensor(np.asarray(data.next_observations, dtype=np.float32))
        not_done_t = torch.as_tensor(1.0 - np.asarray(data.terminals, dtype=np.float32).reshape(-1))
        pi_next_t = torch.from_numpy(pi_next)

        def update(step: int) -> dict[str, float]:
            idx = torch.from_numpy(np.stack([rows[sample_batch_indices(rng, len(rows), m)] for rows in member_rows]))
            with torch.no_grad():  # (B, m) targets, the policy's next actions averaged over its draws
                q_next = torch.stack([target(next_obs_t[idx], pi_next_t[j][idx]) for j in range(n_samples)]).mean(0)
                y = rew_t[idx] + cfg.gamma * not_done_t[idx] * q_next
            q = q_net(obs_t[idx], act_t[idx])
            loss = 0.5 * (q - y).pow(2).mean(dim=1).sum()  # each member's mean TD loss, summed
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if (step + 1) % cfg.target_update_every == 0:
                target.load_state_dict(q_net.state_dict())
            return {"ope/td_loss": loss.item() / B}

        t1 = time.perf_counter()
        self.q_net = q_net
        result = fit_loop(update, cfg.n_steps, log_every=cfg.log_every, logger=MetricsLogger(None),
                          desc="ope/bootstrap-fqe", show_progress=show_progress)
        q_net.eval()
        train_s = time.perf_counter() - t1
        self.fit_stats = {"policy_eval_s": policy_eval_s, "train_s": train_s,
                          "steps_per_s": cfg.n_steps / max(train_s, 1e-9)}
        return result

    def member_values(self, initial_observations: np.ndarray, policy: Policy) -> np.ndarray:
        """``(n_members, n)`` per-member ``Q_b(s0, pi_e(s0))`` for ``initial_observations`` (n, obs_dim)."""
        if self.q_net is None:
            raise ValueError("the estimator is not fitted: call fit() first")
        obs = check_initial_observations(initial_observations, self.q_net.obs_dim)
        cfg = self.config
        n_samples = cfg.n_policy_action_samples if _is_stochastic(policy) else 1
        B = self.n_members
        out = np.zeros((B, len(obs)), dtype=np.float64)
        with torch.no_grad():
            for _ in range(n_samples):
                act = policy_actions(policy, obs, self.q_net.action_dim, cfg.policy_batch_size, "pi_e(s0)")
                o = torch.from_numpy(obs).expand(B, *obs.shape)
                a = torch.from_numpy(act).expand(B, *act.shape)
                out += self.q_net(o, a).numpy()
        return out / n_samples

    def estimate(self, initial_observations: np.ndarray, policy: Policy) -> dict[str, Any]:
        """``value`` (members' mean), ``lower`` (one-sided normal bound at ``level``), ``member_values``
        (n_members,), ``member_std``, and the state-bootstrap interval of the mean (as :meth:`ConservativeFQE.estimate`)."""
        from statistics import NormalDist

        per_member = self.member_values(initial_observations, policy)  # (B, n)
        members = per_member.mean(axis=1)
        summary = bootstrap_summary(per_member.mean(axis=0), self.config.n_bootstrap, self.config.ci_level,
                                    _bootstrap_seed(self.seed))
        std = float(members.std(ddof=1))
        summary.update({"lower": float(members.mean() - NormalDist().inv_cdf(self.level) * std),
                        "lower_level": self.level, "member_values": members.tolist(), "member_std": std})
        return summary
