"""Start-up time of the command line: ``mtf-bench --help`` and an unknown option must answer in under a second.

Run with ``pytest -m benchmark -s``. Each figure is the median wall time of 5 runs of the installed
``mtf-bench`` script (``python -c`` with the same entry point where the script is not on PATH) as a
fresh process, measured after one untimed run that warms the file cache; the load average is printed
next to it, the machine may be shared. The parser imports no torch, d3rlpy, numba or simulator
(``tests/test_cli.py``), which is what keeps these fast.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

import pytest

#: The command lines timed, by name, and the exit code each must end with.
COMMANDS: dict[str, tuple[list[str], int]] = {
    "--help": (["--help"], 0),
    "unknown option": (["train", "--algo", "batchrl-mtf", "--stepz", "5"], 2),
}
RUNS = 5
LIMIT_S = 1.0


def _entry_point() -> list[str]:
    script = shutil.which("mtf-bench")
    if script is not None and os.path.dirname(script) == os.path.dirname(sys.executable):
        return [script]
    return [sys.executable, "-c", "import sys; from benchmarks.cli import main; sys.exit(main())"]


def _median_seconds(argv: list[str], code: int) -> float:
    subprocess.run(argv, capture_output=True)  # warm the file cache
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        assert proc.returncode == code, proc.stderr
    return statistics.median(times)


@pytest.mark.benchmark
@pytest.mark.parametrize("name", list(COMMANDS))
def test_cli_answers_within_a_second(name):
    args, code = COMMANDS[name]
    median = _median_seconds(_entry_point() + args, code)
    print(f"\nmtf-bench {' '.join(args)}: median {median:.3f} s of {RUNS} runs "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    assert median < LIMIT_S
