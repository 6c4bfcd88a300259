"""On-disk format of logged datasets: Parquet schema, feedback packing, atomic writers, manifest.

A dataset is a directory::

    DIR/manifest.json                   schema version, sim config, seeds, policy specs, counts,
                                        code version, and the SHA-256 of every data file
    DIR/requests/part-00000.parquet     one row per request (a transition), sessions contiguous
    DIR/sessions/part-00000.parquet     one row per session, with its final next observation

Part ``k`` of both tables covers the same sessions (a contiguous range of session ids);
within a part, rows are ordered by session id, then by step. Session ids are assigned in
collection (time) order. The columns are :data:`REQUEST_COLUMNS` and
:data:`SESSION_COLUMNS` (``datasets/README.md`` is the human-readable copy).

Minari's rule of N+1 observations for N actions holds per session: the N ``observation``
values of its request rows plus the ``final_observation`` of its session row.

Writes are atomic: everything goes to ``DIR.partial-<pid>`` and is renamed to ``DIR`` only
after the manifest, written last, is on disk. A directory without ``manifest.json`` (or
whose manifest is not marked complete) never loads.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .files import atomic_write_bytes
from .tasks import N_TASKS, TASK_NAMES

#: Version of the on-disk layout; loaders refuse any other.
SCHEMA_VERSION = 1
#: ``manifest["format"]`` of every dataset written by this module.
FORMAT_NAME = "batchrl-mtf-logged-sessions"
MANIFEST_NAME = "manifest.json"
REQUESTS_DIR = "requests"
SESSIONS_DIR = "sessions"
#: Bit of ``video_flags`` set when the user watched the video (reached it before exiting).
WATCHED_BIT = 15
#: Tasks 1..11 (finish .. exit) are 0/1 per video; task k sits in bit k - 1 of ``video_flags``.
FLAG_TASKS = tuple(range(1, N_TASKS))

#: Request table: column -> description (types in :func:`request_schema`).
REQUEST_COLUMNS: dict[str, str] = {
    "session_id": "int64; session index in collection (time) order, 0 .. n_sessions - 1",
    "user_id": "int32; population user id (a fresh session's initial state is a function of it)",
    "day": "int16; collection day, session_id * n_days // n_sessions",
    "time_order": "int64; global order in which the requests were served (all parallel sessions step together)",
    "step": "int16; request index within the session, 0 .. n_requests - 1",
    "observation": "fixed_size_list<float32>[obs_dim]; observation before the request",
    "action": "fixed_size_list<float32>[12]; the logged action in [-1, 1] (after clipping)",
    "fusion_weights": "fixed_size_list<float32>[12]; alpha = mtf_env.fusion.action_to_alpha(action)",
    "behaviour_log_prob": "float32; log-density (nats) of the behaviour policy's Gaussian draw (before clipping)",
    "behaviour_group": "int8; index into manifest['collection']['groups'] (mixed: 0 random, 1 action-noise)",
    "reward": "float32; reward under the collection config's reward weights (informational)",
    "terminated": "bool; the user exited after this request (session end, no bootstrap)",
    "truncated": "bool; the session was cut off at max_requests after this request",
    "request_feedback": "fixed_size_list<float32>[12]; page sums of the per-video feedback (task order)",
    "video_ids": "fixed_size_list<int32>[page_size]; shown videos, best ranked first",
    "video_play_time_s": "fixed_size_list<float32>[page_size]; play time in seconds (0 if not watched)",
    "video_flags": ("fixed_size_list<uint16>[page_size]; bit k-1 = feedback of task k (1 finish .. 11 exit), "
                    "bit 15 = watched"),
}
#: Session table: column -> description (types in :func:`session_schema`).
SESSION_COLUMNS: dict[str, str] = {
    "session_id": "int64; as in the request table",
    "user_id": "int32; the session's user",
    "day": "int16; collection day",
    "behaviour_group": "int8; behaviour group of the session's user",
    "n_requests": "int16; number of requests (transitions) in the session",
    "first_row": "int64; global row index of the session's first request",
    "terminated": "bool; the session ended by an exit",
    "truncated": "bool; the session ended at the request limit",
    "final_observation": "fixed_size_list<float32>[obs_dim]; observation after the last request (s_T)",
}


class DatasetError(ValueError):
    """A logged dataset is missing, incomplete, corrupted or of another format; the message names the problem."""


def request_schema(obs_dim: int, page_size: int) -> pa.Schema:
    """Arrow schema of the request table."""
    f32 = pa.float32()
    fields = [
        ("session_id", pa.int64()), ("user_id", pa.int32()), ("day", pa.int16()), ("time_order", pa.int64()),
        ("step", pa.int16()), ("observation", pa.list_(f32, obs_dim)), ("action", pa.list_(f32, N_TASKS)),
        ("fusion_weights", pa.list_(f32, N_TASKS)), ("behaviour_log_prob", f32), ("behaviour_group", pa.int8()),
        ("reward", f32), ("terminated", pa.bool_()), ("truncated", pa.bool_()),
        ("request_feedback", pa.list_(f32, N_TASKS)), ("video_ids", pa.list_(pa.int32(), page_size)),
        ("video_play_time_s", pa.list_(f32, page_size)), ("video_flags", pa.list_(pa.uint16(), page_size)),
    ]
    assert [n for n, _ in fields] == list(REQUEST_COLUMNS)
    return pa.schema([pa.field(n, t, nullable=False) for n, t in fields])


def session_schema(obs_dim: int) -> pa.Schema:
    """Arrow schema of the session table."""
    fields = [
        ("session_id", pa.int64()), ("user_id", pa.int32()), ("day", pa.int16()), ("behaviour_group", pa.int8()),
        ("n_requests", pa.int16()), ("first_row", pa.int64()), ("terminated", pa.bool_()),
        ("truncated", pa.bool_()), ("final_observation", pa.list_(pa.float32(), obs_dim)),
    ]
    assert [n for n, _ in fields] == list(SESSION_COLUMNS)
    return pa.schema([pa.field(n, t, nullable=False) for n, t in fields])


# ---------------------------------------------------------------------------- feedback packing
_FLAG_WEIGHTS = (1 << np.arange(len(FLAG_TASKS))).astype(np.uint16)


@nb.njit(cache=True, nogil=True)
def _pack_flags(feedback, watched, flags):
    """flags[b, j] = sum_k (feedback[b, j, k] == 1) << (k - 1) for k = 1..11, | watched << 15.

    Returns False if a binary feedback value is neither 0 nor 1.
    """
    ok = True
    for b in range(feedback.shape[0]):
        for j in range(feedback.shape[1]):
            f = np.int64(watched[b, j]) << WATCHED_BIT
            for k in range(1, feedback.shape[2]):
                v = feedback[b, j, k]
                f |= np.int64(v == 1.0) << (k - 1)
                ok &= (v == 0.0) | (v == 1.0)
            flags[b, j] = f
    return ok


def pack_video_feedback(feedback: np.ndarray, watched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-video feedback (B, L, 12) float32 and watched (B, L) bool -> play time (B, L) float32, flags (B, L) uint16.

    Raises ValueError if a binary task (finish .. exit) holds anything but 0 or 1, since
    it would not survive the packing.
    """
    feedback = np.ascontiguousarray(feedback, dtype=np.float32)
    flags = np.empty(feedback.shape[:2], np.uint16)
    if not _pack_flags(feedback, np.ascontiguousarray(watched, dtype=np.bool_), flags):
        raise ValueError("per-video feedback of tasks finish .. exit must be 0 or 1 to be packed into flags")
    return np.ascontiguousarray(feedback[:, :, 0]), flags


def unpack_video_feedback(play_time_s: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_video_feedback`: -> feedback (B, L, 12) float32, watched (B, L) bool."""
    feedback = np.empty(play_time_s.shape + (N_TASKS,), np.float32)
    feedback[..., 0] = play_time_s
    feedback[..., 1:] = ((flags[..., None] & _FLAG_WEIGHTS) != 0)
    watched = (flags >> WATCHED_BIT).astype(bool)
    return feedback, watched


# ---------------------------------------------------------------------------- arrow conversion
def fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    """(n, d) numpy array -> Arrow fixed-size-list array (zero-copy for contiguous input)."""
    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def to_record_batch(columns: dict[str, np.ndarray], schema: pa.Schema) -> pa.RecordBatch:
    """Numpy columns (in schema order, 2-D for list columns) -> a RecordBatch with ``schema``."""
    arrays = []
    for field in schema:
        values = columns[field.name]
        if pa.types.is_fixed_size_list(field.type):
            arr = fixed_list(values.astype(field.type.value_type.to_pandas_dtype(), copy=False))
        else:
            arr = pa.array(values.astype(field.type.to_pandas_dtype(), copy=False))
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def numpy_dtype(typ: pa.DataType) -> tuple[np.dtype, tuple[int, ...]]:
    """(numpy dtype, trailing shape) of an Arrow column type (fixed-size lists become a trailing axis)."""
    if pa.types.is_fixed_size_list(typ):
        return np.dtype(typ.value_type.to_pandas_dtype()), (typ.list_size,)
    return np.dtype(typ.to_pandas_dtype()), ()


def column_to_numpy(column: pa.ChunkedArray | pa.Array, out: np.ndarray | None = None) -> np.ndarray:
    """An Arrow column (fixed-size lists become (n, d)) as a numpy array, copied into ``out`` if given."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    dtype, tail = numpy_dtype(column.type)
    n = sum(len(c) for c in chunks)
    if out is None:
        out = np.empty((n,) + tail, dtype=dtype)
    elif out.shape != (n,) + tail:
        raise ValueError(f"output buffer has shape {out.shape}, the column needs {(n,) + tail}")
    i = 0
    for c in chunks:
        if c.null_count:
            raise DatasetError(f"column of type {column.type} holds {c.null_count} null values")
        values = c.flatten() if tail else c
        out[i:i + len(c)] = values.to_numpy(zero_copy_only=False).reshape((len(c),) + tail)
        i += len(c)
    return out


# ---------------------------------------------------------------------------- checksums & versions
def sha256_file(path: Path, block: int = 1 << 23) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


class _HashingSink:
    """A write-only binary file that hashes (SHA-256) and counts what passes through it."""

    def __init__(self, path: Path):
        self._fh = open(path, "wb")
        self._hash = hashlib.sha256()
        self.bytes = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self._hash.update(view)
        self._fh.write(view)
        self.bytes += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        self._fh.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self.closed = True

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def code_version() -> dict[str, Any]:
    """Package version and, when run from a git checkout, the commit and whether the tree was dirty."""
    try:
        from importlib.metadata import version

        pkg = version("batchrl-mtf-bench")
    except Exception:  # not installed (e.g. run from a bare checkout)
        pkg = None
    root = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"package": "batchrl-mtf-bench", "version": pkg, "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
            info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ---------------------------------------------------------------------------- writer
#: Parquet options: floats are not dictionary-encoded (they rarely repeat and the attempt is
#: slow); statistics only for the ordering columns, so readers can skip row groups by session.
PARQUET_OPTIONS = dict(use_dictionary=["session_id", "user_id", "day", "step", "behaviour_group"],
                       write_statistics=["session_id", "day", "time_order"])


class DatasetWriter:
    """Streams waves of sessions into part files of a new dataset directory, atomically.

    Usage: ``with DatasetWriter(out, obs_dim, page_size, ...) as w: w.write(requests, sessions);
    w.finish(manifest)``. Writes happen in a background thread (Parquet encoding and
    compression release the GIL, so they overlap with the simulator); at most ``max_pending``
    waves wait in memory. Leaving the block without ``finish`` (an error, Ctrl-C) deletes the
    partial directory, so nothing incomplete is ever left under ``out``.
    """

    def __init__(self, out: Path, obs_dim: int, page_size: int, *, rows_per_part: int = 2_000_000,
                 compression: str = "zstd", compression_level: int | None = 1, overwrite: bool = False,
                 max_pending: int = 2):
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise FileExistsError(f"{self.out} already exists (pass overwrite=True / --overwrite to replace it)")
        self.tmp = self.out.with_name(f"{self.out.name}.partial-{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / REQUESTS_DIR).mkdir(parents=True)
        (self.tmp / SESSIONS_DIR).mkdir(parents=True)
        self.overwrite = overwrite
        self.request_schema = request_schema(obs_dim, page_size)
        self.session_schema = session_schema(obs_dim)
        self.rows_per_part = int(rows_per_part)
        self.options = dict(PARQUET_OPTIONS, compression=compression, compression_level=compression_level)
        self.files: list[dict[str, Any]] = []
        self._part = -1
        self._open: dict[str, tuple[pq.ParquetWriter, _HashingSink, dict[str, Any]]] = {}
        self._part_rows = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        #: wall seconds the writer thread spent encoding, compressing, hashing and writing
        self.write_seconds = 0.0
        #: CPU seconds of the writer thread (less than write_seconds when it waits for a core)
        self.write_cpu_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="dataset-writer", daemon=True)
        self._thread.start()
        self._finished = False

    # -- background thread
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain after a failure
            try:
                t0, c0 = time.perf_counter(), time.thread_time()
                self._write_now(*item)
                self.write_seconds += time.perf_counter() - t0
                self.write_cpu_seconds += time.thread_time() - c0
            except BaseException as exc:  # reported to the main thread on its next call
                self._error = exc

    def _open_part(self) -> None:
        self._part += 1
        for table, schema in (("requests", self.request_schema), ("sessions", self.session_schema)):
            rel = f"{REQUESTS_DIR if table == 'requests' else SESSIONS_DIR}/part-{self._part:05d}.parquet"
            sink = _HashingSink(self.tmp / rel)
            writer = pq.ParquetWriter(sink, schema, **self.options)
            entry = {"path": rel, "table": table, "part": self._part, "rows": 0, "first_session": None,
                     "end_session": None}
            self._open[table] = (writer, sink, entry)
        self._part_rows = 0

    def _close_part(self) -> None:
        for writer, sink, entry in self._open.values():
            writer.close()
            sink.close()
            entry["bytes"] = sink.bytes
            entry["sha256"] = sink.hexdigest()
            self.files.append(entry)
        self._open = {}

    def _write_now(self, requests: dict[str, np.ndarray], sessions: dict[str, np.ndarray]) -> None:
        if not self._open:
            self._open_part()
        for table, cols, schema in (("requests", requests, self.request_schema),
                                    ("sessions", sessions, self.session_schema)):
            writer, _, entry = self._open[table]
            batch = to_record_batch(cols, schema)
            writer.write_batch(batch, row_group_size=max(len(batch), 1))
            entry["rows"] += len(batch)
            sid = sessions["session_id"]
            if entry["first_session"] is None:
                entry["first_session"] = int(sid[0])
            entry["end_session"] = int(sid[-1]) + 1
        self._part_rows += len(requests["session_id"])
        if self._part_rows >= self.rows_per_part:
            self._close_part()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing the dataset failed: {self._error!r}") from self._error

    # -- main thread
    def write(self, requests: dict[str, np.ndarray], sessions: dict[str, np.ndarray]) -> None:
        """Queue one wave: request columns (rows session-major) and session columns (same sessions)."""
        self._check()
        if len(sessions["session_id"]) == 0:
            return
        self._queue.put((requests, sessions))

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Flush, write ``manifest.json`` (with the file list) last, and rename into place."""
        self._queue.put(None)
        self._thread.join()
        self._check()
        if self._open:
            self._close_part()
        manifest = dict(manifest, files=self.files, complete=True)
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        with open(self.tmp / MANIFEST_NAME, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        old = None
        if self.out.exists():
            old = self.out.with_name(f"{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._finished = True
        return self.out

    def abort(self) -> None:
        """Stop the writer thread and delete the partial directory."""
        if self._thread.is_alive():
            self._error = self._error or RuntimeError("aborted")
            self._queue.put(None)
            self._thread.join()
        for writer, sink, _ in self._open.values():
            try:
                writer.close()
            finally:
                sink.close()
        self._open = {}
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finished:
            self.abort()


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and check ``DIR/manifest.json`` (format, schema version, completeness); DatasetError otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"dataset {path} does not exist (or is not a directory)")
    if ".partial-" in path.name:
        raise DatasetError(f"{path} is a partial (interrupted or running) collection, not a dataset")
    mpath = path / MANIFEST_NAME
    if not mpath.is_file():
        raise DatasetError(f"{path} has no {MANIFEST_NAME}: not a dataset, or an interrupted collection")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{mpath} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{mpath} is not a {FORMAT_NAME} manifest")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(f"{path}: unknown schema version {version!r}; this code reads schema version "
                           f"{SCHEMA_VERSION}")
    if manifest.get("complete") is not True:
        raise DatasetError(f"{path}: the manifest is not marked complete")
    for key in ("sim_config", "collection", "counts", "files", "obs_dim", "page_size", "task_names", "split"):
        if key not in manifest:
            raise DatasetError(f"{mpath} lacks the field {key!r}")
    if list(manifest["task_names"]) != list(TASK_NAMES):
        raise DatasetError(f"{path}: task order {manifest['task_names']} differs from this code's {list(TASK_NAMES)}")
    return manifest
