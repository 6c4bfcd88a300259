"""Smoke test of the BCQ speed benchmark (tiny sizes; the real figures come from the CLI)."""
from __future__ import annotations

import json

import pytest

from agents.batchrl_mtf import BatchRLMTFConfig
from benchmarks.cli import main
from benchmarks.speed import bench_bcq_speed

pytestmark = pytest.mark.benchmark

TINY = BatchRLMTFConfig(actor_hidden=(16, 16), critic_hidden=(16, 16), vae_hidden=(16, 16), batch_size=32)


def test_run_writes_both_rates(tmp_path):
    out = tmp_path / "bench.json"
    result = bench_bcq_speed.run(steps=4, out=out, warmup=1, blocks=2, n_transitions=500, config=TINY,
                                 show_progress=False)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["d3rlpy_steps_per_s"] > 0 and result["ours_steps_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["ours_steps_per_s"] / result["d3rlpy_steps_per_s"])
    assert result["block_steps"] == [2, 2] and len(result["block_ratios"]) == 2
    assert tuple(result["config"]["vae_hidden"]) == (16, 16) and result["threads"] == 1


def test_d3rlpy_config_matches_ours():
    config = BatchRLMTFConfig()
    d3 = bench_bcq_speed.d3rlpy_bcq_config(config, action_dim=12)
    assert (d3.batch_size, d3.gamma, d3.action_flexibility, d3.lam, d3.beta) == (256, 0.95, 0.15, 1.0, 0.5)
    assert (d3.actor_learning_rate, d3.critic_learning_rate, d3.imitator_learning_rate) == (1e-4, 2e-4, 1e-3)
    assert d3.n_action_samples == config.n_target_samples and d3.rl_start_step == 0
    assert d3.imitator_encoder_factory.hidden_units == [750, 750]
    assert d3.critic_encoder_factory.hidden_units == [400, 300] == d3.actor_encoder_factory.hidden_units
    # tau applied every step decays the target like eta_t applied every L steps
    assert (1 - d3.tau) ** config.target_update_every == pytest.approx(1 - config.eta_t)
    with pytest.raises(ValueError, match="latent"):
        bench_bcq_speed.d3rlpy_bcq_config(BatchRLMTFConfig(latent_dim=5), action_dim=12)


def test_cli(tmp_path, monkeypatch, capsys):
    captured = {}
    monkeypatch.setattr(bench_bcq_speed, "run", lambda **kw: captured.update(kw) or {
        "d3rlpy_steps_per_s": 1.0, "ours_steps_per_s": 2.0, "ratio": 2.0, "ratio_cpu_time": 2.0, "block_ratios": []})
    assert main(["bench-bcq-speed", "--steps", "7", "--out", str(tmp_path / "x.json")]) == 0
    assert captured["steps"] == 7 and captured["out"] == tmp_path / "x.json"
    assert json.loads(capsys.readouterr().out)["ratio"] == 2.0
