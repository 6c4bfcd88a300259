"""``mtf-bench train`` / ``quickstart`` and :func:`benchmarks.evaluation.training.train_agent`: smoke runs, resume, bad input."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.run_dir import CONFIG_NAME
from agents.training_loop import FitResult
from mtf_env.files import write_json
from agents.registry import ALGOS, load_policy
from benchmarks.evaluation import configs, training
from benchmarks.cli import main
from mtf_env.config import SimConfig
from mtf_env.tasks import N_TASKS

TINY = ["actor_hidden=16", "critic_hidden=16", "vae_hidden=[16]", "batch_size=32", "n_action_samples=5",
        "n_target_samples=3"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, small_config):
    """A tiny mixed dataset in a small world, made with the collection API."""
    from agents.behaviour import collection_policy
    from mtf_env.dataset import CollectConfig, collect_dataset

    path = tmp_path_factory.mktemp("data") / "tiny"
    collect = CollectConfig(policy="mixed", n_sessions=200, seed=0, n_days=1, batch_size=256)
    collect_dataset(path, small_config, collect, collection_policy(collect), progress=False)
    return path


def _train(dataset_dir, out, steps, *extra) -> int:
    return main(["train", "--algo", "batchrl-mtf", "--data", str(dataset_dir), "--steps", str(steps), "--seed", "3",
                 "--out", str(out), "--no-progress", "--log-every", "5", "--set", *TINY, *extra])


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_train_writes_a_run_that_loads_as_a_policy(dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(dataset_dir, out, 12, "--checkpoint-every", "5") == 0
    assert {"config.json", "metrics.csv", "checkpoint.pt", "train.json"} <= {p.name for p in out.iterdir()}
    assert "12 steps" in capsys.readouterr().out
    meta = json.loads((out / CONFIG_NAME).read_text())
    assert meta["algo"] == "batchrl-mtf" and meta["config"]["critic_hidden"] == [16]
    log = json.loads((out / "train.json").read_text())
    assert log["steps"] == 12 and log["seed"] == 3 and log["reward"] == "default"
    assert log["data"]["counts"]["sessions"] == 200 and log["data"]["files_sha256"]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["5", "10", "12"]
    policy = load_policy(str(out))
    obs = np.zeros((4, meta["obs_dim"]), np.float32)
    act = policy.act(obs)
    assert act.shape == (4, N_TASKS) and act.dtype == np.float32 and np.all(np.abs(act) <= 1)


def test_resume_gives_the_weights_of_an_uninterrupted_run(dataset_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _train(dataset_dir, straight, 20, "--checkpoint-every", "10") == 0
    assert _train(dataset_dir, resumed, 10, "--checkpoint-every", "10") == 0
    # the resumed call takes its config from the run directory: no --set needed
    assert main(["train", "--algo", "batchrl-mtf", "--data", str(dataset_dir), "--steps", "20", "--seed", "3",
                 "--out", str(resumed), "--resume", "--no-progress", "--log-every", "5",
                 "--checkpoint-every", "10"]) == 0
    a = load_policy(str(straight)).state_dict()
    b = load_policy(str(resumed)).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (straight / "metrics.csv").read_text() == (resumed / "metrics.csv").read_text()
    log = json.loads((resumed / "train.json").read_text())
    assert log["start_step"] == 10 and log["previous_calls"][0]["steps"] == 10


def test_same_seed_same_weights_and_reward_relabelling(dataset_dir, tmp_path):
    runs = {}
    for name, reward in (("a", "default"), ("b", "default"), ("c", "time")):
        runs[name] = training.train_agent("batchrl-mtf", dataset_dir, 8, 1, tmp_path / name, reward=reward,
                                          overrides=configs.parse_key_values(TINY), show_progress=False)
    sd = {k: r.agent.state_dict() for k, r in runs.items()}
    assert all(torch.equal(sd["a"][k], sd["b"][k]) for k in sd["a"])
    assert not all(torch.equal(sd["a"][k], sd["c"][k]) for k in sd["a"])  # other rewards, other critics
    assert json.loads((tmp_path / "c" / "train.json").read_text())["reward"] == "time"


def test_default_run_name(dataset_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--algo", "batchrl-mtf", "--data", str(dataset_dir), "--steps", "2", "--seed", "7",
                 "--no-progress", "--set", *TINY]) == 0
    assert (tmp_path / "runs" / "batchrl-mtf__tiny__7" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("args, message", [
    (["--algo", "no-such-algo"], "unknown algorithm"),
    (["--set", "no_such_key=1"], "unknown config key"),
    (["--set", "rho=fast"], "takes a number"),
    (["--set", "batch_size=1.5"], "takes an integer"),
    (["--set", "rho=-1"], "rho must be > 0"),
    (["--set", "novalue"], "KEY=VALUE"),
    (["--reward", "no-such-reward"], "unknown reward preset"),
    (["--steps", "0"], "steps must be a positive integer"),
])
def test_bad_input_exits_2_and_writes_nothing(dataset_dir, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    argv = ["train", "--algo", "batchrl-mtf", "--data", str(dataset_dir), "--steps", "2", "--out", str(out),
            "--no-progress"]
    assert main(argv + args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_or_broken_dataset_is_refused(dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--algo", "batchrl-mtf", "--steps", "2", "--out", str(out)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train", "--algo", "batchrl-mtf", "--data", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no dataset" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert main(["train", "--algo", "batchrl-mtf", "--data", str(broken), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("mtf-bench train: error:")
    assert not out.exists()


def test_existing_run_is_never_overwritten(dataset_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(dataset_dir, out, 4) == 0
    before = _snapshot(out)
    assert _train(dataset_dir, out, 8) == 2  # no --resume
    assert "not empty" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    write_json(foreign / CONFIG_NAME, {"algo": "td3"})
    assert _train(dataset_dir, foreign, 8, "--resume") == 2
    assert "run of 'td3'" in capsys.readouterr().err
    # a resume with a different config is refused by the agent before it trains
    assert _train(dataset_dir, out, 8, "--resume", "--set", "rho=0.3") == 2
    assert "config differs" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_config_overrides_are_typed():
    from agents.batchrl_mtf import BatchRLMTF, BatchRLMTFConfig

    assert configs.config_class(BatchRLMTF) is BatchRLMTFConfig
    config = configs.build_config(BatchRLMTF, configs.parse_key_values(
        ["critic_hidden=64,32", "actor_hidden=8", "rho=1", "n_steps=5e2", "latent_dim=null"]))
    assert config.critic_hidden == (64, 32) and config.actor_hidden == (8,)
    assert config.rho == 1.0 and isinstance(config.rho, float) and config.n_steps == 500 and config.latent_dim is None
    with pytest.raises(ValueError, match="takes a list"):
        configs.build_config(BatchRLMTF, {"critic_hidden": "a,b"})


# ------------------------------------------------------------------ online algorithms (requires_data = False)
@dataclass(frozen=True)
class FakeOnlineConfig:
    """A config with one field."""

    lr: float = 0.1
    """Step size."""


class FakeOnline:
    """A minimal online agent: records what train_agent hands it and writes a run directory."""

    requires_data = False

    def __init__(self, config: FakeOnlineConfig | None = None):
        self.config = config or FakeOnlineConfig()

    def fit(self, data, n_steps, *, seed, out_dir=None, resume=False, show_progress=True, sim_config=None):
        assert data is None
        self.got = {"sim_config": sim_config, "n_steps": n_steps, "seed": seed}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(out_dir) / CONFIG_NAME, {"algo": "fake-online", "config": {"lr": self.config.lr}})
        return FitResult(steps=n_steps, last_metrics={"train/x": 1.0})


def test_online_algorithm_trains_without_data(tmp_path, monkeypatch):
    monkeypatch.setitem(ALGOS, "fake-online", f"{__name__}:FakeOnline")
    monkeypatch.chdir(tmp_path)
    result = training.train_agent("fake-online", None, 5, 2, None, overrides={"lr": 0.5},
                                  sim_overrides={"n_users": 1234})
    assert result.run_dir == Path("runs/fake-online__online__2")
    got = result.agent.got
    assert isinstance(got["sim_config"], SimConfig) and got["sim_config"].n_users == 1234
    assert got["n_steps"] == 5 and result.agent.config.lr == 0.5
    assert json.loads((result.run_dir / "train.json").read_text())["sim_config"]["n_users"] == 1234


@pytest.mark.parametrize("algo", ["bo", "es", "sac-online"])
def test_online_agents_get_the_training_reward(algo):
    """The online agents' configs have a ``reward`` field: train_agent's reward goes into it."""
    from agents.registry import algo_class

    cls = algo_class(algo)
    config = configs.build_config(cls, configs.reward_overrides(cls, {}, "time"))
    assert config.reward == "time"
    weights = [0.0] * N_TASKS
    weights[0] = 1.0
    assert configs.build_config(cls, configs.reward_overrides(cls, {}, weights)).reward == tuple(weights)
    # the same reward given twice is fine; a different one is refused
    assert configs.reward_overrides(cls, {"reward": "time"}, "time") == {"reward": "time"}
    with pytest.raises(ValueError, match="conflicts"):
        configs.reward_overrides(cls, {"reward": "interaction"}, "time")
    # offline agents learn from relabelled data: no reward field, nothing added
    assert configs.reward_overrides(algo_class("batchrl-mtf"), {"rho": 0.1}, "time") == {"rho": 0.1}


BO_TINY = ["n_users=40", "n_init=2", "n_candidates=32", "gp_restarts=0"]


def test_train_online_with_reward_trains_on_it(tmp_path, capsys):
    """``mtf-bench train --algo bo --reward time`` trains BO on the time reward (config.json and train.json agree)."""
    out = tmp_path / "bo"
    argv = ["train", "--algo", "bo", "--steps", "1", "--reward", "time", "--out", str(out), "--no-progress",
            "--sim", "n_users=3000", "n_items=4000", "--set", *BO_TINY]
    assert main(argv) == 0
    saved = json.loads((out / CONFIG_NAME).read_text())
    assert saved["config"]["reward"] == "time"
    assert json.loads((out / "train.json").read_text())["reward"] == "time"
    assert load_policy(str(out)).config.reward == "time"
    conflict = tmp_path / "conflict"
    assert main(["train", "--algo", "bo", "--steps", "1", "--reward", "time", "--out", str(conflict),
                 "--no-progress", "--set", *BO_TINY, "reward=interaction"]) == 2
    assert "conflicts" in capsys.readouterr().err
    assert not conflict.exists()


# ------------------------------------------------------------------ quickstart
def test_quickstart_tiny(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--tiny", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| batchrl-mtf |" in printed and "static:production" in printed
    for name in ("ab.json", "ab.md", "quickstart.json", "run/checkpoint.pt", "dataset/manifest.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "quickstart.json").read_text())
    assert set(summary["lift_pct"]) >= {"adtime_s", "upi_rate"} and summary["seconds"]["total"] > 0
    ab = json.loads((out / "ab.json").read_text())
    assert ab["control"] == "static:production" and ab["treatments"] == ["batchrl-mtf"]
    # a foreign non-empty directory is refused and kept
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["quickstart", "--tiny", "--out", str(foreign), "--no-progress"]) == 2
    assert (foreign / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------ the headline suite (tiny)
def test_batchrl_small_suite_tiny(dataset_dir, tmp_path):
    from benchmarks.evaluation.stats import paired_difference
    from benchmarks.suites import batchrl_small

    d = paired_difference(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 3.0]))
    assert d["mean"] == pytest.approx(2 / 3) and d["ci_low"] < d["mean"] < d["ci_high"] and d["n_states"] == 3
    with pytest.raises(ValueError):
        paired_difference(np.zeros(1), np.zeros(1))
    overrides = configs.parse_key_values(TINY)
    result = batchrl_small.run(dataset_dir, 6, 0, tmp_path / "out", tmp_path / "run", overrides, rollouts=2,
                               users=50, show_progress=False)
    assert set(result["true_value"]) == {"batchrl-mtf", "static:production"}
    tv = result["true_value"]
    diff = result["true_value_difference"]["mean"]
    assert diff == pytest.approx(tv["batchrl-mtf"]["value"] - tv["static:production"]["value"])
    assert result["beats_production"] == (result["true_value_difference"]["ci_low"] > 0)
    for name in ("result.json", "result.md", "ab.json", "ab.md"):
        assert (tmp_path / "out" / name).is_file()
    # a second call resumes the finished run instead of retraining it
    again = batchrl_small.run(dataset_dir, 6, 0, tmp_path / "out2", tmp_path / "run", overrides, rollouts=2,
                              users=50, show_progress=False)
    assert again["train"]["steps_this_call"] == 0 and again["true_value"] == result["true_value"]


# ------------------------------------------------------------------ every registered algorithm
#: Tiny settings per config field name (applied when an algorithm's config has the field).
_TINY_FIELDS = {"actor_hidden": (16,), "critic_hidden": (16,), "vae_hidden": (16,),
                "hidden": (8,), "batch_size": 32, "n_action_samples": 5, "n_target_samples": 3,
                "n_users": 50, "n_pairs": 2, "n_init": 2, "n_candidates": 64, "n_envs": 2, "learning_starts": 20}


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_registered_algorithm_has_a_buildable_config(algo):
    from agents.registry import algo_class

    cls = algo_class(algo)
    config = configs.build_config(cls, {})
    assert dataclasses.is_dataclass(config)
    assert isinstance(getattr(cls, "requires_data", True), bool)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_registered_algorithm_trains_from_the_command_line(algo, dataset_dir, tmp_path, small_config):
    """A few steps of every algorithm through ``mtf-bench train`` (about 15 s for all of them)."""
    from agents.registry import algo_class

    fields = {f.name for f in dataclasses.fields(configs.config_class(algo_class(algo)))}
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in _TINY_FIELDS.items()
            if k in fields]
    out = tmp_path / algo
    argv = ["train", "--algo", algo, "--steps", "40" if algo == "sac-online" else "3", "--seed", "0", "--out",
            str(out), "--no-progress", "--set", *sets]
    if getattr(algo_class(algo), "requires_data", True):
        argv += ["--data", str(dataset_dir)]
    else:
        argv += ["--sim", f"n_users={small_config.n_users}", f"n_items={small_config.n_items}"]
    assert main(argv) == 0
    policy = load_policy(str(out))
    assert json.loads((out / "train.json").read_text())["algo"] == algo
    obs_dim = json.loads((dataset_dir / "manifest.json").read_text())["obs_dim"]  # the same world for online ones
    act = policy.act(np.zeros((3, obs_dim), np.float32))
    assert act.shape == (3, N_TASKS) and np.all(np.abs(act) <= 1)


# ---------------------------------------------------------------------------------------------
# resume refusals, the overrides of a resumed run, Ctrl-C, the time estimate, quiet output
# ---------------------------------------------------------------------------------------------
def test_resume_needs_a_run_in_out(dataset_dir, tmp_path, capsys):
    """--resume with a missing or empty --out is refused (it used to start a fresh run silently)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "missing", empty):
        assert _train(dataset_dir, out, 4, "--resume") == 2
        err = capsys.readouterr().err
        assert "--resume" in err and str(out) in err and err.count("\n") == 1
    assert not (tmp_path / "missing").exists() and not any(empty.iterdir())


def test_train_log_of_a_resumed_run_records_its_overrides(dataset_dir, tmp_path):
    out = tmp_path / "run"
    assert _train(dataset_dir, out, 4, "--checkpoint-every", "4") == 0
    first = json.loads((out / "train.json").read_text())
    assert main(["train", "--algo", "batchrl-mtf", "--data", str(dataset_dir), "--steps", "8", "--seed", "3",
                 "--out", str(out), "--resume", "--no-progress"]) == 0
    log = json.loads((out / "train.json").read_text())
    assert log["overrides_given"] == {} and log["start_step"] == 4
    assert log["overrides"] == first["overrides"]
    assert log["overrides"]["critic_hidden"] == [16] and log["overrides"]["batch_size"] == 32
    assert "rho" not in log["overrides"]  # left at its default


def _interrupt_at(monkeypatch, step: int) -> None:
    """Make BatchRL-MTF's training raise KeyboardInterrupt (what Ctrl-C raises) when it reaches ``step``."""
    from agents.batchrl_mtf import BatchRLMTF

    original = BatchRLMTF._train_step

    def train_step(self, at):
        if at == step:
            raise KeyboardInterrupt
        return original(self, at)

    monkeypatch.setattr(BatchRLMTF, "_train_step", train_step)


def test_ctrl_c_before_the_first_checkpoint_leaves_nothing(dataset_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 3)
    assert _train(dataset_dir, out, 8, "--checkpoint-every", "5") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "nothing to resume" in err and "Traceback" not in err
    assert not out.exists()  # no folder holding only config.json to block the rerun
    monkeypatch.undo()
    assert _train(dataset_dir, out, 8, "--checkpoint-every", "5") == 0  # the same command runs again


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(dataset_dir, tmp_path, capsys, monkeypatch):
    import shlex

    out, straight = tmp_path / "run", tmp_path / "straight"
    _interrupt_at(monkeypatch, 7)
    assert _train(dataset_dir, out, 12, "--checkpoint-every", "5") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"kept {out} at step 5" in err
    command = err.split("resume with: ", 1)[1].strip()
    argv = shlex.split(command)
    assert argv[:2] == ["mtf-bench", "train"] and "--resume" in argv
    monkeypatch.undo()
    assert main(argv[1:] + ["--no-progress", "--log-every", "5", "--checkpoint-every", "5"]) == 0
    assert _train(dataset_dir, straight, 12, "--checkpoint-every", "5") == 0
    a, b = load_policy(str(straight)).state_dict(), load_policy(str(out)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_without_steps_prints_its_expected_time_first(dataset_dir, tmp_path, capsys, monkeypatch):
    """Without --steps the command says how long the config's n_steps will take, and on what that is based,
    before any training (here the training is interrupted at once, so nothing runs for hours)."""
    from agents.batchrl_mtf import BatchRLMTF

    def no_training(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(BatchRLMTF, "fit", no_training)
    assert main(["train", "--algo", "batchrl-mtf", "--data", str(dataset_dir), "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert err.index("300,000 steps") < err.index("interrupted")
    expected = 300_000 / training.REFERENCE_STEPS_PER_S["batchrl-mtf"] / 3600
    assert "300,000 steps" in err and f"about {expected:.1f} h" in err and "measured on" in err


def test_estimate_of_a_resumed_run_uses_its_measured_speed(tmp_path):
    from agents.batchrl_mtf import BatchRLMTFConfig

    write_json(tmp_path / "train.json", {"steps_per_s": 10.0, "steps": 1000})
    seconds, basis = training.estimate_seconds("batchrl-mtf", BatchRLMTFConfig(n_steps=3000), tmp_path)
    assert seconds == pytest.approx(200.0) and "measured by this run" in basis
    seconds, basis = training.estimate_seconds("sac-online", dataclasses.replace(
        training.algo_class("sac-online").config_class(), n_steps=800))
    assert seconds is None and "no reference speed" in basis


def test_train_output_has_no_third_party_notices(dataset_dir, tmp_path):
    """d3rlpy imports the old gym package, whose banner is not about the user's run: silenced by the CLI."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from benchmarks.cli import main; sys.exit(main())",
                           "train", "--algo", "td3", "--data", str(dataset_dir), "--steps", "3", "--out",
                           str(tmp_path / "td3"), "--set", "hidden=8,8", "batch_size=16", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "td3: 3 steps" in proc.stdout
    assert "Gym has been unmaintained" not in output and "[info" not in output and "Traceback" not in output
