"""The ``mtf-bench`` command line: one subcommand per module listed in ``COMMAND_MODULES``.

Each module defines ``add_parser(subparsers)``, which registers its subcommand(s) and sets
``func`` to the function that runs them. A command module is argparse and printing only: it
validates its arguments, calls the evaluation library (:mod:`benchmarks.evaluation`, the
suites, the speed benchmarks) and prints. Command modules import the library, torch and the
simulator only inside the function that runs the command, so ``mtf-bench --help`` and an
argument error return at once.

:func:`main` turns an expected error -- bad input (ValueError, including our
``CheckpointError`` and ``DatasetError``), a missing or existing path (FileNotFoundError,
FileExistsError, NotADirectoryError) -- into one line on stderr and exit code 2, and Ctrl-C
into one line and exit code 130, never a traceback. A command that keeps something useful
when interrupted (``train``: the last checkpoint) raises ``KeyboardInterrupt("what was kept,
how to resume")``; that text ends the line. Help shows every option's default
(:class:`~benchmarks.cli.common.HelpFormatter`). Notices of third-party packages that are not
about the user's run are silenced (:func:`~benchmarks.cli.common.quiet_third_party`).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .common import HelpFormatter, quiet_third_party

#: Modules that define subcommands (each has ``add_parser``), in the order of ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "benchmarks.cli.collect",
    "benchmarks.cli.inspect",
    "benchmarks.cli.train",
    "benchmarks.cli.quickstart",
    "benchmarks.cli.ab",
    "benchmarks.cli.ope",
    "benchmarks.cli.suite",
    "benchmarks.cli.ceiling",
    "benchmarks.cli.loop",
    "benchmarks.cli.diagnose",
    "benchmarks.cli.fit_scorer",
    "benchmarks.cli.bench_sim",
    "benchmarks.cli.bench_eval",
    "benchmarks.cli.bench_bcq_speed",
    "benchmarks.cli.bench_ray",
    "benchmarks.cli.plots",
)
#: Errors that mean bad input or a path problem (reported in one line, exit code 2).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError,
                                                    NotADirectoryError)
#: Exit code of an expected error (argparse's code for a usage error).
EXIT_ERROR = 2
#: Exit code after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """The parser of ``mtf-bench`` and of every subcommand: help with defaults (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mtf-bench",
        description="BatchRL-MTF benchmark: simulator, logged data, agents, estimator and online A/B tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def error_line(exc: BaseException) -> str:
    """The message of an expected error on one line (``CheckpointError``, ``DatasetError`` are ValueErrors)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (FileNotFoundError, FileExistsError, NotADirectoryError)) and exc.filename is not None:
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = getattr(args, "command_name", args.command)
    quiet_third_party()
    try:
        args.func(args)
    except EXPECTED_ERRORS as exc:
        print(f"mtf-bench {command}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        detail = " ".join(str(exc).split())
        print(f"mtf-bench {command}: interrupted{'; ' + detail if detail else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
