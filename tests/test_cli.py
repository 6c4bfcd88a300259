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
