"""BatchRL-MTF: batch-constrained Q-learning (BCQ) for multi-task fusion weights.

The paper's Section 3.2 / Algorithm 1 (Zhang et al. 2022, arXiv 2208.04560), which is BCQ
(Fujimoto et al. 2019) with the paper's hyperparameters. Per gradient step, on a minibatch
``(s, a, r, s', not_done)`` of ``batch_size`` transitions drawn uniformly from the replay
buffer:

1. :meth:`BatchRLMTF.update_vae` -- conditional VAE ``G``: encoder ``E(z | s, a)`` gives a
   mean and a log-std (clamped to ``[-4, 15]`` like Fujimoto's code), ``z = mean + std * eps``,
   decoder ``D(a | s, z) = tanh(...)``; loss = ``MSE(D(s, z), a) + kl_weight * KL(E(z|s,a) || N(0, I))``.
2. :meth:`BatchRLMTF.update_critic` -- twin critics with the clipped double-Q target
   ``y = r + gamma * not_done * max_{i<=n} min_{j=1,2} Q'_j(s', a'_i)`` where
   ``a'_i = clip(D(s', z_i) + P'(s', D(s', z_i)), -1, 1)``, ``z_i ~ N(0, I)`` clipped to
   ``[-0.5, 0.5]``, ``n = n_target_samples``; the paper's Eq. 7 takes the plain minimum (BCQ's
   ``lambda = 1``). Loss = sum over the two critics of their MSE to ``y``.
3. :meth:`BatchRLMTF.update_actor` -- perturbation net ``P(s, a) = rho * tanh(...)`` in
   ``[-rho, rho]``, trained by the deterministic policy gradient through ``Q1``: maximise
   ``Q1(s, clip(a~ + P(s, a~), -1, 1))`` with ``a~ = D(s, z)``, ``z`` from the clipped prior.
4. :meth:`BatchRLMTF.update_targets` -- every ``target_update_every`` (L) steps the target
   critics and the target perturbation net move ``eta_t`` of the way to the online ones.

Action selection (:meth:`BatchRLMTF.act`): decode ``n_action_samples`` candidate actions per
state, perturb them, return the candidate with the highest ``Q1``.

Replay buffer: the paper trains from a replay buffer of 100,000 transitions. Here the buffer
is the *last* ``buffer_size`` transitions of the dataset in its stored order; logged datasets
are written in collection (time) order, so these are the most recent transitions. With
``buffer_size >= len(data)`` the whole dataset is used.

Speed (the project requires more gradient steps per second than d3rlpy's BCQ at the same
settings, see ``benchmarks/bench_bcq_speed.py``), all with the same mathematics: the buffer
lives on the device as tensors and minibatches are indexed there; the observation part of
every first layer is computed once per state and shared by its ``n`` sampled actions
(:class:`agents.nets.ObsConditionedMLP`); the critic target is evaluated only for
non-terminal transitions (about 28% of session data is terminal); the actor step builds no
gradients for the decoder or the critic weights and evaluates Q1 only; Adam is the fused
implementation; metrics stay on the device and are read once per logging window. The twin
critics are two networks, not one batched module: on CPU, ``torch.baddbmm`` over a leading
ensemble dimension was measured slower than two plain matmuls (see ``agents/nets.py``).

Randomness: ``fit(seed=...)`` spawns three streams with ``numpy.random.SeedSequence(seed)``:
weight initialisation, training (minibatch indices and all latent noise, one
``torch.Generator`` whose state is checkpointed) and action selection. ``act`` is
deterministic: the ``n_action_samples`` latent vectors are drawn once from the action-selection
stream and shared by every state and every call, so the same observation gets the same action
(the policy is a fixed function of the state, unlike d3rlpy's BCQ, which resamples per call).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from agents.base import OfflineAgent
from agents.checkpoint import CheckpointError, load_module_state, restoring_state
from agents.config import ConfigBase
from agents.data import check_transitions, data_fingerprint, data_to_tensors
from agents.seeding import check_seed, seed_from
from agents.nets import ObsConditionedMLP
from mtf_env.policy import check_obs_batch
from mtf_env.transitions import TransitionArrays

ALGO_NAME = "batchrl-mtf"
CHECKPOINT_FORMAT = "batchrl-mtf-checkpoint/1"
#: States per forward pass in :meth:`BatchRLMTF.act`: 256 states x 100 candidates x 750 hidden
#: float32 is about 77 MB per activation, so large batches of users do not exhaust memory.
ACT_CHUNK_STATES = 256


@dataclass(frozen=True)
class BatchRLMTFConfig(ConfigBase):
    """Hyperparameters of BatchRL-MTF. Defaults are the paper's; the rest come from BCQ's code."""

    rho: float = 0.15
    """Perturbation range: ``P(s, a)`` lies in ``[-rho, rho]`` per action dimension (paper)."""
    gamma: float = 0.95
    """Discount factor per request (paper)."""
    lr_vae: float = 1e-3
    """Adam learning rate of the conditional VAE (paper)."""
    lr_perturbation: float = 1e-4
    """Adam learning rate of the perturbation network (paper)."""
    lr_critic: float = 2e-4
    """Adam learning rate of the twin critics (paper)."""
    eta_t: float = 0.05
    """Soft target update rate: ``target <- (1 - eta_t) * target + eta_t * online`` (paper)."""
    target_update_every: int = 10
    """L: gradient steps between soft target updates (paper)."""
    batch_size: int = 256
    """Transitions per minibatch (paper)."""
    buffer_size: int = 100_000
    """Replay buffer size: the last ``buffer_size`` transitions of the dataset (paper's 100,000)."""
    n_steps: int = 300_000
    """Gradient steps of a full training run, the default of ``fit`` (paper)."""
    actor_hidden: tuple[int, ...] = (400, 300)
    """Hidden widths of the perturbation network (BCQ code; the paper gives none)."""
    critic_hidden: tuple[int, ...] = (400, 300)
    """Hidden widths of each critic (BCQ code; the paper gives none)."""
    vae_hidden: tuple[int, ...] = (750, 750)
    """Hidden widths of the VAE encoder and of the decoder (BCQ code)."""
    latent_dim: int | None = None
    """VAE latent size; ``None`` means ``2 * action_dim`` (BCQ code)."""
    kl_weight: float = 0.5
    """Weight of the KL term in the VAE loss (BCQ code)."""
    vae_log_std_min: float = -4.0
    """Lower clamp of the encoder's log-std (BCQ code)."""
    vae_log_std_max: float = 15.0
    """Upper clamp of the encoder's log-std (BCQ code)."""
    latent_clip: float = 0.5
    """Latent samples from the prior are clipped to ``[-latent_clip, latent_clip]`` (BCQ code)."""
    n_target_samples: int = 10
    """Sampled and perturbed next actions per state in the critic target (BCQ code)."""
    n_action_samples: int = 100
    """Candidate actions per state in action selection (BCQ code)."""
    device: str = "cpu"
    """Torch device for training and acting ("cpu", "cuda", "cuda:1", ...); not a paper setting."""

    def __post_init__(self) -> None:
        self.check_positive("rho", "lr_vae", "lr_perturbation", "lr_critic", "kl_weight", "latent_clip")
        self.check_range("gamma", 0.0, 1.0, high_open=True)
        self.check_range("eta_t", 0.0, 1.0, low_open=True)
        self.check_positive_ints("target_update_every", "batch_size", "buffer_size", "n_steps", "n_target_samples",
                                 "n_action_samples")
        self.check_widths("actor_hidden", "critic_hidden", "vae_hidden")
        if self.latent_dim is not None:
            self.check_positive_ints("latent_dim")
        if self.vae_log_std_min >= self.vae_log_std_max:
            raise ValueError("BatchRLMTFConfig.vae_log_std_min must be below vae_log_std_max")


class Batch(NamedTuple):
    """A minibatch: obs (B, obs_dim), action (B, A), reward (B, 1), next_obs (B, obs_dim), not_done (B, 1)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    not_done: torch.Tensor


class BCQNetworks(nn.Module):
    """All networks of BatchRL-MTF; ``state_dict()`` keys are ``<network>.<parameter>``.

    vae_encoder: (s, a) -> (mean, log_std) of z, (B, 2 * latent); vae_decoder: (s, z) -> a
    before tanh, (B, A); perturbation / perturbation_target: (s, a) -> P before
    ``rho * tanh``, (B, A); critic1, critic2 and their targets: (s, a) -> Q, (B, 1).
    """

    def __init__(self, obs_dim: int, action_dim: int, config: BatchRLMTFConfig, generator: torch.Generator):
        super().__init__()
        latent = config.latent_dim or 2 * action_dim
        self.latent_dim = latent
        self.vae_encoder = ObsConditionedMLP(obs_dim, action_dim, config.vae_hidden, 2 * latent, generator)
        self.vae_decoder = ObsConditionedMLP(obs_dim, latent, config.vae_hidden, action_dim, generator)
        self.perturbation = ObsConditionedMLP(obs_dim, action_dim, config.actor_hidden, action_dim, generator)
        self.critic1 = ObsConditionedMLP(obs_dim, action_dim, config.critic_hidden, 1, generator)
        self.critic2 = ObsConditionedMLP(obs_dim, action_dim, config.critic_hidden, 1, generator)
        self.perturbation_target = copy.deepcopy(self.perturbation).requires_grad_(False)
        self.critic1_target = copy.deepcopy(self.critic1).requires_grad_(False)
        self.critic2_target = copy.deepcopy(self.critic2).requires_grad_(False)

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target, online) pairs moved by the soft target update."""
        return [(self.critic1_target, self.critic1), (self.critic2_target, self.critic2),
                (self.perturbation_target, self.perturbation)]


class BatchRLMTF(OfflineAgent):
    """The BatchRL-MTF agent; after ``fit`` (or ``load``) it is a :class:`mtf_env.policy.Policy`.

    Usage::

        agent = BatchRLMTF(BatchRLMTFConfig())
        agent.fit(data, seed=0, out_dir="runs/batchrl-mtf__0")  # config.n_steps steps
        actions = agent.act(obs)                                  # (B, 12) float32 in [-1, 1]
        agent = BatchRLMTF.load("runs/batchrl-mtf__0")

    A run directory holds ``config.json`` (algo, config, obs_dim, action_dim, seed),
    ``metrics.csv`` and ``checkpoint.pt`` (networks, targets, optimisers, step, generator
    state; loaded with ``weights_only=True``). ``fit``, ``save``, ``load`` and resuming are
    :class:`agents.base.Agent`'s; this class builds the networks and runs the four updates.
    """

    algo_name = ALGO_NAME
    config_class = BatchRLMTFConfig
    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_kind = "a BatchRL-MTF checkpoint"
    checkpoint_keys = ("nets", "optimizers", "generator")

    def __init__(self, config: BatchRLMTFConfig | None = None):
        super().__init__(config)
        self.device = torch.device(self.config.device)
        self.nets: BCQNetworks | None = None
        self._buffer: dict[str, torch.Tensor] = {}
        self._workspace: dict[str, list[torch.Tensor]] | None = None
        self._metric_sums: dict[str, torch.Tensor] = {}
        self._metric_count = 0
        self._log_every, self._n_steps = 1, None

    # ------------------------------------------------------------------ construction
    def _build(self, obs_dim: int, action_dim: int, seed: int) -> None:
        """Fresh networks, optimisers and random streams for ``seed``."""
        self.obs_dim, self.action_dim, self.seed, self.step = int(obs_dim), int(action_dim), check_seed(seed), 0
        init_seq, train_seq, act_seq = np.random.SeedSequence(self.seed).spawn(3)
        init_gen = torch.Generator().manual_seed(seed_from(init_seq))  # CPU: same weights on any device
        self.nets = BCQNetworks(self.obs_dim, self.action_dim, self.config, init_gen).to(self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed_from(train_seq))
        act_gen = torch.Generator().manual_seed(seed_from(act_seq))
        n, latent = self.config.n_action_samples, self.nets.latent_dim
        self._act_latent = self._prior_latent((n, latent), act_gen).to(self.device)  # (n, latent)
        self._workspace = None
        adam = dict(fused=True) if self.device.type in ("cpu", "cuda") else {}
        vae_params = [*self.nets.vae_encoder.parameters(), *self.nets.vae_decoder.parameters()]
        self.optimizers = {
            "vae": torch.optim.Adam(vae_params, lr=self.config.lr_vae, **adam),
            "perturbation": torch.optim.Adam(self.nets.perturbation.parameters(), lr=self.config.lr_perturbation,
                                             **adam),
            "critic": torch.optim.Adam([*self.nets.critic1.parameters(), *self.nets.critic2.parameters()],
                                       lr=self.config.lr_critic, **adam),
        }

    def _require_nets(self) -> BCQNetworks:
        if self.nets is None:
            raise RuntimeError("BatchRLMTF has no networks yet: call fit() or BatchRLMTF.load() first")
        return self.nets

    # ------------------------------------------------------------------ building blocks
    def _prior_latent(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """z ~ N(0, I) clipped to [-latent_clip, latent_clip], on the generator's device."""
        z = torch.randn(shape, generator=generator, device=generator.device)
        return z.clamp_(-self.config.latent_clip, self.config.latent_clip)

    def _decode(self, obs: torch.Tensor, latent: torch.Tensor, workspace: list | None = None) -> torch.Tensor:
        """D(s, z): obs (B, obs_dim), latent (B, k, latent) -> actions (B, k, A) in [-1, 1]."""
        decoder = self.nets.vae_decoder
        return torch.tanh(decoder.forward_embedded(decoder.embed_obs(obs), latent, workspace))

    def _perturb(self, net: ObsConditionedMLP, obs: torch.Tensor, actions: torch.Tensor,
                 workspace: list | None = None) -> torch.Tensor:
        """clip(a + rho * tanh(P(s, a)), -1, 1): obs (B, obs_dim), actions (B, k, A) -> (B, k, A)."""
        residual = self.config.rho * torch.tanh(net.forward_embedded(net.embed_obs(obs), actions, workspace))
        return (actions + residual).clamp(-1.0, 1.0)

    @staticmethod
    def _q(critic: ObsConditionedMLP, obs: torch.Tensor, actions: torch.Tensor,
           workspace: list | None = None) -> torch.Tensor:
        """Q(s, a_i): obs (B, obs_dim), actions (B, k, A) -> (B, k)."""
        return critic.forward_embedded(critic.embed_obs(obs), actions, workspace).squeeze(2)

    def _sample_batch(self) -> Batch:
        idx = torch.randint(self._n_buffer, (self.config.batch_size,), generator=self.generator, device=self.device)
        return Batch(*(self._buffer[key][idx] for key in ("obs", "action", "reward", "next_obs", "not_done")))

    # ------------------------------------------------------------------ the four updates
    def update_vae(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One Adam step on the conditional VAE; returns detached 0-dim tensors (no device sync)."""
        cfg, nets = self.config, self.nets
        latent = nets.latent_dim
        stats = nets.vae_encoder(batch.obs, batch.action)  # (B, 2 * latent)
        mean, log_std = stats[:, :latent], stats[:, latent:].clamp(cfg.vae_log_std_min, cfg.vae_log_std_max)
        std = log_std.exp()
        eps = torch.randn(mean.shape, generator=self.generator, device=self.device)
        z = mean + std * eps  # reparameterised sample, (B, latent)
        recon = torch.tanh(nets.vae_decoder(batch.obs, z))  # (B, A)
        recon_loss = (recon - batch.action).pow(2).mean()
        # KL(N(mean, std) || N(0, 1)), averaged over batch and latent dimensions like BCQ's code
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.pow(2) - std.pow(2)).mean()
        loss = recon_loss + cfg.kl_weight * kl
        opt = self.optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"train/vae_loss": loss.detach(), "train/vae_recon_loss": recon_loss.detach(), "train/vae_kl": kl.detach()}

    @torch.no_grad()
    def target_value(self, next_obs: torch.Tensor) -> torch.Tensor:
        """max_i min_j Q'_j(s', a'_i) over ``n_target_samples`` perturbed decoded actions: (B, obs_dim) -> (B, 1)."""
        nets, n, ws = self.nets, self.config.n_target_samples, self._target_workspace()
        latent = self._prior_latent((next_obs.shape[0], n, nets.latent_dim), self.generator)
        decoded = self._decode(next_obs, latent, ws["decoder"])
        actions = self._perturb(nets.perturbation_target, next_obs, decoded, ws["perturbation"])  # (B, n, A)
        q = torch.minimum(self._q(nets.critic1_target, next_obs, actions, ws["critic1"]),
                          self._q(nets.critic2_target, next_obs, actions, ws["critic2"]))  # (B, n)
        return q.max(dim=1, keepdim=True).values  # (B, 1)

    def _target_workspace(self) -> dict[str, list[torch.Tensor]]:
        """Activation memory of :meth:`target_value`, allocated once (batch_size * n_target_samples rows)."""
        if self._workspace is None:
            rows, nets = self.config.batch_size * self.config.n_target_samples, self.nets
            self._workspace = {
                "decoder": nets.vae_decoder.workspace(rows, self.device),
                "perturbation": nets.perturbation_target.workspace(rows, self.device),
                "critic1": nets.critic1_target.workspace(rows, self.device),
                "critic2": nets.critic2_target.workspace(rows, self.device),
            }
        return self._workspace

    def update_critic(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One Adam step on the twin critics toward the clipped double-Q target."""
        # y = r + gamma * not_done * max_i min_j Q'_j(s', a'_i); the bootstrap term is evaluated only
        # for non-terminal rows (the same y: it is multiplied by 0 elsewhere), which skips about a
        # quarter of the target work on session data (3.55 requests per session in the paper)
        y = batch.reward.clone()  # (B, 1)
        rows = batch.not_done[:, 0].nonzero()[:, 0]
        if len(rows):
            y[rows] += self.config.gamma * self.target_value(batch.next_obs[rows])
        q1 = self.nets.critic1(batch.obs, batch.action)  # (B, 1)
        q2 = self.nets.critic2(batch.obs, batch.action)
        loss = (q1 - y).pow(2).mean() + (q2 - y).pow(2).mean()  # sum of the two critics' MSE (BCQ code)
        opt = self.optimizers["critic"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        q1 = q1.detach()
        return {"train/critic_loss": loss.detach(), "train/q_mean": q1.mean(), "train/q_std": q1.std(correction=0)}

    def update_actor(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One Adam step on the perturbation net: maximise Q1(s, perturbed decoded action)."""
        nets = self.nets
        with torch.no_grad():  # the decoder is not trained by this loss
            latent = self._prior_latent((batch.obs.shape[0], 1, nets.latent_dim), self.generator)
            decoded = self._decode(batch.obs, latent)  # (B, 1, A)
        actions = self._perturb(nets.perturbation, batch.obs, decoded)  # (B, 1, A)
        nets.critic1.requires_grad_(False)  # gradients flow through Q1 to the action, not into its weights
        try:
            loss = -self._q(nets.critic1, batch.obs, actions).mean()
            opt = self.optimizers["perturbation"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            nets.critic1.requires_grad_(True)
        return {"train/actor_loss": loss.detach()}

    @torch.no_grad()
    def update_targets(self) -> dict[str, torch.Tensor]:
        """Soft update of the target critics and target perturbation net by ``eta_t``."""
        for target, online in self.nets.target_pairs():
            for t, o in zip(target.parameters(), online.parameters()):
                t.lerp_(o, self.config.eta_t)
        return {}

    def _train_step(self, step: int) -> dict[str, float]:
        """One gradient step (fit_loop's ``update``); returns window means on logging steps only."""
        batch = self._sample_batch()
        metrics = {**self.update_vae(batch), **self.update_critic(batch), **self.update_actor(batch)}
        if (step + 1) % self.config.target_update_every == 0:
            metrics.update(self.update_targets())
        self.step = step + 1
        for key, value in metrics.items():
            self._metric_sums[key] = self._metric_sums[key] + value if key in self._metric_sums else value
        self._metric_count += 1
        if self.step % self._log_every and self.step != self._n_steps:
            return {}
        out = {key: float(total) / self._metric_count for key, total in self._metric_sums.items()}
        self._metric_sums, self._metric_count = {}, 0
        return out

    # ------------------------------------------------------------------ training (Agent's hooks)
    def _start_fit(self, data: TransitionArrays, seed: int, n_steps: int, log_every: int) -> None:
        self.prepare(data, seed)
        self._log_every, self._n_steps = int(log_every), n_steps

    def _end_fit(self) -> None:
        self._buffer, self._workspace = {}, None  # a trained policy keeps neither the data nor the workspace

    def prepare(self, data: TransitionArrays, seed: int) -> "BatchRLMTF":
        """Fresh networks, optimisers and random streams for ``seed``, and the replay buffer of ``data``
        on the device, ready for :meth:`train_step` (``fit`` calls this; benchmarks call it directly)."""
        buffer = self._buffer_of(data)
        self._build(data.obs_dim, data.action_dim, seed)
        self._buffer = {k: v.to(self.device) for k, v in data_to_tensors(buffer).items()}
        self._n_buffer = len(buffer)
        self._fingerprint = data_fingerprint(buffer)
        self._metric_sums, self._metric_count = {}, 0
        self._log_every, self._n_steps = 1, None
        return self

    def train_step(self) -> dict[str, float]:
        """One gradient step on the prepared buffer (VAE, critics, actor, and targets every L steps)."""
        if not self._buffer:
            raise RuntimeError("no replay buffer: call prepare(data, seed) or fit() first")
        return self._train_step(self.step)

    def _buffer_of(self, data: TransitionArrays) -> TransitionArrays:
        """The replay buffer: the last ``buffer_size`` transitions, validated (:func:`check_transitions`)."""
        if not isinstance(data, TransitionArrays):
            raise ValueError(f"data must be a TransitionArrays, got {type(data).__name__}")
        n = min(len(data), self.config.buffer_size)
        buffer = TransitionArrays(*(getattr(data, f.name)[-n:] for f in dataclasses.fields(TransitionArrays)))
        check_transitions(buffer)
        return buffer

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Greedy BCQ action: ``obs (B, obs_dim) float32 -> (B, A) float32`` in ``[-1, 1]``.

        For each state, the ``n_action_samples`` fixed latent vectors are decoded and
        perturbed, and the candidate with the highest ``Q1`` is returned; ``B * n`` rows go
        through the networks in one pass per chunk of ``ACT_CHUNK_STATES`` states.
        Deterministic: the same observation batch always gives the same actions.
        """
        self._require_nets()
        obs = check_obs_batch(obs, self.obs_dim)
        if not np.all(np.isfinite(obs)):
            raise ValueError("observations hold NaN or infinite values")
        n = self.config.n_action_samples
        out = np.empty((obs.shape[0], self.action_dim), dtype=np.float32)
        for start in range(0, obs.shape[0], ACT_CHUNK_STATES):
            chunk = torch.as_tensor(obs[start : start + ACT_CHUNK_STATES], device=self.device)
            b = chunk.shape[0]
            latent = self._act_latent.expand(b, n, self.nets.latent_dim)  # same candidates' z for every state
            candidates = self._perturb(self.nets.perturbation, chunk, self._decode(chunk, latent))  # (b, n, A)
            best = self._q(self.nets.critic1, chunk, candidates).argmax(dim=1)  # (b,)
            out[start : start + b] = candidates[torch.arange(b, device=self.device), best].cpu().numpy()
        return out

    @torch.no_grad()
    def predict_value(self, obs: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        """The critic's Q estimate: ``obs (B, obs_dim)``, ``actions (B, A)`` or None for the policy's
        own actions (:meth:`act`) -> ``(B,)`` float32.

        ``Q1``, the critic that action selection maximises (the clipped double-Q minimum is used
        only in the training target), so ``predict_value(obs)`` is the value the policy believes
        its own actions have; the same signature as the d3rlpy agents' ``predict_value``.
        """
        nets = self._require_nets()
        obs = check_obs_batch(obs, self.obs_dim)
        if not np.all(np.isfinite(obs)):
            raise ValueError("observations hold NaN or infinite values")
        actions = self.act(obs) if actions is None else np.asarray(actions, dtype=np.float32)
        if actions.shape != (obs.shape[0], self.action_dim):
            raise ValueError(f"actions have shape {actions.shape}, expected {(obs.shape[0], self.action_dim)}")
        out = np.empty(obs.shape[0], dtype=np.float32)
        for start in range(0, obs.shape[0], ACT_CHUNK_STATES):
            o = torch.as_tensor(obs[start : start + ACT_CHUNK_STATES], device=self.device)
            a = torch.as_tensor(actions[start : start + ACT_CHUNK_STATES], device=self.device)
            out[start : start + len(o)] = nets.critic1(o, a).squeeze(1).cpu().numpy()  # (b,)
        return out

    # ------------------------------------------------------------------ state, save and load
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat ``{"<network>.<parameter>": tensor}`` of every network, targets included."""
        return dict(self._require_nets().state_dict())

    def _build_for_load(self) -> None:
        self._build(self.obs_dim, self.action_dim, self.seed)

    def _require_trained(self) -> None:
        self._require_nets()

    def _algo_state(self, training: bool) -> dict[str, Any]:
        """Networks and targets, optimisers and the training generator (the same for ``save`` and ``fit``)."""
        return {
            "nets": {k: v.detach().cpu() for k, v in self.nets.state_dict().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
        }

    def _load_state(self, state: dict[str, Any], path: Path, training: bool) -> None:
        """Load networks (and for ``training`` the optimisers and generator) from ``state``."""
        if not isinstance(state["nets"], dict):
            raise CheckpointError(f"{path}: 'nets' is not a state dict")
        load_module_state(self.nets, state["nets"], f"{path} networks")
        if not training:
            return
        with restoring_state(path):
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
            self.generator.set_state(state["generator"])
