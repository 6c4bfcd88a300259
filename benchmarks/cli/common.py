"""Argument helpers shared by the ``mtf-bench`` command modules: argparse types and checks that raise ValueError."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def widths(text: str) -> tuple[int, ...]:
    """argparse type of hidden-width options (``"256,256"``): the library's ``parse_widths``, its error as argparse's."""
    from benchmarks.evaluation.configs import parse_widths

    try:
        return parse_widths(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive(option: str, value: int | None, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` (an int option, None = not given) is at least ``minimum``."""
    if value is not None and value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{option} must be {what}, got {value}")


def non_negative(option: str, value: float | None) -> None:
    """Raise ValueError unless ``value`` (None = not given) is finite and >= 0."""
    if value is not None and (not math.isfinite(value) or value < 0):
        raise ValueError(f"{option} must be a finite number >= 0, got {value}")


def in_unit_interval(option: str, value: float | None) -> None:
    """Raise ValueError unless ``value`` (None = not given) lies in (0, 1]."""
    if value is not None and not 0.0 < value <= 1.0:
        raise ValueError(f"{option} must lie in (0, 1], got {value}")


def dataset_dir(option: str, path: Path) -> None:
    """Raise ValueError unless ``path`` is a dataset directory (holds ``manifest.json``)."""
    if not path.is_dir():
        raise ValueError(f"{option} {path} does not exist or is not a directory (collect a dataset with `mtf-bench collect`)")
    if not (path / "manifest.json").is_file():
        raise ValueError(f"{option} {path}: not a dataset (no manifest.json)")


def output_dir(option: str, path: Path) -> None:
    """Raise ValueError if ``path`` exists and is not a directory."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} exists and is not a directory")


def parse_reward(text: str) -> Any:
    """``--reward``: a preset name, or JSON (a list of 12 weights or an object task -> weight)."""
    from mtf_env.rewards import REWARD_PRESETS, reward_weights

    text = text.strip()
    if text[:1] in "[{":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--reward is not valid JSON: {exc}") from None
        reward_weights(value)  # validates
        return value
    if text not in REWARD_PRESETS:
        raise ValueError(f"unknown reward preset {text!r}; choose one of {sorted(REWARD_PRESETS)} or give JSON weights")
    return text


def set_threads(n: int) -> None:
    """Set torch's CPU threads (``--threads``)."""
    positive("--threads", n)
    import torch

    torch.set_num_threads(n)
