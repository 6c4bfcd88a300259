"""Tests of the PLE scorer: learning, numpy == torch, table == rows, determinism, files, report."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from agents.ple_scorer import PLEScorer, split_train_val, train_scorer
from mtf_env.ple import (
    PLEConfig,
    ScorerWeights,
    first_layer_item,
    first_layer_user,
    first_layer_width,
    numpy_predict,
    play_time_label,
    predict_from_first_layer,
    predict_table,
    scorer_report,
    weight_shapes,
)
from mtf_env.tasks import N_TASKS, TASK_INDEX, TASK_NAMES

D_U, D_V = 9, 11
SMALL = PLEConfig(n_shared_experts=2, n_task_experts=1, expert_hidden=8, n_layers=2, tower_hidden=4,
                  lr=1e-2, batch_size=512, epochs=3)
# base logits per task: common (play_time .. skip), a few percent (like, profile_visit) and rare (share, hate)
BASE_LOGIT = np.array([-0.5, -0.8, -0.6, -0.4, -2.5, -4.0, -3.5, -4.0, -3.0, -2.5, -5.0, -2.5])


def synthetic_impressions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Impressions from a known logistic model: ``(u, v, labels, true_probs)``.

    u: a 5-way one-hot profile field + 4 numeric summaries; v: a 6-way topic one-hot + 5
    numeric features. Task logits are linear in u and v plus a profile x topic interaction,
    scaled so that the true probabilities rank the labels with AUC about 0.85.
    """
    rng = np.random.default_rng(seed)
    u = np.concatenate([np.eye(5)[rng.integers(0, 5, n)], rng.normal(size=(n, 4))], axis=1).astype(np.float32)
    v = np.concatenate([np.eye(6)[rng.integers(0, 6, n)], rng.normal(size=(n, 5))], axis=1).astype(np.float32)
    g = np.random.default_rng(12345)  # the model itself is fixed across calls
    a_u = g.normal(size=(N_TASKS, D_U)) * 0.5
    a_v = g.normal(size=(N_TASKS, D_V)) * 0.5
    inter = g.normal(size=(N_TASKS, 5, 6)) * 1.0
    z = u @ a_u.T + v @ a_v.T + np.einsum("np,tpq,nq->nt", u[:, :5], inter, v[:, :6]) + BASE_LOGIT
    probs = 1.0 / (1.0 + np.exp(-z))
    labels = (rng.random((n, N_TASKS)) < probs).astype(np.float32)
    # play_time: seconds with a mean that follows the model, as a soft label
    play_time_s = probs[:, 0] * 120.0 * rng.gamma(4.0, 0.25, n)
    labels[:, TASK_INDEX["play_time"]] = play_time_label(play_time_s)
    return u, v, labels, probs.astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    u, v, y, p = synthetic_impressions(40_000, seed=0)
    model, history = train_scorer(u, v, y, SMALL, seed=0, show_progress=False)
    return model, history, (u, v, y, p)


def random_weights(config: PLEConfig, seed: int) -> ScorerWeights:
    """An untrained model with non-trivial standardisation buffers, as numpy weights."""
    model = PLEScorer(config, D_U, D_V, seed=seed)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for side, d in (("u", D_U), ("v", D_V)):
            getattr(model, f"input_mean_{side}").copy_(torch.from_numpy(rng.normal(size=d).astype(np.float32)))
            getattr(model, f"input_scale_{side}").copy_(torch.from_numpy(rng.uniform(0.5, 2, d).astype(np.float32)))
    return model.to_weights()


def features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D_U)).astype(np.float32) * 2, rng.normal(size=(n, D_V)).astype(np.float32) * 2


# --- learning -------------------------------------------------------------------------


def test_training_learns_the_generator(trained):
    model, history, (u, v, y, p) = trained
    report = history["val_report"]
    _, val = split_train_val(len(u), SMALL.val_fraction, seed=0)
    assert report["n"] == len(val) == history["n_val"]
    assert history["best_epoch"] >= 2
    assert history["epochs"][-1]["val/loss"] < history["epochs"][0]["val/loss"]
    for name in ("finish", "long_view", "skip", "like", "profile_visit", "exit"):
        j = TASK_INDEX[name]
        oracle = roc_auc_score(y[val, j], p[val, j])
        got = report["tasks"][name]["auc"]
        assert oracle > 0.8, (name, oracle)  # the generator allows about 0.85
        assert got > 0.7 and got > oracle - 0.05, (name, got, oracle)
        # calibrated: no positive weighting, so the mean prediction follows the base rate
        assert abs(report["tasks"][name]["mean_pred"] - report["tasks"][name]["mean_label"]) < 0.03
        assert report["tasks"][name]["ece"] < 0.04
    assert report["tasks"]["play_time"]["auc"] > 0.7
    assert report["tasks"]["play_time"]["mse"] < np.var(y[val, 0])  # better than the constant mean
    json.dumps(history)  # the history is JSON-serialisable as it is


def test_numpy_predict_of_trained_model_matches_torch(trained):
    model, _, (u, v, _, _) = trained
    weights = model.to_weights()
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(u[:3000]), torch.from_numpy(v[:3000]))).numpy()
    got = numpy_predict(weights, u[:3000], v[:3000])
    assert got.dtype == np.float32 and got.shape == (3000, N_TASKS)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


# --- numpy inference ------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        PLEConfig(),
        replace(SMALL, n_layers=1),
        replace(SMALL, n_layers=3, n_task_experts=2, n_shared_experts=3),
        replace(SMALL, n_task_experts=0),
    ],
    ids=["default", "one-layer", "three-layers", "no-task-experts"],
)
def test_numpy_predict_matches_torch_forward(config):
    weights = random_weights(config, seed=1)
    model = PLEScorer.from_weights(weights)
    u, v = features(500, seed=2)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(u), torch.from_numpy(v))).numpy()
    np.testing.assert_allclose(numpy_predict(weights, u, v), expected, atol=1e-5, rtol=0)
    # the factorised first layer is the linear map on concat(u, v)
    pre = first_layer_user(weights, u) + first_layer_item(weights, v)
    assert pre.shape == (500, first_layer_width(config))
    np.testing.assert_allclose(predict_from_first_layer(weights, pre), expected, atol=1e-5, rtol=0)


def test_predict_table_equals_per_row_predict():
    weights = random_weights(SMALL, seed=3)
    cells, _ = features(7, seed=4)
    _, items = features(37, seed=5)
    table = predict_table(weights, cells, items, chunk_rows=11)  # blocks that do not divide I
    assert table.shape == (7, 37, N_TASKS) and table.dtype == np.float32
    c, i = np.meshgrid(np.arange(7), np.arange(37), indexing="ij")
    rows = numpy_predict(weights, cells[c.ravel()], items[i.ravel()]).reshape(7, 37, N_TASKS)
    np.testing.assert_allclose(table, rows, atol=1e-6, rtol=0)
    # whole cells per chunk, and threads: same numbers
    np.testing.assert_array_equal(predict_table(weights, cells, items, chunk_rows=80, n_threads=2),
                                  predict_table(weights, cells, items, chunk_rows=80))
    assert np.all((table > 0) & (table < 1))


def test_extreme_logits_stay_finite_without_warnings():
    weights = random_weights(SMALL, seed=6)
    weights.arrays["tower_b2"][:] = np.array([-200, 200] * 6, dtype=np.float32)
    u, v = features(50, seed=7)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        probs = numpy_predict(weights, u, v)
    assert np.all(np.isfinite(probs)) and np.all(probs[:, 1] == 1.0) and np.all(probs[:, 0] >= 0)


def test_inference_refuses_bad_features():
    weights = random_weights(SMALL, seed=8)
    u, v = features(5, seed=9)
    with pytest.raises(ValueError, match="columns"):
        numpy_predict(weights, u[:, :-1], v)
    with pytest.raises(ValueError, match="same rows"):
        numpy_predict(weights, u, v[:4])
    bad = u.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_table(weights, bad, v)
    with pytest.raises(ValueError, match="pre0"):
        predict_from_first_layer(weights, np.zeros((3, 5), np.float32))


# --- determinism ----------------------------------------------------------------------


def test_training_is_deterministic_under_seed():
    u, v, y, _ = synthetic_impressions(3_000, seed=1)
    config = replace(SMALL, epochs=2)
    runs = [train_scorer(u, v, y, config, seed=s, show_progress=False)[0].to_weights() for s in (7, 7, 8)]
    for name in runs[0].arrays:
        np.testing.assert_array_equal(runs[0].arrays[name], runs[1].arrays[name], err_msg=name)
    assert not np.array_equal(runs[0].arrays["first_W_u"], runs[2].arrays["first_W_u"])


def test_split_is_seeded_and_disjoint():
    tr, va = split_train_val(1000, 0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900 and not set(tr) & set(va)
    np.testing.assert_array_equal(va, split_train_val(1000, 0.1, seed=3)[1])
    assert not np.array_equal(va, split_train_val(1000, 0.1, seed=4)[1])


# --- files ----------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path):
    weights = random_weights(SMALL, seed=10)
    npz, sidecar = weights.save(tmp_path / "scorer.npz")
    assert sidecar == tmp_path / "scorer.json"
    meta = json.loads(sidecar.read_text())
    assert meta["d_u"] == D_U and meta["d_v"] == D_V and meta["config"]["expert_hidden"] == SMALL.expert_hidden
    assert meta["task_names"] == list(TASK_NAMES)
    loaded = ScorerWeights.load(npz)
    assert loaded.config == SMALL and (loaded.d_u, loaded.d_v) == (D_U, D_V)
    for name, arr in weights.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], arr)
    u, v = features(20, seed=11)
    np.testing.assert_array_equal(numpy_predict(loaded, u, v), numpy_predict(weights, u, v))


def _saved(tmp_path):
    weights = random_weights(SMALL, seed=12)
    npz, _ = weights.save(tmp_path / "scorer.npz")
    return weights, npz


def test_load_refuses_garbage_and_truncated_files(tmp_path):
    _, npz = _saved(tmp_path)
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not an npz archive|could not be read"):
        ScorerWeights.load(npz)
    npz.write_bytes(b"\x00definitely not a zip" * 10)
    with pytest.raises(ValueError, match="not an npz archive"):
        ScorerWeights.load(npz)
    with pytest.raises(ValueError, match="does not exist"):
        ScorerWeights.load(tmp_path / "missing.npz")


def test_load_refuses_foreign_npz(tmp_path):
    _, npz = _saved(tmp_path)
    np.savez(npz, a=np.zeros(3), b=np.ones((2, 2)))  # someone else's arrays next to our sidecar
    with pytest.raises(ValueError, match="not a scorer weights file"):
        ScorerWeights.load(npz)


def test_load_refuses_pickled_objects(tmp_path):
    weights, npz = _saved(tmp_path)
    arrays = dict(np.load(npz, allow_pickle=False))
    arrays["tower_b2"] = np.array([{"evil": 1}] * N_TASKS, dtype=object)
    np.savez(npz, **arrays)
    with pytest.raises(ValueError, match="could not be read"):
        ScorerWeights.load(npz)


def test_load_refuses_wrong_shapes_and_missing_keys(tmp_path):
    _, npz = _saved(tmp_path)
    arrays = dict(np.load(npz, allow_pickle=False))
    np.savez(npz, **{**arrays, "tower_W1": arrays["tower_W1"][:, :, :-1]})
    with pytest.raises(ValueError, match="'tower_W1' has shape"):
        ScorerWeights.load(npz)
    np.savez(npz, **{k: a for k, a in arrays.items() if k != "first_b"})
    with pytest.raises(ValueError, match="missing \\['first_b'\\]"):
        ScorerWeights.load(npz)
    np.savez(npz, **{**arrays, "first_b": arrays["first_b"].astype(np.float64)})
    with pytest.raises(ValueError, match="float32"):
        ScorerWeights.load(npz)
    nan = arrays["first_b"].copy()
    nan[0] = np.nan
    np.savez(npz, **{**arrays, "first_b": nan})
    with pytest.raises(ValueError, match="NaN"):
        ScorerWeights.load(npz)


def test_load_refuses_missing_or_mismatched_sidecar(tmp_path):
    _, npz = _saved(tmp_path)
    sidecar = npz.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "d_u": D_U + 1}))
    with pytest.raises(ValueError, match="does not describe"):
        ScorerWeights.load(npz)
    sidecar.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ScorerWeights.load(npz)
    sidecar.unlink()
    with pytest.raises(ValueError, match="no JSON sidecar"):
        ScorerWeights.load(npz)
    with pytest.raises(ValueError, match=".npz"):
        random_weights(SMALL, seed=0).save(tmp_path / "scorer.bin")


def test_weight_shapes_match_the_torch_state_dict():
    for config in (PLEConfig(), replace(SMALL, n_layers=3, n_task_experts=0)):
        model = PLEScorer(config, D_U, D_V)
        assert {k: tuple(t.shape) for k, t in model.state_dict().items()} == weight_shapes(config, D_U, D_V)


# --- report ---------------------------------------------------------------------------


def test_scorer_report_values_and_single_class_tasks():
    rng = np.random.default_rng(0)
    n = 2000
    labels = (rng.random((n, N_TASKS)) < 0.3).astype(np.float32)
    labels[:, TASK_INDEX["share"]] = 0.0  # no positive at all
    labels[:, TASK_INDEX["play_time"]] = rng.random(n).astype(np.float32)
    probs = np.full((n, N_TASKS), 0.3, dtype=np.float32)
    probs[:, TASK_INDEX["like"]] = labels[:, TASK_INDEX["like"]] * 0.8 + 0.1  # perfect ranking
    probs[:, TASK_INDEX["play_time"]] = labels[:, TASK_INDEX["play_time"]]
    report = scorer_report(probs, labels)
    assert report["n"] == n
    assert report["tasks"]["share"]["auc"] is None
    assert report["tasks"]["like"]["auc"] == 1.0
    assert report["tasks"]["finish"]["auc"] == 0.5  # constant prediction
    pt = report["tasks"]["play_time"]
    assert pt["auc"] == 1.0 and pt["mse"] == 0.0 and pt["auc_threshold"] == 0.5
    # ECE by hand for a constant prediction: |0.3 - base rate|
    finish = report["tasks"]["finish"]
    assert finish["ece"] == pytest.approx(abs(0.3 - labels[:, TASK_INDEX["finish"]].mean()), abs=1e-6)
    assert finish["mean_label"] == pytest.approx(labels[:, TASK_INDEX["finish"]].mean())
    # like: two bins, 0.1 (labels 0) and 0.9 (labels 1): each off by 0.1
    assert report["tasks"]["like"]["ece"] == pytest.approx(0.1, abs=1e-6)
    json.dumps(report)


def test_scorer_report_refuses_bad_input():
    ok = np.full((10, N_TASKS), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match="columns"):
        scorer_report(ok[:, :5], ok[:, :5])
    with pytest.raises(ValueError, match="same"):
        scorer_report(ok, ok[:3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scorer_report(ok + 1, ok)


# --- bad training input ---------------------------------------------------------------


def test_train_refuses_bad_input():
    u, v, y, _ = synthetic_impressions(100, seed=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_scorer(u, v, y * 120.0, SMALL, show_progress=False)  # play time in seconds, not scaled
    with pytest.raises(ValueError, match="same rows"):
        train_scorer(u, v[:50], y, SMALL, show_progress=False)
    with pytest.raises(ValueError, match="12 columns"):
        train_scorer(u, v, y[:, :11], SMALL, show_progress=False)
    bad = u.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        train_scorer(bad, v, y, SMALL, show_progress=False)
    with pytest.raises(ValueError, match="play_time_s"):
        play_time_label(np.array([-1.0]))


@pytest.mark.parametrize(
    "kwargs", [{"n_layers": 0}, {"expert_hidden": 0}, {"n_task_experts": -1}, {"lr": 0.0}, {"val_fraction": 1.0}]
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError, match=list(kwargs)[0]):
        PLEConfig(**kwargs)
