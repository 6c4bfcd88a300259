"""The training loop every gradient-based agent and estimator runs, and the checks of ``fit``'s arguments.

:func:`fit_loop` calls ``update(step) -> dict[str, float]`` for each step, averages the metrics
over logging windows, writes them to a :class:`agents.run_dir.MetricsLogger`, shows a tqdm bar
and calls the checkpoint hook; it returns a :class:`FitResult`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from agents.run_dir import MetricsLogger


@dataclass
class FitResult:
    """What :func:`fit_loop` returns: the step count reached and the last logging window's metric means."""

    steps: int
    last_metrics: dict[str, float]


def check_fit_args(
    n_steps: int | None,
    default_n_steps: int,
    *,
    log_every: int,
    checkpoint_every: int,
    resume: bool,
    out_dir: str | Path | None,
) -> int:
    """The run length of an agent's ``fit``: ``n_steps``, or ``default_n_steps`` (its config's) when ``None``.

    Refuses (``ValueError``) ``n_steps < 1``, ``log_every < 1``, ``checkpoint_every < 0`` and
    ``resume`` without the ``out_dir`` that holds the checkpoint.
    """
    n_steps = default_n_steps if n_steps is None else int(n_steps)
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if log_every < 1 or checkpoint_every < 0:
        raise ValueError(f"log_every must be >= 1 and checkpoint_every >= 0, got {log_every}, {checkpoint_every}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir holding the checkpoint")
    return n_steps


def fit_loop(
    update: Callable[[int], dict[str, float]],
    n_steps: int,
    *,
    start_step: int = 0,
    log_every: int = 100,
    logger: MetricsLogger | None = None,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 0,
    desc: str = "train",
    show_progress: bool = True,
) -> FitResult:
    """Run ``update(step)`` for steps ``start_step .. n_steps - 1``.

    Metrics returned by ``update`` are averaged over each ``log_every`` window and logged
    with the step count; ``checkpoint(step_done)`` is called every ``checkpoint_every``
    steps and at the end. The same loop serves every gradient-based agent.
    """
    window: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    bar = tqdm(total=n_steps, initial=start_step, desc=desc, disable=not show_progress, dynamic_ncols=True)
    for step in range(start_step, n_steps):
        metrics = update(step)
        for k, v in metrics.items():
            window.setdefault(k, []).append(float(v))
        done = step + 1
        if done % log_every == 0 or done == n_steps:
            last = {k: float(np.mean(v)) for k, v in window.items()}
            window = {}
            if logger is not None:
                logger.log(done, last)
            bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in list(last.items())[:3]})
        if checkpoint is not None and checkpoint_every and done % checkpoint_every == 0 and done != n_steps:
            checkpoint(done)
        bar.update(1)
    bar.close()
    if checkpoint is not None and n_steps > start_step:
        checkpoint(n_steps)
    return FitResult(steps=n_steps, last_metrics=last)
