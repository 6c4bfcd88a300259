"""The Ray executor (benchmarks.suites.ray_executor) against the local one, with a killed worker, a bad cell and a
killed driver.

The suite runs the ``tiny`` preset of ``test_paper_suite`` (the smoke preset shrunk to seconds: 300 sessions,
20 gradient steps) on three rows (BO, BatchRL-MTF, the production weights) with one seed: the full smoke preset
takes minutes per run on 2 shared cores and these tests run it several times. Ray runs on this machine only:
2 CPUs, no dashboard, every service on 127.0.0.1, no usage stats. Tests that need Ray are skipped (with that
reason) when it is not installed; the missing-Ray error is tested either way.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmarks.suites import paper_suite
from benchmarks.suites.cells import CELLS_DIR, WORK_DIR, is_done, make_cell, result_path
from benchmarks.suites.runner import run_suite
from benchmarks.suites.suite_report import PLAN_NAME, strip_timing

sys.path.insert(0, str(Path(__file__).parent))
from test_paper_suite import TINY_ROWS, tiny_preset  # noqa: E402

NEEDS_RAY = "ray is not installed (pip install -e \".[ray]\"); the Ray executor's tests need it"


def _import_ray():
    return pytest.importorskip("ray", reason=NEEDS_RAY)


# ---------------------------------------------------------------------------------------------
# Without Ray
# ---------------------------------------------------------------------------------------------
def test_missing_ray_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from benchmarks.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    out = tmp_path / "suite"
    assert main(["suite", "run", "--preset", "smoke", "--executor", "ray", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[ray]"' in err and "--executor ray" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--address", "auto"], "--address needs --executor ray"),
    (["--cpus-per-cell", "2"], "--cpus-per-cell needs --executor ray"),
])
def test_ray_options_need_the_ray_executor(tmp_path, capsys, argv, message):
    from benchmarks.cli import main

    out = tmp_path / "suite"
    assert main(["suite", "run", "--preset", "smoke", *argv, "--out", str(out), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# A local Ray instance (2 CPUs, 127.0.0.1 only) shared by the tests below
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_instance():
    _import_ray()
    from benchmarks.suites.ray_executor import import_ray_local_only, local_init_kwargs

    ray = import_ray_local_only()
    ray.init(**local_init_kwargs(num_cpus=2), object_store_memory=100 * 2**20)
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    """The tiny preset registered as ``tiny``, and its results.json and directory from the local executor."""
    previous = paper_suite.SUITE_PRESETS.get("tiny")
    paper_suite.SUITE_PRESETS["tiny"] = tiny_preset()
    out = tmp_path_factory.mktemp("local")
    run_suite("tiny", out, only=TINY_ROWS, show_progress=False)
    yield json.loads((out / "results.json").read_text()), out
    if previous is None:
        paper_suite.SUITE_PRESETS.pop("tiny")
    else:
        paper_suite.SUITE_PRESETS["tiny"] = previous


def recording_task(log_dir: str):
    """A task function: appends ``<row> <pid>`` to ``log_dir/attempts`` and runs the cell like the default task."""

    def task(cell, out_dir, threads=1):
        from benchmarks.suites.ray_executor import run_cell_task

        with open(Path(log_dir) / "attempts", "a") as f:
            f.write(f"{cell['row']} {os.getpid()}\n")
        return run_cell_task(cell, out_dir, threads)

    return task


def attempts(log_dir: Path) -> list[tuple[str, int]]:
    path = log_dir / "attempts"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(row, int(pid)) for row, pid in (line.split() for line in lines)]


def test_ray_suite_equals_the_local_suite(ray_instance, tiny_suite, tmp_path):
    from benchmarks.suites.ray_executor import RayExecutor

    expected, _ = tiny_suite
    out = tmp_path / "ray"
    executor = RayExecutor(cell_function=recording_task(str(tmp_path)))
    run_suite("tiny", out, only=TINY_ROWS, executor=executor, show_progress=False)
    executor.close()
    assert ray_instance.is_initialized()  # an instance the executor found running is left alone

    result = json.loads((out / "results.json").read_text())
    assert result["cells_done"] == result["cells_planned"] == len(TINY_ROWS)
    assert strip_timing(result) == strip_timing(expected)
    runs = attempts(tmp_path)  # every cell (the mixed dataset + 3 method cells) ran once, in Ray workers
    assert sorted(row for row, _ in runs) == sorted(["dataset-mixed", *TINY_ROWS])
    assert os.getpid() not in {pid for _, pid in runs}


def test_cli_runs_the_suite_on_ray(ray_instance, tiny_suite, tmp_path, capsys):
    from benchmarks.cli import main

    expected, _ = tiny_suite
    out = tmp_path / "cli"
    argv = ["suite", "run", "--preset", "tiny", "--seeds", "0", "--only", *TINY_ROWS, "--executor", "ray"]
    # a cell that fits no node: one line, exit code 2, nothing written
    assert main([*argv, "--cpus-per-cell", "3", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--cpus-per-cell 3: the Ray cluster has 2 CPU(s)" in err
    assert not out.exists() and ray_instance.is_initialized()

    assert main([*argv, "--out", str(out)]) == 0
    assert "Ray: 2 CPU(s), 0 GPU(s)" in capsys.readouterr().out
    assert strip_timing(json.loads((out / "results.json").read_text())) == strip_timing(expected)


def crash_once_task(log_dir: str, row: str):
    """A task function whose first attempt at ``row`` kills its own worker process (SIGKILL) mid-cell: after the
    cell's first training chunk was written to its run directory. Attempts are logged like :func:`recording_task`."""

    def task(cell, out_dir, threads=1):
        from benchmarks.suites import baselines
        from benchmarks.suites.ray_executor import run_cell_task

        with open(Path(log_dir) / "attempts", "a") as f:
            f.write(f"{cell['row']} {os.getpid()}\n")
        marker = Path(log_dir) / "killed"
        if cell["row"] == row and not marker.exists():
            train_method = baselines.train_method

            def train_then_die(*args, **kwargs):
                result = train_method(*args, **kwargs)
                marker.write_text(str(sorted(p.name for p in (Path(out_dir) / WORK_DIR).iterdir())))
                os.kill(os.getpid(), signal.SIGKILL)
                return result

            baselines.train_method = train_then_die  # this worker process only; it dies
        return run_cell_task(cell, out_dir, threads)

    return task


def test_a_killed_worker_is_retried_and_gives_the_same_result(ray_instance, tiny_suite, tmp_path):
    from benchmarks.suites.ray_executor import RayExecutor

    expected, _ = tiny_suite
    out = tmp_path / "ray"
    with RayExecutor(cell_function=crash_once_task(str(tmp_path), "batchrl-mtf"), max_retries=2) as executor:
        run_suite("tiny", out, only=TINY_ROWS, executor=executor, show_progress=False)

    killed_with = (tmp_path / "killed").read_text()
    assert "batchrl-mtf__seed0" in killed_with  # the dead attempt had left a partial run directory
    tries = [pid for row, pid in attempts(tmp_path) if row == "batchrl-mtf"]
    assert len(tries) == 2 and tries[0] != tries[1]  # retried once, in a new worker process
    result = json.loads((out / "results.json").read_text())
    assert strip_timing(result) == strip_timing(expected)


def test_a_bad_cell_is_reported_once_and_the_others_finish(ray_instance, tiny_suite, tmp_path):
    from benchmarks.suites.executors import run_all
    from benchmarks.suites.ray_executor import RayExecutor

    _, local_dir = tiny_suite
    out = tmp_path / "suite"
    shutil.copytree(local_dir, out)
    plan = json.loads((out / PLAN_NAME).read_text())
    cells = plan["cells"]
    for cell in cells:  # the method cells run again; the datasets are reused
        result_path(cell, out).unlink()
    good = next(c for c in cells if c["row"] == "batchrl-mtf")
    bad = make_cell("method", "batchrl-mtf-bad", 0, {**good["inputs"],
                                                      "overrides": {**good["inputs"]["overrides"],
                                                                    "no_such_setting": 1}},
                    good["code_version"], dataset_path=good["dataset_path"])

    with RayExecutor(cell_function=recording_task(str(tmp_path))) as executor:
        failures = run_all(executor, [*cells, bad], out, show_progress=False)
    assert list(failures) == ["batchrl-mtf-bad/seed0"]
    assert "no_such_setting" in failures["batchrl-mtf-bad/seed0"]
    assert len(failures["batchrl-mtf-bad/seed0"].splitlines()) == 1
    assert all(is_done(c, out) for c in cells) and not is_done(bad, out)
    rows = [row for row, _ in attempts(tmp_path)]
    assert rows.count("batchrl-mtf-bad") == 1  # not retried
    assert sorted(rows) == sorted([*TINY_ROWS, "batchrl-mtf-bad"])


_DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import ray
    from test_paper_suite import TINY_ROWS, tiny_preset
    from benchmarks.suites import paper_suite
    from benchmarks.suites.ray_executor import RayExecutor
    from benchmarks.suites.runner import run_suite
    paper_suite.SUITE_PRESETS["tiny"] = tiny_preset()
    ray.init(address={address!r}, log_to_driver=False)
    run_suite("tiny", {out!r}, only=TINY_ROWS, executor=RayExecutor(), show_progress=False)
""")


def test_a_killed_driver_is_rerun_and_skips_finished_cells(ray_instance, tiny_suite, tmp_path):
    from benchmarks.suites.ray_executor import RayExecutor

    expected, _ = tiny_suite
    out = tmp_path / "suite"
    address = ray_instance.get_runtime_context().gcs_address  # the test's own instance on 127.0.0.1
    assert address.startswith("127.0.0.1:")
    code = _DRIVER.format(tests=str(Path(__file__).parent), address=address, out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if list((out / CELLS_DIR).glob("dataset-mixed__*.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the driver finished (or failed) before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60  # Ray stops the dead driver's tasks and frees their CPUs
    while ray_instance.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (out / "results.json").exists()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / CELLS_DIR).glob("*.json")}

    with RayExecutor(cell_function=recording_task(str(tmp_path))) as executor:
        run_suite("tiny", out, only=TINY_ROWS, executor=executor, show_progress=False)
    # the cells finished before the kill were not run again; the rest were; the results equal the local run's
    assert {p.name: p.stat().st_mtime_ns for p in (out / CELLS_DIR).glob("*.json") if p.name in finished} == finished
    rerun = [row for row, _ in attempts(tmp_path)]
    assert not {name.split("__")[0] for name in finished} & set(rerun)
    assert len(rerun) + len(finished) == 1 + len(TINY_ROWS)
    assert strip_timing(json.loads((out / "results.json").read_text())) == strip_timing(expected)


@pytest.mark.benchmark
def test_bench_ray_times_local_and_ray_runs(monkeypatch):
    """The suite benchmark on the tiny preset (figures: `mtf-bench bench-ray`, docs/cluster.md): every run gives the
    local run's results and the timings are positive. Not with the module's Ray instance: it starts its own."""
    _import_ray()
    import ray

    from benchmarks.speed.bench_ray import run_bench

    if ray.is_initialized():
        pytest.skip("a Ray instance of another test is running in this process")
    monkeypatch.setitem(paper_suite.SUITE_PRESETS, "tiny", tiny_preset())
    report = run_bench("tiny", only=TINY_ROWS, workers=(1, 2), noop_tasks=10)
    assert set(report["runs"]) == {"local", "ray_1_workers", "ray_2_workers"}
    for name, run in report["runs"].items():
        assert run["wall_s"] > 0 and run["cells"] == len(TINY_ROWS), name
        assert run.get("same_results", True), name
    assert 0 < report["noop_task"]["min_s"] <= report["noop_task"]["median_s"]
