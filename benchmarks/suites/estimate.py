"""What a preset of the paper suite costs: measured gradient steps per second, multiplied out over its cells.

::

    mtf-bench suite estimate --preset paper --data datasets/smoke --probe-steps 200

For every algorithm of the preset's rows, trains it for ``probe_steps`` steps (offline methods;
online methods: :data:`ONLINE_PROBE` of their own units; later BO rounds cost more, as its Gaussian
process grows, so its estimate is a lower bound) at the preset's
network sizes and settings on ``data`` (any dataset: the speed of a gradient step depends on the
batch and the networks, not on the data's size), and reports steps per second and the estimated
training hours of the preset: ``sum over rows x seeds of steps / (steps per second)``. The rate used
is steps per *CPU second of this process* (one torch thread: what one dedicated core gives), which a
shared machine's load does not distort; the wall-clock rate and the load average are reported next
to it. The probe includes each agent's setup (replay buffer, first steps), so short probes
underestimate the rate a little. Evaluation
(true values, the estimator, the A/B test) is not included; the report of a finished smaller
preset gives its per-cell times. Writes ``OUT/estimate.json`` and ``OUT/estimate.md``.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

#: Probe budget of the online methods in their own units (BO rounds, ES iterations, SAC env steps).
ONLINE_PROBE = {"bo": 3, "es": 2, "sac-online": 512}


def estimate(preset_name: str, data: str | Path, out: str | Path, probe_steps: int = 200, device: str = "cpu",
             seeds: int | None = None, show_progress: bool = False) -> dict[str, Any]:
    import torch

    from mtf_env.files import write_json

    from benchmarks.evaluation.training import train_agent

    from .baselines import is_online
    from .paper_suite import ROWS, method_inputs, resolve_preset

    preset = resolve_preset(preset_name)
    n_seeds = len(preset.seeds) if seeds is None else int(seeds)
    rows_per_algo: dict[str, int] = {}
    for row in ROWS:
        if row.algo is not None:
            rows_per_algo[row.algo] = rows_per_algo.get(row.algo, 0) + 1
    measured: dict[str, Any] = {}
    for algo, n_rows in rows_per_algo.items():
        inputs = method_inputs(next(r for r in ROWS if r.algo == algo), preset, "", device)
        overrides = dict(inputs["overrides"])
        if device != "cpu":
            from .cells import _device_overrides

            overrides.update(_device_overrides(algo, device))
        budget = int(inputs["steps"])
        steps = min(ONLINE_PROBE.get(algo, probe_steps) if is_online(algo) else probe_steps, budget)
        if algo == "sac-online":  # past its learning starts (else no gradient step is timed), a multiple of n_envs
            from agents.registry import algo_class
            from benchmarks.evaluation.configs import build_config

            config = build_config(algo_class(algo), overrides)
            steps = min(budget, config.learning_starts + steps)
            steps = max(config.n_envs, steps // config.n_envs * config.n_envs)
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            train_agent(algo, data, steps, 0, Path(tmp) / "run", overrides=overrides, show_progress=show_progress)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rate = steps / cpu if cpu > 0 else float("nan")
        hours = n_rows * n_seeds * budget / rate / 3600 if rate > 0 else float("nan")
        measured[algo] = {"online": is_online(algo), "probe_steps": steps, "probe_wall_s": wall, "probe_cpu_s": cpu,
                          "steps_per_cpu_s": rate, "steps_per_wall_s": steps / wall, "budget_steps": budget,
                          "rows": n_rows, "seeds": n_seeds, "estimated_train_hours": hours}
    total = sum(m["estimated_train_hours"] for m in measured.values())
    result = {"preset": preset.name, "data": str(data), "device": device, "probe_steps": probe_steps,
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average_at_end": list(os.getloadavg()), "algorithms": measured,
              "estimated_train_hours_total": total,
              "settings": {"hidden": list(preset.hidden), "vae_hidden": list(preset.vae_hidden),
                           "offline_steps": preset.offline_steps, "online_steps": dict(preset.online_steps)}}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "estimate.json", result)
    (out / "estimate.md").write_text(to_markdown(result))
    return result


def to_markdown(result: dict[str, Any]) -> str:
    lines = [f"Training cost of the `{result['preset']}` preset on {result['device']} ({result['torch_threads']} torch "
             f"thread(s), {result['cpu_count']} CPUs, load average {result['load_average_at_end'][0]:.1f}); steps "
             f"measured over {result['probe_steps']} steps each (online methods: their own units).", "",
             "| Algorithm | Steps per CPU s | Steps per wall s | Budget (steps) | Rows x seeds | Estimated CPU hours |",
             "|---|---:|---:|---:|---:|---:|"]
    for algo, m in result["algorithms"].items():
        lines.append(f"| {algo}{' (online)' if m['online'] else ''} | {m['steps_per_cpu_s']:.2f} | "
                     f"{m['steps_per_wall_s']:.2f} | {m['budget_steps']:,} | {m['rows']} x {m['seeds']} | "
                     f"{m['estimated_train_hours']:.1f} |")
    lines += ["", f"Total training: about {result['estimated_train_hours_total']:.0f} CPU hours of one core "
              "(evaluation not included); cells run one per core, so divide by the cores given (`--workers`)."]
    return "\n".join(lines) + "\n"
