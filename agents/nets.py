"""Shared network builders for the agents: plain MLPs and observation-conditioned MLPs.

Two builders, both initialised from an explicit ``torch.Generator`` (never torch's global
random state, so the same seed gives the same weights whatever else ran before):

* :func:`mlp` -- an ``nn.Sequential`` of ``nn.Linear`` + ReLU layers, the default for any
  agent that needs an ordinary MLP.
* :class:`ObsConditionedMLP` -- an MLP ``f(obs, x) = MLP([obs, x])`` (critics, perturbation
  net, VAE encoder and decoder). Its first layer is stored as two blocks,
  ``obs @ W_obs + b`` and ``x @ W_x``, which is the same function as one ``nn.Linear`` over
  the concatenation ``[obs, x]`` (same initialisation distribution too), but lets a caller
  compute the observation block once per state and reuse it for ``k`` inputs ``x`` per state
  (BCQ decodes, perturbs and scores ``k = 10`` or ``100`` sampled actions per state). That
  saves ``(k - 1) / k`` of the first-layer work on the observation features, which dominate
  the input width here (about 60 observation features against 12 to 24 action / latent
  features).

Twin critics are two of these rather than one module with a leading ensemble dimension:
on CPU (MKL, torch 2.13, one thread) ``torch.baddbmm`` over two members was measured 18%
slower than two ``addmm`` calls for 2560 x 400 x 300, and 10x slower for the 300 x 1 output
layer.

Shapes: ``B`` states, ``k`` inputs per state.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator | None) -> torch.Tensor:
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def _new_linear(in_features: int, out_features: int, generator: torch.Generator | None, bias: bool = True) -> nn.Linear:
    """An ``nn.Linear`` whose weights are drawn afterwards: with a ``generator`` it is created
    uninitialised, so building a network does not advance torch's global generator."""
    if generator is None:
        return nn.Linear(in_features, out_features, bias=bias)
    return torch.nn.utils.skip_init(nn.Linear, in_features, out_features, bias=bias)


def init_linear_(layer: nn.Linear, generator: torch.Generator | None) -> nn.Linear:
    """Re-initialise an ``nn.Linear`` like PyTorch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    drawing from ``generator``."""
    bound = 1.0 / math.sqrt(layer.in_features)
    _uniform_(layer.weight, bound, generator)
    if layer.bias is not None:
        _uniform_(layer.bias, bound, generator)
    return layer


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    *,
    generator: torch.Generator | None = None,
    activation: type[nn.Module] = nn.ReLU,
    output_activation: type[nn.Module] | None = None,
) -> nn.Sequential:
    """``in_dim -> hidden[0] -> ... -> hidden[-1] -> out_dim`` with ``activation`` between layers.

    Input ``(..., in_dim)``, output ``(..., out_dim)``. Weights are drawn from ``generator``
    with PyTorch's default ``nn.Linear`` distribution.
    """
    if in_dim <= 0 or out_dim <= 0 or any(h <= 0 for h in hidden):
        raise ValueError(f"mlp sizes must be positive, got in={in_dim}, hidden={tuple(hidden)}, out={out_dim}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [init_linear_(_new_linear(fan_in, fan_out, generator), generator), activation()]
    layers.append(init_linear_(_new_linear(sizes[-1], out_dim, generator), generator))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


def _linear(x: torch.Tensor, layer: nn.Linear, out: torch.Tensor | None) -> torch.Tensor:
    """``layer(x)``, written into ``out`` when given (``x (N, in)``, ``out (N, out_features)``)."""
    if out is None:
        return layer(x)
    if layer.bias is None:
        return torch.mm(x, layer.weight.t(), out=out)
    return torch.addmm(layer.bias, x, layer.weight.t(), out=out)


class ObsConditionedMLP(nn.Module):
    """A ReLU MLP over ``[obs, x]`` whose first layer is split (see the module docstring).

    ``f(obs, x) = L_n(relu(... relu(obs @ W_obs + x @ W_x + b) ...))``: the same function and
    the same initial weight distribution as an :func:`mlp` over the concatenation.

    Args:
        obs_dim: observation features.
        in_dim: features of the second input ``x`` (an action, or a VAE latent).
        hidden: hidden layer widths, e.g. ``(400, 300)``.
        out_dim: output features (no output activation; callers apply tanh etc.).
        generator: source of the initial weights.
    """

    def __init__(self, obs_dim: int, in_dim: int, hidden: Sequence[int], out_dim: int,
                 generator: torch.Generator | None = None):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if obs_dim <= 0 or in_dim <= 0 or out_dim <= 0 or not hidden or min(hidden) <= 0:
            raise ValueError(
                f"ObsConditionedMLP sizes must be positive with at least one hidden layer, got obs_dim={obs_dim}, "
                f"in_dim={in_dim}, hidden={hidden}, out_dim={out_dim}"
            )
        self.obs_dim, self.in_dim, self.out_dim = obs_dim, in_dim, out_dim
        bound = 1.0 / math.sqrt(obs_dim + in_dim)  # initialise like one nn.Linear over the concatenation
        self.obs_layer = _new_linear(obs_dim, hidden[0], generator)
        self.input_layer = _new_linear(in_dim, hidden[0], generator, bias=False)
        for param in (self.obs_layer.weight, self.obs_layer.bias, self.input_layer.weight):
            _uniform_(param, bound, generator)
        sizes = [*hidden, out_dim]
        self.layers = nn.ModuleList(init_linear_(_new_linear(a, b, generator), generator)
                                    for a, b in zip(sizes[:-1], sizes[1:]))

    def embed_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """First-layer observation block plus bias: ``(B, obs_dim) -> (B, hidden[0])``."""
        return self.obs_layer(obs)

    def workspace(self, max_rows: int, device: torch.device | str | None = None) -> list[torch.Tensor]:
        """Preallocated outputs for every layer, ``(max_rows, width)`` each, for :meth:`forward_embedded`."""
        widths = [self.input_layer.out_features, *(layer.out_features for layer in self.layers)]
        return [torch.empty(max_rows, width, device=device) for width in widths]

    def forward_embedded(self, obs_embedding: torch.Tensor, x: torch.Tensor,
                         workspace: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``obs_embedding (B, h0)`` from :meth:`embed_obs`, ``x (B, k, in_dim)`` -> ``(B, k, out_dim)``.

        All ``k`` rows of state ``b`` share ``obs_embedding[b]``. With a ``workspace`` from
        :meth:`workspace` (``max_rows >= B * k``; inference under ``torch.no_grad`` only) the
        layers write into it instead of fresh memory -- on CPU a fresh multi-megabyte
        activation costs page faults on first touch, measured at 10-20% of a BCQ step -- and
        the result is a view of the workspace, valid until its next use.
        """
        n_states, k, _ = x.shape
        rows = n_states * k
        outs = [None] * (1 + len(self.layers)) if workspace is None else [buf[:rows] for buf in workspace]
        if k == 1 and workspace is None:  # the embedding is the addmm input: one fused call, (B, h0)
            h = torch.addmm(obs_embedding, x[:, 0], self.input_layer.weight.t())
        else:  # (B*k, h0), then add each state's embedding to its k rows in place
            h = _linear(x.reshape(rows, self.in_dim), self.input_layer, outs[0])
            h.view(n_states, k, -1).add_(obs_embedding.unsqueeze(1))
        h = torch.relu_(h)
        for layer, out in zip(self.layers[:-1], outs[1:]):
            h = torch.relu_(_linear(h, layer, out))
        return _linear(h, self.layers[-1], outs[-1]).view(n_states, k, self.out_dim)

    def forward(self, obs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One input per state: ``obs (B, obs_dim)``, ``x (B, in_dim)`` -> ``(B, out_dim)``."""
        return self.forward_embedded(self.embed_obs(obs), x.unsqueeze(1)).squeeze(1)
