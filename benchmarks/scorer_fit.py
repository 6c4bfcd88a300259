"""``mtf-bench fit-scorer``: train the PLE scorer on ground-truth impressions and report it."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from mtf_env.files import write_json
from mtf_env.config import SimConfig
from mtf_env.scorer import PLEConfig, ScorerWeights, numpy_predict, scorer_report, train_scorer
from mtf_env.scoring import DEFAULT_SCORER, sample_impressions


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
    weights = ScorerWeights.from_model(model)
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-scorer", help="train the PLE multi-task scorer on ground-truth impressions")
    p.add_argument("--impressions", type=int, default=800_000, help="training impressions")
    p.add_argument("--test-impressions", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_SCORER, help="weights .npz (default: the shipped weights)")
    p.add_argument("--report", type=Path, default=Path("results/scorer_report.json"))
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = fit_scorer(args.impressions, args.test_impressions, args.seed, args.out, args.report)
    print(f"{'task':14s} {'AUC':>6s} {'mean pred':>10s} {'mean label':>10s} {'ECE':>8s}")
    for name, row in report["test"]["tasks"].items():
        auc = "  n/a" if row.get("auc") is None else f"{row['auc']:.3f}"
        print(f"{name:14s} {auc:>6s} {row['mean_pred']:10.4f} {row['mean_label']:10.4f} {row['ece']:8.4f}")
    print(f"weights -> {args.out}; report -> {args.report}")
