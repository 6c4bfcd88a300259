"""``mtf-bench diagnose``: measure the properties of the simulator that make fusion weights a learning problem
(fusion weights matter, personalised weights pay, greedy is not optimal, stickiness trades against activeness),
the within-session effect, the headroom of a request-index schedule and retention by preset
(:mod:`benchmarks.evaluation.diagnose`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import output_dir, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagnose", help="measure the simulator's phenomena, within-session headroom and retention",
                       description="Simulate candidate fusion weights and measure, with Monte-Carlo standard errors, "
                                   "whether fusion weights matter, personalised weights pay, greedy weights are not "
                                   "optimal and stickiness trades against activeness; the within-session effect and "
                                   "the headroom of a request-index schedule over the best static weights; and "
                                   "active days per user by static preset under the day model with retention. "
                                   "Writes diagnose.json and diagnose.png into --out.")
    p.add_argument("--sessions", type=int, default=40_000,
                   help="simulated sessions per candidate weight vector (split in two halves)")
    p.add_argument("--random-candidates", type=int, default=18,
                   help="random fusion weight vectors compared besides the presets")
    p.add_argument("--retention-users", type=int, default=10_000,
                   help="users per static preset for retention under the day model (0: skip)")
    p.add_argument("--retention-days", type=int, default=30, help="days of the retention measurement")
    p.add_argument("--config", default=None, help="SimConfig overrides: JSON file or inline JSON object")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated users and sessions")
    p.add_argument("--out", type=Path, default=Path("results/diagnose"),
                   help="output directory (diagnose.json, diagnose.png)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> None:
    positive("--sessions", args.sessions, 2)
    positive("--random-candidates", args.random_candidates, 0)
    positive("--retention-users", args.retention_users, 0)
    if args.retention_users == 1:
        raise ValueError("--retention-users must be 0 (skip) or at least 2")
    positive("--retention-days", args.retention_days)
    positive("--seed", args.seed, 0)
    output_dir("--out", args.out)
    from .ab import parse_config

    config = parse_config(args.config)
    if args.retention_users and not config.retention:
        raise ValueError("--retention-users needs retention on in --config (or pass --retention-users 0)")
    if args.retention_users > config.n_users:
        raise ValueError(f"--retention-users ({args.retention_users}) exceeds the population ({config.n_users})")
    from mtf_env.files import write_json
    from benchmarks.evaluation.diagnose import diagnose, plot_diagnosis

    diag = diagnose(config=config, n_sessions=args.sessions, n_random=args.random_candidates, seed=args.seed,
                    retention_users=args.retention_users, retention_days=args.retention_days)
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
    ws = r["within_session"]
    h = ws["headroom"]
    print(f"request-index schedule over the best static weights ({ws['base']}): {h['effect']:+.3f} +- {h['se']:.3f} "
          f"session return ({h['relative_pct']:+.2f}%, z = {h['z']:.1f})")
    prof = ws["profile_production"]
    print("within session (production), request index: " + ", ".join(
        f"{t}: fatigue {f:.2f}, {p:.1f} s/play, {d:.0f} s videos" for t, f, p, d in
        zip(prof["request_index"], prof["fatigue"], prof["play_s_per_play"], prof["watched_duration_s"])))
    ret = r["retention"]
    if ret is not None:
        for name, v in ret["presets"].items():
            a = v["active_days"]
            print(f"retention {name}: {a['mean']:.3f} +- {a['se']:.3f} active days of {ret['days']}")
        d = ret["difference"]
        print(f"retention best ({ret['best']}) - worst ({ret['worst']}): {d['mean']:+.3f} active days, "
              f"95% CI [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] over {ret['users']} users")
    print(f"-> {args.out}/diagnose.json, {args.out}/diagnose.png")
