"""BatchRL-MTF (BCQ): the agent contract, resume, checkpoint refusal, bad input, learning."""
from __future__ import annotations

import csv
import dataclasses
import json
import zipfile

import numpy as np
import pytest
import torch

from agents.checkpoint import CheckpointError
from agents.batchrl_mtf import ALGO_NAME, BatchRLMTF, BatchRLMTFConfig
from agents.nets import ObsConditionedMLP, mlp
from mtf_env.transitions import TransitionArrays
from tests.agent_contract import check_agent_contract

OBS_DIM = 60
TINY = BatchRLMTFConfig(
    actor_hidden=(32, 32), critic_hidden=(32, 32), vae_hidden=(32, 32), batch_size=64,
    n_target_samples=4, n_action_samples=8, target_update_every=2,
)


def session_data(n: int = 3000, seed: int = 0, obs_dim: int = OBS_DIM) -> TransitionArrays:
    """Synthetic sessions of 1 + Poisson(2.55) requests; actions in [-1, 1]."""
    rng = np.random.default_rng(seed)
    ends = np.cumsum(1 + rng.poisson(2.55, size=n))
    ends = ends[ends <= n] - 1
    terminals = np.zeros(n, bool)
    terminals[ends] = True
    starts = np.zeros(n, bool)
    starts[0] = True
    starts[ends[ends + 1 < n] + 1] = True
    actions = np.clip(rng.normal(0.0, 0.5, (n, 12)), -1, 1).astype(np.float32)
    obs = rng.standard_normal((n, obs_dim), dtype=np.float32)
    return TransitionArrays(
        observations=obs, actions=actions,
        rewards=(obs[:, 0] - np.abs(actions).mean(axis=1)).astype(np.float32),
        next_observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        terminals=terminals, timeouts=np.zeros(n, bool), episode_starts=starts,
    )



@pytest.fixture(scope="module")
def data() -> TransitionArrays:
    return session_data()


def test_agent_contract(data, tmp_path):
    check_agent_contract(lambda seed: BatchRLMTF(TINY), data, tmp_path, n_steps=12)


def test_run_directory(data, tmp_path):
    agent = BatchRLMTF(TINY)
    agent.fit(data, 10, seed=5, out_dir=tmp_path, show_progress=False, log_every=5)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["algo"] == ALGO_NAME and meta["seed"] == 5 and meta["obs_dim"] == OBS_DIM
    assert BatchRLMTFConfig.from_dict(meta["config"]) == TINY
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [5, 10]
    for name in ("train/vae_loss", "train/critic_loss", "train/actor_loss", "train/q_mean", "train/q_std"):
        assert np.isfinite(float(rows[-1][name])), name
    assert (tmp_path / "checkpoint.pt").is_file()


def test_resume_after_crash_equals_uninterrupted(data, tmp_path):
    straight = BatchRLMTF(TINY)
    straight.fit(data, 30, seed=3, out_dir=tmp_path / "straight", show_progress=False, log_every=5,
                 checkpoint_every=10)

    crashing = BatchRLMTF(TINY)
    update_actor = crashing.update_actor

    def crash_at_step_27(batch):
        if crashing.step == 26:
            raise RuntimeError("simulated crash")
        return update_actor(batch)

    crashing.update_actor = crash_at_step_27
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit(data, 30, seed=3, out_dir=tmp_path / "resumed", show_progress=False, log_every=5,
                     checkpoint_every=10)
    resumed = BatchRLMTF(TINY)
    resumed.fit(data, 30, seed=3, out_dir=tmp_path / "resumed", show_progress=False, log_every=5,
                checkpoint_every=10, resume=True)

    want, got = straight.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want), "resumed weights differ from the uninterrupted run"
    for name, opt in straight.optimizers.items():
        for a, b in zip(opt.state_dict()["state"].values(), resumed.optimizers[name].state_dict()["state"].values()):
            assert all(torch.equal(a[k], b[k]) for k in a), f"{name} optimiser state differs"
    # the metrics row written after the step-20 checkpoint (step 25) was replaced, not duplicated
    with open(tmp_path / "resumed" / "metrics.csv", newline="") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps == [5, 10, 15, 20, 25, 30]


def test_resume_refuses_another_seed_or_data(data, tmp_path):
    BatchRLMTF(TINY).fit(data, 4, seed=0, out_dir=tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="seed"):
        BatchRLMTF(TINY).fit(data, 8, seed=1, out_dir=tmp_path, resume=True, show_progress=False)
    with pytest.raises(ValueError, match="data_fingerprint"):
        BatchRLMTF(TINY).fit(session_data(seed=1), 8, seed=0, out_dir=tmp_path, resume=True, show_progress=False)
    with pytest.raises(ValueError, match="rho"):
        BatchRLMTF(dataclasses.replace(TINY, rho=0.3)).fit(data, 8, seed=0, out_dir=tmp_path, resume=True,
                                                          show_progress=False)


class _Payload:
    """Unpickling this calls ``open(path, "w")``: it creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture()
def run_dir(data, tmp_path):
    agent = BatchRLMTF(TINY)
    agent.fit(data, 3, seed=0, out_dir=tmp_path / "run", show_progress=False)
    return tmp_path / "run"


def test_load_does_not_execute_pickled_code(run_dir, tmp_path):
    live_marker, marker = tmp_path / "live_marker", tmp_path / "marker"
    # the payload is live: an unsafe load would run it
    torch.save({"format": "x", "payload": _Payload(live_marker)}, tmp_path / "live.pt")
    torch.load(tmp_path / "live.pt", weights_only=False)
    assert live_marker.exists()

    torch.save({"format": "x", "payload": _Payload(marker)}, run_dir / "checkpoint.pt")
    with pytest.raises(CheckpointError):
        BatchRLMTF.load(run_dir)
    assert not marker.exists(), "loading a checkpoint executed code from it"


def test_load_refuses_truncated_file(run_dir):
    path = run_dir / "checkpoint.pt"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError):
        BatchRLMTF.load(run_dir)


def test_load_refuses_wrong_shapes_and_foreign_runs(run_dir):
    path = run_dir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["nets"]["critic1.layers.0.weight"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="shape"):
        BatchRLMTF.load(run_dir)
    meta = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**meta, "algo": "td3"}))
    with pytest.raises(CheckpointError, match="td3"):
        BatchRLMTF.load(run_dir)
    with pytest.raises(CheckpointError):
        BatchRLMTF.load(run_dir / "missing")


def test_checkpoint_is_a_plain_torch_zip(run_dir):
    assert zipfile.is_zipfile(run_dir / "checkpoint.pt")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and isinstance(state["generator"], torch.Tensor)


def test_bad_input(data):
    agent = BatchRLMTF(TINY)
    with pytest.raises(RuntimeError, match="fit"):
        agent.act(data.observations[:2])
    bad_actions = dataclasses.replace(data, actions=data.actions * 2.0)
    with pytest.raises(ValueError, match="actions"):
        agent.fit(bad_actions, 2, seed=0, show_progress=False)
    nan_obs = data.observations.copy()
    nan_obs[-1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        agent.fit(dataclasses.replace(data, observations=nan_obs), 2, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="n_steps"):
        agent.fit(data, 0, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="seed"):
        agent.fit(data, 2, seed=-1, show_progress=False)
    with pytest.raises(ValueError, match="rho"):
        BatchRLMTFConfig(rho=0.0)
    agent.fit(data, 2, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="NaN"):
        agent.act(np.full((2, OBS_DIM), np.nan, np.float32))


def test_act_rows_are_independent_of_the_batch(data):
    agent = BatchRLMTF(TINY)
    agent.fit(data, 5, seed=0, show_progress=False)
    obs = data.observations[:300]  # more than one act chunk of 256 states
    np.testing.assert_allclose(agent.act(obs)[:3], agent.act(obs[:3]), atol=1e-6)
    np.testing.assert_allclose(agent.act(obs)[280:], agent.act(obs[280:]), atol=1e-6)


def test_obs_conditioned_mlp_is_an_mlp_over_the_concatenation():
    gen = torch.Generator().manual_seed(0)
    net = ObsConditionedMLP(obs_dim=5, in_dim=3, hidden=(7, 6), out_dim=2, generator=gen)
    plain = mlp(8, (7, 6), 2)
    with torch.no_grad():
        plain[0].weight.copy_(torch.cat([net.obs_layer.weight, net.input_layer.weight], dim=1))
        plain[0].bias.copy_(net.obs_layer.bias)
        for dst, src in zip(plain[2::2], net.layers):
            dst.load_state_dict(src.state_dict())
    obs, x = torch.randn(4, 5), torch.randn(4, 3, 3)  # 4 states, 3 inputs each
    want = plain(torch.cat([obs[:, None].expand(4, 3, 5), x], dim=2))  # (4, 3, 2)
    torch.testing.assert_close(net.forward_embedded(net.embed_obs(obs), x), want)
    torch.testing.assert_close(net(obs, x[:, 0]), want[:, 0])
    with torch.no_grad():
        workspace = net.workspace(max_rows=20)
        torch.testing.assert_close(net.forward_embedded(net.embed_obs(obs), x, workspace), want)
        torch.testing.assert_close(net.forward_embedded(net.embed_obs(obs), x[:, :1], workspace), want[:, :1])
    same = ObsConditionedMLP(5, 3, (7, 6), 2, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), same.state_dict().values()))


def test_replay_buffer_is_the_most_recent_transitions(data):
    agent = BatchRLMTF(dataclasses.replace(TINY, buffer_size=500)).prepare(data, seed=0)
    np.testing.assert_array_equal(agent._buffer["obs"].numpy(), data.observations[-500:])


def test_learns_a_bandit():
    """One-step bandit with reward ``a . w``, logged actions ~ N(0, 0.3) (mean reward 0).

    The critic must rank the logged actions like the reward, and the policy must earn more
    than the logged actions: at most ``rho * sum|w|`` more, as BCQ only perturbs actions the
    VAE decodes near the data by up to ``rho``. Measured after 500 steps over seeds 0-2:
    critic correlation 0.92-0.95, gain 0.84-0.88 of the maximum; a policy that ignores the
    critic gains about 0, one that minimises it loses.
    """
    rng = np.random.default_rng(0)
    n, obs_dim = 4000, 8
    w = np.linspace(-1.0, 1.0, 12).astype(np.float32)
    actions = np.clip(rng.normal(0.0, 0.3, (n, 12)), -1, 1).astype(np.float32)
    data = TransitionArrays(
        observations=rng.standard_normal((n, obs_dim), dtype=np.float32), actions=actions,
        rewards=(actions @ w).astype(np.float32),
        next_observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        terminals=np.ones(n, bool), timeouts=np.zeros(n, bool), episode_starts=np.ones(n, bool),
    )
    agent = BatchRLMTF(TINY)
    agent.fit(data, 500, seed=0, show_progress=False)

    with torch.no_grad():
        q = agent.nets.critic1(torch.as_tensor(data.observations[:500]), torch.as_tensor(actions[:500]))
    assert np.corrcoef(q.numpy().ravel(), data.rewards[:500])[0, 1] > 0.8
    gain = (agent.act(data.observations[:200]) @ w).mean() - data.rewards.mean()
    max_gain = TINY.rho * np.abs(w).sum()
    assert gain > 0.5 * max_gain, (gain, max_gain)


def test_predict_value_is_q1_at_given_or_own_actions(data):
    agent = BatchRLMTF(TINY)
    with pytest.raises(RuntimeError, match="fit"):
        agent.predict_value(data.observations[:3])
    agent.fit(data, 20, seed=0, show_progress=False)
    obs, actions = data.observations[:300], data.actions[:300]
    q_logged = agent.predict_value(obs, actions)
    assert q_logged.shape == (300,) and q_logged.dtype == np.float32
    with torch.no_grad():
        expected = agent.nets.critic1(torch.as_tensor(obs), torch.as_tensor(actions)).squeeze(1).numpy()
    np.testing.assert_allclose(q_logged, expected, rtol=1e-6, atol=1e-6)
    q_own = agent.predict_value(obs)
    np.testing.assert_array_equal(q_own, agent.predict_value(obs, agent.act(obs)))
    assert not np.array_equal(q_own, q_logged)
    # act picks the Q1-best of its candidates, so its own actions beat the logged ones on average
    assert q_own.mean() > q_logged.mean()
    with pytest.raises(ValueError, match="shape"):
        agent.predict_value(obs, actions[:5])
