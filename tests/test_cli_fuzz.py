"""Bad invocations of every ``mtf-bench`` subcommand: each must fail at once, in one line, and touch nothing.

Every case of :data:`BAD` runs ``benchmarks.cli.main(argv)`` in-process, in a temporary working
directory that holds a regular file ``exists/file`` (and the other fixtures of :func:`workdir`),
and asserts: a non-zero exit (argparse's ``SystemExit(2)`` counts), exactly one error line on
stderr that names the offending option or path, no traceback, nothing on stdout, and no file
created, changed or removed in the working directory, the dataset or the trained run.
:func:`test_no_traceback_reaches_the_terminal` runs a few of them as real processes.

A new subcommand is covered by adding its bad invocations to :data:`BAD`;
:func:`test_every_subcommand_has_bad_invocations` fails until it has some.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.cli import build_parser, main

TINY = ["actor_hidden=16", "critic_hidden=16", "vae_hidden=[16]", "batch_size=32", "n_action_samples=5",
        "n_target_samples=3"]
#: Arguments that make an otherwise valid A/B test (used where one option at a time is made bad).
AB = ["--control", "static:production", "--treatment", "static:production", "--users", "10"]
#: An otherwise valid ``ope`` call on the tiny dataset.
OPE = ["--policy", "static:production", "--data", "{data}", "--out", "ope.json"]


@dataclass(frozen=True)
class Bad:
    """One bad invocation: ``argv`` (``{data}``: the tiny dataset, ``{run}``: a trained run directory)
    and ``names``, the text the error line must hold (the offending option or path)."""

    argv: tuple[str, ...]
    names: str
    in_a_process: bool = False
    """Also run as a real process (the defects that once ended in a traceback)."""

    def __str__(self) -> str:
        return " ".join(self.argv)


def bad(names: str, *argv: str, in_a_process: bool = False) -> Bad:
    return Bad(tuple(argv), names, in_a_process)


BAD: tuple[Bad, ...] = (
    # the top level
    bad("--bogus", "collect", "--bogus"),
    bad("--bogus", "suite", "baselines", "--bogus"),
    bad("COMMAND"),
    bad("no-such-command", "no-such-command"),
    # collect
    bad("exists/file", "collect", "--sessions", "10", "--out", "exists/file/sub", in_a_process=True),
    bad("exists/file", "collect", "--sessions", "10", "--out", "exists/file"),
    bad("--sessions", "collect", "--sessions", "-5"),
    bad("--sessions", "collect", "--sessions", "0"),
    bad("--sessions", "collect", "--sessions", "ten"),
    bad("--preset", "collect", "--preset", "huge"),
    bad("--seed", "collect", "--seed", "-1"),
    bad("--batch-size", "collect", "--batch-size", "0"),
    bad("--n-days", "collect", "--n-days", "0"),
    bad("--sim", "collect", "--sim", "n_users"),
    bad("{data}", "collect", "--sessions", "10", "--out", "{data}"),
    # inspect
    bad("exists/file", "inspect", "exists/file"),
    bad("nowhere", "inspect", "nowhere"),
    bad("--split", "inspect", "{data}", "--split", "validation"),
    bad("--card", "inspect", "{data}", "--card", "huge"),
    bad("exists/file", "inspect", "{data}", "--out", "exists/file"),
    # train
    bad("--algo", "train", "--algo", "dqn"),
    bad("--algo", "train", "--data", "{data}"),
    bad("--data", "train", "--algo", "td3"),
    bad("--data", "train", "--algo", "batchrl-mtf", "--data", "nowhere"),
    bad("--data", "train", "--algo", "batchrl-mtf", "--data", "exists/file"),
    bad("--steps", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "0"),
    bad("--steps", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5.5"),
    bad("--seed", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--seed", "-1"),
    bad("--set", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5", "--set", "no_such_key=1"),
    bad("--set", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5", "--set", "rho=fast"),
    bad("--reward", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5", "--reward", "money"),
    bad("--out", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5", "--out", "exists/file"),
    bad("exists/file", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5", "--out",
        "exists/file/run"),
    bad("--resume", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5", "--out", "runs/missing",
        "--resume", in_a_process=True),
    bad("--resume", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "5", "--out", "empty",
        "--resume"),
    bad("--steps", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "2", "--out", "{run}",
        "--resume"),
    bad("{run}", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--steps", "20", "--out", "{run}"),
    bad("--steps", "train", "--algo", "sac-online", "--steps", "50"),
    bad("--log-every", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--log-every", "0"),
    bad("--threads", "train", "--algo", "batchrl-mtf", "--data", "{data}", "--threads", "0"),
    # quickstart
    bad("--steps", "quickstart", "--steps", "0"),
    bad("--users", "quickstart", "--users", "1"),
    bad("--seed", "quickstart", "--seed", "-1"),
    bad("exists/file", "quickstart", "--out", "exists/file"),
    # ab
    bad("exists/file", "ab", *AB, "--out", "exists/file", in_a_process=True),
    bad("exists/file", "ab", *AB, "--out", "exists/file/ab"),
    bad("--seed", "ab", *AB, "--seed", "-1"),
    bad("--overwrite", "ab", *AB, "--out", "earlier_ab"),
    bad("other", "ab", *AB, "--out", "other", "--overwrite"),
    bad("runs/missing", "ab", "--control", "static:production", "--treatment", "runs/missing"),
    bad("--users", "ab", *AB[:4], "--users", "1"),
    bad("--days", "ab", *AB, "--days", "0"),
    bad("--gamma", "ab", *AB, "--gamma", "2"),
    bad("--config", "ab", *AB, "--config", "not-json"),
    bad("--config", "ab", *AB, "--config", "[1, 2]"),
    bad("--reward", "ab", *AB, "--reward", "money"),
    bad("--control", "ab", "--treatment", "static:production"),
    # ope
    bad("runs/missing", "ope", *OPE, "--policy", "runs/missing"),
    bad("--data", "ope", "--policy", "static:production", "--data", "nowhere", "--out", "ope.json"),
    bad("--steps", "ope", *OPE, "--steps", "0"),
    bad("--gamma", "ope", *OPE, "--gamma", "0"),
    bad("--alpha-c", "ope", *OPE, "--alpha-c", "-1"),
    bad("--hidden", "ope", *OPE, "--hidden", "a,b"),
    bad("exists/file", "ope", "--policy", "static:production", "--data", "{data}", "--out", "exists/file/ope.json"),
    # suites
    bad("--steps", "suite", "baselines", "--data", "{data}", "--steps", "0"),
    bad("--sac-steps", "suite", "baselines", "--data", "{data}", "--sac-steps", "500"),
    bad("dqn", "suite", "baselines", "--data", "{data}", "--algos", "bo", "dqn"),
    bad("--out", "suite", "baselines", "--data", "{data}", "--out", "exists/file"),
    bad("--seed", "suite", "batchrl-small", "--data", "{data}", "--seed", "-1"),
    bad("--data", "suite", "batchrl-small", "--data", "nowhere"),
    bad("--run", "suite", "batchrl-small", "--data", "{data}", "--run", "exists/file"),
    bad("--lr", "suite", "ope-validation", "--data", "{data}", "--lr", "-1"),
    bad("--runs", "suite", "ope-validation", "--data", "{data}", "--runs", "nowhere"),
    bad("result.json", "suite", "ope-validation", "--report-only", "--out", "empty"),
    bad("SUITE", "suite", "no-such-suite"),
    bad("--preset", "suite", "run", "--preset", "bogus", "--out", "s"),
    bad("--preset", "bench-ray", "--preset", "bogus", "--out", "b.json"),
    bad("--preset", "ceiling", "--preset", "bogus", "--out", "c"),
    bad("exists/file", "ceiling", "--out", "exists/file"),
    bad("--algo", "loop", "--algo", "nosuch", "--out", "l"),
    bad("--rounds", "loop", "--algo", "batchrl-mtf", "--rounds", "0", "--out", "l"),
    bad("--users", "loop", "--algo", "batchrl-mtf", "--users", "-5", "--out", "l"),
    bad("--window-days", "loop", "--algo", "batchrl-mtf", "--window-days", "0", "--out", "l"),
    bad("exists/file", "loop", "--algo", "batchrl-mtf", "--out", "exists/file"),
    bad("nowhere", "loop-report", "nowhere", "--out", "r"),
    bad("exists/file", "loop-report", "exists", "--out", "exists/file"),
    bad("exists/file", "bench-ray", "--out", "exists/file/b.json"),
    bad("--workers", "bench-ray", "--workers", "0,2"),
    bad("--noop-tasks", "bench-ray", "--noop-tasks", "0"),
    bad("--seeds", "suite", "run", "--preset", "smoke", "--seeds", "a,b", "--out", "s"),
    bad("--only", "suite", "run", "--preset", "smoke", "--only", "nosuchrow", "--out", "s"),
    bad("exists/file", "suite", "run", "--preset", "smoke", "--out", "exists/file"),
    bad("--device", "suite", "run", "--preset", "smoke", "--device", "tpu", "--out", "s"),
    bad("--workers", "suite", "run", "--preset", "smoke", "--workers", "0", "--out", "s"),
    bad("nowhere", "suite", "report", "nowhere"),
    bad("exists/file", "suite", "report", "exists/file"),
    bad("--data", "suite", "estimate", "--preset", "smoke", "--data", "nowhere", "--out", "e"),
    bad("--preset", "suite", "estimate", "--preset", "bogus", "--data", "{data}", "--out", "e"),
    bad("--probe-steps", "suite", "estimate", "--preset", "smoke", "--data", "{data}", "--probe-steps", "0",
        "--out", "e"),
    # diagnose
    bad("--random-candidates", "diagnose", "--random-candidates", "-1"),
    bad("--sessions", "diagnose", "--sessions", "-1"),
    bad("--seed", "diagnose", "--seed", "-1"),
    bad("exists/file", "diagnose", "--out", "exists/file/diagnose"),
    # fit-scorer
    bad("--impressions", "fit-scorer", "--impressions", "-5"),
    bad("--test-impressions", "fit-scorer", "--test-impressions", "0"),
    bad("--out", "fit-scorer", "--out", "exists"),
    bad("exists/file", "fit-scorer", "--out", "w.npz", "--report", "exists/file/report.json"),
    # bench-sim
    bad("--seconds", "bench-sim", "--seconds", "nan", "--out", "b.json", in_a_process=True),
    bad("--seconds", "bench-sim", "--seconds", "-1", "--out", "b.json"),
    bad("--seconds", "bench-sim", "--seconds", "inf", "--out", "b.json"),
    bad("--out", "bench-sim", "--out", "exists"),
    # bench-eval
    bad("--users", "bench-eval", "--users", "1"),
    bad("--repeats", "bench-eval", "--repeats", "0"),
    bad("--out", "bench-eval", "--out", "exists"),
    # bench-bcq-speed
    bad("--steps", "bench-bcq-speed", "--steps", "0"),
    bad("--mean-session-length", "bench-bcq-speed", "--mean-session-length", "0.5"),
    bad("--out", "bench-bcq-speed", "--out", "exists"),
    # plots
    bad("nowhere", "plots", "nowhere"),
    bad("q_curves.json", "plots", "empty"),
)


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every runnable (sub)command of ``parser``, as argv prefixes."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _subcommands(sub, prefix + (name,)) or {prefix + (name,)}
    return found


def test_every_subcommand_has_bad_invocations():
    covered = {case.argv[:len(cmd)] for case in BAD for cmd in _subcommands(build_parser())}
    missing = sorted(" ".join(cmd) for cmd in _subcommands(build_parser()) if cmd not in covered)
    assert not missing, f"add bad invocations of {missing} to BAD in {__file__}"
    assert len(BAD) >= 60 and len({case.argv for case in BAD}) == len(BAD)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, small_config):
    """A tiny dataset and a run of BatchRL-MTF trained on it for 6 steps (outside the working directory)."""
    from agents.behaviour import collection_policy
    from benchmarks.evaluation.configs import parse_key_values
    from benchmarks.evaluation.training import train_agent
    from mtf_env.dataset import CollectConfig, collect_dataset

    root = tmp_path_factory.mktemp("fuzz")
    collect = CollectConfig(policy="mixed", n_sessions=100, seed=0)
    collect_dataset(root / "data", small_config, collect, collection_policy(collect), progress=False)
    train_agent("batchrl-mtf", root / "data", 6, 0, root / "run", overrides=parse_key_values(TINY),
                show_progress=False)
    return {"data": str(root / "data"), "run": str(root / "run")}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The working directory of a case: ``exists/file`` (a regular file), ``empty/`` (an empty folder),
    ``earlier_ab/`` (an earlier A/B test's results) and ``other/`` (someone else's files)."""
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "file").write_text("a regular file\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "earlier_ab").mkdir()
    (tmp_path / "earlier_ab" / "ab.json").write_text("{}\n")
    (tmp_path / "earlier_ab" / "ab.md").write_text("| earlier |\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not an A/B test\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _state(*roots: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under ``roots``: path -> (content hash or "dir", mtime_ns)."""
    state = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))]:
            kind = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path)] = (kind, path.stat().st_mtime_ns)
    return state


def _argv(case: Bad, fixtures: dict[str, str]) -> list[str]:
    return [arg.format(**fixtures) for arg in case.argv]


def _check_output(case: Bad, fixtures: dict[str, str], code, out: str, err: str) -> None:
    names = case.names.format(**fixtures)
    assert code not in (0, None), f"exit code {code}"
    assert "Traceback" not in out + err, err
    assert out == "", f"stdout: {out!r}"
    error_lines = [line for line in err.splitlines() if ": error:" in line]
    assert len(error_lines) == 1, f"expected one error line, got {err!r}"
    if code != 2 or not err.startswith("usage:"):  # our own errors: that one line and nothing else
        assert err.count("\n") == 1, f"expected one line, got {err!r}"
    assert names in error_lines[0], f"the error does not name {names!r}: {error_lines[0]!r}"


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_invocation_fails_in_one_line_and_touches_nothing(case, fixtures, workdir, capsys):
    roots = (workdir, Path(fixtures["data"]), Path(fixtures["run"]))
    before = _state(*roots)
    try:
        code = main(_argv(case, fixtures))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    _check_output(case, fixtures, code, captured.out, captured.err)
    assert _state(*roots) == before, "files were created, changed or removed"


@pytest.mark.parametrize("case", [case for case in BAD if case.in_a_process], ids=str)
def test_no_traceback_reaches_the_terminal(case, fixtures, workdir):
    before = _state(workdir)
    proc = subprocess.run([sys.executable, "-c", "import sys; from benchmarks.cli import main; sys.exit(main())",
                           *_argv(case, fixtures)], capture_output=True, text=True, cwd=workdir, timeout=300)
    _check_output(case, fixtures, proc.returncode, proc.stdout, proc.stderr)
    assert _state(workdir) == before
