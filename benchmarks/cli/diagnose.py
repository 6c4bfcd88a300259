"""``mtf-bench diagnose``: measure four properties of the simulator that make fusion weights a
learning problem (:mod:`benchmarks.evaluation.diagnose`): fusion weights matter, personalised
weights pay, greedy is not optimal, stickiness trades against activeness."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_dir, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagnose", help="measure the simulator's phenomena: fusion weights matter, personalisation "
                                        "pays, greedy is not optimal, stickiness vs activeness",
                       description="Simulate candidate fusion weights and measure, with Monte-Carlo standard errors, "
                                   "whether fusion weights matter, personalised weights pay, greedy weights are not "
                                   "optimal and stickiness trades against activeness. Writes diagnose.json and "
                                   "diagnose.png into --out.")
    p.add_argument("--sessions", type=int, default=40_000,
                   help="simulated sessions per candidate weight vector (split in two halves)")
    p.add_argument("--random-candidates", type=int, default=18,
                   help="random fusion weight vectors compared besides the presets")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated users and sessions")
    p.add_argument("--out", type=Path, default=Path("results/diagnose"),
                   help="output directory (diagnose.json, diagnose.png)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    positive("--sessions", args.sessions, 2)
    positive("--random-candidates", args.random_candidates, 0)
    positive("--seed", args.seed, 0)
    output_dir("--out", args.out)
    from mtf_env.files import write_json
    from benchmarks.evaluation.diagnose import diagnose, plot_diagnosis

    diag = diagnose(n_sessions=args.sessions, n_random=args.random_candidates, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "diagnose.json", diag.report)
    plot_diagnosis(diag.report, args.out / "diagnose.png")
    r = diag.report
    print(f"production: {r['production']['requests_per_session']['mean']:.2f} requests/session")
    for key in ("phenomenon_1_fusion_weights_matter", "phenomenon_2_personalisation_pays",
                "phenomenon_3_greedy_not_optimal", "phenomenon_6_stickiness_vs_activeness"):
        ph = r[key]
        eff = ph.get("gap") or ph.get("gain") or ph.get("later_reward_loss_of_myopic") or ph.get("play_time_gap")
        name = key.split("_", 2)[2].replace("_", " ")  # "phenomenon_1_fusion_weights_matter" -> "fusion weights matter"
        print(f"{name}: effect {eff['effect']:.3f} +- {eff['se']:.3f} (z = {eff['z']:.1f})")
    print(f"-> {args.out}/diagnose.json, {args.out}/diagnose.png")
