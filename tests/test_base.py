"""agents/checkpoint.py, run_dir.py, config.py, seeding.py, data.py, training_loop.py: run directories, metrics resume, checkpoint refusal, seeds and data checks."""
from __future__ import annotations

import csv
import dataclasses
import json

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
from agents.config import config_from_dict
from agents.data import check_transitions, data_fingerprint
from agents.run_dir import MetricsLogger, agent_run_fields, read_run_config, write_run_config
from agents.seeding import check_seed, seed_from
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
