"""ShortVideoMTF-v0: Gymnasium API, vector/single equivalence, determinism, bad input, pickling."""
import pickle

import gymnasium as gym
import numpy as np
import pytest

import mtf_env  # noqa: F401  (registers the env)
from mtf_env.fusion import PRODUCTION_ACTION

SMALL = dict(n_users=3000, n_items=4000)


def rollout(env, seed, n_steps, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(n_steps):
        obs, reward, terminated, truncated, info = env.step(actions[t])
        out.append(obs)
        out.append(np.array([reward, terminated, truncated], dtype=np.float64))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(obs)
    return out


def test_gymnasium_and_sb3_env_checkers_pass():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("ShortVideoMTF-v0", **SMALL)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)


def test_spaces_and_types():
    env = gym.make("ShortVideoMTF-v0", **SMALL)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and obs.dtype == np.float32
    assert env.action_space.shape == (12,)
    rng = np.random.default_rng(0)
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 12).astype(np.float32))
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and np.isfinite(reward)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        assert not (terminated and truncated)
        assert info["feedback"].shape == (6, 12) and info["watched"][0]
        np.testing.assert_allclose(info["request_feedback"], info["feedback"].sum(0), rtol=1e-5)
        assert set(info["ground_truth"]) >= {"satisfaction", "fatigue", "saturation", "user_id"}
        if terminated or truncated:
            env.reset()


def test_same_seed_same_trajectory_different_seed_differs():
    actions = np.random.default_rng(1).uniform(-1, 1, (150, 12)).astype(np.float32)
    a = rollout(gym.make("ShortVideoMTF-v0", **SMALL), 7, 150, actions)
    b = rollout(gym.make("ShortVideoMTF-v0", **SMALL), 7, 150, actions)
    c = rollout(gym.make("ShortVideoMTF-v0", **SMALL), 8, 150, actions)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(a) != len(c) or not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_vector_env_with_one_env_equals_single_env():
    n = 200
    actions = np.random.default_rng(2).uniform(-1, 1, (n, 12)).astype(np.float32)
    single = gym.make("ShortVideoMTF-v0", **SMALL)
    vec = gym.make_vec("ShortVideoMTF-v0", num_envs=1, vectorization_mode="vector_entry_point", **SMALL)
    obs_s, _ = single.reset(seed=11)
    obs_v, _ = vec.reset(seed=11)
    np.testing.assert_array_equal(obs_s, obs_v[0])
    restart = False
    n_episodes = 0
    for t in range(n):
        obs_v, rew_v, term_v, trunc_v, _ = vec.step(actions[t][None])
        if restart:  # next-step autoreset: the vector env resets now, the single env resets explicitly
            obs_s, _ = single.reset()
            rew_s, term_s, trunc_s = 0.0, False, False
        else:
            obs_s, rew_s, term_s, trunc_s, _ = single.step(actions[t])
        np.testing.assert_array_equal(obs_s, obs_v[0])
        assert rew_s == rew_v[0] and term_s == term_v[0] and trunc_s == trunc_v[0]
        restart = term_s or trunc_s
        n_episodes += restart
    assert n_episodes >= 10


def test_vector_env_rows_are_independent_sessions():
    vec = gym.make_vec("ShortVideoMTF-v0", num_envs=16, vectorization_mode="vector_entry_point", **SMALL)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (16, vec.single_observation_space.shape[0])
    ended = np.zeros(16, bool)
    for _ in range(60):
        obs, reward, terminated, truncated, info = vec.step(np.tile(PRODUCTION_ACTION, (16, 1)))
        assert np.all(np.isfinite(reward)) and vec.observation_space.contains(obs)
        restarted = info["autoreset"]
        assert np.all(reward[restarted] == 0) and not np.any(terminated[restarted])
        ended |= terminated | truncated
    assert ended.all()


@pytest.mark.parametrize(
    "action, message",
    [
        (np.full(12, np.nan, np.float32), "NaN"),
        (np.array([np.inf] + [0.0] * 11, np.float32), "infinite"),
        (np.zeros(11, np.float32), "shape"),
        (np.zeros((1, 12), np.float32), "shape"),
        (np.array(["a"] * 12), "dtype"),
        (np.ones(12, np.bool_), "dtype"),
        (np.ones(12, np.complex64), "dtype"),
    ],
)
def test_bad_actions_raise_clear_errors(action, message):
    env = gym.make("ShortVideoMTF-v0", **SMALL).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_integer_actions_are_numbers():
    """An integer action is accepted as the numbers it holds (the README says so): it acts exactly
    like the same values as float32, and out-of-range integers are clipped like floats."""
    from mtf_env.fusion import validate_action

    ints = np.array([-3, -1, 0, 1, 2, 0, 0, 1, -1, 0, 5, 0], np.int64)
    np.testing.assert_array_equal(validate_action(ints), np.clip(ints, -1, 1).astype(np.float32))
    env_a = gym.make("ShortVideoMTF-v0", **SMALL).unwrapped
    env_b = gym.make("ShortVideoMTF-v0", **SMALL).unwrapped
    env_a.reset(seed=3)
    env_b.reset(seed=3)
    out_a, out_b = env_a.step(ints), env_b.step(np.clip(ints, -1, 1).astype(np.float32))
    np.testing.assert_array_equal(out_a[0], out_b[0])
    assert out_a[1] == out_b[1]


def test_out_of_range_actions_are_clipped():
    env_a = gym.make("ShortVideoMTF-v0", **SMALL).unwrapped
    env_b = gym.make("ShortVideoMTF-v0", **SMALL).unwrapped
    env_a.reset(seed=5)
    env_b.reset(seed=5)
    big = np.linspace(-3, 3, 12).astype(np.float32)
    out_a = env_a.step(big)
    out_b = env_b.step(np.clip(big, -1, 1))
    np.testing.assert_array_equal(out_a[0], out_b[0])
    assert out_a[1] == out_b[1]


def test_unknown_config_key_and_bad_values_raise():
    with pytest.raises(ValueError, match="unknown ShortVideoMTF config key"):
        gym.make("ShortVideoMTF-v0", n_userz=10)
    with pytest.raises(ValueError, match="page_size"):
        gym.make("ShortVideoMTF-v0", page_size=200, n_candidates=100)
    with pytest.raises(ValueError, match="unknown reward preset"):
        gym.make("ShortVideoMTF-v0", reward="clicks")
    with pytest.raises(ValueError, match="unknown response parameter"):
        gym.make("ShortVideoMTF-v0", response={"exit_biass": 1.0})


def test_step_before_reset_raises():
    env = gym.make("ShortVideoMTF-v0", **SMALL).unwrapped
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(12, np.float32))


def test_env_pickles_and_runs_under_async_vector_env():
    env = gym.make("ShortVideoMTF-v0", **SMALL).unwrapped
    env.reset(seed=4)
    clone = pickle.loads(pickle.dumps(env))
    a = np.zeros(12, np.float32)
    np.testing.assert_array_equal(env.step(a)[0], clone.step(a)[0])
    assert len(pickle.dumps(env)) < 1_000_000  # the world and scorer table are rebuilt, not pickled

    venv = gym.vector.AsyncVectorEnv([lambda: gym.make("ShortVideoMTF-v0", **SMALL) for _ in range(2)])
    try:
        obs, _ = venv.reset(seed=[1, 2])
        for _ in range(10):
            obs, reward, terminated, truncated, _ = venv.step(np.zeros((2, 12), np.float32))
            assert obs.shape == (2, 58) and np.all(np.isfinite(reward))
    finally:
        venv.close()


def test_reward_presets_change_the_reward_not_the_dynamics():
    a = gym.make("ShortVideoMTF-v0", reward="default", **SMALL).unwrapped
    b = gym.make("ShortVideoMTF-v0", reward="interaction", **SMALL).unwrapped
    a.reset(seed=9)
    b.reset(seed=9)
    from mtf_env.rewards import REWARD_PRESETS

    for _ in range(20):
        oa, ra, ta, tra, ia = a.step(PRODUCTION_ACTION)
        ob, rb, tb, trb, ib = b.step(PRODUCTION_ACTION)
        np.testing.assert_array_equal(oa, ob)
        assert ra == pytest.approx(float(ia["request_feedback"] @ REWARD_PRESETS["default"]), rel=1e-5, abs=1e-5)
        assert rb == pytest.approx(float(ib["request_feedback"] @ REWARD_PRESETS["interaction"]), rel=1e-5, abs=1e-5)
        if ta or tra:
            a.reset()
            b.reset()


def test_large_batch_rows_equal_the_batch_of_one():
    """The parallel, chunked, prefetching step of a large batch (with some rows inactive) gives
    every row exactly what stepping that row alone through the serial kernel gives."""
    from mtf_env import kernels
    from mtf_env.config import make_config
    from mtf_env.core import Simulator

    sim = Simulator(make_config(**SMALL))
    b = kernels.PARALLEL_MIN_BATCH + 3 * kernels.ROW_CHUNK + 5  # parallel kernel, a ragged last chunk
    rng = np.random.default_rng(0)
    state = sim.empty_state(b)
    sim.start_sessions(state, np.arange(b), None, rng)
    for step in range(3):
        actions = rng.uniform(-1, 1, (b, 12)).astype(np.float32)
        active = rng.random(b) < 0.8
        active[kernels.ROW_CHUNK - 1] = active[kernels.ROW_CHUNK] = False  # inactive at a chunk edge
        u_cand = rng.random((b, sim.config.n_candidates))
        u_resp = rng.random((b, sim.config.page_size, kernels.N_UNIFORMS))
        singles = []
        for row in range(b):
            one = sim.empty_state(1)
            for name in vars(one):
                getattr(one, name)[:] = getattr(state, name)[row:row + 1]
            res = sim.step(one, actions[row:row + 1], None, active=active[row:row + 1],
                           uniforms=(u_cand[row:row + 1], u_resp[row:row + 1]))
            singles.append((res, one))
        batch = sim.step(state, actions, None, active=active, uniforms=(u_cand, u_resp))
        for row, (res, one) in enumerate(singles):
            for name in ("items", "feedback", "watched", "utility", "request_feedback", "reward", "terminated",
                         "truncated"):
                np.testing.assert_array_equal(getattr(batch, name)[row], getattr(res, name)[0], err_msg=name)
            for name in ("obs", "dyn", "saturation"):
                np.testing.assert_array_equal(getattr(state, name)[row], getattr(one, name)[0], err_msg=name)
        ended = batch.terminated | batch.truncated
        sim.start_sessions(state, ended, None, rng)


def test_the_kernels_reward_equals_compute_reward_bit_for_bit():
    """The step kernel's inlined ``r = w . v`` and the numpy ``compute_reward`` agree exactly, for any weights."""
    from mtf_env.config import SimConfig
    from mtf_env.core import Simulator
    from mtf_env.rewards import compute_reward

    rng = np.random.default_rng(5)
    weights = rng.normal(0.0, 1.0, 12).astype(np.float32)
    sim = Simulator(SimConfig(n_users=3000, n_items=4000, reward=weights.tolist()))
    state = sim.empty_state(256)
    sim.start_sessions(state, np.arange(256), None, rng)
    for _ in range(3):
        res = sim.step(state, rng.uniform(-1, 1, (256, 12)).astype(np.float32), rng)
        assert res.reward.tobytes() == compute_reward(res.request_feedback, weights).tobytes()


def test_predictions_are_the_scorers_and_rank_the_served_page():
    """Simulator.predictions equals the PLE scorer run on the user's profile cell, and the env's page
    is its candidates' top L by log(o + beta) @ alpha, best first."""
    from mtf_env.fusion import BETA, action_to_alpha
    from mtf_env.ple import ScorerWeights, predict_table
    from mtf_env.score_table import DEFAULT_SCORER, cell_features

    env = gym.make("ShortVideoMTF-v0", **SMALL)
    sim = env.unwrapped.sim
    rng = np.random.default_rng(0)
    users = rng.integers(0, sim.population.n_users, 5)
    items = rng.integers(0, sim.config.n_items, (5, 7))
    o = sim.predictions(users, items)
    assert o.shape == (5, 7, 12) and o.dtype == np.float32
    expected = predict_table(ScorerWeights.load(DEFAULT_SCORER), cell_features(), sim.catalogue.features)
    np.testing.assert_allclose(o, expected[sim.population.cell[users][:, None], items], rtol=1e-4, atol=1e-6)
    for action in (PRODUCTION_ACTION, np.linspace(-1, 1, 12, dtype=np.float32)):
        _, info = env.reset(seed=1, options={"user_ids": [int(users[0])]})
        info = env.step(action)[-1]
        f = np.log(sim.predictions(users[:1], info["items"][None])[0] + BETA) @ action_to_alpha(action)
        assert np.all(np.diff(f) <= 1e-5), f
    with pytest.raises(ValueError, match="shape"):
        sim.predictions(users, items[:2])
    with pytest.raises(ValueError, match="video ids"):
        sim.predictions(users[:1], np.array([[sim.config.n_items]]))
