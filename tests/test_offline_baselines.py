"""Offline baselines on d3rlpy (td3, uwac-td3, cql-sac, bc, td3-bc, iql): the agent contract,
settings, UWAC's weights, resume, determinism, checkpoint refusal, bad input."""
from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from agents.checkpoint import CheckpointError, save_checkpoint
from agents.baseline_settings import OFFLINE_GAMMA, OFFLINE_HIDDEN_UNITS, OFFLINE_SETTINGS, values
from agents.offline_d3rlpy import OFFLINE_ALGOS, IQLAgent, TD3Agent, UWACTD3Agent
from agents.registry import ALGOS, algo_class, load_policy
from agents.uwac import UWACTD3Config, uncertainty_weight
from mtf_env.transitions import TransitionArrays
from tests.agent_contract import check_agent_contract

OBS_DIM = 20
#: Tiny per-algorithm settings: small nets and batches, cheap inner loops.
TINY_EXTRA = {"uwac-td3": {"n_dropout_samples": 3}, "cql-sac": {"n_action_samples": 2}}


def tiny(algo: str, **changes):
    cls = OFFLINE_ALGOS[algo]
    settings = {"hidden": (16, 16), "batch_size": 32, **TINY_EXTRA.get(algo, {}), **changes}
    return cls(dataclasses.replace(cls.config_class(), **settings))


def session_data(n: int = 600, seed: int = 0, obs_dim: int = OBS_DIM) -> TransitionArrays:
    """Synthetic sessions (~30% terminal rows, a few timeouts); actions in [-1, 1]."""
    rng = np.random.default_rng(seed)
    ends = rng.random(n) < 0.3
    ends[-1] = True
    timeouts = ends & (rng.random(n) < 0.1)
    starts = np.r_[True, ends[:-1]]
    obs = rng.standard_normal((n, obs_dim), dtype=np.float32)
    actions = np.clip(rng.normal(0.0, 0.5, (n, 12)), -1, 1).astype(np.float32)
    return TransitionArrays(
        observations=obs, actions=actions,
        rewards=(obs[:, 0] - np.abs(actions).mean(axis=1)).astype(np.float32),
        next_observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        terminals=ends & ~timeouts, timeouts=timeouts, episode_starts=starts,
    )



@pytest.fixture(scope="module")
def data() -> TransitionArrays:
    return session_data()


@pytest.mark.parametrize("algo", sorted(OFFLINE_ALGOS))
def test_agent_contract(algo, data, tmp_path):
    check_agent_contract(lambda seed: tiny(algo), data, tmp_path, n_steps=6)


def test_registry_names_every_offline_baseline(tmp_path, data):
    for name, cls in OFFLINE_ALGOS.items():
        assert ALGOS[name].endswith(cls.__name__) and algo_class(name) is cls
    agent = tiny("iql")
    agent.fit(data, 4, seed=0, out_dir=tmp_path, show_progress=False)
    policy = load_policy(str(tmp_path))
    assert isinstance(policy, IQLAgent)
    np.testing.assert_array_equal(policy.act(data.observations[:5]), agent.act(data.observations[:5]))


@pytest.mark.parametrize("algo", ["td3", "bc"])
def test_run_directory_and_metrics(algo, data, tmp_path):
    agent = tiny(algo)
    agent.fit(data, 8, seed=3, out_dir=tmp_path, show_progress=False, log_every=3, q_stats_every=5)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["algo"] == algo and meta["seed"] == 3 and meta["obs_dim"] == OBS_DIM
    assert type(agent).config_class.from_dict(meta["config"]) == agent.config
    library = meta["library"]["config"]
    assert meta["library"]["name"] == "d3rlpy" and library["gamma"] == OFFLINE_GAMMA
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == [3, 6, 8]
    names = ["train/critic_loss", "train/actor_loss", "train/q_mean", "train/q_std", "train/q_policy_mean"] \
        if algo == "td3" else ["train/loss"]
    for row in rows:  # the Q statistics are evaluated on every window's last step too
        for name in names:
            assert np.isfinite(float(row[name])), (row["step"], name)
    assert (tmp_path / "checkpoint.pt").is_file()


def test_predict_value_and_bc_has_no_critic(data):
    agent = tiny("td3")
    agent.fit(data, 4, seed=0, show_progress=False)
    obs = data.observations[:9]
    q_policy = agent.predict_value(obs)
    assert q_policy.shape == (9,) and q_policy.dtype == np.float32
    np.testing.assert_array_equal(q_policy, agent.predict_value(obs, agent.act(obs)))
    with pytest.raises(ValueError, match="actions have shape"):
        agent.predict_value(obs, data.actions[:3])
    bc = tiny("bc")
    bc.fit(data, 2, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="no critic"):
        bc.predict_value(obs)


# --------------------------------------------------------------------------- settings
D3RLPY_CONFIGS = {"td3": "TD3Config", "cql-sac": "CQLConfig", "bc": "BCConfig", "td3-bc": "TD3PlusBCConfig",
                  "iql": "IQLConfig"}


@pytest.mark.parametrize("algo", sorted(OFFLINE_ALGOS))
def test_defaults_are_the_library_defaults_except_the_listed_settings(algo):
    """Each config field mirrors d3rlpy's default unless agents/baseline_settings.py lists it, and the
    library defaults recorded there are the installed library's."""
    import d3rlpy

    cls = OFFLINE_ALGOS[algo]
    library_cls = UWACTD3Config if algo == "uwac-td3" else getattr(d3rlpy.algos, D3RLPY_CONFIGS[algo])
    library = library_cls()
    listed = {s.name: s for s in OFFLINE_SETTINGS[algo]}
    ours = cls.config_class()
    library_fields = {f.name for f in dataclasses.fields(library_cls)}
    mirrored = [f.name for f in dataclasses.fields(ours) if f.name in library_fields]
    assert "gamma" in mirrored and "batch_size" in mirrored
    for name in mirrored:
        expected = listed[name].value if name in listed else getattr(library, name)
        assert getattr(ours, name) == expected, f"{algo}.{name}: {getattr(ours, name)} != {expected}"
        if name in listed:
            assert listed[name].library_default == getattr(library, name), f"{algo}: stale default of {name}"
    # the hidden widths: every encoder factory of the built d3rlpy config, recorded default = d3rlpy's
    from d3rlpy.models.encoders import VectorEncoderFactory

    assert listed["encoder_factory.hidden_units"].library_default == tuple(VectorEncoderFactory().hidden_units)
    built = cls().d3rlpy_config
    factories = [getattr(built, f) for f in library_fields if f.endswith("encoder_factory")]
    assert factories and all(tuple(f.hidden_units) == OFFLINE_HIDDEN_UNITS for f in factories)
    assert built.gamma == OFFLINE_GAMMA == values(OFFLINE_SETTINGS[algo])["gamma"]
    assert built.observation_scaler is None and built.reward_scaler is None


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="gamma"):
        TD3Agent(dataclasses.replace(TD3Agent.config_class(), gamma=1.0))
    with pytest.raises(ValueError, match="weight_form"):
        UWACTD3Agent(dataclasses.replace(UWACTD3Agent.config_class(), weight_form="linear"))
    with pytest.raises(ValueError, match="takes a TD3AgentConfig"):
        TD3Agent(IQLAgent.config_class())
    with pytest.raises(ValueError, match="unknown"):
        TD3Agent.config_class.from_dict({"gamma": 0.9, "expectile": 0.7})


# --------------------------------------------------------------------------- UWAC
def test_uncertainty_weight_is_finite_bounded_and_decreasing():
    variance = torch.tensor([0.0, 1e-30, 1e-3, 0.1, 0.5, 1.0, 10.0, 1e6, float("inf")])
    for form in ("inverse", "exp"):
        w = uncertainty_weight(variance, beta=0.5, max_weight=1.5, form=form)
        assert torch.all(torch.isfinite(w)) and torch.all((w >= 0) & (w <= 1.5)), (form, w)
        assert torch.all(w[1:] <= w[:-1]), f"{form} weights do not decrease with the variance: {w}"
        assert w[0] == 1.5 if form == "inverse" else w[0] == 1.0
    w = uncertainty_weight(variance, beta=0.5, max_weight=1.0, form="inverse")
    torch.testing.assert_close(w[3:6], torch.tensor([1.0, 1.0, 0.5]))  # clip(0.5 / var, 0, 1)
    with pytest.raises(ValueError, match="weight_form"):
        uncertainty_weight(variance, 0.5, 1.0, form="linear")


def test_uwac_down_weights_high_variance_targets(data):
    """Next states scaled up 30x make the dropout variance of the target Q large: those rows must get
    lower weights, terminal rows the full weight, and every weight stays in [0, max_weight]."""
    from d3rlpy.dataset import TransitionMiniBatch
    from d3rlpy.torch_utility import TorchMiniBatch

    agent = tiny("uwac-td3", n_dropout_samples=16, beta=0.05, max_weight=1.0)
    agent.fit(data, 4, seed=0, show_progress=False)
    impl = agent.algo.impl
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    b = 64
    next_obs = rng.standard_normal((b, OBS_DIM), dtype=np.float32)
    next_obs[: b // 2] *= 30.0  # out-of-distribution, high-variance half
    terminals = np.zeros((b, 1), np.float32)
    terminals[-4:] = 1.0
    numpy_batch = TransitionMiniBatch(
        observations=rng.standard_normal((b, OBS_DIM), dtype=np.float32),
        actions=rng.uniform(-1, 1, (b, 12)).astype(np.float32), rewards=np.zeros((b, 1), np.float32),
        next_observations=next_obs, next_actions=np.zeros((b, 12), np.float32), terminals=terminals,
        intervals=np.ones((b, 1), np.float32), transitions=[])
    torch_batch = TorchMiniBatch.from_batch(numpy_batch, gamma=0.95, compute_returns_to_go=False, device="cpu:0")
    target, variance, weight = impl.critic_weights(torch_batch)
    assert target.shape == variance.shape == weight.shape == (b, 1)
    assert torch.all(torch.isfinite(weight)) and torch.all((weight >= 0) & (weight <= 1.0))
    assert variance[: b // 2].mean() > 10 * variance[b // 2 : -4].mean()
    assert weight[: b // 2].mean() < weight[b // 2 : -4].mean()
    assert torch.all(weight[-4:] == 1.0), "terminal rows do not bootstrap and must get max_weight"
    # and the critic loss is d3rlpy's TD error weighted per sample
    loss = impl.compute_critic_grad(torch_batch)
    assert np.isfinite(float(loss.critic_loss.detach())) and 0.0 <= float(loss.critic_weight) <= 1.0


def test_uwac_critics_have_dropout_and_td3_critics_do_not():
    uwac, td3 = tiny("uwac-td3"), tiny("td3")
    assert uwac.d3rlpy_config.critic_encoder_factory.dropout_rate == 0.1
    assert uwac.d3rlpy_config.actor_encoder_factory.dropout_rate is None
    assert td3.d3rlpy_config.critic_encoder_factory.dropout_rate is None


# --------------------------------------------------------------------------- randomness and resume
def test_fit_leaves_the_global_torch_generator_alone(data):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    tiny("cql-sac").fit(data, 3, seed=0, show_progress=False)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("algo", ["td3", "cql-sac"])
def test_resume_after_crash_equals_uninterrupted(algo, data, tmp_path):
    straight = tiny(algo)
    straight.fit(data, 12, seed=3, out_dir=tmp_path / "straight", show_progress=False, log_every=3,
                 checkpoint_every=5)
    crashed = tiny(algo)
    crashed.fit(data, 5, seed=3, out_dir=tmp_path / "resumed", show_progress=False, log_every=3)
    resumed = tiny(algo)
    resumed.fit(data, 12, seed=3, out_dir=tmp_path / "resumed", resume=True, show_progress=False, log_every=3)
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "resumed" / "metrics.csv", newline=""))]
    assert steps == [3, 5, 6, 9, 12]  # the first run's last (partial-window) row at 5 is kept
    with pytest.raises(ValueError, match="cannot resume"):
        tiny(algo).fit(data, 12, seed=4, out_dir=tmp_path / "resumed", resume=True, show_progress=False)
    with pytest.raises(ValueError, match="cannot resume"):
        tiny(algo).fit(session_data(seed=9), 12, seed=3, out_dir=tmp_path / "resumed", resume=True,
                       show_progress=False)


# --------------------------------------------------------------------------- checkpoints and bad input
def test_foreign_and_unsafe_checkpoints_are_refused(data, tmp_path):
    td3 = tiny("td3")
    td3.fit(data, 3, seed=0, out_dir=tmp_path / "td3", show_progress=False)
    with pytest.raises(CheckpointError, match="not 'iql'"):
        IQLAgent.load(tmp_path / "td3")  # config.json names another algorithm
    # a TD3+BC checkpoint under a config.json claiming td3: the checkpoint's own algo tag refuses it
    td3bc = tiny("td3-bc")
    td3bc.fit(data, 3, seed=0, out_dir=tmp_path / "td3bc", show_progress=False)
    (tmp_path / "td3" / "checkpoint.pt").write_bytes((tmp_path / "td3bc" / "checkpoint.pt").read_bytes())
    with pytest.raises(CheckpointError, match="'td3-bc' checkpoint"):
        TD3Agent.load(tmp_path / "td3")
    # another project agent's checkpoint format
    save_checkpoint(tmp_path / "td3" / "checkpoint.pt", {"format": "batchrl-mtf-checkpoint/1", "algo": "td3",
                                                         "step": 1, "grad_step": 1, "modules": {}, "optimizers": {},
                                                         "batch_rng": {}, "torch_rng": {}})
    with pytest.raises(CheckpointError, match="format"):
        TD3Agent.load(tmp_path / "td3")
    # pickled code is never executed
    torch.save({"modules": object()}, tmp_path / "td3" / "checkpoint.pt")
    with pytest.raises(CheckpointError):
        TD3Agent.load(tmp_path / "td3")
    # networks of other sizes
    small = tiny("td3", hidden=(8, 8))
    small.fit(data, 2, seed=0, out_dir=tmp_path / "small", show_progress=False)
    (tmp_path / "td3" / "checkpoint.pt").write_bytes((tmp_path / "small" / "checkpoint.pt").read_bytes())
    with pytest.raises(CheckpointError, match="shape"):
        TD3Agent.load(tmp_path / "td3")
    with pytest.raises(CheckpointError):
        TD3Agent.load(tmp_path / "missing")


def test_bad_input(data):
    agent = tiny("bc")
    with pytest.raises(RuntimeError, match="no networks"):
        agent.act(data.observations[:2])
    bad = dataclasses.replace(data, actions=data.actions * 3.0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        agent.fit(bad, 2, seed=0, show_progress=False)
    nan = data.observations.copy()
    nan[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        agent.fit(dataclasses.replace(data, observations=nan), 2, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="seed"):
        agent.fit(data, 2, seed=-1, show_progress=False)
    agent.fit(data, 2, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="NaN"):
        agent.act(nan[:8])
    with pytest.raises(ValueError, match="resume"):
        agent.fit(data, 2, seed=0, resume=True, show_progress=False)
