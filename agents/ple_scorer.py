"""The PLE-like multi-task scorer, torch half: the model and its training.

The architecture, the factorised first layer and the labels are described in
:mod:`mtf_env.ple`, which holds the numpy half (configuration, weights files, inference,
report) the simulator needs. :class:`PLEScorer` names its parameters and buffers as
:func:`mtf_env.ple.weight_shapes`, so :meth:`PLEScorer.to_weights` exports a plain copy.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtf_env.ple import (STANDARDISATION_KEYS, PLEConfig, ScorerWeights, check_matrix, scorer_report,
                         weight_shapes)
from mtf_env.tasks import N_TASKS, TASK_NAMES

from .base import fit_loop


class PLEScorer(torch.nn.Module):
    """PLE multi-task model: ``forward(u (N, d_u), v (N, d_v)) -> logits (N, 12)``.

    Parameters and buffers are named as in :func:`weight_shapes`, so the export to
    :class:`ScorerWeights` is a plain copy. Initialisation draws from its own
    ``torch.Generator(seed)`` (uniform in +-1/sqrt(fan_in), like ``torch.nn.Linear``), so it
    does not depend on or touch torch's global RNG. The standardisation buffers start at
    mean 0 / scale 1; :func:`train_scorer` sets them from the training split.
    """

    def __init__(self, config: PLEConfig, d_u: int, d_v: int, seed: int = 0):
        super().__init__()
        if d_u < 1 or d_v < 1:
            raise ValueError(f"feature dims must be >= 1, got d_u={d_u}, d_v={d_v}")
        self.config = config
        self.d_u = int(d_u)
        self.d_v = int(d_v)
        gen = torch.Generator().manual_seed(int(seed))
        for name, shape in weight_shapes(config, d_u, d_v).items():
            if name in STANDARDISATION_KEYS:
                fill = torch.zeros if name.startswith("input_mean") else torch.ones
                self.register_buffer(name, fill(shape, dtype=torch.float32))
                continue
            if name.startswith("first_"):
                fan_in = d_u + d_v
            elif name in ("tower_W2", "tower_b2"):
                fan_in = config.tower_hidden
            else:  # later layers and the towers' first layer read H = expert_hidden inputs
                fan_in = config.expert_hidden
            bound = 1.0 / math.sqrt(fan_in)
            init = (torch.rand(shape, generator=gen, dtype=torch.float32) * 2.0 - 1.0) * bound
            self.register_parameter(name, torch.nn.Parameter(init))

    def to_weights(self) -> ScorerWeights:
        """Copy the parameters and buffers as :class:`~mtf_env.ple.ScorerWeights` (float32, detached)."""
        arrays = {name: t.detach().cpu().numpy().astype(np.float32, copy=True) for name, t in self.state_dict().items()}
        return ScorerWeights(config=self.config, d_u=self.d_u, d_v=self.d_v, arrays=arrays)

    @classmethod
    def from_weights(cls, weights: ScorerWeights) -> "PLEScorer":
        """A model holding ``weights`` (eval mode), e.g. to compare numpy inference with torch."""
        model = cls(weights.config, weights.d_u, weights.d_v)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.arrays.items()})
        return model.eval()

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 12)`` for N (user, item) pairs (``u`` (N, d_u), ``v`` (N, d_v), float32)."""
        cfg = self.config
        t, h, n_se, n_te = N_TASKS, cfg.expert_hidden, cfg.n_shared_experts, cfg.n_task_experts
        u_n = (u - self.input_mean_u) / self.input_scale_u
        v_n = (v - self.input_mean_v) / self.input_scale_v
        pre = u_n @ self.first_W_u + v_n @ self.first_W_v + self.first_b  # (N, F)
        n = pre.shape[0]
        # first layer: slice the factorised pre-activations (column layout in the module doc)
        c0 = t * n_te * h
        c1 = c0 + n_se * h
        c2 = c1 + t * (n_se + n_te)
        task_experts = torch.relu(pre[:, :c0]).reshape(n, t, n_te, h).transpose(0, 1)  # (T, N, n_te, H)
        shared_experts = torch.relu(pre[:, c0:c1]).reshape(n, n_se, h)  # (N, n_se, H)
        task_gates = torch.softmax(pre[:, c1:c2].reshape(n, t, n_se + n_te), dim=-1).transpose(0, 1)  # (T, N, E_t)
        shared_gate = torch.softmax(pre[:, c2:], dim=-1) if cfg.n_layers > 1 else None  # (N, n_se + T*n_te)
        task_x, shared_x = self._mix(task_experts, shared_experts, task_gates, shared_gate)
        for layer in range(1, cfg.n_layers):
            p = f"layer{layer}_"
            # task_x (T, N, H), shared_x (N, H)
            if n_te > 0:
                te = torch.bmm(task_x, getattr(self, p + "task_expert_W")) + getattr(self, p + "task_expert_b")[:, None]
                task_experts = torch.relu(te).reshape(t, n, n_te, h)
            else:
                task_experts = task_x.new_zeros((t, n, 0, h))
            se = shared_x @ getattr(self, p + "shared_expert_W") + getattr(self, p + "shared_expert_b")
            shared_experts = torch.relu(se).reshape(n, n_se, h)
            tg = torch.bmm(task_x, getattr(self, p + "task_gate_W")) + getattr(self, p + "task_gate_b")[:, None]
            task_gates = torch.softmax(tg, dim=-1)  # (T, N, n_se + n_te)
            shared_gate = None
            if layer < cfg.n_layers - 1:
                sg = shared_x @ getattr(self, p + "shared_gate_W") + getattr(self, p + "shared_gate_b")
                shared_gate = torch.softmax(sg, dim=-1)
            task_x, shared_x = self._mix(task_experts, shared_experts, task_gates, shared_gate)
        hidden = torch.relu(torch.bmm(task_x, self.tower_W1) + self.tower_b1[:, None])  # (T, N, tower_hidden)
        logits = (hidden * self.tower_W2[:, None]).sum(-1) + self.tower_b2[:, None]  # (T, N)
        return logits.transpose(0, 1)

    @staticmethod
    def _mix(
        task_experts: torch.Tensor,
        shared_experts: torch.Tensor,
        task_gates: torch.Tensor,
        shared_gate: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gate the experts: task t gets its gate over [shared, own]; the shared gate sees all.

        task_experts (T, N, n_te, H), shared_experts (N, n_se, H), task_gates (T, N, n_se+n_te),
        shared_gate (N, n_se + T*n_te) or None -> task_x (T, N, H), shared_x (N, H) or None.
        """
        # broadcast-multiply and sum: the gates are per row, and einsum would turn these
        # contractions into many tiny batched matmuls (about 3x slower to train)
        n_se = shared_experts.shape[1]
        task_x = (task_gates[..., :n_se, None] * shared_experts[None]).sum(2)
        task_x = task_x + (task_gates[..., n_se:, None] * task_experts).sum(2)
        shared_x = None
        if shared_gate is not None:
            t, n, n_te, h = task_experts.shape
            own = task_experts.transpose(0, 1).reshape(n, t * n_te, h)  # (N, T*n_te, H), task-major
            experts = torch.cat([shared_experts, own], dim=1)
            shared_x = (shared_gate[..., None] * experts).sum(1)
        return task_x, shared_x


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``n`` rows: ``(train_index, val_index)``, both sorted int64.

    The validation split has ``max(1, round(n * val_fraction))`` rows; the same
    ``(n, val_fraction, seed)`` always gives the same split (it is the first child stream of
    ``SeedSequence(seed)``, the one :func:`train_scorer` uses).
    """
    if n < 2:
        raise ValueError(f"need at least 2 rows to split off a validation set, got {n}")
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _check_training_arrays(
    user_features: np.ndarray, item_features: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = check_matrix(user_features, "user_features")
    v = check_matrix(item_features, "item_features")
    y = check_matrix(labels, "labels")
    if not len(u) == len(v) == len(y):
        raise ValueError(
            f"user_features, item_features and labels need the same rows, got {len(u)}, {len(v)}, {len(y)}"
        )
    if y.shape[1] != N_TASKS:
        raise ValueError(f"labels must have {N_TASKS} columns (order of TASK_NAMES), got {y.shape[1]}")
    if np.any((y < 0) | (y > 1)):
        raise ValueError("labels must lie in [0, 1] (play_time as min(play_time_s / PLAY_TIME_SCALE_S, 1))")
    return u, v, y


def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per column; constant columns get scale 1 (they then carry only a bias)."""
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    scale = np.where(std > 1e-6, std, 1.0)
    return mean.astype(np.float32), scale.astype(np.float32)


def train_scorer(
    user_features: np.ndarray,
    item_features: np.ndarray,
    labels: np.ndarray,
    config: PLEConfig = PLEConfig(),
    seed: int = 0,
    show_progress: bool = True,
) -> tuple[PLEScorer, dict[str, Any]]:
    """Train a :class:`PLEScorer` on N logged impressions.

    Args:
        user_features: (N, d_u) observable user features of each impression.
        item_features: (N, d_v) observable item features of each impression.
        labels: (N, 12) feedback in [0, 1], order of ``TASK_NAMES``; column ``play_time`` is the
            soft label :func:`play_time_label`, the others are 0/1.
        config: model size and training settings.
        seed: one seed for the validation split, the initial weights and the batch order
            (same seed and data -> identical weights).
        show_progress: tqdm bar over the gradient steps.

    Uses torch's current thread count; a long run should call ``torch.set_num_threads(1)``
    (or 2) first on the shared 2-core machine.

    Returns:
        ``(model, history)``: the model in eval mode with the weights of the epoch with the
        lowest validation loss, and a JSON-serialisable dict: ``config``, ``seed``, ``epochs`` (per epoch
        ``epoch``, ``train/loss``, ``val/loss``, ``val/loss_per_task``), ``best_epoch``,
        ``n_train``, ``n_val``, ``seconds`` and ``val_report`` (:func:`scorer_report` on the
        validation split). The split is :func:`split_train_val` ``(N, config.val_fraction, seed)``.
    """
    u, v, y = _check_training_arrays(user_features, item_features, labels)
    start = time.perf_counter()
    train_idx, val_idx = split_train_val(len(u), config.val_fraction, seed)
    shuffle_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])

    model = PLEScorer(config, u.shape[1], v.shape[1], seed=seed)
    with torch.no_grad():
        for side, x in (("u", u[train_idx]), ("v", v[train_idx])):
            mean, scale = _standardisation(x)
            getattr(model, f"input_mean_{side}").copy_(torch.from_numpy(mean))
            getattr(model, f"input_scale_{side}").copy_(torch.from_numpy(scale))
        # start each tower at the base rate of its task: rare tasks (share, follow) begin
        # calibrated instead of spending the first epoch pulling their logit down
        base_rate = np.clip(y[train_idx].mean(axis=0, dtype=np.float64), 1e-4, 1 - 1e-4)
        model.tower_b2.copy_(torch.from_numpy(np.log(base_rate / (1 - base_rate)).astype(np.float32)))
        model.tower_W2.mul_(0.1)

    u_t, v_t, y_t = torch.from_numpy(u), torch.from_numpy(v), torch.from_numpy(y)
    train_t = torch.from_numpy(train_idx)
    val = (u_t[val_idx], v_t[val_idx], y_t[val_idx])
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    # annealing to 0 lets the last epoch settle, which is what keeps the rare tasks calibrated
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps_per_epoch * config.epochs)
    order: dict[str, Any] = {"epoch": -1, "perm": None}
    history: dict[str, Any] = {
        "config": asdict(config),
        "seed": int(seed),
        "epochs": [],
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
    }
    best: dict[str, Any] = {"loss": math.inf, "state": None, "epoch": 0}
    train_losses: list[float] = []

    def update(step: int) -> dict[str, float]:
        epoch, k = divmod(step, steps_per_epoch)
        if order["epoch"] != epoch:
            order["epoch"], order["perm"] = epoch, torch.from_numpy(shuffle_rng.permutation(len(train_idx)))
        rows = train_t[order["perm"][k * config.batch_size : (k + 1) * config.batch_size]]
        model.train()
        loss = F.binary_cross_entropy_with_logits(model(u_t[rows], v_t[rows]), y_t[rows])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        train_losses.append(float(loss.detach()))
        return {"train/loss": train_losses[-1]}

    def end_of_epoch(step_done: int) -> None:
        epoch = step_done // steps_per_epoch
        val_logits = _torch_logits(model, val[0], val[1])
        per_task = F.binary_cross_entropy_with_logits(val_logits, val[2], reduction="none").mean(0)
        val_loss = float(per_task.mean())
        history["epochs"].append(
            {
                "epoch": epoch,
                "train/loss": float(np.mean(train_losses[-steps_per_epoch:])),
                "val/loss": val_loss,
                "val/loss_per_task": {name: float(x) for name, x in zip(TASK_NAMES, per_task)},
            }
        )
        if val_loss < best["loss"]:
            best.update(loss=val_loss, epoch=epoch, state=copy.deepcopy(model.state_dict()))

    fit_loop(
        update,
        steps_per_epoch * config.epochs,
        log_every=min(100, steps_per_epoch),
        checkpoint=end_of_epoch,
        checkpoint_every=steps_per_epoch,
        desc="fit-scorer",
        show_progress=show_progress,
    )
    model.load_state_dict(best["state"])
    model.eval()
    val_probs = torch.sigmoid(_torch_logits(model, val[0], val[1])).numpy()
    history["best_epoch"] = best["epoch"]
    history["val_report"] = scorer_report(val_probs, y[val_idx])
    history["seconds"] = time.perf_counter() - start
    return model, history


@torch.no_grad()
def _torch_logits(model: PLEScorer, u: torch.Tensor, v: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    model.eval()
    return torch.cat([model(u[i : i + chunk], v[i : i + chunk]) for i in range(0, len(u), chunk)])


