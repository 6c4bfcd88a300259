"""The ``mtf-bench`` command line as a whole: fast help, one-line errors, suites' argument checks."""
from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks.cli import main


def test_help_imports_no_heavy_module():
    """Building the parser (``--help``, argument errors) imports neither torch, d3rlpy, numba nor the simulator."""
    code = ("import sys\nfrom benchmarks.cli import build_parser\nbuild_parser()\n"
            "heavy = [m for m in ('torch', 'd3rlpy', 'numba', 'mtf_env.core', 'agents.base') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


@pytest.mark.parametrize("exc, code", [
    (ValueError("bad\\nvalue"), 2), (FileNotFoundError(2, "No such file or directory", "x.json"), 2),
    (FileExistsError(17, "File exists", "out"), 2), (NotADirectoryError(20, "Not a directory", "f"), 2),
    (KeyboardInterrupt(), 130),
])
def test_expected_errors_are_one_line(monkeypatch, capsys, exc, code):
    import benchmarks.cli.plots as plots_cli

    def boom(args):
        raise exc

    monkeypatch.setattr(plots_cli, "_run", boom)
    assert main(["plots", "anywhere"]) == code
    err = capsys.readouterr().err
    assert err.startswith("mtf-bench plots: ") and err.count("\n") == 1 and "Traceback" not in err


def test_checkpoint_and_dataset_errors_are_expected(capsys, tmp_path):
    from agents.checkpoint import CheckpointError
    from mtf_env.dataset_io import DatasetError

    assert issubclass(CheckpointError, ValueError) and issubclass(DatasetError, ValueError)
    assert main(["inspect", str(tmp_path)]) == 2  # an empty directory is not a dataset
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["baselines", "--data", "NOWHERE"], "does not exist"),
    (["baselines", "--steps", "0"], "--steps must be a positive integer"),
    (["baselines", "--algos", "bo", "dqn"], "unknown algorithm"),
    (["baselines", "--algos", "bo", "--set", "td3:batch_size=8"], "not in this run"),
    (["baselines", "--algos", "td3", "--set", "td3:no_such_key=1"], "unknown config key"),
    (["baselines", "--reward", "nope"], "unknown reward preset"),
    (["baselines", "--users", "1"], "--users"),
    (["batchrl-small", "--set", "rho=fast"], "takes a number"),
    (["batchrl-small", "--rollouts", "0"], "--rollouts"),
    (["batchrl-small", "--seed", "-1"], "--seed"),
    (["ope-validation", "--steps", "0"], "--steps"),
    (["ope-validation", "--runs", "NOWHERE"], "--runs"),
    (["ope-validation", "--lr", "-1"], "--lr"),
])
def test_suites_check_every_input_before_work(tiny_dataset, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    data = [] if "--data" in argv else ["--data", str(tiny_dataset)]
    assert main(["suite", *argv, *data, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("mtf-bench suite ") and err.count("\n") == 1
    assert not out.exists()


def test_bad_widths_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["suite", "baselines", "--hidden", "a,b"])
    assert info.value.code == 2 and "expected widths" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, small_config):
    from agents.behaviour import collection_policy
    from mtf_env.dataset import CollectConfig, collect_dataset

    out = tmp_path_factory.mktemp("data") / "tiny"
    collect = CollectConfig(policy="mixed", n_sessions=100, seed=0)
    collect_dataset(out, small_config, collect, collection_policy(collect), progress=False)
    return out


def _options(parser, prefix=()):
    """(command, action) for every option of every (sub)command of ``parser``."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, prefix + (name,))
        elif action.option_strings and action.dest != "help":
            yield " ".join(prefix), action


def test_every_option_has_help_with_its_default():
    from benchmarks.cli import build_parser

    parser = build_parser()
    for command, action in _options(parser):
        assert action.help, f"mtf-bench {command} {action.option_strings[0]} has no help line"
        assert "issue" not in action.help.lower() and "phenomen" not in action.help.lower()
    for command in ("train", "diagnose", "fit-scorer", "bench-sim"):
        text = subprocess.run([sys.executable, "-c", "import sys; from benchmarks.cli import main; sys.exit(main())",
                               *command.split(), "--help"], capture_output=True, text=True, check=True).stdout
        flat = " ".join(text.split())
        assert "issue" not in flat.lower() and "phenomena 1" not in flat
        if command == "train":
            assert all(algo in flat for algo in ("batchrl-mtf", "td3", "cql-sac", "iql", "bo", "es", "sac-online"))
            assert "--seed SEED seed of all randomness of the run (default 0)" in flat
        if command == "diagnose":
            assert "(default 40000)" in flat and "(default results/diagnose)" in flat
        if command == "fit-scorer":
            assert "(default 200000)" in flat and "(default results/scorer_report.json)" in flat
        if command == "bench-sim":
            assert "(default 2.0)" in flat and "(default results/bench_sim.json)" in flat


def test_score_table_says_when_it_is_built(tmp_path, monkeypatch, capfd):
    """The first-run work of the simulator announces itself on stderr, and only when it really happens."""
    from mtf_env import score_table
    from mtf_env.config import SimConfig

    monkeypatch.setenv("MTF_BENCH_CACHE", str(tmp_path))
    config = SimConfig(n_users=500, n_items=300, world_seed=11)
    score_table._scorer_table.cache_clear()
    score_table.get_scorer_table(config)
    assert "building the scorer's table" in capfd.readouterr().err
    score_table._scorer_table.cache_clear()
    score_table.get_scorer_table(config)  # read from the on-disk cache
    assert "building" not in capfd.readouterr().err


def test_kernel_compilation_is_announced_once_and_only_for_the_simulator(monkeypatch, capsys):
    """numba's "numba:compile" event fires only for a real compilation (not an on-disk cache hit);
    the listener turns the first one of a simulator kernel into one line."""
    import types

    import numba.core.event

    from mtf_env import kernels

    assert any(isinstance(listener, kernels._CompileNotice)
               for listener in numba.core.event._registered.get("numba:compile", []))
    monkeypatch.setattr(kernels._CompileNotice, "announced", False)
    notice = kernels._CompileNotice()

    def event(module):
        return types.SimpleNamespace(data={"dispatcher": types.SimpleNamespace(
            py_func=types.SimpleNamespace(__module__=module))})

    notice.on_start(event("someone_else.kernels"))
    assert capsys.readouterr().err == ""
    notice.on_start(event("mtf_env.kernels"))
    notice.on_start(event("mtf_env.kernels"))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiling the simulator's numba kernels" in err
