"""Bring your own data, for the Setup page, without Streamlit: dataset specs
of image folders and torchvision sets, what a dataset holds (``DataFacts``)
before a run is made, uploads kept under the runs folder, label-file checks
and noise choices that fit the data.

Uploads never leave the machine: a zip is unpacked with
:func:`engine.data.archive.extract_zip` into ``<runs root>/uploads/<name>-<hash>``
(content-addressed, so the same upload is unpacked once and an earlier one is
never overwritten); a label CSV is kept as ``uploads/labels/<hash>-<name>``.
Every function raises :class:`~engine.errors.UserError` for input a user can
fix, with a message that names the input and what would be valid.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from engine.data import load_dataset, parse_dataset_spec
from engine.data import ARCHIVE_MAX_BYTES as MAX_BYTES, ARCHIVE_MAX_FILES as MAX_FILES, extract_zip, find_dataset_root
from engine.data import TEST_FRACTION, folder_summary, stratified_holdout
from engine.data import guess_columns, label_file_report, label_table_preview, read_label_csv
from engine.data import VECTORS_TEST_FRACTION, DatasetSpec, split_path_options, with_label_file_classes
from engine.data import vectors_facts
from engine.errors import UserError
from engine.models import available_models, default_pair
from engine.method import CIFAR10_CLASSES, asym_targets, load_matrix, parse_noise_spec
from engine.method import known_noise_rate as engine_known_noise_rate
from engine.rundir import RunStore, atomic_write_bytes, uploads_dir

log = logging.getLogger(__name__)

SOURCES = {"builtin": "Built-in (digits, 2-D toys)", "folder": "Image folder on disk", "upload": "Upload a zip",
           "torchvision": "torchvision dataset from a local folder", "vectors": "Vectors (.npz / .npy embeddings)"}
TORCHVISION_SETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                    "cifar100": "CIFAR-100"}
# What each torchvision set holds, for the form before its files are there (they are downloaded on Create).
TORCHVISION_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32),
                      "cifar100": (3, 32, 32)}
IMAGE_SIZES = (0, 8, 16, 24, 28, 32, 48, 64, 96, 128)  # 0: the folder's default
IMAGE_MODES = ("auto", "L", "RGB")
AUGMENTS = ("auto", "none", "crop_flip")
UPLOAD_LIMIT_MB = 200  # a zip of a CPU-sized image set; unpacked it may hold up to MAX_BYTES
LABEL_UPLOAD_LIMIT_MB = 20
UNPACK_LIMIT_TEXT = f"unpacked at most {MAX_BYTES / 2**30:.0f} GiB and {MAX_FILES:,} files"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------- specs
def folder_spec(path: str | Path, size: int = 0, mode: str = "auto", test: float = TEST_FRACTION,
                augment: str = "auto") -> str:
    """``folder:DIR`` with only the options that differ from the engine's defaults.

    Parameters
    ----------
    size : int
        Images become ``size x size`` pixels; 0 keeps the folder's default.
    mode : {'auto', 'L', 'RGB'}
    test : float
        Held-out fraction when the folder has no ``test/``.
    augment : {'auto', 'none', 'crop_flip'}
    """
    options = {}
    if size:
        options["size"] = int(size)
    if mode != "auto":
        options["mode"] = mode
    if abs(float(test) - TEST_FRACTION) > 1e-9:
        options["test"] = f"{float(test):g}"
    if augment != "auto":
        options["augment"] = augment
    return f"folder:{path}" + (f"?{urlencode(options)}" if options else "")


def torchvision_spec(name: str, root: str, n: int = 0, test_n: int = 0, download: bool = False) -> str:
    """``mnist:ROOT?n=10000&download=1`` (``n``/``test_n`` 0: all samples)."""
    if name not in TORCHVISION_SETS:
        raise UserError(f"torchvision dataset {name!r} is not offered; valid: {', '.join(TORCHVISION_SETS)}")
    options = {}
    if n:
        options["n"] = int(n)
    if test_n:
        options["test_n"] = int(test_n)
    if download:
        options["download"] = 1
    return f"{name}:{root or 'data'}" + (f"?{urlencode(options)}" if options else "")


def vectors_spec(path: str | Path, test: float = VECTORS_TEST_FRACTION) -> str:
    """``vectors:FILE`` (``?test=F`` where the held-out fraction is not the engine's default)."""
    spec = f"vectors:{str(path).strip()}"
    return spec if abs(float(test) - VECTORS_TEST_FRACTION) < 1e-9 else f"{spec}?test={float(test):g}"


def vectors_fields(spec: str) -> tuple[str, float]:
    """``(file, held-out fraction)`` of a ``vectors:`` spec (:func:`vectors_spec` read back)."""
    parsed = parse_dataset_spec(spec)
    path, options = split_path_options(parsed)
    return path, DatasetSpec("vectors", tuple(options.items())).option("test", VECTORS_TEST_FRACTION, float)


# ---------------------------------------------------------------- what a dataset holds
@dataclass(frozen=True)
class DataFacts:
    """What the form needs to know about a dataset before a run exists.

    Attributes
    ----------
    kind : str
        ``'image'``, ``'points'`` or ``'vectors'``.
    input_shape : tuple of int
        ``(C, H, W)`` or ``(F,)``.
    class_names : tuple of str or None
        None when not known yet (a torchvision set still to be downloaded, vectors whose label file names
        their classes).
    class_counts : tuple of int or None
        Training samples per class, where known.
    num_train : int or None
        Training samples (after a held-out split), where known.
    """

    kind: str
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] | None
    class_counts: tuple[int, ...] | None = None
    num_train: int | None = None

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)


@lru_cache(maxsize=16)
def dataset_facts(spec: str, stamp: tuple = ()) -> DataFacts:
    """Load a (built-in or torchvision) dataset once and keep what the form needs; a vectors file is not
    loaded: its headers and labels tell (:func:`engine.data.vectors_facts`; its NaN and repeated keys are
    refused when the run is made). ``stamp`` (:func:`file_stamp` of a vectors file) reads it again when the
    file changes.

    Raises :class:`UserError` as :func:`engine.data.load_dataset` does; a
    failure is not cached, so files that appear later are found.
    """
    parsed = parse_dataset_spec(spec)
    if parsed.name == "vectors":
        facts = vectors_facts(parsed)
        return DataFacts("vectors", (facts.dim,), facts.class_names or None, facts.class_counts, facts.num_train)
    dataset = load_dataset(spec)
    if not dataset.class_names or dataset.train_true is None:  # vectors without labels: a label file names them
        return DataFacts(dataset.kind, dataset.input_shape, None, None, dataset.num_train)
    counts = np.bincount(dataset.train_true[dataset.train_true >= 0], minlength=dataset.num_classes)
    return DataFacts(dataset.kind, dataset.input_shape, tuple(dataset.class_names), tuple(int(c) for c in counts),
                     dataset.num_train)


def file_stamp(path: str | Path) -> tuple:
    """What changes when a file does (its resolved path, modification time and size)."""
    return _file_identity(path)


def folder_facts(summary: dict, size: int = 0, mode: str = "auto", test: float = TEST_FRACTION) -> DataFacts:
    """The facts of a scanned folder (:func:`engine.data.folder.folder_summary`) under the chosen options.

    The training count leaves out the stratified held-out split exactly as the
    loader does (the split depends only on the class counts).
    """
    width, height = (int(v) for v in summary["default_size"].split("x"))
    if size:
        width = height = int(size)
    channels = 1 if (summary["default_mode"] if mode == "auto" else mode) == "L" else 3
    counts = [summary["train_counts"][name] for name in summary["classes"]]
    if summary["test_counts"] is None:
        labels = np.repeat(np.arange(len(counts)), counts)
        kept = ~stratified_holdout(labels, float(test))
        counts = np.bincount(labels[kept], minlength=len(counts)).tolist()
    return DataFacts("image", (channels, height, width), tuple(summary["classes"]), tuple(int(c) for c in counts),
                     int(sum(counts)))


def torchvision_pending_facts(name: str) -> DataFacts:
    """Facts of a torchvision set whose files are still to be downloaded (shape; CIFAR-10's names)."""
    names = CIFAR10_CLASSES if name == "cifar10" else None
    return DataFacts("image", TORCHVISION_SHAPES[name], names)


def scan_summary(path: str) -> dict:
    """:func:`folder_summary` of a typed path (the app's form; raises :class:`UserError`)."""
    if not str(path).strip():
        raise UserError("no folder given; valid: a folder holding train/<class>/<images> "
                        "(or one folder per class)")
    try:
        return folder_summary(str(path).strip())
    except OSError as exc:  # e.g. a folder this process may not read
        raise UserError(f"folder {str(path).strip()!r} cannot be read: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- models
def model_choices_for(kind: str) -> list[str]:
    """Architectures the engine accepts for data of ``kind`` (every image model takes any image size)."""
    return available_models(kind)


def default_models_for(kind: str, input_shape: tuple[int, ...]) -> tuple[str, str]:
    """The engine's (teacher, student) pair for data of this kind and shape."""
    return default_pair(kind, tuple(input_shape))


# ---------------------------------------------------------------- uploads
def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _safe_name(text: str, fallback: str) -> str:
    """``text`` as letters, digits, '.', '_' and '-' only (at most 40), or ``fallback``."""
    name = SAFE_NAME.sub("-", text or "").strip("-._")[:40]
    return name or fallback


def _safe_stem(file_name: str, fallback: str) -> str:
    return _safe_name(Path(file_name or "").stem, fallback)


_REFUSED: OrderedDict[str, str] = OrderedDict()  # digest -> message: a refused zip is not unpacked again
_DIGESTS: OrderedDict[str, str] = OrderedDict()  # upload id -> digest: a page rerun does not hash it again


def _remember(memo: OrderedDict, key: str, value: str, size: int = 32) -> None:
    memo[key] = value
    while len(memo) > size:
        memo.popitem(last=False)


#: Budgets for unpacked uploads (MiB): per upload and all uploads together; the environment can change them.
UPLOAD_BUDGET_ENV, UPLOADS_TOTAL_ENV = "AMLKD_UPLOAD_MAX_MB", "AMLKD_UPLOADS_TOTAL_MB"
UPLOAD_BUDGET_MB, UPLOADS_TOTAL_MB = 512, 2048


def _budget_mb(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


def upload_budgets() -> tuple[int, int]:
    """(per upload, all uploads) in bytes, unpacked."""
    return (_budget_mb(UPLOAD_BUDGET_ENV, UPLOAD_BUDGET_MB) << 20, _budget_mb(UPLOADS_TOTAL_ENV, UPLOADS_TOTAL_MB) << 20)


def folder_bytes(folder: Path) -> tuple[int, int]:
    """(bytes, files) under ``folder`` (links not followed)."""
    total = files = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def list_uploads(root: str | Path) -> list[dict]:
    """Every unpacked upload and kept label or vectors file: ``name``, ``path``, ``bytes``, ``files``,
    ``used_by`` (runs whose dataset or label file is in it), largest first."""
    from engine.rundir import list_runs

    folder = uploads_dir(root)
    if not folder.is_dir():
        return []
    used_paths = []  # (run name, a path its settings name)
    for run in list_runs(Path(root)):
        try:
            config = RunStore(run).config()
        except (UserError, OSError, ValueError):
            continue
        for text in (str(config.dataset), str(getattr(config, "labels", None) or "")):
            where = text.split(":", 1)[1] if text.startswith(("folder:", "vectors:")) else text
            if where:
                used_paths.append((run.name, str(Path(where.split("?", 1)[0]).absolute())))

    def used_by(entry: Path) -> list[str]:
        base = str(entry.absolute())
        return sorted({name for name, where in used_paths if where == base or where.startswith(base + os.sep)})

    entries = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name in ("labels", "vectors") and entry.is_dir():  # kept files, each its own upload
            for file in sorted(entry.iterdir()):
                entries.append({"name": f"{entry.name}/{file.name}", "path": file, "bytes": file.stat().st_size,
                                "files": 1, "used_by": used_by(file)})
            continue
        size, files = folder_bytes(entry) if entry.is_dir() else (entry.stat().st_size, 1)
        entries.append({"name": entry.name, "path": entry, "bytes": size, "files": files, "used_by": used_by(entry)})
    return sorted(entries, key=lambda e: -e["bytes"])


def delete_upload(root: str | Path, name: str) -> None:
    """Delete one upload (a folder or a kept label file) by its listed name; refused while a run uses it."""
    found = next((e for e in list_uploads(root) if e["name"] == name), None)
    if found is None:
        raise UserError(f"no upload named {name!r} under {str(uploads_dir(root))!r}")
    if found["used_by"]:
        raise UserError(f"upload {name!r} is the data of run(s) {', '.join(found['used_by'])}; delete those runs "
                        "first (Setup, Runs)")
    if found["path"].is_dir():
        shutil.rmtree(found["path"])
    else:
        found["path"].unlink()


def unpack_upload(name: str, data: bytes, root: str | Path, max_bytes: int | None = None,
                  max_files: int = MAX_FILES, upload_id: str | None = None) -> Path:
    """Unpack an uploaded zip under ``uploads_dir(root)``; returns the dataset folder in it.

    The folder is named after the file and its content hash, so the same
    upload (a page rerun, or the same zip again) reuses the folder unpacked
    before. A refused zip writes nothing (see
    :func:`engine.data.archive.extract_zip`). ``upload_id`` (Streamlit's
    file id) spares hashing the same upload on every rerun.

    Raises
    ------
    UserError
        Not a zip, an entry outside the archive, a link, too large; the
        message names the upload and the entry.
    """
    digest = _DIGESTS.get(upload_id) if upload_id else None
    if digest is None:
        digest = _digest(data)
        if upload_id:
            _remember(_DIGESTS, upload_id, digest)
    if digest in _REFUSED:
        raise UserError(_REFUSED[digest])
    target = uploads_dir(root) / f"{_safe_stem(name, 'upload')}-{digest}"
    if target.is_dir() and any(target.iterdir()):
        return find_dataset_root(target)
    per_upload, total = upload_budgets()
    per_upload = min(per_upload, MAX_BYTES) if max_bytes is None else max_bytes
    used = sum(e["bytes"] for e in list_uploads(root))
    room = max(total - used, 0)
    try:
        if room < 1 << 20:
            raise UserError(f"the uploads already hold {used / 2**20:,.0f} MiB of their {total / 2**20:,.0f} MiB "
                            "budget; an admin can delete old uploads on the Setup page")
        dataset_root = extract_zip(io.BytesIO(data), target, max_bytes=min(per_upload, room), max_files=max_files)
    except UserError as exc:
        reason = str(exc)
        if room < per_upload and ("would unpack" in reason or "more than" in reason):  # the total budget's limit
            reason += (f" (the uploads hold {used / 2**20:,.0f} MiB of their {total / 2**20:,.0f} MiB budget: "
                       f"{room / 2**20:,.0f} MiB are left; an admin can delete old uploads on the Setup page)")
        message = f"upload {name!r} was refused and nothing was unpacked: {reason}"
        if room >= per_upload:  # refused for what it is, not for the room left: remember it
            _remember(_REFUSED, digest, message)
        _remove_if_empty(uploads_dir(root))
        raise UserError(message) from None
    log.info("unpacked upload %s into %s", name, target)
    return dataset_root


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when empty: nothing saved is ever removed
    except OSError:
        pass


def save_label_upload(name: str, data: bytes, root: str | Path) -> Path:
    """Keep an uploaded label CSV as ``uploads/labels/<hash>-<name>.csv``; returns its path."""
    folder = uploads_dir(root) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder.absolute() / f"{_digest(data)}-{_safe_stem(name, 'labels')}.csv"
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


VECTORS_SUFFIXES = (".npz", ".npy")


def save_vectors_upload(name: str, data: bytes, root: str | Path) -> Path:
    """Keep an uploaded vectors file as ``uploads/vectors/<hash>-<name>.npz`` (or ``.npy``); returns its path.
    The same upload again reuses the file; :class:`UserError` for another kind of file or no room left in the
    uploads' budget (nothing is written)."""
    suffix = Path(name or "").suffix.lower()
    if suffix not in VECTORS_SUFFIXES:
        raise UserError(f"upload {name!r} is not a vectors file; valid: an .npz of features and keys (and "
                        "optionally labels), or an .npy of features")
    folder = uploads_dir(root) / "vectors"
    path = folder.absolute() / f"{_digest(data)}-{_safe_stem(name, 'vectors')}{suffix}"
    if path.is_file():
        return path
    _, total = upload_budgets()
    used = sum(e["bytes"] for e in list_uploads(root))
    if used + len(data) > total:
        raise UserError(f"upload {name!r} was refused and nothing was kept: the uploads hold {used / 2**20:,.0f} "
                        f"MiB of their {total / 2**20:,.0f} MiB budget; an admin can delete old uploads on the Setup "
                        "page")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


# ---------------------------------------------------------------- label files
def _file_identity(path: str | Path) -> tuple:
    p = Path(str(path)).expanduser()
    try:
        stat = p.stat()
    except OSError:
        return (str(p), None, None)
    return (str(p.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _cached_report(spec: str, data_signature: str, file_id: tuple, key_column: str, label_column: str,
                   truth_column: str | None) -> dict:
    dataset = load_dataset(spec)
    try:
        dataset = with_label_file_classes(dataset, file_id[0], label_column, truth_column)
    except UserError as exc:  # the file itself (vectors without labels read their classes from it)
        return {"ok": False, "error": str(exc), "rows": None, "changed": None, "truth_known": None,
                "noise_rate": None}
    return label_file_report(dataset, file_id[0], key_column, label_column, truth_column)


def label_report(spec: str, path: str | Path, key_column: str, label_column: str, truth_column: str | None,
                 data_signature: str = "") -> dict:
    """:func:`engine.data.labels.label_file_report` of a dataset spec, cached per file version.

    Parameters
    ----------
    data_signature : str
        Something that changes when the dataset does (an image folder's counts).

    Returns
    -------
    dict
        The engine's report (``ok``, ``error``, ``rows``, ``changed``,
        ``truth_known``, ``noise_rate``: the label file's known noise rate, or None).
    """
    try:
        report = dict(_cached_report(spec, data_signature, _file_identity(path), key_column, label_column,
                                     truth_column or None))
    except (UserError, OSError) as exc:  # the data itself does not load (not cached: it may be fixed)
        return {"ok": False, "error": f"the label file cannot be checked because the data does not load: {exc}",
                "rows": None, "changed": None, "truth_known": None, "noise_rate": None}
    return report


@lru_cache(maxsize=32)
def _cached_preview(spec: str, data_signature: str, file_id: tuple, rows: int) -> dict:
    return label_table_preview(load_dataset(spec), file_id[0], rows)


def label_preview(spec: str, path: str | Path, data_signature: str = "", rows: int = 8) -> dict:
    """:func:`engine.data.labels.label_table_preview` of a dataset spec, cached per file version:
    the file's columns and first rows only when it is a label table of the data."""
    try:
        preview = _cached_preview(spec, data_signature, _file_identity(path), rows)
    except (UserError, OSError) as exc:
        return {"ok": False, "error": f"the label file cannot be checked because the data does not load: {exc}",
                "columns": None, "key_columns": None, "head": None}
    return {**preview, "head": None if preview["head"] is None else preview["head"].copy()}


def default_label_columns(path: str | Path) -> tuple[dict, str | None]:
    """(key/label/truth column names, error) for a label file that cannot be checked
    against the data yet: the usual names it has (``path``, ``label``, ...) or the
    defaults; nothing else of the file is returned."""
    try:
        columns = list(read_label_csv(path).columns)
    except UserError as exc:
        return {"key_column": "path", "label_column": "label", "truth_column": ""}, str(exc)
    guesses = guess_columns(columns)
    return {"key_column": guesses["key"] or "path", "label_column": guesses["label"] or "label",
            "truth_column": guesses["truth"] or ""}, None


# ---------------------------------------------------------------- noise
def noise_problem(noise: str, facts: DataFacts | None) -> str | None:
    """Why a noise spec cannot apply to the data (``asym`` needs CIFAR-10's
    classes; a matrix must be C x C); None when it can, or cannot be told yet."""
    spec = parse_noise_spec(noise)
    if facts is None or facts.class_names is None:
        return None
    try:
        if spec.kind == "asym":
            asym_targets(facts.class_names, facts.num_classes)
        elif spec.kind == "matrix":
            load_matrix(spec.matrix_path, facts.num_classes)
    except UserError as exc:
        return str(exc)
    return None


def known_noise_rate(noise: str, facts: DataFacts | None) -> float | None:
    """The rate 'known' stands for on data with these facts: the engine's rule
    (:func:`engine.method.noise.known_noise_rate`) given the training samples'
    classes from their counts. None while the data decide it and their class
    counts are not known yet (or the noise cannot apply to them)."""
    if facts is None or facts.class_counts is None or noise_problem(noise, facts):
        return engine_known_noise_rate(noise)
    true = np.repeat(np.arange(len(facts.class_counts)), facts.class_counts)
    return engine_known_noise_rate(noise, true, facts.class_names)


def run_name_stem(dataset_spec: str) -> str:
    """A readable run-name part for a dataset: an image folder's name (less an
    upload's content hash), a vectors file's name, a torchvision set's name, or the built-in name."""
    spec = parse_dataset_spec(dataset_spec)
    if spec.name == "vectors" and spec.path:
        return _safe_name(Path(vectors_fields(dataset_spec)[0]).stem, "vectors")
    if spec.name != "folder" or not spec.path:
        return _safe_name(spec.name, "data")
    path = Path(spec.path.split("?", 1)[0].rstrip("/\\"))
    base = path.parent.name if path.name in ("train", "") else path.name
    return _safe_name(re.sub(r"-[0-9a-f]{12}$", "", base), "folder")
