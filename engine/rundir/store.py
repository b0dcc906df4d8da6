"""The run directory: the contract between the engine and the app.

Layout of ``runs/NAME/`` (this class owns every path in it)::

    config.json          the RunConfig (JSON)
    status.json          phase, step, state (idle/running/error/done), last error
    dataset.npz          static per-sample arrays: given, true labels, keys, class names (np.savez: stored,
                         not compressed, so readers memory-map each array: engine.rundir.npzmap), and
                         the samples' digests (engine.rundir.digest: same samples without reading them)
    metrics.jsonl        one JSON object of scalar metrics per step
    snapshots/step_NNNNN/FIELD.npy  per-sample arrays of that step, one uncompressed .npy per field (format
                         and policy: engine.rundir.snapshot); runs made before it: snapshots/step_NNNNN.npz
    checkpoint.pt        models, optimisers, weight net, RNG states, labels
    summary.json         written when the run is done
    teacher_features.npy features of the frozen teacher (after its phase), float16, for the embeddings
    teacher_outputs.npz  the teacher graph's features (float32), stage 0's seed classes, sample keys
    backbone_features.npz  a frozen pretrained teacher's backbone features, train and test, with the sample
                         keys (computed once per run; engine.steps.networks)
    skipped.txt          input files the dataset left out
    runtime.json         what determines the numbers besides the config: threads, device, input digests
    error.log            the last failed step's details
    .lock                the trainer's lock (engine.rundir.lock): pid, host, since
    reviews.sqlite       reviewers' decisions (engine.rundir.review)
    audit.sqlite         a random audit's decisions: never training labels (engine.rundir.review.AuditStore)
    embeddings/          cached 2-D layouts (engine.readers.embed)

This module imports neither torch nor faiss: the app reads runs cheaply.

Every file is written atomically (temp file in the same folder + rename), so a
reader never sees half a file and a killed writer leaves the last good one.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..method.config import RunConfig
from ..errors import READ_ERRORS, UserError, damaged, reading, writing
from . import lock as run_lock
from .fields import SUMMARY_NUMBERS


def save_as(fh, array: np.ndarray, dtype, rows: int = 65_536) -> None:
    """``np.save(fh, array.astype(dtype))`` for an ``(N, ...)`` array, the same bytes, converting ``rows`` rows
    at a time: no whole converted copy beside the array (40,000 x 1,024 features: 82 MB as float16)."""
    array = np.asarray(array)
    np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                              "fortran_order": False, "shape": array.shape})
    for start in range(0, len(array), rows):
        fh.write(np.ascontiguousarray(array[start:start + rows], dtype=dtype).tobytes())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all; a full disk or read-only folder is one UserError."""
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextmanager
def atomic_path(path: Path):
    """Yield a temp path beside ``path``; rename it over ``path`` on success."""
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            yield Path(tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


UPLOADS = "uploads"  # <runs root>/uploads/NAME-<hash>/: unpacked zips (app.byod)
DATASET_ADVICE = ("it cannot be rebuilt from the run's other files: restore it from a backup, or create the run "
                  "again (python -m engine run ... --force)")


class RunLayout:
    """The file names of one run directory: the only place that knows them."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # ------------------------------------------------------------ layout
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def snapshot_dir(self) -> Path:
        return self.path / "snapshots"

    def snapshot_path(self, step: int) -> Path:
        """Step ``step``'s snapshot: its folder of ``.npy`` files, or the ``.npz`` of a run made before them."""
        folder = self.snapshot_dir / f"step_{step:05d}"
        old = folder.with_suffix(".npz")
        return old if old.is_file() and not folder.is_dir() else folder

    def snapshot_field_path(self, step: int, name: str) -> Path:
        """One field's file in a step's snapshot folder."""
        return self.snapshot_dir / f"step_{step:05d}" / f"{name}.npy"

    def snapshot_fields(self, step: int) -> list[str]:
        """Names of the fields step ``step``'s snapshot folder holds (empty for an ``.npz`` snapshot)."""
        folder = self.snapshot_dir / f"step_{step:05d}"
        return sorted(p.stem for p in folder.glob("*.npy")) if folder.is_dir() else []

    def _snapshot_entries(self) -> dict[int, Path]:
        """Step -> its snapshot (folder or old ``.npz``)."""
        out = {}
        for p in self.snapshot_dir.glob("step_*"):
            stem = p.name[len("step_"):].removesuffix(".npz")
            if stem.isdigit() and (p.is_dir() or p.suffix == ".npz"):
                out[int(stem)] = p
        return out

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def dataset_path(self) -> Path:
        return self.path / "dataset.npz"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def teacher_features_path(self) -> Path:
        return self.path / "teacher_features.npy"

    @property
    def teacher_outputs_path(self) -> Path:
        return self.path / "teacher_outputs.npz"

    @property
    def backbone_features_path(self) -> Path:
        return self.path / "backbone_features.npz"

    @property
    def skipped_path(self) -> Path:
        return self.path / "skipped.txt"

    @property
    def reviews_path(self) -> Path:
        return self.path / "reviews.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.path / "audit.sqlite"

    @property
    def embeddings_dir(self) -> Path:
        return self.path / "embeddings"

    @property
    def error_log_path(self) -> Path:
        return self.path / "error.log"

    @property
    def runtime_path(self) -> Path:
        return self.path / "runtime.json"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    @property
    def uploads_dir_name(self) -> str:
        return UPLOADS

    def old_reviews_path(self, n: int) -> Path:
        return self.path / f"reviews-old-{n}.sqlite"

    def exists(self) -> bool:
        return self.config_path.is_file()



#: RunStore.truth_known's answers: (dataset.npz path, mtime_ns, size) -> whether any truth is known.
_TRUTH_KNOWN: dict[tuple[str, int, int], bool] = {}


class _RunFacts(RunLayout):
    """The files a run writes once: its samples, the inputs it skipped, the teacher's outputs."""

    # ------------------------------------------------------------ static arrays
    def write_dataset(self, **arrays) -> None:
        """``dataset.npz`` with ``np.savez``: members stored uncompressed, so readers map them (not
        ``savez_compressed``: that would make every page read a million keys whole).

        With ``keys`` and ``given``, the samples' digests are computed here and stored beside them
        (:mod:`engine.rundir.digest`), with the CRC-32 of the arrays they describe; digests passed in (arrays
        read back and written again) are dropped and made again."""
        from .digest import DIGESTS, RECORD, append_digests

        arrays = {name: array for name, array in arrays.items() if name not in (*DIGESTS, RECORD)}
        with atomic_path(self.dataset_path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            if "keys" in arrays and "given" in arrays:
                append_digests(tmp, arrays["keys"], arrays["given"])

    def dataset_arrays(self) -> dict[str, np.ndarray]:
        """``dataset.npz``: ``given``, ``keys``, ``true`` (same length), class names; one line naming it if damaged.

        The arrays are memory-mapped and read-only (:mod:`engine.rundir.npzmap`: ``np.savez`` stores its
        members uncompressed): ``keys[rows]`` reads those rows' pages, not a million keys. A page that needs
        a few rows indexes them; ``np.array(...)`` makes a writable copy."""
        from .npzmap import load
        from .snapshot import DATASET_STEP, watched

        with reading(self.dataset_path, DATASET_ADVICE):
            arrays = load(self.dataset_path)
            missing = [name for name in ("given", "keys", "true") if name not in arrays]
            if missing:
                raise KeyError(f"no {', '.join(missing)} array")
            if not len(arrays["given"]) == len(arrays["keys"]) == len(arrays["true"]):
                raise ValueError("given, keys and true differ in length")
        return watched(arrays, DATASET_STEP)

    def dataset_digest(self, name: str) -> str | None:
        """One of ``dataset.npz``'s stored digests (``samples_digest``, ``keys_digest``, ``given_digest``:
        :mod:`engine.rundir.digest`), or None for a run made before they were stored, or a file whose keys or
        given labels are no longer those the digests describe (the caller then reads the arrays, as before)."""
        from .digest import stored_digest

        arrays = self.dataset_arrays()
        with reading(self.dataset_path, DATASET_ADVICE):
            return stored_digest(self.dataset_path, arrays, name)

    def truth_known(self) -> bool:
        """Whether any training sample's true label is known (``true >= 0`` somewhere): every ``true`` read
        once per version of ``dataset.npz`` in this process (a page that asks on every redraw reads none)."""
        with reading(self.dataset_path, DATASET_ADVICE):
            info = self.dataset_path.stat()
        version = (str(self.dataset_path.resolve()), info.st_mtime_ns, info.st_size)
        if version not in _TRUTH_KNOWN:
            if len(_TRUTH_KNOWN) >= 64:
                _TRUTH_KNOWN.pop(next(iter(_TRUTH_KNOWN)))
            _TRUTH_KNOWN[version] = bool((self.dataset_arrays()["true"] >= 0).any())
        return _TRUTH_KNOWN[version]

    def test_labels(self) -> str | None:
        """What the run's test accuracies are measured against: ``"truth"``, ``"given"`` (a label file's
        labels of the held-out images, no truth column: agreement, not accuracy) or None (no test set)."""
        value = str(self.dataset_arrays().get("test_labels", "truth"))
        return None if value == "none" else value

    def class_names(self) -> tuple[str, ...]:
        """Class names of the run's dataset (stored in dataset.npz; runs made
        before that load their dataset once to name them)."""
        arrays = self.dataset_arrays()
        if "class_names" in arrays:
            return tuple(str(c) for c in arrays["class_names"])
        return _loaded_class_names(str(self.path), self.config_path.stat().st_mtime_ns)

    def write_skipped(self, skipped: tuple[str, ...] | list[str]) -> None:
        """The input files the dataset left out (corrupt, not an image), one per line."""
        atomic_write_text(self.skipped_path, "".join(f"{line}\n" for line in skipped))

    def skipped(self) -> list[str]:
        """What :meth:`write_skipped` recorded (empty for runs made before it existed)."""
        try:
            return [line for line in self.skipped_path.read_text().splitlines() if line]
        except OSError:
            return []

    def write_teacher_features(self, features: np.ndarray) -> None:
        with atomic_path(self.teacher_features_path) as tmp:
            with open(tmp, "wb") as fh:
                save_as(fh, features, np.float16)

    def write_teacher_outputs(self, features: np.ndarray, pred: np.ndarray, keys: np.ndarray) -> None:
        """The teacher graph's features (float32), stage 0's seed classes and the sample keys:
        ``--teacher-features`` takes this file and reproduces the run's stage 0."""
        with atomic_path(self.teacher_outputs_path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, features=features, pred=pred, keys=keys)

    def write_backbone_features(self, train: np.ndarray, test: np.ndarray, train_keys: np.ndarray,
                                test_keys: np.ndarray) -> None:
        """A frozen teacher's backbone features, train ``(N, D)`` and test ``(M, D)`` float32, with the keys
        of their samples (a resume reuses them only for the very same samples)."""
        with atomic_path(self.backbone_features_path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, train=np.asarray(train, np.float32), test=np.asarray(test, np.float32),
                         train_keys=train_keys.astype(str), test_keys=test_keys.astype(str))

    def backbone_features(self) -> dict[str, np.ndarray] | None:
        """What :meth:`write_backbone_features` wrote (train, test, train_keys, test_keys), or None when absent
        or unreadable (then they are computed again)."""
        try:
            with np.load(self.backbone_features_path, allow_pickle=False) as data:
                return {k: data[k] for k in ("train", "test", "train_keys", "test_keys")}
        except READ_ERRORS:
            return None

    def graph_features(self) -> np.ndarray | None:
        """Features of the teacher's graph (the teacher's, or those given), once the teacher's phase ended."""
        if self.teacher_outputs_path.is_file():
            with np.load(self.teacher_outputs_path, allow_pickle=False) as data:
                return data["features"].astype(np.float32)
        return self.teacher_features()

    def teacher_features(self, mapped: bool = False) -> np.ndarray | None:
        """The frozen teacher's features, float32; ``mapped``: as stored (float16), memory-mapped, so that a
        reader of a few rows reads only those."""
        p = self.teacher_features_path
        if not p.is_file():
            return None
        if mapped:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        return np.load(p, allow_pickle=False).astype(np.float32)



class _StepFiles(RunLayout):
    """The files every step adds to: snapshots and the metrics lines."""

    # ------------------------------------------------------------ snapshots + metrics
    def write_step(self, step: int, arrays: dict[str, np.ndarray], metrics: dict) -> None:
        """Write a step's snapshot, then append its metrics line (in that order,
        so a metrics line always has its snapshot). The metrics line gets the
        snapshot's size on disk (``snapshot_bytes``)."""
        size = self.write_snapshot(step, arrays)
        lines = [m for m in self.metrics() if m.get("step", -1) < step]
        lines.append({**metrics, "snapshot_bytes": size})
        atomic_write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in lines))

    def write_snapshot(self, step: int, arrays: dict[str, np.ndarray]) -> int:
        """Step ``step``'s snapshot as a folder of uncompressed ``.npy`` files, one per field (readers
        memory-map them: engine.rundir.snapshot), whole or not at all: written in a temporary folder, then
        renamed into place (replacing that step's older snapshot, either format). Returns its bytes on disk."""
        import shutil

        final = self.snapshot_dir / f"step_{step:05d}"
        with writing(final):
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.snapshot_dir, prefix=f".{final.name}.", suffix=".tmp"))
            try:
                size = 0
                for name, array in arrays.items():
                    with open(tmp / f"{name}.npy", "wb") as fh:
                        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
                        fh.flush()
                        os.fsync(fh.fileno())
                        size += fh.tell()
                old = None
                if final.is_dir():  # a step written again: set the old one aside, then drop it
                    old = Path(tempfile.mkdtemp(dir=self.snapshot_dir, prefix=f".{final.name}.old.", suffix=".tmp"))
                    os.replace(final, old / final.name)
                os.replace(tmp, final)
                final.with_suffix(".npz").unlink(missing_ok=True)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return size

    def snapshot_bytes(self, step: int) -> int:
        """Bytes step ``step``'s snapshot takes on disk (0 when it has none)."""
        path = self.snapshot_path(step)
        if path.is_dir():
            return sum(p.stat().st_size for p in path.glob("*.npy"))
        return path.stat().st_size if path.is_file() else 0

    def truncate_after(self, step: int) -> None:
        """Drop snapshots and metrics past ``step`` (used when resuming)."""
        import shutil

        for number, p in self._snapshot_entries().items():
            if number > step:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        lines = [m for m in self.metrics() if m.get("step", -1) <= step]
        atomic_write_text(self.metrics_path, "".join(json.dumps(m) + "\n" for m in lines))

    def metrics(self) -> list[dict]:
        """Every readable metrics line, in order (damaged lines are left out: see :meth:`damaged_metrics`)."""
        return self._metrics()[0]

    def damaged_metrics(self) -> list[int]:
        """Line numbers (1-based) of ``metrics.jsonl`` that are not a JSON object with a step."""
        return self._metrics()[1]

    def _metrics(self) -> tuple[list[dict], list[int]]:
        p = self.metrics_path
        if not p.is_file():
            return [], []
        out, damaged = [], []
        try:
            text = p.read_text(errors="replace")
        except OSError:
            return [], []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("step"), int):
                out.append(value)
            else:
                damaged.append(number)
        return out, damaged

    def steps(self) -> list[int]:
        return sorted(self._snapshot_entries())

    def snapshot(self, step: int) -> dict[str, np.ndarray]:
        """Every array of step ``step`` (see :func:`engine.rundir.snapshot.read` to read only some);
        one line naming the file and an earlier step if it is damaged."""
        from .snapshot import read

        earlier = [s for s in self.steps() if s < step]
        advice = (f"export an earlier step (--step {earlier[-1]})" if earlier else
                  "no earlier step exists: restore it from a backup, or create the run again")
        with reading(self.snapshot_path(step), advice):
            return read(self, step)



class RunStore(_RunFacts, _StepFiles):
    """Read and write one run directory. Cheap to construct; holds no state
    beyond the path, so any number of readers can share a directory."""

    # ------------------------------------------------------------ create
    def create(self, config: RunConfig, force: bool = False) -> None:
        """Make the directory for a new run; refuse to overwrite one unless ``force``."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"output {str(self.path)!r} exists and is not a directory")
        if self.exists() and not force:
            raise UserError(
                f"output directory {str(self.path)!r} already holds a run; "
                "choose another --out, resume it, or pass --force to replace it"
            )
        if self.path.exists() and force:
            self._clear()
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_temporary_files()
        self.snapshot_dir.mkdir(exist_ok=True)
        atomic_write_text(self.config_path, config.to_json())

    def _clear(self) -> None:
        import shutil

        for path in (self.config_path, self.status_path, self.dataset_path, self.metrics_path, self.checkpoint_path,
                     self.summary_path, self.teacher_features_path, self.teacher_outputs_path, self.skipped_path,
                     self.backbone_features_path, self.error_log_path, self.runtime_path):
            path.unlink(missing_ok=True)
        for sub in (self.snapshot_dir, self.embeddings_dir):
            shutil.rmtree(sub, ignore_errors=True)
        self.remove_temporary_files()

    def set_reviews_aside(self) -> Path | None:
        """Move ``reviews.sqlite`` (and its WAL files) to ``reviews-old-N.sqlite``,
        so a replaced run never trains on another run's decisions; returns the new path."""
        return self._set_aside(self.reviews_path, self.old_reviews_path)

    def set_audit_aside(self) -> Path | None:
        """Move ``audit.sqlite`` (and its WAL files) to ``audit-old-N.sqlite`` (a run made again from other
        samples: the audit named other samples' classes); returns the new path."""
        return self._set_aside(self.audit_path, lambda n: self.path / f"audit-old-{n}.sqlite")

    @staticmethod
    def _set_aside(path: Path, old) -> Path | None:
        if not path.exists():
            return None
        n = 1
        while old(n).exists():
            n += 1
        target = old(n)
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(path) + suffix)
            if source.exists():
                os.replace(source, Path(str(target) + suffix))
        return target

    def remove_temporary_files(self) -> list[Path]:
        """Delete the ``.NAME.*.tmp`` files a killed writer left behind (the real files are whole)."""
        import shutil

        stray = [p for folder in (self.path, self.snapshot_dir, self.embeddings_dir) if folder.is_dir()
                 for p in folder.glob(".*.tmp")]
        for p in stray:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return stray

    # ------------------------------------------------------------ config / status
    def config(self) -> RunConfig:
        if not self.exists():
            raise UserError(f"{str(self.path)!r} is not a run directory (no config.json)")
        try:
            data = json.loads(self.config_path.read_text())
            if isinstance(data, dict) and isinstance(data.get("train"), dict) and "bn_stats" not in data["train"]:
                # written before the setting existed: that version evaluated on the running averages, so the run
                # goes on (and replays) as it began
                data["train"] = {**data["train"], "bn_stats": "running"}
            return RunConfig.from_dict(data)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{str(self.config_path)!r} is unreadable ({type(exc).__name__}); restore it or create "
                            "the run again") from None
        except UserError as exc:
            raise UserError(f"{str(self.config_path)!r} is not a valid run config: {exc}") from None

    def write_status(self, **status) -> None:
        """Write ``status.json``; it records the writing process (``pid``, ``host``) and the time."""
        status.setdefault("pid", os.getpid())
        status.setdefault("host", socket.gethostname())
        status.setdefault("updated", time.time())
        text = json.dumps(status, sort_keys=True)
        try:
            atomic_write_text(self.status_path, text)
        except UserError:
            if status.get("state") != "error" or not self._overwrite_in_place(self.status_path, text):
                raise

    @staticmethod
    def _overwrite_in_place(path: Path, text: str) -> bool:
        """Last resort on a full disk: rewrite a small file in the blocks it already has (an error status
        must reach the reader even when no new block can be had). True if it worked."""
        data = text.encode()
        try:
            if not path.is_file() or len(data) > 4096:
                return False
            with open(path, "r+b") as fh:
                fh.write(data)
                fh.truncate(len(data))
                fh.flush()
                os.fsync(fh.fileno())
            return True
        except OSError:
            return False

    def live_state(self, status: dict | None = None, stale_seconds: float = 120.0, now: float | None = None) -> str:
        """The run's state as a reader should show it: ``status.json``'s, except
        that a ``running`` whose process is gone (same host), or whose
        heartbeat is older than ``stale_seconds`` (another host), is ``stopped``."""
        status = self.status() if status is None else status
        state = status.get("state", "idle")
        if state != "running":
            return state
        pid, host = status.get("pid"), status.get("host")
        if pid is not None and host == socket.gethostname():
            return "running" if process_alive(int(pid)) else "stopped"
        age = (time.time() if now is None else now) - float(status.get("updated") or 0)
        return "running" if age < stale_seconds else "stopped"

    def status(self) -> dict:
        try:
            return json.loads((self.status_path).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    # ------------------------------------------------------------ summary
    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=True))

    def summary(self) -> dict | None:
        """``summary.json`` (None while the run is unfinished); one line naming it if damaged."""
        p = self.summary_path
        if not p.is_file():
            return None
        advice = f"delete it, then `python -m engine resume {self.path}` writes it again"
        with reading(p, advice):
            try:
                value = json.loads(p.read_text())
            except UnicodeDecodeError as exc:
                raise ValueError(str(exc)) from None
            if not isinstance(value, dict):
                raise ValueError(f"not a summary: a JSON {type(value).__name__}, not an object")
        for key in SUMMARY_NUMBERS:
            number = value.get(key)
            if number is not None and (isinstance(number, bool) or not isinstance(number, numbers.Real)):
                raise damaged(p, ValueError(f"field {key!r} is {json.dumps(number)[:40]}, not a number"), advice)
        return value

    # ------------------------------------------------------------ error log, runtime record, lock
    def write_error_log(self, text: str) -> None:
        atomic_write_text(self.error_log_path, text)

    def write_runtime(self, record: dict) -> None:
        atomic_write_text(self.runtime_path, json.dumps(record, indent=2, sort_keys=True))

    def runtime(self) -> dict | None:
        """What the run recorded at creation (engine.steps.lifecycle), None for runs made before it."""
        if not self.runtime_path.is_file():
            return None
        with reading(self.runtime_path, "restore it, or create the run again"):
            value = json.loads(self.runtime_path.read_text())
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
        return value

    def lock(self) -> None:
        """Hold the trainer's lock (:func:`engine.rundir.lock.acquire`); one line naming the holder if taken."""
        run_lock.acquire(self.lock_path, self.path)

    def unlock(self) -> None:
        run_lock.release(self.lock_path)

    def trainer(self) -> dict | None:
        """pid, host and since of another process training this run now, else None."""
        return run_lock.held_elsewhere(self.lock_path)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@functools.lru_cache(maxsize=16)
def _loaded_class_names(path: str, config_stamp: int) -> tuple[str, ...]:
    from ..data import dataset_for_config

    return tuple(str(c) for c in dataset_for_config(RunStore(path).config()).class_names)


def uploads_dir(root: str | os.PathLike) -> Path:
    """Where the app unpacks uploaded zips under a runs folder (``<root>/uploads/NAME-<hash>/``)."""
    return Path(root) / UPLOADS


def list_runs(root: str | os.PathLike) -> list[Path]:
    """Run directories directly under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if RunStore(p).exists()]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)
