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
        what = "is not a directory" if path.exists() else "does not exist"
        raise ValueError(f"{option} {path}: no dataset, the path {what} (collect one with `mtf-bench collect`)")
    if not (path / "manifest.json").is_file():
        raise ValueError(f"{option} {path}: not a dataset (no manifest.json)")


def _blocking_ancestor(path: Path) -> Path | None:
    """The first existing parent of ``path`` that is not a directory (None if there is none)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_dir(option: str, path: Path) -> None:
    """Raise ValueError if ``path`` cannot become a directory: it exists and is not one, or a parent is a file."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} exists and is not a directory")
    blocking = _blocking_ancestor(path)
    if blocking is not None:
        raise ValueError(f"{option} {path}: {blocking} is not a directory")


def output_file(option: str, path: Path | None, what: str = "file") -> None:
    """Raise ValueError if ``path`` (None = not given) cannot be written as a file: it is a directory,
    or a parent is a file. ``what`` names the file in the message (".json file")."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a {what} name")
    blocking = _blocking_ancestor(path)
    if blocking is not None:
        raise ValueError(f"{option} {path}: {blocking} is not a directory")


def parse_reward(text: str) -> Any:
    """``--reward``: a preset name, or JSON (a list of 12 weights or an object task -> weight)."""
    from mtf_env.rewards import REWARD_PRESETS, reward_weights

    text = text.strip()
    if text[:1] in "[{":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--reward is not valid JSON: {exc}") from None
        try:
            reward_weights(value)  # validates
        except ValueError as exc:
            raise ValueError(f"--reward: {exc}") from None
        return value
    if text not in REWARD_PRESETS:
        raise ValueError(f"--reward: unknown reward preset {text!r}; choose one of {sorted(REWARD_PRESETS)} or give "
                         "JSON weights")
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends every option's line with its default, unless the line already names one
    or there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == [] or default == argparse.SUPPRESS
                or "default" in text or not action.option_strings):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
        return f"{text} (default {shown.replace('%', '%%')})"


def quiet_third_party() -> None:
    """Silence notices of third-party packages that are not about the user's run: the old ``gym``
    package's "Gym has been unmaintained" banner (printed when d3rlpy imports it) and d3rlpy's
    informational log lines (its warnings and errors still show). Python warnings are untouched."""
    try:
        import gym_notices.notices as gym_notices  # the banner gym prints at import, keyed by gym version

        gym_notices.notices.clear()
    except ImportError:
        pass
    try:
        import logging

        import structlog  # d3rlpy logs through structlog; keep its warnings and errors only

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except ImportError:
        pass


def set_threads(n: int) -> None:
    """Set torch's CPU threads (``--threads``)."""
    positive("--threads", n)
    import torch

    torch.set_num_threads(n)
