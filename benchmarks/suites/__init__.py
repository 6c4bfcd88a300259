"""Benchmark suites: library code that wires datasets, agents and the evaluation library and writes results/ files.

Run them with ``mtf-bench suite baselines|batchrl-small|ope-validation`` (:mod:`benchmarks.cli.suite`);
:mod:`~benchmarks.suites.plots` draws the baselines suite's figures from its result files.
"""
