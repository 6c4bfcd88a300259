"""The PLE-like multi-task scorer, numpy half: configuration, weights files, inference and its report.

The simulator ranks the K candidates of a request with the 12 predictions ``o`` (order of
:data:`mtf_env.tasks.TASK_NAMES`, each in (0, 1)) of a multi-task model that sees only
observable features: a user feature vector ``u`` (``d_u`` floats) and an item feature
vector ``v`` (``d_v`` floats). It never sees the hidden user state (fatigue, saturation,
true interests) nor the true item quality, so its predictions are imperfect in the way a
production ranking model is.

Architecture: Progressive Layered Extraction (PLE, Tang et al., RecSys 2020). Each of the
``n_layers`` extraction layers (a CGC layer) has ``n_shared_experts`` shared experts and
``n_task_experts`` experts per task; expert ``k`` is ``relu(x @ W_k + b_k)`` with
``expert_hidden`` units. Task ``t`` mixes the shared experts and its own experts with a
softmax gate on its own input; between layers a shared gate mixes *all* experts into the
input of the next layer's shared experts. Each task ends in a tower
``Linear(expert_hidden, tower_hidden) -> ReLU -> Linear(tower_hidden, 1)``.

Factorised first layer: the inputs are standardised, ``x = concat(u_n, v_n)``, and every
linear map of the first layer (all its experts and gates) is one matrix, so

    pre0 = x @ W + b = u_n @ W_u + v_n @ W_v + b        (F = first_layer_width(config))

The item side ``v_n @ W_v`` is computed once per catalogue (:func:`first_layer_item`), the
user side ``u_n @ W_u + b`` once per user or user cell (:func:`first_layer_user`); a
(user, item) pair then costs one addition before :func:`predict_from_first_layer`.
:func:`predict_table` uses this to fill a (cells x items x 12) table.

Columns of ``pre0`` (F = T*n_te*H + n_se*H + T*(n_se+n_te) + [n_se + T*n_te if n_layers > 1]),
T = 12 tasks, H = expert_hidden, n_se / n_te = shared / per-task experts:

    [ task experts (T, n_te, H) | shared experts (n_se, H) | task gates (T, n_se+n_te) | shared gate ]

Labels are the 12 feedback signals of an impression in [0, 1]; ``play_time`` is the soft
label ``min(play_time_s / PLAY_TIME_SCALE_S, 1)`` (:func:`play_time_label`), the others are
0/1. The loss is binary cross-entropy with logits on all 12 tasks, unweighted, so the
predictions stay calibrated probabilities (and, for play_time, a calibrated mean).

This module needs no torch: the simulator only reads trained weights
(:class:`ScorerWeights`) and runs :func:`numpy_predict` / :func:`predict_table`. The torch
model and its training are ``agents.ple_scorer`` (``PLEScorer``, ``train_scorer``), which
export to :class:`ScorerWeights`; the table the simulator ranks with is
:mod:`mtf_env.score_table`.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .files import atomic_write_bytes
from .numeric import sigmoid_f32
from .tasks import N_TASKS, PLAY_TIME_SCALE_S, TASK_INDEX, TASK_NAMES

#: Format tag stored in every weights file and its JSON sidecar (a file format name, kept as written).
WEIGHTS_FORMAT = "mtf_env.scorer/ple-v1"
_META_KEY = "meta_json"
_PLAY_TIME = TASK_INDEX["play_time"]
#: Weights that are the input standardisation (buffers of the torch model, not trained parameters).
STANDARDISATION_KEYS = ("input_mean_u", "input_scale_u", "input_mean_v", "input_scale_v")


@dataclass(frozen=True)
class PLEConfig:
    """Size and training settings of the PLE scorer.

    The defaults (about 21k parameters for d_u + d_v = 55) train in about a minute on one
    CPU core on 500k impressions and cost about 6k multiply-adds plus 3k elementwise
    operations per (user, item) pair after the factorised first layer.
    """

    n_shared_experts: int = 2
    """Shared experts per extraction layer (seen by every task gate and the shared gate)."""
    n_task_experts: int = 1
    """Experts per task and per extraction layer (seen by that task's gate only)."""
    expert_hidden: int = 16
    """Units of every expert (one Linear + ReLU); also the width of each task's layer output."""
    n_layers: int = 2
    """Extraction (CGC) layers; the first is the factorised layer over ``concat(u, v)``."""
    tower_hidden: int = 8
    """Hidden units of each task tower (Linear -> ReLU -> Linear to one logit)."""
    lr: float = 3e-3
    """Initial AdamW learning rate, cosine-annealed to 0 over all gradient steps."""
    batch_size: int = 1024
    """Impressions per gradient step."""
    epochs: int = 4
    """Passes over the training split (each shuffled by the seeded generator)."""
    weight_decay: float = 1e-5
    """AdamW decoupled weight decay on all parameters."""
    val_fraction: float = 0.1
    """Share of impressions held out (seeded random split) for validation and the report."""

    def __post_init__(self) -> None:
        for name in ("n_shared_experts", "expert_hidden", "n_layers", "tower_hidden", "batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PLEConfig.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.n_task_experts, int) or isinstance(self.n_task_experts, bool) or self.n_task_experts < 0:
            raise ValueError(f"PLEConfig.n_task_experts must be an integer >= 0, got {self.n_task_experts!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"PLEConfig.lr must be a positive finite number, got {self.lr!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"PLEConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"PLEConfig.val_fraction must be in (0, 1), got {self.val_fraction!r}")


def first_layer_width(config: PLEConfig) -> int:
    """Columns F of the factorised first layer (all first-layer experts and gates), see module doc."""
    t, h, n_se, n_te = N_TASKS, config.expert_hidden, config.n_shared_experts, config.n_task_experts
    width = t * n_te * h + n_se * h + t * (n_se + n_te)
    if config.n_layers > 1:
        width += n_se + t * n_te
    return width


def weight_shapes(config: PLEConfig, d_u: int, d_v: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every array of a scorer (the torch parameters/buffers and the .npz keys).

    ``input_*``: standardisation ``(x - mean) / scale`` of the user and item features;
    ``first_*``: the factorised first layer; ``layer{l}_*`` for l = 1 .. n_layers-1 (inputs of
    width H = expert_hidden): task experts ``(T, H, n_te*H)``, shared experts ``(H, n_se*H)``,
    task gates ``(T, H, n_se+n_te)`` and, except in the last layer, the shared gate
    ``(H, n_se + T*n_te)``; ``tower_*``: the 12 towers.
    """
    t, h, n_se, n_te, th = (
        N_TASKS,
        config.expert_hidden,
        config.n_shared_experts,
        config.n_task_experts,
        config.tower_hidden,
    )
    width = first_layer_width(config)
    shapes: dict[str, tuple[int, ...]] = {
        "input_mean_u": (d_u,),
        "input_scale_u": (d_u,),
        "input_mean_v": (d_v,),
        "input_scale_v": (d_v,),
        "first_W_u": (d_u, width),
        "first_W_v": (d_v, width),
        "first_b": (width,),
    }
    for layer in range(1, config.n_layers):
        p = f"layer{layer}_"
        if n_te > 0:
            shapes[p + "task_expert_W"] = (t, h, n_te * h)
            shapes[p + "task_expert_b"] = (t, n_te * h)
        shapes[p + "shared_expert_W"] = (h, n_se * h)
        shapes[p + "shared_expert_b"] = (n_se * h,)
        shapes[p + "task_gate_W"] = (t, h, n_se + n_te)
        shapes[p + "task_gate_b"] = (t, n_se + n_te)
        if layer < config.n_layers - 1:
            shapes[p + "shared_gate_W"] = (h, n_se + t * n_te)
            shapes[p + "shared_gate_b"] = (n_se + t * n_te,)
    shapes.update({"tower_W1": (t, h, th), "tower_b1": (t, th), "tower_W2": (t, th), "tower_b2": (t,)})
    return shapes


def play_time_label(play_time_s: np.ndarray) -> np.ndarray:
    """Soft play-time label ``min(play_time_s / PLAY_TIME_SCALE_S, 1)`` in [0, 1], float32."""
    play_time_s = np.asarray(play_time_s, dtype=np.float64)
    if np.any(~np.isfinite(play_time_s)) or np.any(play_time_s < 0):
        raise ValueError("play_time_s must be finite and >= 0")
    return np.minimum(play_time_s / PLAY_TIME_SCALE_S, 1.0).astype(np.float32)


def check_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a finite float32 (rows, features) matrix (``dim`` columns if given); ValueError naming ``what``."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array (rows, features), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{what} must have {dim} columns, got {x.shape[1]}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{what} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} holds NaN or infinite values")
    return x




@dataclass(frozen=True)
class ScorerWeights:
    """A trained scorer as float32 numpy arrays (names and shapes of :func:`weight_shapes`).

    Saved as ``<name>.npz`` (``np.savez``; loaded with ``allow_pickle=False``, so nothing in
    the file is executed) plus a JSON sidecar ``<name>.json`` with the format tag, the
    config, the feature dims and the task names. The same metadata is stored inside the npz
    (key ``meta_json``) and must match the sidecar.
    """

    config: PLEConfig
    """Model size (and the training settings it was trained with)."""
    d_u: int
    """User feature dimension."""
    d_v: int
    """Item feature dimension."""
    arrays: dict[str, np.ndarray]
    """Name -> float32 array, exactly the keys of ``weight_shapes(config, d_u, d_v)``."""

    def __post_init__(self) -> None:
        expected = weight_shapes(self.config, self.d_u, self.d_v)
        missing = sorted(set(expected) - set(self.arrays))
        unexpected = sorted(set(self.arrays) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"scorer weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        for name, shape in expected.items():
            arr = self.arrays[name]
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
                got = getattr(arr, "dtype", type(arr).__name__)
                raise ValueError(f"scorer weight '{name}' must be a float32 array, got {got}")
            if arr.shape != shape:
                raise ValueError(f"scorer weight '{name}' has shape {arr.shape}, expected {shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"scorer weight '{name}' holds NaN or infinite values")
        for side in ("u", "v"):
            if np.any(self.arrays[f"input_scale_{side}"] <= 0):
                raise ValueError(f"scorer weight 'input_scale_{side}' must be > 0")

    def metadata(self) -> dict[str, Any]:
        """The sidecar content: format tag, config, feature dims, task names."""
        return {
            "format": WEIGHTS_FORMAT,
            "config": asdict(self.config),
            "d_u": self.d_u,
            "d_v": self.d_v,
            "task_names": list(TASK_NAMES),
        }

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``path`` (must end in ``.npz``) and its sidecar ``path.with_suffix('.json')``.

        Both are written atomically; returns ``(npz_path, json_path)``.
        """
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"scorer weights path must end in .npz, got {path}")
        meta = json.dumps(self.metadata(), sort_keys=True)
        buf = io.BytesIO()
        np.savez(buf, **self.arrays, **{_META_KEY: np.array(meta)})
        atomic_write_bytes(path, buf.getvalue())
        sidecar = path.with_suffix(".json")
        atomic_write_bytes(sidecar, (json.dumps(self.metadata(), indent=2, sort_keys=True) + "\n").encode())
        return path, sidecar

    @classmethod
    def load(cls, path: str | Path) -> "ScorerWeights":
        """Read a weights file written by :meth:`save`; ValueError naming the problem otherwise.

        Refuses a missing file or sidecar, a non-npz or truncated file, pickled objects, an
        unknown format tag, a sidecar that does not belong to the npz, and arrays with
        missing/extra keys, wrong shapes or dtypes, or non-finite values.
        """
        path = Path(path)
        sidecar = path.with_suffix(".json")
        if not path.is_file():
            raise ValueError(f"scorer weights file {path} does not exist")
        if not sidecar.is_file():
            raise ValueError(f"scorer weights file {path} has no JSON sidecar {sidecar}")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not a scorer weights file (not an npz archive; truncated or foreign file)")
        try:
            with np.load(path, allow_pickle=False) as npz:
                raw = {key: npz[key] for key in npz.files}
        except Exception as exc:  # damaged archive members, pickled objects (allow_pickle=False)
            raise ValueError(f"{path} could not be read as scorer weights ({type(exc).__name__}: {exc})") from None
        try:
            sidecar_meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"scorer sidecar {sidecar} is not valid JSON: {exc}") from None
        meta_arr = raw.pop(_META_KEY, None)
        if meta_arr is None or meta_arr.dtype.kind != "U" or meta_arr.shape != ():
            raise ValueError(f"{path} is not a scorer weights file of this project (no '{_META_KEY}' entry)")
        try:
            meta = json.loads(str(meta_arr))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: its '{_META_KEY}' entry is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{path} has format {got!r}, expected {WEIGHTS_FORMAT!r}")
        if sidecar_meta != meta:
            raise ValueError(f"sidecar {sidecar} does not describe {path} (its metadata differ from the npz's)")
        if meta.get("task_names") != list(TASK_NAMES):
            raise ValueError(f"{path} was trained for tasks {meta.get('task_names')}, expected {list(TASK_NAMES)}")
        cfg = meta.get("config")
        known = {f.name for f in fields(PLEConfig)}
        if not isinstance(cfg, dict) or set(cfg) != known:
            got = sorted(cfg) if isinstance(cfg, dict) else cfg
            raise ValueError(f"{path}: config fields {got} do not match PLEConfig")
        d_u, d_v = meta.get("d_u"), meta.get("d_v")
        if not (type(d_u) is int and type(d_v) is int and d_u >= 1 and d_v >= 1):
            raise ValueError(f"{path}: feature dims must be positive integers, got d_u={d_u!r}, d_v={d_v!r}")
        try:
            config = PLEConfig(**cfg)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid config ({exc})") from None
        return cls(config=config, d_u=d_u, d_v=d_v, arrays=raw)


def first_layer_user(weights: ScorerWeights, u: np.ndarray) -> np.ndarray:
    """User side of the first layer, bias included: ``u_n @ W_u + b``, (N, d_u) -> (N, F) float32."""
    a = weights.arrays
    u = check_matrix(u, "user features", weights.d_u)
    return ((u - a["input_mean_u"]) / a["input_scale_u"]) @ a["first_W_u"] + a["first_b"]


def first_layer_item(weights: ScorerWeights, v: np.ndarray) -> np.ndarray:
    """Item side of the first layer: ``v_n @ W_v``, (I, d_v) -> (I, F) float32 (precompute once)."""
    a = weights.arrays
    v = check_matrix(v, "item features", weights.d_v)
    return ((v - a["input_mean_v"]) / a["input_scale_v"]) @ a["first_W_v"]


def _softmax_rows(x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax over ``axis``, in place on ``x`` (a fresh array owned by the caller)."""
    x -= x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return x


def _mix_numpy(
    task_experts: np.ndarray, shared_experts: np.ndarray, task_gates: np.ndarray, shared_gate: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """numpy twin of ``PLEScorer._mix`` in feature-major layout (pairs on the last axis).

    task_experts (T, n_te, H, P), shared_experts (n_se, H, P), task_gates (T, n_se+n_te, P),
    shared_gate (n_se + T*n_te, P) or None -> task_x (T, H, P), shared_x (H, P) or None.
    """
    t, n_te, h, p = task_experts.shape
    n_se = shared_experts.shape[0]
    task_x = np.einsum("tsp,shp->thp", task_gates[:, :n_se], shared_experts)
    task_x += np.einsum("tep,tehp->thp", task_gates[:, n_se:], task_experts)
    shared_x = None
    if shared_gate is not None:
        shared_x = np.einsum("sp,shp->hp", shared_gate[:n_se], shared_experts)
        shared_x += np.einsum("kp,khp->hp", shared_gate[n_se:], task_experts.reshape(t * n_te, h, p))
    return task_x, shared_x


def _logits_feature_major(weights: ScorerWeights, pre0_t: np.ndarray) -> np.ndarray:
    """Logits ``(12, P)`` from transposed first-layer pre-activations ``pre0_t`` (F, P) float32.

    ``pre0_t`` must be a C-contiguous array owned by the caller: it is overwritten in place.

    The same network as ``PLEScorer.forward`` after the first linear map, computed with the
    pairs on the last (contiguous) axis, so every elementwise op and gate runs over long
    contiguous rows and every matmul is one GEMM with P columns.
    """
    cfg, a = weights.config, weights.arrays
    t, h, n_se, n_te = N_TASKS, cfg.expert_hidden, cfg.n_shared_experts, cfg.n_task_experts
    p = pre0_t.shape[1]
    c0 = t * n_te * h
    c1 = c0 + n_se * h
    c2 = c1 + t * (n_se + n_te)
    np.maximum(pre0_t[:c1], 0, out=pre0_t[:c1])  # all first-layer experts
    task_experts = pre0_t[:c0].reshape(t, n_te, h, p)
    shared_experts = pre0_t[c0:c1].reshape(n_se, h, p)
    task_gates = _softmax_rows(pre0_t[c1:c2].reshape(t, n_se + n_te, p), axis=1)
    shared_gate = _softmax_rows(pre0_t[c2:], axis=0) if cfg.n_layers > 1 else None
    task_x, shared_x = _mix_numpy(task_experts, shared_experts, task_gates, shared_gate)
    for layer in range(1, cfg.n_layers):
        q = f"layer{layer}_"
        # torch computes x @ W with x (N, H); here W^T @ x with x (H, P)
        if n_te > 0:
            te = np.matmul(a[q + "task_expert_W"].transpose(0, 2, 1), task_x)  # (T, n_te*H, P)
            te += a[q + "task_expert_b"][:, :, None]
            task_experts = np.maximum(te, 0, out=te).reshape(t, n_te, h, p)
        else:
            task_experts = np.zeros((t, 0, h, p), dtype=np.float32)
        se = a[q + "shared_expert_W"].T @ shared_x + a[q + "shared_expert_b"][:, None]
        shared_experts = np.maximum(se, 0, out=se).reshape(n_se, h, p)
        tg = np.matmul(a[q + "task_gate_W"].transpose(0, 2, 1), task_x) + a[q + "task_gate_b"][:, :, None]
        task_gates = _softmax_rows(tg, axis=1)  # (T, n_se + n_te, P)
        shared_gate = None
        if layer < cfg.n_layers - 1:
            sg = a[q + "shared_gate_W"].T @ shared_x + a[q + "shared_gate_b"][:, None]
            shared_gate = _softmax_rows(sg, axis=0)
        task_x, shared_x = _mix_numpy(task_experts, shared_experts, task_gates, shared_gate)
    hidden = np.matmul(a["tower_W1"].transpose(0, 2, 1), task_x)  # (T, tower_hidden, P)
    hidden += a["tower_b1"][:, :, None]
    np.maximum(hidden, 0, out=hidden)
    logits = np.matmul(a["tower_W2"][:, None, :], hidden)[:, 0, :]  # (T, P)
    logits += a["tower_b2"][:, None]
    return logits


def predict_from_first_layer(weights: ScorerWeights, pre0: np.ndarray) -> np.ndarray:
    """Probabilities ``(P, 12)`` float32 from first-layer pre-activations ``pre0`` (P, F).

    ``pre0 = first_layer_user(w, u) + first_layer_item(w, v)`` for each pair: this is the
    rest of the network after the factorised first layer.
    """
    pre0 = np.asarray(pre0)
    width = first_layer_width(weights.config)
    if pre0.ndim != 2 or pre0.shape[1] != width:
        raise ValueError(f"pre0 must have shape (P, {width}), got {pre0.shape}")
    pre0_t = np.array(pre0.T, dtype=np.float32, order="C")  # a copy: it is overwritten
    return sigmoid_f32(_logits_feature_major(weights, pre0_t)).T


def numpy_predict(weights: ScorerWeights, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Predictions ``(N, 12)`` float32 in (0, 1) for N (user, item) pairs, pure numpy.

    ``u`` (N, d_u) and ``v`` (N, d_v) row-aligned; equals ``sigmoid(PLEScorer(u, v))``.
    """
    pre_u = first_layer_user(weights, u)
    pre_v = first_layer_item(weights, v)
    if len(pre_u) != len(pre_v):
        raise ValueError(f"u and v must have the same rows, got {len(pre_u)} and {len(pre_v)}")
    return predict_from_first_layer(weights, pre_u + pre_v)


def predict_table(
    weights: ScorerWeights,
    cell_features: np.ndarray,
    item_features: np.ndarray,
    chunk_rows: int = 2048,
    n_threads: int = 1,
    show_progress: bool = False,
) -> np.ndarray:
    """All (user cell x item) predictions: ``(C, I, 12)`` float32.

    Args:
        weights: the scorer.
        cell_features: (C, d_u) user features of each user cell.
        item_features: (I, d_v) item features of the catalogue.
        chunk_rows: (cell, item) pairs evaluated per chunk; the default keeps a chunk's
            intermediate arrays (``12 * expert_hidden * chunk_rows`` floats) in a 2 MiB L2 cache.
        n_threads: chunks evaluated in parallel threads (numpy releases the GIL in its
            kernels); the result does not depend on it. BLAS itself is held to one thread
            while the table is filled: its matrices here are small, and OpenBLAS threads
            that busy-wait cost about 4x the CPU time on a shared 2-core machine.
        show_progress: tqdm bar over the chunks.

    The item side of the first layer is computed once for all items and the user side once
    per cell (the factorisation in the module doc); each chunk then adds them and runs
    :func:`predict_from_first_layer`. The output itself takes ``C * I * 48`` bytes.
    """
    if chunk_rows < 1 or n_threads < 1:
        raise ValueError(f"chunk_rows and n_threads must be >= 1, got {chunk_rows} and {n_threads}")
    pre_u = first_layer_user(weights, cell_features)  # (C, F)
    pre_v_t = np.ascontiguousarray(first_layer_item(weights, item_features).T)  # (F, I)
    n_cells, n_items = len(pre_u), pre_v_t.shape[1]
    out = np.empty((n_cells, n_items, N_TASKS), dtype=np.float32)
    item_block = max(1, min(n_items, chunk_rows))
    cell_block = max(1, chunk_rows // item_block)
    blocks = [(c, i) for c in range(0, n_cells, cell_block) for i in range(0, n_items, item_block)]

    def fill(block: tuple[int, int]) -> None:
        c, i = block
        pu, pv = pre_u[c : c + cell_block], pre_v_t[:, i : i + item_block]
        # (F, cells, items) -> (F, P): pairs ordered cell-major, as in ``out``
        pre0_t = (pu.T[:, :, None] + pv[:, None, :]).reshape(pv.shape[0], -1)
        probs_t = sigmoid_f32(_logits_feature_major(weights, pre0_t))  # (12, P)
        out[c : c + cell_block, i : i + item_block] = probs_t.T.reshape(len(pu), pv.shape[1], N_TASKS)

    bar = tqdm(total=len(blocks), desc="scorer table", disable=not show_progress, dynamic_ncols=True)
    with threadpool_limits(limits=1, user_api="blas"):
        if n_threads == 1:
            for block in blocks:
                fill(block)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                for _ in pool.map(fill, blocks):
                    bar.update(1)
    bar.close()
    return out


def scorer_report(
    probs: np.ndarray,
    labels: np.ndarray,
    n_bins: int = 10,
    play_time_threshold: float = 0.5,
) -> dict[str, Any]:
    """Per-task ranking quality and calibration of predictions against logged labels.

    Args:
        probs: (N, 12) predictions in [0, 1], order of ``TASK_NAMES``.
        labels: (N, 12) labels in [0, 1] (play_time soft, the others 0/1).
        n_bins: equal-width bins over [0, 1] of the prediction for the expected calibration error.
        play_time_threshold: play_time's AUC is that of ranking the binarised label
            ``play_time_label >= play_time_threshold`` (default 0.5, i.e. played at least
            ``0.5 * PLAY_TIME_SCALE_S`` = 60 s); binary tasks use their label as is.

    Returns:
        JSON-serialisable dict: ``n``, ``mean_auc`` (over tasks whose AUC is defined) and
        ``tasks`` -> name -> ``auc`` (None when the (binarised) label has a single class),
        ``mean_pred``, ``mean_label``, ``ece`` (sum over bins of bin share x
        |mean prediction - mean label|), ``log_loss`` (binary cross-entropy, soft label for
        play_time) and, for play_time only, ``mse`` (on the soft label) and ``auc_threshold``.
    """
    from sklearn.metrics import roc_auc_score

    probs = check_matrix(probs, "probs", N_TASKS).astype(np.float64)
    labels = check_matrix(labels, "labels", N_TASKS).astype(np.float64)
    if len(probs) != len(labels) or len(probs) == 0:
        raise ValueError(f"probs and labels need the same, non-zero number of rows, got {len(probs)} and {len(labels)}")
    if np.any((probs < 0) | (probs > 1)) or np.any((labels < 0) | (labels > 1)):
        raise ValueError("probs and labels must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    bins = np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)
    tasks: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(TASK_NAMES):
        p, y = probs[:, j], labels[:, j]
        y_bin = y >= play_time_threshold if j == _PLAY_TIME else y >= 0.5
        auc = float(roc_auc_score(y_bin, p)) if 0 < y_bin.sum() < len(y_bin) else None
        gap = np.bincount(bins[:, j], weights=p - y, minlength=n_bins)  # sum of (pred - label) per bin
        ece = float(np.abs(gap).sum() / len(p))  # = sum_b count_b/N * |mean_pred_b - mean_label_b|
        q = np.clip(p, 1e-7, 1 - 1e-7)
        entry = {
            "auc": auc,
            "mean_pred": float(p.mean()),
            "mean_label": float(y.mean()),
            "ece": ece,
            "log_loss": float(-(y * np.log(q) + (1 - y) * np.log1p(-q)).mean()),
        }
        if j == _PLAY_TIME:
            entry["mse"] = float(np.mean((p - y) ** 2))
            entry["auc_threshold"] = float(play_time_threshold)
        tasks[name] = entry
    aucs = [e["auc"] for e in tasks.values() if e["auc"] is not None]
    return {"n": int(len(probs)), "mean_auc": float(np.mean(aucs)) if aucs else None, "tasks": tasks}
