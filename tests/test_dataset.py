"""Logged datasets: behaviour policies, collection, the Parquet format, loading, refusals, adapters, CLI."""
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agents.behaviour import (ACTION_NOISE_STD, PRODUCTION_NOISE_STD, RANDOM_STD, MixedBehaviour,
                              collection_policy, make_behaviour_policy)
from agents.d3rlpy_adapter import dataset_to_d3rlpy
from agents.registry import load_policy
from agents.static import StaticPolicy
from mtf_env.config import SimConfig
from mtf_env.core import Simulator
from mtf_env.dataset import CollectConfig, DatasetError, collect_dataset, load_dataset
from mtf_env.dataset_io import (DatasetWriter, pack_video_feedback, request_schema, session_schema, sha256_file,
                                unpack_video_feedback)
from mtf_env.fusion import PRODUCTION_ACTION, action_to_alpha
from mtf_env.rewards import REWARD_PRESETS, compute_reward, reward_weights

SMALL = dict(n_users=3000, n_items=4000)
N_SESSIONS = 600
COLLECT = CollectConfig(policy="mixed", n_sessions=N_SESSIONS, seed=3, batch_size=256, n_days=3)


@pytest.fixture(scope="module")
def config() -> SimConfig:
    return SimConfig(**SMALL)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, config) -> Path:
    return collect_dataset(tmp_path_factory.mktemp("data") / "mixed", config, COLLECT, collection_policy(COLLECT),
                           progress=False)


def obs_batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 58), dtype=np.float32)


def copy_dataset(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def rewrite_part(path: Path, rel: str, change) -> None:
    """Replace part file ``rel`` by change(table) and update its manifest size and checksum (a valid-looking file)."""
    table = pq.read_table(path / rel)
    pq.write_table(change(table), path / rel)
    manifest = json.loads((path / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == rel:
            entry["bytes"] = (path / rel).stat().st_size
            entry["sha256"] = sha256_file(path / rel)
    (path / "manifest.json").write_text(json.dumps(manifest))


def edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def replace_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


# ---------------------------------------------------------------------------- behaviour policies
def test_behaviour_policies_report_gaussian_log_densities():
    obs = obs_batch(4000)
    for spec, mean, std in (("production", PRODUCTION_ACTION, PRODUCTION_NOISE_STD), ("random", 0.0, RANDOM_STD),
                            ("action-noise", PRODUCTION_ACTION, ACTION_NOISE_STD),
                            ("random:0.3", 0.0, 0.3)):
        pol = make_behaviour_policy(spec, seed=1)
        actions, log_prob = pol.act_with_log_prob(obs)
        assert actions.shape == (4000, 12) and actions.dtype == np.float32 and log_prob.shape == (4000,)
        assert actions.min() >= -1 and actions.max() <= 1
        inside = np.all(np.abs(actions) < 1, axis=1)  # unclipped rows: the density is the plain Gaussian one
        z = (actions[inside] - mean) / std
        expected = (-0.5 * z**2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(1)
        np.testing.assert_allclose(log_prob[inside], expected, rtol=1e-4, atol=1e-3)
        if np.isscalar(mean):  # centred: the share clipped to the faces is 2 P(N(0, std^2) > 1)
            from scipy.stats import norm

            assert abs(np.mean(np.abs(actions) == 1) - 2 * norm.sf(1 / std)) < 0.01
        else:
            assert abs(np.std(actions - mean) - std) < 0.1 * std
    again = make_behaviour_policy("random", seed=1).act(obs)
    np.testing.assert_array_equal(again, make_behaviour_policy("random", seed=1).act(obs))
    assert not np.array_equal(again, make_behaviour_policy("random", seed=2).act(obs))


def test_action_noise_follows_any_target_and_mixed_splits_users_by_parity():
    obs = obs_batch(2000)
    target = StaticPolicy.preset("time-only")
    for pol in (make_behaviour_policy("action-noise:static:time-only", seed=0),
                make_behaviour_policy("action-noise", seed=0, target=target)):
        assert np.abs(pol.act(obs).mean(0) - np.clip(target.action, -1, 1)).max() < 0.02 + 0.5 * (
            np.abs(target.action) > 0.9).max()
    mixed = make_behaviour_policy("mixed", seed=0)
    users = np.arange(2000)
    with pytest.raises(ValueError, match="set_users"):
        mixed.act(obs)
    mixed.set_users(users)
    actions = mixed.act(obs)
    np.testing.assert_array_equal(MixedBehaviour.group_ids(users), users % 2)
    odd = users % 2 == 1
    assert np.std(actions[odd] - PRODUCTION_ACTION) < 0.12 and np.std(actions[~odd]) > 0.35
    assert mixed.group_names == ("random", "action-noise")
    # the registry routes behaviour specs here
    assert load_policy("mixed", seed=0).spec == "mixed:static:production"
    assert load_policy("random:0.2").spec == "random:0.2"
    for bad in ("explore", "random:-1", "production:static:time-only"):
        with pytest.raises(ValueError):
            make_behaviour_policy(bad, seed=0)
    with pytest.raises(ValueError, match="give one"):
        make_behaviour_policy("action-noise:static:time-only", seed=0, target="static:production")


# ---------------------------------------------------------------------------- format
def test_video_feedback_packing_round_trips():
    rng = np.random.default_rng(0)
    fb = np.zeros((50, 6, 12), np.float32)
    fb[..., 0] = rng.random((50, 6)).astype(np.float32) * 90
    fb[..., 1:] = rng.random((50, 6, 11)) < 0.3
    watched = rng.random((50, 6)) < 0.7
    feedback, seen = unpack_video_feedback(*pack_video_feedback(fb, watched))
    np.testing.assert_array_equal(feedback, fb)
    np.testing.assert_array_equal(seen, watched)
    fb[0, 0, 3] = 2.0
    with pytest.raises(ValueError, match="0 or 1"):
        pack_video_feedback(fb, watched)


def random_wave(rng, first_session, first_row, n_sessions, obs_dim=5, page=3):
    lengths = rng.integers(1, 5, n_sessions).astype(np.int16)
    n = int(lengths.sum())
    sid = np.repeat(np.arange(first_session, first_session + n_sessions), lengths)
    step = np.concatenate([np.arange(k) for k in lengths]).astype(np.int16)
    end = np.zeros(n, bool)
    end[np.cumsum(lengths) - 1] = True
    exits = rng.random(n_sessions) < 0.8
    terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
    terminated[end] = exits
    truncated[end] = ~exits
    action = rng.uniform(-1, 1, (n, 12)).astype(np.float32)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    requests = dict(session_id=sid, user_id=rng.integers(0, 100, n), day=np.zeros(n),
                    time_order=first_row + np.arange(n),
                    step=step, observation=f32(n, obs_dim), action=action, fusion_weights=action_to_alpha(action),
                    behaviour_log_prob=f32(n), behaviour_group=np.zeros(n), reward=f32(n), terminated=terminated,
                    truncated=truncated, request_feedback=np.abs(f32(n, 12)),
                    video_ids=rng.integers(0, 1000, (n, page)), video_play_time_s=np.abs(f32(n, page)),
                    video_flags=rng.integers(0, 1 << 16, (n, page)))
    sessions = dict(session_id=np.arange(first_session, first_session + n_sessions), user_id=requests["user_id"][
        np.cumsum(lengths) - lengths], day=np.zeros(n_sessions), behaviour_group=np.zeros(n_sessions),
        n_requests=lengths, first_row=first_row + np.cumsum(lengths) - lengths, terminated=exits, truncated=~exits,
        final_observation=f32(n_sessions, obs_dim))
    requests["user_id"] = np.repeat(sessions["user_id"], lengths)
    return requests, sessions


def write_random_dataset(path: Path, seed: int = 0, waves: int = 3, rows_per_part: int = 40):
    rng = np.random.default_rng(seed)
    out_req, out_ses = [], []
    first_session = first_row = 0
    with DatasetWriter(path, 5, 3, rows_per_part=rows_per_part) as writer:
        for _ in range(waves):
            req, ses = random_wave(rng, first_session, first_row, 20)
            writer.write(req, ses)
            out_req.append(req)
            out_ses.append(ses)
            first_session += 20
            first_row += len(req["session_id"])
        manifest = {"format": "batchrl-mtf-logged-sessions", "schema_version": 1,
                    "sim_config": SimConfig(**SMALL).to_json(),
                    "collection": {"policy": "random", "groups": ["random"]}, "obs_dim": 5, "page_size": 3,
                    "task_names": list(__import__("mtf_env.tasks").tasks.TASK_NAMES),
                    "split": {"train_sessions": 54, "test_sessions": 6},
                    "counts": {"sessions": first_session, "requests": first_row}}
        writer.finish(manifest)
    cat = lambda parts, k: np.concatenate([p[k] for p in parts])  # noqa: E731
    return ({k: cat(out_req, k) for k in out_req[0]}, {k: cat(out_ses, k) for k in out_ses[0]})


def test_save_then_load_is_bit_exact(tmp_path):
    requests, sessions = write_random_dataset(tmp_path / "rand")
    manifest = json.loads((tmp_path / "rand" / "manifest.json").read_text())
    assert len(manifest["files"]) > 2  # several parts
    ds = load_dataset(tmp_path / "rand", split="all")
    schema = request_schema(5, 3)
    for field in schema:
        got = ds.column(field.name)
        want = requests[field.name].astype(got.dtype)
        assert got.tobytes() == want.tobytes(), field.name
    for field in session_schema(5):
        got = ds.session_column(field.name)
        assert got.tobytes() == sessions[field.name].astype(got.dtype).tobytes(), field.name
    train, test = load_dataset(tmp_path / "rand", split="train"), load_dataset(tmp_path / "rand", split="test")
    assert (train.n_sessions, test.n_sessions) == (54, 6)
    np.testing.assert_array_equal(np.concatenate([train.observations, test.observations]), requests["observation"])
    np.testing.assert_array_equal(test.initial_user_ids, sessions["user_id"][54:])


def test_interrupted_collection_leaves_nothing_and_partial_dirs_never_load(tmp_path, config):
    class Failing:
        spec = "failing"
        calls = 0

        def act_with_log_prob(self, obs):
            Failing.calls += 1
            if Failing.calls > 3:
                raise KeyboardInterrupt
            return np.zeros((len(obs), 12), np.float32), np.zeros(len(obs), np.float32)

    with pytest.raises(KeyboardInterrupt):
        collect_dataset(tmp_path / "x", config, CollectConfig(n_sessions=300, batch_size=100), Failing(),
                        progress=False)
    assert list(tmp_path.iterdir()) == []
    write_random_dataset(tmp_path / "y")
    (tmp_path / "y" / "manifest.json").rename(tmp_path / "manifest.moved")
    with pytest.raises(DatasetError, match="no manifest.json"):
        load_dataset(tmp_path / "y")
    partial = tmp_path / "z.partial-123"
    partial.mkdir()
    with pytest.raises(DatasetError, match="partial"):
        load_dataset(partial)
    with pytest.raises(FileExistsError):
        write_random_dataset(tmp_path / "y")


# ---------------------------------------------------------------------------- collection
def test_collected_dataset_is_consistent(dataset_dir, config):
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    assert manifest["counts"]["sessions"] == N_SESSIONS and manifest["collection"]["groups"] == ["random",
                                                                                                 "action-noise"]
    assert manifest["created_by"]["version"] is not None
    ds = load_dataset(dataset_dir, split="all")
    data = ds.transitions()
    assert len(data) == manifest["counts"]["requests"] and data.obs_dim == Simulator(config).obs_dim
    lengths = ds.session_lengths
    assert 1.5 < lengths.mean() < 10
    ends = np.cumsum(lengths) - 1
    assert np.all(data.terminals[ends] ^ data.timeouts[ends])
    inside = np.ones(len(data), bool)
    inside[ends] = False
    np.testing.assert_array_equal(data.next_observations[inside], data.observations[1:][inside[:-1]])
    # fresh sessions: the initial state is a function of the stored user id
    sim = Simulator(config)
    state = sim.empty_state(ds.n_sessions)
    sim.start_sessions(state, np.arange(ds.n_sessions), ds.initial_user_ids, np.random.default_rng(0))
    np.testing.assert_array_equal(data.initial_observations(), state.obs)
    # groups follow user id parity and the logged rewards are the default-reward relabelling
    np.testing.assert_array_equal(ds.behaviour_groups, ds.initial_user_ids % 2)
    assert ds.rewards.tobytes() == ds.column("reward").tobytes()
    np.testing.assert_array_equal(ds.column("fusion_weights"), action_to_alpha(ds.actions))
    assert np.all(np.diff(ds.column("day")) >= 0) and ds.column("day").max() == 2
    # time order: all requests numbered once, step t of a wave served before step t + 1
    assert np.array_equal(np.sort(ds.column("time_order")), np.arange(len(data)))
    # per-video feedback sums to the page feedback
    feedback, watched = ds.video_feedback()
    np.testing.assert_allclose(feedback.sum(1), ds.column("request_feedback"), rtol=1e-5, atol=1e-4)
    assert np.all(feedback[~watched] == 0)


def test_logged_actions_replay_to_the_logged_feedback(tmp_path, config):
    """Re-simulate a collection from its seeds with the LOGGED actions: every row must match (alignment)."""
    small = CollectConfig(policy="random", n_sessions=300, seed=9, batch_size=300)
    ds = load_dataset(collect_dataset(tmp_path / "r", config, small, collection_policy(small), progress=False), split="all")
    users_seed, sim_seed, _ = np.random.SeedSequence(9).spawn(3)
    sim, rng = Simulator(config), np.random.default_rng(sim_seed)
    users = np.random.default_rng(users_seed).integers(0, config.n_users, 300)
    np.testing.assert_array_equal(users, ds.initial_user_ids)
    state = sim.empty_state(300)
    sim.start_sessions(state, np.arange(300), users, rng)
    alive = np.arange(300)
    row_of = np.cumsum(ds.session_lengths) - ds.session_lengths  # first row of each session
    obs, actions, feedback = ds.observations, ds.actions, ds.column("request_feedback")
    t = 0
    while alive.size:
        rows = row_of[alive] + t
        np.testing.assert_array_equal(state.obs, obs[rows])
        res = sim.step(state, actions[rows], rng)
        np.testing.assert_array_equal(res.request_feedback, feedback[rows])
        np.testing.assert_array_equal(res.items, ds.column("video_ids")[rows])
        done = res.terminated | res.truncated
        np.testing.assert_array_equal(done, t + 1 == ds.session_lengths[alive])
        np.testing.assert_array_equal(state.obs[done], ds.session_column("final_observation")[alive[done]])
        state = type(state)(**{k: v[~done] for k, v in vars(state).items()})
        alive, t = alive[~done], t + 1


def test_split_group_filter_and_reward_presets(dataset_dir):
    train, test = load_dataset(dataset_dir, split="train"), load_dataset(dataset_dir, split="test")
    assert train.n_sessions == int(0.9 * N_SESSIONS) and test.n_sessions == N_SESSIONS - train.n_sessions
    assert train.session_ids.max() < test.session_ids.min()  # the first 90% in time order
    assert len(train) + len(test) == len(load_dataset(dataset_dir, split="all"))
    rand = load_dataset(dataset_dir, split="train", behaviour="random")
    assert np.all(rand.initial_user_ids % 2 == 0) and np.std(rand.actions) > 0.35
    noise = load_dataset(dataset_dir, split="train", behaviour="action-noise")
    assert rand.n_sessions + noise.n_sessions == train.n_sessions
    assert np.array_equal(rand.transitions().episode_starts.nonzero()[0].size, rand.n_sessions)
    w = {"play_time": 0.02, "like": 1.0}
    np.testing.assert_allclose(load_dataset(dataset_dir, reward=w).rewards,
                               train.column("request_feedback") @ reward_weights(w), rtol=1e-5, atol=1e-5)
    for bad in (dict(split="valid"), dict(reward="nope"), dict(behaviour="expert")):
        with pytest.raises(ValueError):
            load_dataset(dataset_dir, **bad)


def test_relabelled_rewards_equal_the_simulator_rewards(tmp_path, config):
    time_config = SimConfig(**SMALL, reward="time")
    small = CollectConfig(policy="random", n_sessions=200, seed=5, batch_size=128)
    default_dir = collect_dataset(tmp_path / "d", config, small, collection_policy(small), progress=False)
    time_dir = collect_dataset(tmp_path / "t", time_config, small, collection_policy(small), progress=False)
    relabelled = load_dataset(default_dir, reward="time", split="all").rewards
    logged = load_dataset(time_dir, split="all").column("reward")
    assert relabelled.tobytes() == logged.tobytes()  # bit for bit
    assert not np.array_equal(relabelled, load_dataset(default_dir, split="all").column("reward"))
    fb = load_dataset(default_dir, split="all").column("request_feedback")
    np.testing.assert_allclose(compute_reward(fb, REWARD_PRESETS["time"]), logged, rtol=0, atol=0)


def test_same_seed_same_checksums(tmp_path, config):
    small = CollectConfig(policy="mixed", n_sessions=300, seed=11, batch_size=128, rows_per_part=500)

    def checksums(path):
        return [(f["path"], f["sha256"]) for f in json.loads((path / "manifest.json").read_text())["files"]]

    a = checksums(collect_dataset(tmp_path / "a", config, small, collection_policy(small), progress=False))
    b = checksums(collect_dataset(tmp_path / "b", config, small, collection_policy(small), progress=False))
    other = CollectConfig(**{**small.__dict__, "seed": 12})
    c = checksums(collect_dataset(tmp_path / "c", config, other, collection_policy(other), progress=False))
    assert a == b and len(a) >= 4
    assert a != c


# ---------------------------------------------------------------------------- refusals
def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


REQ = "requests/part-00000.parquet"


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / REQ).write_bytes((p / REQ).read_bytes()[:-100]), "size .* differs"),
    (lambda p: _flip_byte(p / REQ), "SHA-256 checksum mismatch"),
    (lambda p: (p / REQ).unlink(), "missing"),
    (lambda p: rewrite_part(p, REQ, lambda t: t.drop_columns(["truncated"])), "missing column 'truncated'"),
    (lambda p: rewrite_part(p, REQ, lambda t: replace_column(t, "reward", t["reward"].cast(pa.float64()))),
     "column 'reward' has type double, expected float"),
    (lambda p: edit_manifest(p, lambda m: m.update(schema_version=99)), "unknown schema version 99"),
    (lambda p: edit_manifest(p, lambda m: m.update(complete=False)), "not marked complete"),
    (lambda p: edit_manifest(p, lambda m: m.update(files=[], counts={"sessions": 0, "requests": 0})), "empty"),
    (lambda p: edit_manifest(p, lambda m: m["files"][0].update(rows=1)), "rows, the manifest says"),
    (lambda p: (p / "manifest.json").write_text("{"), "not valid JSON"),
])
def test_damaged_datasets_are_refused(tmp_path, dataset_dir, damage, message):
    path = copy_dataset(dataset_dir, tmp_path)
    damage(path)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path, split="all")


def _set_value(column: str, row: int, value):
    def change(table: pa.Table) -> pa.Table:
        arr = table[column].combine_chunks()
        if pa.types.is_fixed_size_list(arr.type):
            flat = arr.flatten().to_numpy(zero_copy_only=False).copy()
            flat[row * arr.type.list_size] = value
            new = pa.FixedSizeListArray.from_arrays(pa.array(flat), arr.type.list_size)
        else:
            vals = arr.to_numpy(zero_copy_only=False).copy()
            vals[row] = value
            new = pa.array(vals)
        return replace_column(table, column, new)
    return change


@pytest.mark.parametrize("column, row, value, message", [
    ("observation", 3, np.nan, "non-finite"),
    ("action", 2, 1.5, "outside the action box"),
    ("terminated", 0, True, "before its session's last request|exactly one"),
    ("step", 1, 7, "steps are not"),
])
def test_invalid_values_are_refused(tmp_path, dataset_dir, column, row, value, message):
    path = copy_dataset(dataset_dir, tmp_path)
    ds = load_dataset(path, split="all", validate="structure")
    if column == "terminated":
        row = int(np.flatnonzero(ds.column("step") == 1)[0]) - 1  # a first request that is not the session's last
    rewrite_part(path, REQ, _set_value(column, row, value))
    with pytest.raises(DatasetError, match=message):
        load_dataset(path, split="all")


# ---------------------------------------------------------------------------- adapters and CLI
def test_d3rlpy_trains_td3_on_the_adapted_dataset(dataset_dir):
    import d3rlpy
    from d3rlpy.logging import NoopAdapterFactory
    from d3rlpy.models.encoders import VectorEncoderFactory

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: threads only add contention on a shared machine
    try:
        _fit_td3(dataset_dir, d3rlpy, NoopAdapterFactory, VectorEncoderFactory)
    finally:
        torch.set_num_threads(threads)


def _fit_td3(dataset_dir, d3rlpy, NoopAdapterFactory, VectorEncoderFactory):
    ds = load_dataset(dataset_dir, split="train")
    mdp = dataset_to_d3rlpy(ds)
    assert mdp.transition_count == ds.n_transitions and len(mdp.episodes) == ds.n_sessions
    assert mdp.dataset_info.action_space == d3rlpy.constants.ActionSpace.CONTINUOUS
    enc = VectorEncoderFactory(hidden_units=[16])
    td3 = d3rlpy.algos.TD3Config(actor_encoder_factory=enc, critic_encoder_factory=enc, batch_size=32).create(
        device="cpu:0")
    results = td3.fit(mdp, n_steps=200, n_steps_per_epoch=200, show_progress=False,
                      logger_adapter=NoopAdapterFactory())
    assert len(results) == 1 and all(np.isfinite(v) for v in results[0][1].values())
    assert td3.predict(ds.observations[:5]).shape == (5, 12)


def test_minari_export_loads_back(tmp_path, dataset_dir, monkeypatch):
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "elsewhere"))  # restored after the test
    ds = load_dataset(dataset_dir, split="test")
    ds.to_minari("mtf/test-split-v0", root=tmp_path / "minari", max_sessions=25)
    back = minari.load_dataset("mtf/test-split-v0")
    assert (tmp_path / "minari").is_dir() and not (tmp_path / "elsewhere").exists()
    assert back.total_episodes == 25 and back.total_steps == int(ds.session_lengths[:25].sum())
    episode = next(back.iterate_episodes([3]))
    a = int(ds.session_lengths[:3].sum())
    t = int(ds.session_lengths[3])
    np.testing.assert_array_equal(episode.actions, ds.actions[a:a + t])
    np.testing.assert_array_equal(episode.observations[:-1], ds.observations[a:a + t])
    np.testing.assert_array_equal(episode.observations[-1], ds.session_column("final_observation")[3])
    np.testing.assert_array_equal(episode.rewards, ds.rewards[a:a + t])
    assert bool(episode.terminations[-1]) == bool(ds.session_column("terminated")[3])


def test_cli_collect_and_inspect(tmp_path):
    from benchmarks.cli import main

    out = tmp_path / "cli"
    args = ["collect", "--policy", "random", "--sessions", "150", "--seed", "2", "--batch-size", "64",
            "--out", str(out), "--no-progress"] + [f"--sim={k}={v}" for k, v in SMALL.items()]
    assert main(args) == 0
    assert main(args) == 2  # exists: refused without --overwrite
    assert main(args + ["--overwrite"]) == 0
    assert main(["inspect", str(out), "--out", str(tmp_path / "inspect")]) == 0
    stats = json.loads((tmp_path / "inspect" / "stats.json").read_text())
    assert stats["sessions"] == 150 and set(stats["rewards"]) == set(REWARD_PRESETS)
    assert len(stats["action_coverage"]) == 12 and stats["action_coverage"][0]["covered_bins"] == 1.0
    assert (tmp_path / "inspect" / "actions.png").stat().st_size > 10_000
    assert main(["inspect", str(tmp_path / "nothing")]) == 2


def test_smoke_card_reproduces_byte_for_byte(tmp_path):
    """``mtf-bench collect --preset smoke`` writes files whose SHA-256 equal the card's, file by file."""
    from mtf_env.config import make_config
    from mtf_env.dataset import DATASET_PRESETS

    card = json.loads((Path(__file__).resolve().parents[1] / "datasets" / "cards" / "smoke.json").read_text())
    preset = DATASET_PRESETS["smoke"]
    path = collect_dataset(tmp_path / "smoke", make_config(**preset.sim), preset.collect,
                           collection_policy(preset.collect), progress=False)
    written = {str(f.relative_to(path)): sha256_file(f) for f in sorted(path.rglob("*.parquet"))}
    assert written == card["files_sha256"]


def test_dataset_cards_match_the_presets():
    from mtf_env.dataset import DATASET_PRESETS

    cards = Path(__file__).resolve().parent.parent / "datasets" / "cards"
    for name, preset in DATASET_PRESETS.items():
        card = json.loads((cards / f"{name}.json").read_text())
        assert card["name"] == name
        assert card["collect"]["n_sessions"] == preset.collect.n_sessions
        assert card["collect"]["policy"] == preset.collect.policy
        assert card["collect"]["seed"] == preset.collect.seed
        assert card["collect"]["batch_size"] == preset.collect.batch_size
    assert DATASET_PRESETS["paper"].collect.n_sessions == 3_142_000
