"""Executors: what runs the cells of a suite (here, one after the other; elsewhere, e.g. on a Ray cluster).

An executor is any object with one method::

    def submit(self, cells: list[dict], out_dir: Path) -> Iterator[tuple[dict, str | None]]

It runs :func:`benchmarks.suites.cells.run_cell` ``(cell, out_dir)`` for every cell given (plain
JSON-able dicts; finished cells were already left out) and yields ``(cell, None)`` when a cell
finished or ``(cell, "one-line error")`` when it failed, in any order, continuing with the
other cells after a failure. ``run_cell`` writes the cell's result files atomically into
``out_dir``, so an executor only has to call it where ``out_dir`` is reachable (a shared
path), and a cell that dies half-way leaves no result behind (the next run starts it over).

A Ray executor is a small class on this contract: ``submit`` calls
``ray.remote(run_cell).options(num_cpus=..., num_gpus=...).remote(cell, str(out_dir))`` for
each cell and yields as ``ray.wait`` returns them. The suite (:func:`run_all`) does the rest:
it skips finished cells, shows progress and collects failures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Protocol, Sequence


class Executor(Protocol):
    """Runs cells; see the module docstring."""

    def submit(self, cells: list[dict], out_dir: Path) -> Iterator[tuple[dict, str | None]]:
        ...


def error_line(exc: BaseException) -> str:
    """One line naming an exception (its type and first line)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class LocalExecutor:
    """Runs the cells on this machine: one after the other in this process (``workers = 1``, the default),
    or in ``workers`` child processes (each with one torch thread; results are identical, only the order
    in which cells finish changes). Needs nothing installed."""

    def __init__(self, show_progress: bool = False, workers: int = 1):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.show_progress = show_progress
        """Progress bars inside each cell (training, evaluation); sequential runs only."""
        self.workers = workers
        """Cells run at the same time (processes)."""

    def submit(self, cells: list[dict], out_dir: Path) -> Iterator[tuple[dict, str | None]]:
        from .cells import run_cell

        if self.workers == 1:
            for cell in cells:
                try:
                    run_cell(cell, out_dir, show_progress=self.show_progress)
                except Exception as exc:  # a failed cell is reported; the others still run
                    yield cell, error_line(exc)
                else:
                    yield cell, None
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # no forked torch / numba state
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_one_thread) as pool:
            futures = {pool.submit(run_cell, cell, str(out_dir)): cell for cell in cells}
            for future in as_completed(futures):
                exc = future.exception()
                yield futures[future], None if exc is None else error_line(exc)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_all(executor: Executor, cells: Sequence[Mapping], out_dir: Path, show_progress: bool = True,
            what: str = "cells") -> dict[str, str]:
    """Run the unfinished ``cells`` through ``executor`` with a progress bar; returns cell name -> error of the
    failed ones (empty if all finished)."""
    from tqdm.auto import tqdm

    from .cells import is_done

    todo = [dict(c) for c in cells if not is_done(c, out_dir)]
    failures: dict[str, str] = {}
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"suite/{what}", unit="cell",
               disable=not show_progress)
    for cell, error in executor.submit(todo, Path(out_dir)):
        if error is not None:
            failures[cell["name"]] = error
            bar.write(f"cell {cell['name']} failed: {error}")
        bar.set_postfix_str(cell["name"][-40:])
        bar.update(1)
    bar.close()
    return failures
