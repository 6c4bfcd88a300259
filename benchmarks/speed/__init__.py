"""Speed benchmarks: simulator throughput, A/B platform throughput, BatchRL-MTF against d3rlpy's BCQ.

Run them with ``mtf-bench bench-sim``, ``mtf-bench bench-eval`` and ``mtf-bench bench-bcq-speed``;
``reference/`` holds stored figures the regression tests compare against.
"""
