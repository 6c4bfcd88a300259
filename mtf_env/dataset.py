"""Logged datasets: collect, load, validate, relabel and adapt (Minari, plain arrays).

Collection takes a behaviour policy object; the agents layer builds one from a ``CollectConfig``
(``agents.behaviour.collection_policy``), so a user script reads::

    >>> collect = CollectConfig(policy="mixed", n_sessions=2000)
    >>> collect_dataset("datasets/smoke", SimConfig(), collect, collection_policy(collect))
    >>> ds = load_dataset("datasets/smoke", reward="default", split="train")
    >>> data = ds.transitions()      # mtf_env.transitions.TransitionArrays, rewards relabelled
    >>> ds.initial_user_ids          # (n_sessions,) users of the split (their fresh initial states)
    >>> ds.to_minari("mtf/smoke-v0", root="minari_data")

The d3rlpy adapter lives with the agents (``agents.d3rlpy_adapter.dataset_to_d3rlpy(ds)``).

The format is described in :mod:`mtf_env.dataset_io` and ``datasets/README.md``; the
collector in :mod:`mtf_env.dataset_collect`. Everything that can be wrong with a dataset on
disk raises :class:`DatasetError` (a ``ValueError``) naming the problem.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import SimConfig, make_config
from .dataset_collect import DATASET_PRESETS, CollectConfig, DatasetPreset, collect_dataset
from .dataset_io import (SCHEMA_VERSION, DatasetError, column_to_numpy, numpy_dtype, read_manifest,
                         request_schema, session_schema, sha256_file, unpack_video_feedback)
from .fusion import action_to_alpha
from .rewards import compute_reward, reward_weights
from .tasks import N_TASKS
from .transitions import TransitionArrays

__all__ = [
    "CollectConfig", "DatasetPreset", "DATASET_PRESETS", "collect_dataset", "load_dataset", "Dataset",
    "DatasetError", "SCHEMA_VERSION", "SPLITS",
]

SPLITS = ("train", "test", "all")
#: Rows (evenly spaced) on which load_dataset checks fusion_weights == action_to_alpha(action).
_FUSION_CHECK_ROWS = 100_000
#: Columns whose values must be finite.
_FLOAT_COLUMNS = ("observation", "action", "fusion_weights", "behaviour_log_prob", "reward", "request_feedback",
                  "video_play_time_s")


def _reward_spec_json(spec: Any) -> Any:
    return spec.tolist() if isinstance(spec, np.ndarray) else (dict(spec) if isinstance(spec, Mapping) else spec)


class Dataset:
    """One split of a logged dataset, validated on open; columns are read (and checked) on first use.

    Attributes: ``path``, ``manifest`` (dict), ``config`` (the collection's SimConfig),
    ``split``, ``reward_spec`` / ``reward_weights`` (12,) (used by :meth:`transitions`),
    ``n_sessions``, ``n_transitions``, ``session_ids`` / ``initial_user_ids`` /
    ``session_lengths`` / ``behaviour_groups`` (per session of the split, in time order),
    ``group_names``.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], split: str, reward: Any, behaviour: str | None,
                 sessions: dict[str, np.ndarray], part_rows: list[tuple[Path, int, int]]):
        self.path = path
        self.manifest = manifest
        self.split = split
        self.reward_spec = reward
        self.reward_weights = reward_weights(reward)
        self.config: SimConfig = _config_from_json(manifest["sim_config"])
        self.obs_dim = int(manifest["obs_dim"])
        self.page_size = int(manifest["page_size"])
        self.group_names: list[str] = list(manifest["collection"]["groups"])
        self.behaviour = behaviour
        self._parts = part_rows  # (file, first global row, end global row) of every request part
        n_train = int(manifest["split"]["train_sessions"])
        n_all = len(sessions["session_id"])
        lo, hi = {"train": (0, n_train), "test": (n_train, n_all), "all": (0, n_all)}[split]
        keep = np.zeros(n_all, bool)
        keep[lo:hi] = True
        if behaviour is not None:
            keep &= sessions["behaviour_group"] == self.group_names.index(behaviour)
        self._sessions = {k: v[keep] for k, v in sessions.items()}
        if len(self._sessions["session_id"]) == 0:
            what = f"split {split!r}" + (f" (behaviour {behaviour!r})" if behaviour else "")
            raise DatasetError(f"{path}: {what} holds no sessions")
        first = self._sessions["first_row"]
        lengths = self._sessions["n_requests"].astype(np.int64)
        self._row_lo = int(first[0])
        self._row_hi = int(first[-1] + lengths[-1])
        contiguous = int(lengths.sum()) == self._row_hi - self._row_lo
        # rows of the selected sessions, relative to _row_lo (None: the whole range)
        self._rows = None if contiguous else (np.repeat(first - self._row_lo, lengths)
                                              + _ranges(lengths)).astype(np.int64)
        self._cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ sizes and sessions
    @property
    def n_sessions(self) -> int:
        return len(self._sessions["session_id"])

    @property
    def n_transitions(self) -> int:
        return int(self._sessions["n_requests"].sum())

    def __len__(self) -> int:
        return self.n_transitions

    @property
    def session_ids(self) -> np.ndarray:
        return self._sessions["session_id"]

    @property
    def initial_user_ids(self) -> np.ndarray:
        """(n_sessions,) int64 user of each session; a fresh session of that user starts in the logged state."""
        return self._sessions["user_id"].astype(np.int64)

    @property
    def session_lengths(self) -> np.ndarray:
        return self._sessions["n_requests"].astype(np.int64)

    @property
    def behaviour_groups(self) -> np.ndarray:
        return self._sessions["behaviour_group"]

    def session_column(self, name: str) -> np.ndarray:
        """A column of the session table for the split's sessions (see ``SESSION_COLUMNS``)."""
        if name not in self._sessions:
            raise KeyError(f"no session column {name!r}; columns: {sorted(self._sessions)}")
        return self._sessions[name]

    # ------------------------------------------------------------------ request columns
    def column(self, name: str, cache: bool = True) -> np.ndarray:
        """A request column (``REQUEST_COLUMNS``) for the split's rows, validated on first read.

        cache: keep the array for later calls (the transition columns are read several times).
        """
        if name in self._cache:
            return self._cache[name]
        schema = request_schema(self.obs_dim, self.page_size)
        if name not in schema.names:
            raise KeyError(f"no request column {name!r}; columns: {schema.names}")
        values = self._read_rows(name)
        _check_values(self.path, name, values)
        if cache:
            self._cache[name] = values
        return values

    def _read_rows(self, name: str) -> np.ndarray:
        dtype, tail = numpy_dtype(request_schema(self.obs_dim, self.page_size).field(name).type)
        out = np.empty((self._row_hi - self._row_lo,) + tail, dtype=dtype)
        for file, a, b in self._parts:
            lo, hi = max(self._row_lo, a), min(self._row_hi, b)
            if lo >= hi:
                continue
            try:
                col = pq.ParquetFile(file).read(columns=[name]).column(0)
            except (OSError, pa.ArrowException) as exc:
                raise DatasetError(f"{file}: cannot read column {name!r} ({type(exc).__name__}: {exc})") from None
            column_to_numpy(col.slice(lo - a, hi - lo), out=out[lo - self._row_lo:hi - self._row_lo])
        return out if self._rows is None else out[self._rows]

    @property
    def observations(self) -> np.ndarray:
        return self.column("observation")

    @property
    def actions(self) -> np.ndarray:
        return self.column("action")

    @property
    def rewards(self) -> np.ndarray:
        """(N,) float32 rewards relabelled from the raw page feedback under ``reward_weights``."""
        return compute_reward(self.column("request_feedback"), self.reward_weights)

    def rewards_for(self, reward: Any) -> np.ndarray:
        """(N,) float32 rewards under another reward spec (preset name, 12 weights or a mapping)."""
        return compute_reward(self.column("request_feedback"), reward_weights(reward))

    @property
    def episode_starts(self) -> np.ndarray:
        return self.column("step") == 0

    @property
    def next_observations(self) -> np.ndarray:
        """(N, obs_dim) float32: the next row's observation inside a session, ``final_observation`` at its end."""
        obs = self.observations
        nxt = np.empty_like(obs)
        nxt[:-1] = obs[1:]
        ends = np.cumsum(self.session_lengths) - 1
        nxt[ends] = self._sessions["final_observation"]
        return nxt

    def initial_observations(self) -> np.ndarray:
        """(n_sessions, obs_dim) float32 observation at the start of each session."""
        return self.observations[self.episode_starts]

    def video_feedback(self) -> tuple[np.ndarray, np.ndarray]:
        """Per shown video: feedback (N, L, 12) float32 (play time s, the rest 0/1) and watched (N, L) bool."""
        return unpack_video_feedback(self.column("video_play_time_s"), self.column("video_flags"))

    def transitions(self) -> TransitionArrays:
        """All transitions of the split as :class:`TransitionArrays` with relabelled rewards."""
        return TransitionArrays(
            observations=self.observations, actions=self.actions, rewards=self.rewards,
            next_observations=self.next_observations, terminals=self.column("terminated").copy(),
            timeouts=self.column("truncated").copy(), episode_starts=self.episode_starts,
        )

    # ------------------------------------------------------------------ adapters
    def to_minari(self, dataset_id: str, root: str | Path | None = None, max_sessions: int | None = None,
                  author: str = "BatchRL-MTF benchmark"):
        """Write the split as a local Minari dataset (no hub) and return the ``MinariDataset``.

        root: directory for Minari datasets (sets ``MINARI_DATASETS_PATH``); None keeps
        Minari's own default. One episode per session with N+1 observations (the last is
        ``final_observation``), terminations and truncations kept apart, rewards relabelled,
        and ``options={"user_ids": [user_id]}`` so that ``env.reset(options=...)`` restarts
        the logged user. max_sessions: export only the first sessions (Minari writes one
        directory per episode, which is slow for millions).
        """
        import gymnasium as gym
        import minari
        from minari.data_collector.episode_buffer import EpisodeBuffer

        from . import ENV_ID
        from .core import obs_bounds

        if root is not None:
            os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
        n = self.n_sessions if max_sessions is None else min(int(max_sessions), self.n_sessions)
        lengths = self.session_lengths[:n]
        starts = np.concatenate([[0], np.cumsum(lengths)])
        obs, act, rew = self.observations, self.actions, self.rewards
        term, trunc = self.column("terminated"), self.column("truncated")
        final = self._sessions["final_observation"]
        users = self.initial_user_ids
        buffers = []
        for e in range(n):
            a, b = int(starts[e]), int(starts[e + 1])
            buffers.append(EpisodeBuffer(
                id=e, options={"user_ids": [int(users[e])]},
                observations=np.concatenate([obs[a:b], final[e:e + 1]]), actions=act[a:b],
                rewards=rew[a:b].tolist(), terminations=term[a:b].tolist(), truncations=trunc[a:b].tolist()))
        low, high = obs_bounds(self.config)
        env_spec = gym.envs.registration.EnvSpec(ENV_ID, entry_point="mtf_env.env:ShortVideoMTFEnv",
                                                 kwargs=self.manifest["sim_config"])
        return minari.create_dataset_from_buffers(
            dataset_id=dataset_id, buffer=buffers, env=env_spec, eval_env=env_spec,
            observation_space=gym.spaces.Box(low, high, dtype=np.float32),
            action_space=gym.spaces.Box(-1.0, 1.0, shape=(N_TASKS,), dtype=np.float32),
            algorithm_name=f"behaviour:{self.manifest['collection']['policy']}", author=author,
            author_email="none", code_permalink="https://github.com/ (BatchRL-MTF benchmark, mtf_env/dataset.py)",
            description=(f"{self.path.name} split={self.split} reward={_reward_spec_json(self.reward_spec)}: "
                         f"{n} sessions logged under {self.manifest['collection']['policy']}"),
            data_format="arrow",
        )

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}, split={self.split!r}, sessions={self.n_sessions}, "
                f"transitions={self.n_transitions}, policy={self.manifest['collection']['policy']!r})")


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(l)`` for every l in lengths."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts


def _config_from_json(values: Mapping[str, Any]) -> SimConfig:
    try:
        return make_config(**values)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"the manifest's sim_config is not valid for this code: {exc}") from None


def _check_values(path: Path, name: str, values: np.ndarray) -> None:
    if name in _FLOAT_COLUMNS and not np.all(np.isfinite(values)):
        bad = np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(1))
        raise DatasetError(f"{path}: column {name!r} holds non-finite values ({bad.size} rows, first at row {bad[0]})")
    if name == "action" and (values.min(initial=0.0) < -1.0 or values.max(initial=0.0) > 1.0):
        raise DatasetError(f"{path}: actions outside the action box [-1, 1] (min {values.min()}, max {values.max()})")
    if name in ("video_play_time_s",) and values.min(initial=0.0) < 0:
        raise DatasetError(f"{path}: negative play time in column {name!r}")


def _check_schema(file: Path, expected: pa.Schema) -> int:
    """Check a part file's columns and types against ``expected``; returns its row count."""
    try:
        meta = pq.ParquetFile(file)
        schema = meta.schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{file} is not a readable Parquet file ({type(exc).__name__}: {exc}); "
                           "truncated or corrupted") from None
    names = schema.names
    for field in expected:
        if field.name not in names:
            raise DatasetError(f"{file}: missing column {field.name!r}")
        have = schema.field(field.name).type
        if have != field.type:
            raise DatasetError(f"{file}: column {field.name!r} has type {have}, expected {field.type}")
    extra = sorted(set(names) - set(expected.names))
    if extra:
        raise DatasetError(f"{file}: unexpected column(s) {extra}")
    return meta.metadata.num_rows


def _read_sessions(files: list[Path], schema: pa.Schema) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {name: [] for name in schema.names}
    for file in files:
        try:
            table = pq.read_table(file)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{file}: cannot read ({type(exc).__name__}: {exc})") from None
        for name in schema.names:
            cols[name].append(column_to_numpy(table.column(name)))
    return {k: np.concatenate(v) for k, v in cols.items()}


def load_dataset(path: str | Path, reward: str | Sequence[float] | Mapping[str, float] | np.ndarray = "default",
                 split: str = "train", *, behaviour: str | None = None, verify_checksums: bool = True,
                 validate: str = "full") -> Dataset:
    """Open a logged dataset directory for one split and validate it.

    Args:
        path: the dataset directory (holding ``manifest.json``).
        reward: reward used by ``transitions()`` / ``rewards``: a preset name (default, time,
            integrity, interaction), 12 weights or a task -> weight mapping. Rewards are
            recomputed from the logged page feedback, whatever reward the data was collected with.
        split: ``train`` (first 90% of sessions in time order, the paper's split), ``test``
            (the last 10%) or ``all``.
        behaviour: keep only the sessions of one behaviour group (e.g. ``random`` of a mixed
            dataset, for BatchRL-MTF-RE); None keeps all.
        verify_checksums: check every file's SHA-256 against the manifest (reads every byte).
        validate: ``full`` also reads the request table's bookkeeping columns and checks the
            session layout, termination flags, finite values and action bounds of the split;
            ``structure`` checks manifest, files, schemas and the session table only.

    Raises:
        DatasetError (a ValueError) naming the problem: no/unfinished manifest, unknown schema
        version, missing or changed file (size, checksum), unreadable or truncated Parquet,
        missing column, wrong column type, row counts differing from the manifest, an empty
        dataset or split, a session whose last request is not exactly one of terminated /
        truncated (or a flag before its end), non-finite values, actions outside [-1, 1].
    """
    path = Path(path)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if validate not in ("full", "structure"):
        raise ValueError(f"validate must be 'full' or 'structure', got {validate!r}")
    reward_weights(reward)  # fail early on a bad reward spec
    manifest = read_manifest(path)
    counts = manifest["counts"]
    if int(counts.get("sessions", 0)) <= 0 or int(counts.get("requests", 0)) <= 0 or not manifest["files"]:
        raise DatasetError(f"{path}: the dataset is empty (0 sessions)")
    groups = list(manifest["collection"].get("groups", []))
    if behaviour is not None and behaviour not in groups:
        raise ValueError(f"behaviour {behaviour!r} is not a group of this dataset; groups: {groups}")
    obs_dim, page = int(manifest["obs_dim"]), int(manifest["page_size"])
    schemas = {"requests": request_schema(obs_dim, page), "sessions": session_schema(obs_dim)}
    parts: dict[str, list[tuple[Path, dict[str, Any]]]] = {"requests": [], "sessions": []}
    for entry in manifest["files"]:
        file = path / entry["path"]
        if not file.is_file():
            raise DatasetError(f"{path}: data file {entry['path']} is missing")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise DatasetError(f"{file}: size {size} bytes differs from the manifest's {entry['bytes']} "
                               "(truncated or replaced)")
        if verify_checksums and sha256_file(file) != entry["sha256"]:
            raise DatasetError(f"{file}: SHA-256 checksum mismatch (the file was modified or corrupted)")
        rows = _check_schema(file, schemas[entry["table"]])
        if rows != entry["rows"]:
            raise DatasetError(f"{file}: {rows} rows, the manifest says {entry['rows']}")
        parts[entry["table"]].append((file, entry))
    for table in parts:
        parts[table].sort(key=lambda fe: fe[1]["part"])
    n_sessions, n_requests = int(counts["sessions"]), int(counts["requests"])
    sessions = _read_sessions([f for f, _ in parts["sessions"]], schemas["sessions"])
    _check_sessions(path, sessions, n_sessions, n_requests)
    if int(manifest["split"]["train_sessions"]) > n_sessions:
        raise DatasetError(f"{path}: split has more train sessions than the dataset")
    part_rows = []
    row = 0
    for file, entry in parts["requests"]:
        part_rows.append((file, row, row + int(entry["rows"])))
        row += int(entry["rows"])
    if row != n_requests:
        raise DatasetError(f"{path}: request files hold {row} rows, the manifest counts {n_requests}")
    ds = Dataset(path, manifest, split, reward, behaviour, sessions, part_rows)
    if validate == "full":
        _check_requests(ds)
    return ds


def _check_sessions(path: Path, s: dict[str, np.ndarray], n_sessions: int, n_requests: int) -> None:
    n = len(s["session_id"])
    if n != n_sessions:
        raise DatasetError(f"{path}: {n} session rows, the manifest counts {n_sessions}")
    if not np.array_equal(s["session_id"], np.arange(n)):
        raise DatasetError(f"{path}: session ids are not 0 .. {n - 1} in order")
    lengths = s["n_requests"].astype(np.int64)
    if lengths.min() < 1:
        raise DatasetError(f"{path}: a session has no requests (session {int(np.argmin(lengths))})")
    if int(lengths.sum()) != n_requests:
        raise DatasetError(f"{path}: sessions hold {int(lengths.sum())} requests, the manifest counts {n_requests}")
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if not np.array_equal(s["first_row"], first):
        raise DatasetError(f"{path}: sessions' first_row does not match their lengths")
    both = s["terminated"] == s["truncated"]
    if both.any():
        i = int(np.flatnonzero(both)[0])
        raise DatasetError(f"{path}: session {i} must end either terminated or truncated (exactly one)")
    if not np.all(np.isfinite(s["final_observation"])):
        raise DatasetError(f"{path}: non-finite final observations")


def _check_requests(ds: Dataset) -> None:
    """Per-row checks of the split: layout, end flags, finite values, bounds, fusion weights."""
    path = ds.path
    lengths = ds.session_lengths
    expect_sid = np.repeat(ds.session_ids, lengths)
    if not np.array_equal(ds.column("session_id", cache=False), expect_sid):
        raise DatasetError(f"{path}: request rows are not grouped by session as the session table says")
    if not np.array_equal(ds.column("step"), _ranges(lengths)):
        raise DatasetError(f"{path}: request steps are not 0 .. n_requests - 1 within each session")
    if not np.array_equal(ds.column("user_id", cache=False), np.repeat(ds.session_column("user_id"), lengths)):
        raise DatasetError(f"{path}: request user ids differ from their session's user id")
    term, trunc = ds.column("terminated"), ds.column("truncated")
    is_end = np.zeros(len(term), bool)
    is_end[np.cumsum(lengths) - 1] = True
    bad_end = is_end & (term == trunc)
    if bad_end.any():
        i = int(np.flatnonzero(bad_end)[0])
        raise DatasetError(f"{path}: the last request of a session (row {i}) must be exactly one of terminated / "
                           "truncated")
    early = ~is_end & (term | trunc)
    if early.any():
        raise DatasetError(f"{path}: row {int(np.flatnonzero(early)[0])} is terminated or truncated before its "
                           "session's last request")
    ends = is_end
    if not (np.array_equal(term[ends], ds.session_column("terminated"))
            and np.array_equal(trunc[ends], ds.session_column("truncated"))):
        raise DatasetError(f"{path}: end flags of the request and session tables disagree")
    for name in ("observation", "action", "request_feedback"):  # read, checked and kept for transitions()
        ds.column(name)
    for name in ("behaviour_log_prob", "reward", "video_play_time_s"):  # read and checked only
        ds.column(name, cache=False)
    # fusion weights are written as action_to_alpha(action): check it exactly on an evenly spaced sample of rows
    sample = np.linspace(0, ds.n_transitions - 1, min(ds.n_transitions, _FUSION_CHECK_ROWS)).astype(np.int64)
    if not np.array_equal(ds._read_rows("fusion_weights")[sample], action_to_alpha(ds.actions[sample])):
        raise DatasetError(f"{path}: fusion_weights differ from action_to_alpha(action)")


def dataset_manifest(path: str | Path) -> dict[str, Any]:
    """The checked manifest of a dataset directory (no data read)."""
    return read_manifest(Path(path))
