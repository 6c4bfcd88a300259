"""Fit the PLE scorer on ground-truth impressions, save its weights and report per-task AUC and calibration."""
from __future__ import annotations

import time
from pathlib import Path

from mtf_env.files import write_json
from mtf_env.config import SimConfig
from agents.ple_scorer import train_scorer
from mtf_env.impressions import sample_impressions
from mtf_env.ple import PLEConfig, numpy_predict, scorer_report


def fit_scorer(n_train: int, n_test: int, seed: int, out: Path, report_path: Path | None,
               config: SimConfig = SimConfig(), ple: PLEConfig = PLEConfig(), show_progress: bool = True) -> dict:
    """Train on ``n_train`` impressions (seed ``seed``), test on ``n_test`` fresh ones (seed + 1).

    Writes the weights to ``out`` (.npz plus .json sidecar) and the report (per-task AUC and
    calibration on the test impressions, training history) to ``report_path``.
    """
    import torch

    torch.set_num_threads(1)  # the PLE's matrices are small: one thread is faster than two fighting
    t0 = time.perf_counter()
    train = sample_impressions(config, n_train, seed)
    model, history = train_scorer(train["user_features"], train["item_features"], train["labels"], ple, seed=seed,
                                  show_progress=show_progress)
    weights = model.to_weights()
    weights.save(out)
    test = sample_impressions(config, n_test, seed + 1)
    probs = numpy_predict(weights, test["user_features"], test["item_features"])
    report = {
        "weights": str(out),
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
        "sim_config": config.to_json(),
        "test": scorer_report(probs, test["labels"]),
        "history": history,
        "seconds": time.perf_counter() - t0,
    }
    if report_path is not None:
        write_json(report_path, report)
    return report
