"""Seeds and random streams: seed checks, torch seeds from ``SeedSequence``, and scoped global RNG state.

Agents draw from explicit generators (``numpy.random.Generator``, ``torch.Generator``). Where a
library draws from the process-global generators (d3rlpy's weight initialisation and noise,
stable-baselines3), the code runs inside :func:`torch_rng_scope` or :func:`global_rng_scope`,
which restore the caller's global state on exit: nothing here changes the process-global streams.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch


def check_seed(seed: Any) -> int:
    """A non-negative int seed (numpy integers accepted, bools refused), or ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def seed_from(seq: np.random.SeedSequence) -> int:
    """A torch seed from a ``SeedSequence``: 64 bits of its state shifted into ``[0, 2**63)``."""
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _cuda_devices(device: str) -> list[int]:
    dev = torch.device(device)
    return [dev.index or 0] if dev.type == "cuda" else []


@contextlib.contextmanager
def torch_rng_scope(device: str = "cpu") -> Iterator[None]:
    """Run with torch's global generators (CPU, and ``device``'s if CUDA) forked: whatever is
    seeded or drawn inside is undone on exit."""
    with torch.random.fork_rng(devices=_cuda_devices(device)):
        yield


@contextlib.contextmanager
def global_rng_scope(device: str = "cpu") -> Iterator[None]:
    """:func:`torch_rng_scope` that also restores Python's ``random`` and NumPy's global generator."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch_rng_scope(device):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def torch_rng_state(device: str) -> dict[str, torch.Tensor]:
    """torch's global generator states: ``{"cpu": ...}`` and ``"cuda"`` for a CUDA ``device``."""
    dev = torch.device(device)
    state = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev.index or 0)
    return state


def set_torch_rng_state(state: dict[str, torch.Tensor], device: str) -> None:
    """Inverse of :func:`torch_rng_state` (call inside a :func:`torch_rng_scope`)."""
    torch.set_rng_state(state["cpu"])
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], dev.index or 0)


def seed_torch_globals(seed: int, device: str = "cpu") -> None:
    """Seed torch's global CPU generator (and CUDA's for a CUDA ``device``) for a library that draws
    from them; call inside a :func:`torch_rng_scope`."""
    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        torch.cuda.manual_seed(seed)
