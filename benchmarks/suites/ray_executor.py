"""A Ray executor: each cell of a suite one Ray task, on a local Ray instance or a cluster.

::

    mtf-bench suite run --preset small --executor ray --address auto --out /shared/suite/small

Follows the executor contract of :mod:`benchmarks.suites.executors`: :meth:`RayExecutor.submit`
sends every cell as a task that calls :func:`benchmarks.suites.cells.run_cell` ``(cell, out_dir)``
with the cell's resource request (``cpus_per_cell`` CPUs; one GPU per cell when the suite runs
with ``--device cuda``) and yields ``(cell, error_or_None)`` as ``ray.wait`` returns them, so the
suite's progress bar moves as cells finish. Nothing else changes: the suite skips finished cells,
collects failures and writes the report on the driver.

Where the data and results live: a **shared path**. The suite directory (``--out``) must be the
same path on the driver and on every worker node (one machine, or a shared filesystem such as
NFS). The dataset cells run first (one task each) and write the datasets under
``OUT/datasets/``; every method cell then reads its dataset from there, so a dataset is collected
once and read by every worker. Each task writes its cell's result files atomically into
``OUT/cells/`` exactly as the local executor would. Why not the object store: a cell needs its
dataset as the *directory* ``load_dataset`` reads (train/test splits, the manifest, checksums),
a paper-size dataset is gigabytes that every task would pull and unpack again, and the results
must end up as files in the suite directory anyway. A task checks that the suite directory is
visible on its node and fails with a one-line error naming the node otherwise.

Faults:

* a worker process (or node) that dies is retried by Ray (``max_retries`` times); :func:`run_cell`
  removes what the dead attempt left (a partial run or dataset directory) and starts the cell
  over, so the retry gives the same result;
* a cell that raises (bad settings, a bug) is *not* retried (``retry_exceptions=False``): it is
  reported once with its error and the other cells go on;
* a driver that dies takes its tasks with it (Ray's ownership); run the same command again and
  the suite skips every cell whose result file exists.

Ray is imported only inside this module; install it with ``pip install -e ".[ray]"``.
"""
from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .executors import error_line

#: How to get Ray (the one line a user sees when it is missing).
INSTALL_HINT = 'Ray is not installed; install the optional extra: pip install -e ".[ray]"'
#: Ray retries of a task whose worker process died (not of a cell that raised).
DEFAULT_MAX_RETRIES = 3


def require_ray() -> None:
    """Raise ValueError with :data:`INSTALL_HINT` if ``ray`` is not installed (without importing it: how Ray is
    imported decides which address a local instance listens on, :func:`import_ray_local_only`)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise ValueError(f"--executor ray: {INSTALL_HINT}")


def import_ray_local_only():
    """``import ray`` set up for an instance on this machine alone: its node address is the loopback address, so
    every Ray process listens on 127.0.0.1 only; no usage statistics. Returns the ``ray`` module.

    Ray 2.x picks its node address from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when it is imported (``0``: the
    loopback address); child processes inherit the variable, and a module imported earlier gets the same
    setting through its constant. ``_node_ip_address="127.0.0.1"`` alone is resolved to the machine's address.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def local_init_kwargs(num_cpus: int | None = None) -> dict[str, Any]:
    """``ray.init`` arguments of a new Ray instance on this machine (no dashboard, 127.0.0.1; import Ray with
    :func:`import_ray_local_only` first)."""
    # address "local": a new instance even if another one runs on this machine (None would join that one)
    kwargs: dict[str, Any] = {"address": "local", "include_dashboard": False, "_node_ip_address": "127.0.0.1",
                              "log_to_driver": False}
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    return kwargs


def run_cell_task(cell: Mapping[str, Any], out_dir: str, threads: int = 1) -> str:
    """What one Ray task runs: :func:`run_cell` in the shared suite directory; returns the result path.

    Raises ``FileNotFoundError`` naming the node if ``out_dir`` is not visible there (not a shared path).
    """
    import torch

    from .cells import run_cell

    if not Path(out_dir).is_dir():
        raise FileNotFoundError(f"suite directory {out_dir} is not visible on node {socket.gethostname()}; "
                                f"--out must be a path shared by the driver and every worker")
    torch.set_num_threads(threads)
    return str(run_cell(cell, out_dir))


class RayExecutor:
    """Runs each cell as a Ray task (see the module docstring).

    ``address``: None starts a Ray instance on this machine (listening on 127.0.0.1 only, stopped
    by :meth:`close`); ``"auto"`` or ``"HOST:PORT"`` joins a running cluster (``ray start --head``).
    If Ray is already initialised in this process (a test, a notebook), that instance is used and
    left running. ``cpus_per_cell`` / ``gpus_per_cell``: the resource request of every task;
    ``threads``: torch threads inside a task (default: ``cpus_per_cell``). ``cell_function``: what
    a task runs (default :func:`run_cell_task`; same signature).
    """

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1, gpus_per_cell: float = 0,
                 threads: int | None = None, max_retries: int = DEFAULT_MAX_RETRIES,
                 cell_function: Callable[..., str] | None = None, init_kwargs: Mapping[str, Any] | None = None):
        require_ray()
        if not cpus_per_cell > 0:
            raise ValueError(f"--cpus-per-cell must be positive, got {cpus_per_cell}")
        if gpus_per_cell < 0:
            raise ValueError(f"GPUs per cell must be >= 0, got {gpus_per_cell}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.address = address
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.threads = int(threads) if threads is not None else max(1, int(cpus_per_cell))
        self.max_retries = max_retries
        self.cell_function = cell_function or run_cell_task
        self.init_kwargs = dict(init_kwargs or {})
        self._started_ray = False
        self._remote = None

    # -- Ray's lifetime
    def _connect(self):
        # a local instance: Ray imported set up for 127.0.0.1 before anything else imports it
        ray = import_ray_local_only() if self.address is None else importlib.import_module("ray")
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs = dict(self.init_kwargs)
            if self.address is None:
                kwargs = {**local_init_kwargs(), **kwargs}
            else:
                kwargs = {"address": self.address, "log_to_driver": False, **kwargs}
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ValueError(f"--address {self.address}: cannot connect to a Ray cluster ({exc})") from None
            self._started_ray = True
        if self._remote is None:
            self._check_feasible(ray.cluster_resources())
            self._remote = ray.remote(self.cell_function).options(
                num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell, max_retries=self.max_retries,
                retry_exceptions=False)
        return ray

    def _check_feasible(self, resources: Mapping[str, float]) -> None:
        """ValueError if no node could ever run a cell (Ray would wait for it forever)."""
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if self.cpus_per_cell > cpus:
            self.close()
            raise ValueError(f"--cpus-per-cell {self.cpus_per_cell:g}: the Ray cluster has {cpus:g} CPU(s)")
        if self.gpus_per_cell > gpus:
            self.close()
            raise ValueError(f"--device cuda: the Ray cluster has {gpus:g} GPU(s); each cell asks for "
                             f"{self.gpus_per_cell:g}")

    def close(self) -> None:
        """Shut Ray down if this executor started or joined it (a Ray instance found running is left alone)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
        self._remote = None

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cluster_resources(self) -> dict[str, float]:
        """The cluster's total resources (CPU, GPU, memory...), connecting first if needed."""
        return dict(self._connect().cluster_resources())

    # -- the executor contract
    def submit(self, cells: list[dict], out_dir: Path) -> Iterator[tuple[dict, str | None]]:
        """Send every cell as a task; yield ``(cell, None)`` or ``(cell, "one-line error")`` as tasks finish."""
        if not cells:
            return
        ray = self._connect()
        from .cells import is_done

        out = str(Path(out_dir).resolve())
        pending = {self._remote.remote(dict(cell), out, self.threads): dict(cell) for cell in cells}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the cell raised: reported once, not retried
                        cause = getattr(exc, "cause", None)
                        yield cell, error_line(cause) if isinstance(cause, BaseException) else _first_line(exc)
                    except ray.exceptions.RayError as exc:  # workers kept dying (retries spent), node lost...
                        yield cell, f"{type(exc).__name__}: {_first_line(exc)}"
                    else:
                        if is_done(cell, out):
                            yield cell, None
                        else:  # the task wrote its result on a node whose files the driver cannot see
                            yield cell, (f"the cell finished but its result is not in {out} on the driver; --out "
                                         f"must be a path shared by the driver and every worker")
        finally:
            for ref in pending:  # the driver stops early (Ctrl-C, an error): cancel what is left
                ray.cancel(ref, force=True)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
