"""agents/checkpoint.py, run_dir.py, config.py, seeding.py, data.py, training_loop.py: run directories, metrics resume, checkpoint refusal, seeds and data checks."""
from __future__ import annotations

import csv
import dataclasses
import json
from typing import ClassVar

import numpy as np
import pytest
import torch

from agents.checkpoint import (
    CheckpointError,
    check_checkpoint,
    check_resume,
    config_json,
    load_resume_checkpoint,
    restoring_state,
    save_checkpoint,
)
from agents.config import ConfigBase, config_from_dict
from agents.data import check_transitions, data_fingerprint
from agents.run_dir import MetricsLogger, agent_run_fields, read_run_config, write_run_config
from agents.seeding import check_seed, global_rng_scope, seed_from, torch_rng_scope
from agents.training_loop import check_fit_args
from mtf_env.transitions import TransitionArrays


@dataclasses.dataclass(frozen=True)
class Cfg:
    """A stand-in agent config."""

    lr: float = 1e-3
    """Learning rate."""
    n_steps: int = 10
    """fit's default run length."""
    device: str = "cpu"
    """Torch device."""

    @classmethod
    def from_dict(cls, values):
        return config_from_dict(cls, values)


def transitions(n: int = 20, seed: int = 0) -> TransitionArrays:
    rng = np.random.default_rng(seed)
    return TransitionArrays(
        observations=rng.standard_normal((n, 3), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=rng.standard_normal((n, 3), dtype=np.float32),
        terminals=np.arange(n) % 5 == 4, timeouts=np.zeros(n, bool), episode_starts=np.arange(n) % 5 == 0,
    )


def test_metrics_logger_resume_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    logger = MetricsLogger(path)
    for step in (5, 10, 15):
        logger.log(step, {"train/loss": float(step)})
    logger = MetricsLogger(path, resume=True, last_step=10)  # a crash after the step-10 checkpoint
    logger.log(15, {"train/loss": -1.0})
    rows = list(csv.DictReader(open(path, newline="")))
    assert [(r["step"], r["train/loss"]) for r in rows] == [("5", "5.0"), ("10", "10.0"), ("15", "-1.0")]
    MetricsLogger(path)  # a fresh run starts a fresh file
    assert not path.exists()


def test_run_config_round_trip_and_refusals(tmp_path):
    write_run_config(tmp_path / "run", "algo-a", config=dataclasses.asdict(Cfg()), obs_dim=3, action_dim=2, seed=7)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta == {"algo": "algo-a", "config": {"lr": 1e-3, "n_steps": 10, "device": "cpu"},
                    "obs_dim": 3, "action_dim": 2, "seed": 7}
    parse = lambda meta: agent_run_fields(meta, Cfg, "cuda")  # noqa: E731
    assert read_run_config(tmp_path / "run", "algo-a", parse) == (Cfg(device="cuda"), 3, 2, 7)
    with pytest.raises(CheckpointError, match="is for algo 'algo-a', not 'algo-b'"):
        read_run_config(tmp_path / "run", "algo-b", parse)
    with pytest.raises(CheckpointError, match="FileNotFoundError"):
        read_run_config(tmp_path / "missing", "algo-a", parse)
    for text, match in (("[1]", "not an object"), ('{"algo": "algo-a"}', "KeyError"), ("{", "JSONDecodeError")):
        (tmp_path / "run" / "config.json").write_text(text)
        with pytest.raises(CheckpointError, match=f"not a algo-a run config .*{match}"):
            read_run_config(tmp_path / "run", "algo-a", parse)
    with pytest.raises(ValueError, match=r"unknown Cfg fields \['lr2'\]"):
        Cfg.from_dict({"lr2": 1.0})


def test_check_resume_names_what_differs():
    state = {"seed": 1, "data_fingerprint": "abc", "config": config_json(Cfg(n_steps=99))}
    check_resume(state, {"seed": 1, "data_fingerprint": "abc"}, Cfg())  # n_steps is not compared
    with pytest.raises(ValueError, match="checkpoint has seed=1, this run has 2"):
        check_resume(state, {"seed": 2, "data_fingerprint": "abc"}, Cfg())
    with pytest.raises(ValueError, match="data_fingerprint"):
        check_resume(state, {"seed": 1, "data_fingerprint": "abd"}, Cfg())
    with pytest.raises(ValueError, match=r"config differs from the checkpoint's in \['lr'\]"):
        check_resume(state, {"seed": 1}, Cfg(lr=0.5))
    with pytest.raises(CheckpointError, match="no readable 'config'"):
        check_resume({"seed": 1}, {"seed": 1}, Cfg())


def test_checkpoint_helpers(tmp_path):
    path = tmp_path / "checkpoint.pt"
    assert load_resume_checkpoint(path, resume=True) is None  # resume before any checkpoint: from scratch
    save_checkpoint(path, {"format": "f/1", "step": 3})
    assert load_resume_checkpoint(path, resume=False) is None
    state = load_resume_checkpoint(path, resume=True)
    check_checkpoint(state, path, "f/1", ("step",), "an f checkpoint")
    with pytest.raises(CheckpointError, match="is not an f checkpoint \\(no 'nets'\\)"):
        check_checkpoint(state, path, "f/1", ("nets",), "an f checkpoint")
    with pytest.raises(CheckpointError, match="has format 'f/1', expected 'g/1'"):
        check_checkpoint(state, path, "g/1", (), "a g checkpoint")
    gen = torch.Generator()
    with pytest.raises(CheckpointError, match="optimiser or generator state does not fit"):
        with restoring_state(path):
            gen.set_state(torch.zeros(3, dtype=torch.uint8))


def test_seeds_fit_args_and_data_checks():
    assert check_seed(np.int64(3)) == 3
    for bad in (-1, True, 1.5, "1"):
        with pytest.raises(ValueError, match="seed"):
            check_seed(bad)
    a, b = np.random.SeedSequence(0).spawn(2)
    assert seed_from(a) != seed_from(b) and 0 <= seed_from(a) < 2**63
    assert seed_from(np.random.SeedSequence(0).spawn(1)[0]) == seed_from(a)
    assert check_fit_args(None, 10, log_every=1, checkpoint_every=0, resume=False, out_dir=None) == 10
    with pytest.raises(ValueError, match="n_steps"):
        check_fit_args(0, 10, log_every=1, checkpoint_every=0, resume=False, out_dir=None)
    with pytest.raises(ValueError, match="out_dir"):
        check_fit_args(5, 10, log_every=1, checkpoint_every=0, resume=True, out_dir=None)
    data = transitions()
    check_transitions(data)
    assert data_fingerprint(data) == data_fingerprint(transitions()) != data_fingerprint(transitions(seed=1))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        check_transitions(dataclasses.replace(data, actions=data.actions * 3))
    check_transitions(dataclasses.replace(data, actions=data.actions * 3), actions_in_box=False)
    rewards = data.rewards.copy()
    rewards[2] = np.nan
    with pytest.raises(ValueError, match="rewards holds non-finite values"):
        check_transitions(dataclasses.replace(data, rewards=rewards))
    with pytest.raises(ValueError, match="TransitionArrays"):
        check_transitions({"observations": data.observations})


# ---------------------------------------------------------------------------- the config base
@dataclasses.dataclass(frozen=True)
class WidthsConfig(ConfigBase):
    """A stand-in config with a renamed field."""

    hidden: tuple[int, ...] = (4,)
    batch_size: int = 8
    gamma: float = 0.9
    lr: float = 1e-3

    renamed_fields: ClassVar[dict[str, str]] = {"hidden_units": "hidden"}

    def __post_init__(self) -> None:
        self.check_widths("hidden")
        self.check_positive_ints("batch_size")
        self.check_range("gamma", 0.0, 1.0, high_open=True)
        self.check_positive("lr")


def test_config_base_from_dict_checks_and_renamed_fields():
    config = WidthsConfig.from_dict({"hidden": [3, 2], "batch_size": 5e1})
    assert config.hidden == (3, 2) and config.batch_size == 50 and isinstance(config.batch_size, int)
    assert WidthsConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown WidthsConfig fields \['hiden'\]"):
        WidthsConfig.from_dict({"hiden": [3]})
    for bad, match in [({"hidden": []}, "hidden"), ({"hidden": [0]}, "hidden"), ({"batch_size": 0}, "batch_size"),
                       ({"batch_size": 2.5}, "batch_size"), ({"gamma": 1.0}, "gamma"), ({"lr": 0.0}, "lr must be > 0")]:
        with pytest.raises(ValueError, match=f"WidthsConfig.{match}"):
            WidthsConfig(**bad)
    # the old name of a renamed field: from_dict, constructor keyword and attribute, each with a warning
    with pytest.warns(DeprecationWarning, match="'hidden_units' is deprecated; it is now 'hidden'"):
        assert WidthsConfig.from_dict({"hidden_units": [7]}).hidden == (7,)
    with pytest.warns(DeprecationWarning):
        old = WidthsConfig(hidden_units=(6,))
    with pytest.warns(DeprecationWarning):
        assert old.hidden_units == (6,) == old.hidden
    with pytest.raises(ValueError, match="both 'hidden_units' and its new name 'hidden'"):
        WidthsConfig.from_dict({"hidden_units": [7], "hidden": [7]})
    with pytest.raises(AttributeError):
        old.no_such_field
    # a checkpoint that stored the old name resumes under the new one
    stored = json.dumps({"hidden_units": [6], "batch_size": 8, "gamma": 0.9, "lr": 1e-3})
    check_resume({"config": stored}, {}, old)


# ---------------------------------------------------------------------------- global random streams
def _global_rng_states():
    import random

    return random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone()


def _assert_same_states(a, b):
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_rng_scopes_leave_the_global_streams_as_they_were():
    import random

    before = _global_rng_states()
    with global_rng_scope():
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
        random.random(), np.random.random(), torch.rand(1)
    _assert_same_states(before, _global_rng_states())
    with torch_rng_scope():
        torch.manual_seed(1)
    assert torch.equal(before[2], torch.get_rng_state())


def test_estimators_and_agents_do_not_touch_the_global_streams(tmp_path):
    from agents.batchrl_mtf import BatchRLMTF, BatchRLMTFConfig
    from agents.offline_d3rlpy import BCAgent, BCAgentConfig
    from agents.ope import ConservativeFQE, ConservativeFQEConfig, D3rlpyFQE

    rng = np.random.default_rng(0)
    n, d = 64, 5
    data = TransitionArrays(
        observations=rng.random((n, d), dtype=np.float32), actions=rng.uniform(-1, 1, (n, 12)).astype(np.float32),
        rewards=rng.random(n).astype(np.float32), next_observations=rng.random((n, d), dtype=np.float32),
        terminals=np.ones(n, bool), timeouts=np.zeros(n, bool), episode_starts=np.ones(n, bool))
    before = _global_rng_states()
    fqe = ConservativeFQEConfig(n_steps=4, hidden=(4,), batch_size=8, alpha_c=0.0, n_bootstrap=5, log_every=2)
    bc = BCAgent(BCAgentConfig(hidden=(4,), batch_size=8))
    bc.fit(data, 3, seed=0, out_dir=tmp_path / "bc", show_progress=False)
    BCAgent.load(tmp_path / "bc")
    BatchRLMTF(BatchRLMTFConfig(actor_hidden=(4,), critic_hidden=(4,), vae_hidden=(4,), batch_size=8,
                                n_action_samples=2, n_target_samples=2)).fit(data, 3, seed=0, show_progress=False)
    ConservativeFQE(fqe, seed=0).fit(data, bc, show_progress=False)
    D3rlpyFQE(fqe, seed=0).fit(data, bc, show_progress=False)
    _assert_same_states(before, _global_rng_states())


# ---------------------------------------------------------------------------- the agent base class
def test_agent_base_class_owns_fit_save_load():
    from agents.base import Agent, OfflineAgent
    from agents.batchrl_mtf import BatchRLMTF
    from agents.bo import BayesianOptimisation
    from agents.es import EvolutionStrategy
    from agents.offline_d3rlpy import OFFLINE_ALGOS
    from agents.online import OnlineAgent
    from agents.sac_online import SACOnline

    for cls in (BatchRLMTF, *OFFLINE_ALGOS.values()):
        assert issubclass(cls, OfflineAgent)
    for cls in (BayesianOptimisation, EvolutionStrategy, SACOnline):
        assert issubclass(cls, OnlineAgent)
    for cls in (BatchRLMTF, *OFFLINE_ALGOS.values(), BayesianOptimisation, EvolutionStrategy, SACOnline):
        assert issubclass(cls.config_class, ConfigBase)
        # fit's run directory, save and load are the base class's, not re-implemented
        assert cls.save is Agent.save and cls.load.__func__ is Agent.load.__func__
        assert "fit" not in vars(cls) or cls.fit.__qualname__.startswith("D3rlpyOfflineAgent")
