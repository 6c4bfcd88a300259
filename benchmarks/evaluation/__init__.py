"""The evaluation library: judging policies and estimators on the simulator (no command line here).

One idea per module:

* :mod:`~benchmarks.evaluation.streams` -- counter-based random streams (SplitMix64) for common random numbers.
* :mod:`~benchmarks.evaluation.stats` -- estimates with standard errors, paired lifts, rank metrics of estimators.
* :mod:`~benchmarks.evaluation.days` -- the day model: ``evaluate`` a policy on users for days (``EvalResult``).
* :mod:`~benchmarks.evaluation.ab` -- the A/B test with common random numbers (``ab_test``, ``ABResult``).
* :mod:`~benchmarks.evaluation.true_value` -- the Monte-Carlo true value of a policy from initial states.
* :mod:`~benchmarks.evaluation.estimators` -- running an off-policy estimator on a dataset's test split.
* :mod:`~benchmarks.evaluation.policy_zoo` -- evaluation policies spread over the quality range.
* :mod:`~benchmarks.evaluation.configs` -- agent configs from text and overrides.
* :mod:`~benchmarks.evaluation.training` -- the training driver ``train_agent`` (run directories, train.json).
* :mod:`~benchmarks.evaluation.quickstart` -- collect, train and A/B-test on small settings.
* :mod:`~benchmarks.evaluation.logged_data` -- collection with a run log, dataset statistics, cards.
* :mod:`~benchmarks.evaluation.diagnose` -- the simulator's phenomena measured with standard errors.
* :mod:`~benchmarks.evaluation.scorer_fit` -- fitting and reporting the PLE scorer.

Importing this package imports none of its modules (the command line stays fast).
"""
