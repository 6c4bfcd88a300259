"""Counter-based random streams (SplitMix64) for common random numbers and per-state hash noise.

SplitMix64's finaliser :func:`mix64` is written once and serves two callers:

* :func:`fill_uniforms` (a numba kernel, compiled from the same function) fills the uniforms
  of one simulator request of a user from the stream keyed by ``(key, slot, day, step)`` --
  ``slot`` is the user's position in the evaluated ``users`` array and ``step`` the request of
  the day. So a user draws the same numbers for their n-th request of the day in every arm
  of an A/B test, whatever the other users do, whatever the block size, and whichever rows
  are active: an A/A test gives exactly zero lift, and two runs with the same seed are identical.
* :func:`benchmarks.evaluation.policy_zoo.state_hash_normals` (numpy, on uint64 arrays)
  hashes an observation's bytes into standard normals.

The key of a stream is :func:`stream_key` (a seed and a tag, through ``np.random.SeedSequence``).
"""
from __future__ import annotations

import numba as nb
import numpy as np

#: SplitMix64's increment (the golden ratio in 64 bits).
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
#: 2 ** -53: a 53-bit integer times this is a uniform in [0, 1).
TWO_M53 = 1.0 / 9007199254740992.0


def mix64(z):
    """SplitMix64's finaliser on a uint64 scalar or array (wrapping arithmetic).

    Plain numpy here (call it under ``np.errstate(over="ignore")``); :func:`_mix64` is the
    same function compiled by numba for the kernel.
    """
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


_mix64 = nb.njit(nogil=True, cache=True, inline="always")(mix64)


def to_unit(bits):
    """The top 53 bits of uint64 ``bits`` (scalar or array) as float64 uniforms in [0, 1)."""
    return (bits >> _S11).astype(np.float64) * TWO_M53


@nb.njit(nogil=True, cache=True)
def fill_uniforms(key, slots, rows, day, step, u_cand, u_resp, u_return):
    """Fill the uniforms of the given rows from the stream of (key, slots[i], day, step).

    key: uint64; slots: (n,) int64 global user slots; rows: (n,) int64 rows of the outputs to
    fill; u_cand (B, K), u_resp (B, L, M), u_return (B,) float64 in [0, 1). Other rows are
    left as they are.
    """
    n_cand = u_cand.shape[1]
    page, n_unif = u_resp.shape[1], u_resp.shape[2]
    for i in range(slots.shape[0]):
        b = rows[i]
        s = _mix64(key + GOLDEN * np.uint64(slots[i] + 1))
        s = _mix64(s + GOLDEN * np.uint64(day + 1))
        s = _mix64(s + GOLDEN * np.uint64(step + 1))
        for j in range(n_cand):
            s += GOLDEN
            u_cand[b, j] = np.float64(_mix64(s) >> _S11) * TWO_M53
        for l in range(page):
            for m in range(n_unif):
                s += GOLDEN
                u_resp[b, l, m] = np.float64(_mix64(s) >> _S11) * TWO_M53
        s += GOLDEN
        u_return[b] = np.float64(_mix64(s) >> _S11) * TWO_M53


def stream_key(seed: int, tag: int) -> np.uint64:
    """The 64-bit generator key of a seed (any non-negative int) and a stream tag."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence([int(seed), int(tag)]).generate_state(1, dtype=np.uint64)[0]


def slot_day_uniforms(key: np.uint64, slots: np.ndarray, day: int) -> np.ndarray:
    """One uniform (n,) float64 in [0, 1) per ``(key, slot, day)``: the retention draw of a user-day.

    The same chain of SplitMix64 finalisers as :func:`fill_uniforms`, keyed by the slot and
    the day only, so a user's draw on a day is the same in every arm of an A/B test.
    """
    with np.errstate(over="ignore"):
        s = mix64(key + GOLDEN * (np.asarray(slots).astype(np.uint64) + np.uint64(1)))
        s = mix64(s + GOLDEN * np.uint64(day + 1))
        return to_unit(mix64(s + GOLDEN))
