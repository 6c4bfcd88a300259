"""UWAC+TD3: TD3 with uncertainty-weighted critics, built on d3rlpy's TD3.

Uncertainty Weighted Actor-Critic (Wu et al. 2021, "Uncertainty Weighted Actor-Critic for
Offline Reinforcement Learning", ICML, arXiv 2105.08140) down-weights the Bellman targets and
actor gradients whose Q estimates are uncertain, which in offline RL are mostly those of
out-of-distribution actions. The uncertainty is the variance of Monte-Carlo (MC) dropout: the
critics have dropout after every hidden layer, and ``K = n_dropout_samples`` stochastic passes
give a mean and a variance of Q at the same input. The paper combines this with BEAR; here it
extends d3rlpy's TD3 (the project's ``uwac-td3`` baseline), changing only the two losses:

Critic (per minibatch of B transitions, twin critics ``j = 1, 2``)::

    a'      = clip(pi'(s') + clip(N(0, sigma), -c, c), -1, 1)           TD3's smoothed target action
    Q'_jk   = k-th MC-dropout pass of target critic j at (s', a')        (2, K, B)
    y       = r + gamma * (1 - d) * min_j mean_k Q'_jk                    (B, 1)
    Var     = (1 - d) * sum_j var_k Q'_jk                                 (B, 1)
    w       = clip(beta / Var, 0, max_weight)         (weight_form="inverse", the paper's Eq. 5)
           or clip(exp(-beta * Var), 0, max_weight)   (weight_form="exp", the reference code's default)
    L_Q     = sum_j mean_b w_b * (Q_j(s_b, a_b) - y_b)^2                  (online critics with dropout on)

Actor (every ``update_actor_interval`` steps, as TD3)::

    w_pi    = clip(beta / sum_j var_k Q_jk(s, pi(s)), 0, max_weight)     (no gradient; weight_actor=True)
    L_pi    = -mean_b w_pi_b * Q_1(s_b, pi(s_b))                           (Q_1 with dropout off, as d3rlpy's TD3)

Choices, with the reference: the variance is the sum of the two critics' MC variances and the
target is the minimum of their MC means, as in Wu et al.'s code
(github.com/apple/ml-uwac, ``rlkit/torch/sac/uwac_dropout.py``), whose defaults the config
fields carry (``dropout_rate=0.1``, ``beta=0.5``, weights clipped to ``[0, 1]``, 100 MC
passes, actor weighting on). Two deliberate differences from that code: (1) the weight
multiplies the *squared* TD error, as in the paper's Eq. 5 (the code multiplies the TD error
before squaring, i.e. weights by ``w^2``); (2) a terminal transition's target does not
bootstrap, so its variance is zero and it gets ``max_weight`` (the code weights it by the
variance of a Q value it does not use). :class:`UWACTD3Config` defaults to the code's
exponential form; the project's ``uwac-td3`` baseline uses the paper's inverse-variance form
(``agents/baseline_settings.py``).

Everything else is d3rlpy's TD3: networks, optimisers, target smoothing, delayed actor and
target updates (:class:`d3rlpy.algos.TD3`, ``TD3Impl``). Dropout draws from torch's global
random generator, like the rest of d3rlpy; the caller seeds it (``agents/offline_d3rlpy.py``).
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from d3rlpy.algos import TD3, TD3Config
from d3rlpy.algos.qlearning.torch.ddpg_impl import DDPGBaseActorLoss, DDPGBaseCriticLoss, DDPGModules
from d3rlpy.algos.qlearning.torch.td3_impl import TD3Impl
from d3rlpy.base import DeviceArg
from d3rlpy.models.torch import ActionOutput, ContinuousEnsembleQFunctionForwarder
from d3rlpy.torch_utility import TorchMiniBatch
from d3rlpy.types import Shape

__all__ = ["UWACTD3Config", "UWACTD3", "UWACTD3Impl", "uncertainty_weight", "WEIGHT_FORMS"]

#: The two weight forms of Wu et al.: the paper's inverse variance and the code's exponential.
WEIGHT_FORMS = ("inverse", "exp")


def uncertainty_weight(variance: torch.Tensor, beta: float, max_weight: float, form: str = "inverse") -> torch.Tensor:
    """UWAC's per-sample weight from a Q variance (any shape, >= 0), same shape, in ``[0, max_weight]``.

    ``form="inverse"``: ``clip(beta / variance, 0, max_weight)`` (a zero variance gives
    ``max_weight``); ``form="exp"``: ``clip(exp(-beta * variance), 0, max_weight)``. Both
    decrease with the variance.
    """
    if form == "inverse":
        # beta / max(var, tiny) stays finite; the clip then maps "certain" samples to max_weight
        weight = beta / variance.clamp_min(torch.finfo(variance.dtype).tiny)
    elif form == "exp":
        weight = torch.exp(-beta * variance)
    else:
        raise ValueError(f"weight_form must be one of {WEIGHT_FORMS}, got {form!r}")
    return weight.clamp(0.0, max_weight)


@dataclasses.dataclass()
class UWACTD3Config(TD3Config):
    """Config of UWAC+TD3: d3rlpy's :class:`~d3rlpy.algos.TD3Config` plus the UWAC fields.

    The critics' encoder factory gets ``dropout_rate`` (it must be a factory with a
    ``dropout_rate`` field, e.g. ``VectorEncoderFactory``; a different non-empty rate there is
    an error). Defaults of the UWAC fields are Wu et al.'s code's; the project's ``uwac-td3``
    baseline changes some of them (``agents/baseline_settings.py``).
    """

    dropout_rate: float = 0.1
    """Dropout probability after every hidden layer of the critics (MC dropout; code: 0.1)."""
    beta: float = 0.5
    """Scale of the weight: ``beta / Var`` or ``exp(-beta * Var)`` (code: 0.5)."""
    max_weight: float = 1.0
    """Upper clip of the weight (code: ``clip_top=1.0``); the lower clip is 0."""
    weight_form: str = "exp"
    """``"exp"`` (the code's default, ``use_exp_weight=True``) or ``"inverse"`` (the paper's Eq. 5)."""
    n_dropout_samples: int = 100
    """K: MC-dropout passes per variance estimate (code: 100)."""
    weight_actor: bool = True
    """Weight the actor loss by the uncertainty of ``Q(s, pi(s))`` too (code: ``var_Pi=True``)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.dropout_rate < 1.0:
            raise ValueError(f"UWACTD3Config.dropout_rate must be in (0, 1), got {self.dropout_rate}")
        if not self.beta > 0.0:
            raise ValueError(f"UWACTD3Config.beta must be > 0, got {self.beta}")
        if not self.max_weight > 0.0:
            raise ValueError(f"UWACTD3Config.max_weight must be > 0, got {self.max_weight}")
        if self.weight_form not in WEIGHT_FORMS:
            raise ValueError(f"UWACTD3Config.weight_form must be one of {WEIGHT_FORMS}, got {self.weight_form!r}")
        if int(self.n_dropout_samples) < 2:
            raise ValueError(f"UWACTD3Config.n_dropout_samples must be >= 2 (a variance), got {self.n_dropout_samples}")
        factory = self.critic_encoder_factory
        if not hasattr(factory, "dropout_rate"):
            raise ValueError(
                f"uwac-td3 needs a critic encoder factory with a dropout_rate field, got {type(factory).__name__}"
            )
        if factory.dropout_rate not in (None, 0.0, self.dropout_rate):
            raise ValueError(
                f"critic_encoder_factory.dropout_rate={factory.dropout_rate} differs from "
                f"UWACTD3Config.dropout_rate={self.dropout_rate}; set only the latter"
            )
        self.critic_encoder_factory = dataclasses.replace(factory, dropout_rate=self.dropout_rate)

    def create(self, device: DeviceArg = False, enable_ddp: bool = False) -> "UWACTD3":
        return UWACTD3(self, device, enable_ddp)

    @staticmethod
    def get_type() -> str:
        return "uwac_td3"


class UWACTD3(TD3):
    """d3rlpy's TD3 with the UWAC implementation: the networks are TD3's, built by TD3."""

    def inner_create_impl(self, observation_shape: Shape, action_size: int) -> None:
        super().inner_create_impl(observation_shape, action_size)  # TD3's networks and optimisers
        td3 = self._impl
        cfg = self._config
        self._impl = UWACTD3Impl(
            observation_shape=observation_shape,
            action_size=action_size,
            modules=td3.modules,
            q_func_forwarder=td3._q_func_forwarder,
            targ_q_func_forwarder=td3._targ_q_func_forwarder,
            gamma=cfg.gamma,
            tau=cfg.tau,
            target_smoothing_sigma=cfg.target_smoothing_sigma,
            target_smoothing_clip=cfg.target_smoothing_clip,
            update_actor_interval=cfg.update_actor_interval,
            beta=cfg.beta,
            max_weight=cfg.max_weight,
            weight_form=cfg.weight_form,
            n_dropout_samples=int(cfg.n_dropout_samples),
            weight_actor=cfg.weight_actor,
            compiled=self.compiled,
            device=self._device,
        )


@dataclasses.dataclass(frozen=True)
class UWACCriticLoss(DDPGBaseCriticLoss):
    target_variance: torch.Tensor
    """Batch mean of the MC-dropout variance of the bootstrapped target (0 for terminal rows)."""
    critic_weight: torch.Tensor
    """Batch mean of the critic weights."""


@dataclasses.dataclass(frozen=True)
class UWACActorLoss(DDPGBaseActorLoss):
    actor_weight: torch.Tensor
    """Batch mean of the actor weights (1 everywhere without ``weight_actor``)."""


@contextmanager
def _dropout_on(modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in training mode (dropout active) and restore their modes afterwards."""
    modes = [(m, m.training) for m in modules.modules()]
    modules.train()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


class UWACTD3Impl(TD3Impl):
    """TD3Impl with uncertainty-weighted critic and actor losses (see the module docstring)."""

    def __init__(
        self,
        observation_shape: Shape,
        action_size: int,
        modules: DDPGModules,
        q_func_forwarder: ContinuousEnsembleQFunctionForwarder,
        targ_q_func_forwarder: ContinuousEnsembleQFunctionForwarder,
        gamma: float,
        tau: float,
        target_smoothing_sigma: float,
        target_smoothing_clip: float,
        update_actor_interval: int,
        beta: float,
        max_weight: float,
        weight_form: str,
        n_dropout_samples: int,
        weight_actor: bool,
        compiled: bool,
        device: str,
    ):
        super().__init__(
            observation_shape=observation_shape,
            action_size=action_size,
            modules=modules,
            q_func_forwarder=q_func_forwarder,
            targ_q_func_forwarder=targ_q_func_forwarder,
            gamma=gamma,
            tau=tau,
            target_smoothing_sigma=target_smoothing_sigma,
            target_smoothing_clip=target_smoothing_clip,
            update_actor_interval=update_actor_interval,
            compiled=compiled,
            device=device,
        )
        self._beta = beta
        self._max_weight = max_weight
        self._weight_form = weight_form
        self._n_dropout_samples = n_dropout_samples
        self._weight_actor = weight_actor

    def weight(self, variance: torch.Tensor) -> torch.Tensor:
        """:func:`uncertainty_weight` with this algorithm's settings."""
        return uncertainty_weight(variance, self._beta, self._max_weight, self._weight_form)

    @torch.no_grad()
    def dropout_q_samples(self, q_funcs: nn.ModuleList, observations: torch.Tensor,
                          actions: torch.Tensor) -> torch.Tensor:
        """K MC-dropout passes of each critic: obs (B, obs_dim), actions (B, A) -> (n_critics, K, B)."""
        k, b = self._n_dropout_samples, actions.shape[0]
        obs_rep = observations.repeat(k, 1)  # (K * B, obs_dim), pass-major
        act_rep = actions.repeat(k, 1)  # (K * B, A)
        with _dropout_on(q_funcs):
            return torch.stack([q(obs_rep, act_rep).q_value.view(k, b) for q in q_funcs])

    @torch.no_grad()
    def compute_target_with_variance(self, batch: TorchMiniBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(min_j mean_k Q'_jk, sum_j var_k Q'_jk) at (s', smoothed pi'(s')): both (B, 1)."""
        action = self._modules.targ_policy(batch.next_observations)
        # TD3's target policy smoothing, as d3rlpy's TD3Impl.compute_target
        noise = torch.randn(action.mu.shape, device=batch.device)
        clipped_noise = (self._target_smoothing_sigma * noise).clamp(
            -self._target_smoothing_clip, self._target_smoothing_clip
        )
        next_action = (action.squashed_mu + clipped_noise).clamp(-1.0, 1.0)
        samples = self.dropout_q_samples(self._modules.targ_q_funcs, batch.next_observations, next_action)
        target = samples.mean(dim=1).min(dim=0).values.unsqueeze(1)  # (B, 1)
        variance = samples.var(dim=1).sum(dim=0).unsqueeze(1)  # (B, 1), unbiased over the K passes
        return target, variance

    def compute_target(self, batch: TorchMiniBatch) -> torch.Tensor:
        return self.compute_target_with_variance(batch)[0]

    @torch.no_grad()
    def critic_weights(self, batch: TorchMiniBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target Q', its variance, the critic weight), each (B, 1); terminal rows have variance 0."""
        q_tpn, variance = self.compute_target_with_variance(batch)
        variance = variance * (1.0 - batch.terminals)  # a terminal target does not bootstrap: no uncertainty
        return q_tpn, variance, self.weight(variance)

    def compute_critic_grad(self, batch: TorchMiniBatch) -> UWACCriticLoss:
        self._modules.critic_optim.zero_grad()
        q_tpn, variance, weight = self.critic_weights(batch)
        # d3rlpy's ensemble TD error with per-sample weights (its `masks`): sum_j mean_b w_b * (Q_j - y)^2
        loss = self._q_func_forwarder.compute_error(
            observations=batch.observations,
            actions=batch.actions,
            rewards=batch.rewards,
            target=q_tpn,
            terminals=batch.terminals,
            gamma=self._gamma**batch.intervals,
            masks=weight,
        )
        loss.backward()
        return UWACCriticLoss(critic_loss=loss, target_variance=variance.mean(), critic_weight=weight.mean())

    def compute_actor_loss(self, batch: TorchMiniBatch, action: ActionOutput) -> UWACActorLoss:
        # Q_1(s, pi(s)) with the critics in eval mode (dropout off), as d3rlpy's TD3 actor loss
        q_t = self._q_func_forwarder.compute_expected_q(batch.observations, action.squashed_mu, "none")[0]  # (B, 1)
        if self._weight_actor:
            samples = self.dropout_q_samples(self._modules.q_funcs, batch.observations, action.squashed_mu.detach())
            weight = self.weight(samples.var(dim=1).sum(dim=0).unsqueeze(1))  # (B, 1), no gradient
        else:
            weight = torch.ones_like(q_t)
        return UWACActorLoss(actor_loss=-(weight * q_t).mean(), actor_weight=weight.mean())
