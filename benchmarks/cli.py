"""The ``mtf-bench`` command line: one subcommand per module listed in ``COMMAND_MODULES``.

Each module defines ``add_parser(subparsers)`` which registers its subcommand(s) and sets
``func`` to the function that runs them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that define subcommands (each has ``add_parser``).
COMMAND_MODULES: tuple[str, ...] = (
    "benchmarks.scorer_fit",
    "benchmarks.ab_cli",
    "benchmarks.diagnose",
    "benchmarks.bench_sim",
    "benchmarks.data_cli",
    "benchmarks.ope_cli",
    "benchmarks.train_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtf-bench",
        description="BatchRL-MTF benchmark: simulator, logged data, agents, estimator and online A/B tests.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mtf-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
