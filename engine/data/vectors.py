"""Precomputed embeddings as a dataset: ``vectors:FILE[?test=0.2]``.

A team with a million embeddings (from any model) tries the method on them
without images: the teacher and the student are small MLPs over the vectors
(``mlp-large`` -> ``mlp-small``), and the kNN graph is built on the teacher's
features as for any dataset.

Files
-----
- ``.npz`` (read with ``allow_pickle=False``): ``features`` ``(N, D)``
  numbers; ``keys`` ``(N,)`` text or whole numbers, one per row, all
  different (the sample keys the review, exports and label files use);
  optionally ``labels`` ``(N,)`` class ids ``0..C-1`` (``-1``: unknown), the
  dataset's own labels (the truth synthetic noise starts from), and
  ``class_names`` ``(C,)`` text.
- ``.npy``: ``features`` ``(N, D)`` alone, memory-mapped (only the rows a
  split takes are read into memory); keys are the row numbers ``0..N-1``.

Without labels in the file, ``--labels CSV`` brings them (its key column names
the rows by key; its classes become the dataset's, sorted, numerically when
they are all whole numbers). ``test`` (default 0.2) of the rows are held out
for testing, stratified by label where the file has labels, with a fixed seed.
Every column is standardised with the training rows' mean and spread, as the
2-D toys are.

Bad files give one :class:`UserError` naming the file and what would be
valid: missing, another format, a pickled (object) array, a wrong shape,
NaN or infinite values, keys that repeat or do not match the rows.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError, shown
from .base import Dataset, DatasetSpec

OPTIONS = ("test",)
TEST_FRACTION = 0.2
SPLIT_SEED = 0
CHUNK = 65_536  # rows checked for NaN at a time (a memory-mapped file is never read whole)
VALID = ("valid: an .npz with features (N, D), keys (N,) and optionally labels (N,), or an .npy of features "
         "(N, D) with --labels")


def _path_and_test(spec: DatasetSpec) -> tuple[str, float]:
    """The file and the held-out fraction of a ``vectors:FILE[?test=F]`` spec (options checked)."""
    path, options = _split(spec.path or "")
    spec_text = f"vectors:{spec.path}"
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(shown(k) for k in unknown)} in dataset {shown(spec_text)}; "
                        f"valid: {', '.join(OPTIONS)}")
    test = DatasetSpec("vectors", tuple(options.items())).option("test", TEST_FRACTION, float)
    if not 0 <= test < 1:
        raise UserError(f"vectors option test={test:g} is out of range; valid: a fraction in [0, 1)")
    return path, test


def load_vectors(spec: DatasetSpec) -> Dataset:
    """The :class:`Dataset` of a ``vectors:FILE[?test=F]`` spec (see the module docstring)."""
    path, test = _path_and_test(spec)
    spec_text = f"vectors:{spec.path}"
    features, keys, labels, class_names = read_vectors(path)
    held = _holdout(len(features), labels, test)
    train, heldout = np.flatnonzero(~held), np.flatnonzero(held)
    train_x = np.asarray(features[train], dtype=np.float32)  # (N_train, D): only these rows are read
    test_x = np.asarray(features[heldout], dtype=np.float32)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-8
    return Dataset(
        name=spec_text, kind="vectors", class_names=class_names,
        train_x=(train_x - mean) / std, train_true=None if labels is None else labels[train],
        test_x=(test_x - mean) / std, test_true=None if labels is None else labels[heldout],
        train_keys=tuple(keys[train].tolist()), test_keys=tuple(keys[heldout].tolist()))


def _split(path: str) -> tuple[str, dict[str, str]]:
    """``FILE?test=0.1`` -> (FILE, options); a path that exists as written wins."""
    from urllib.parse import parse_qsl

    if "?" in path and not Path(path).expanduser().exists():
        path, _, query = path.rpartition("?")
        return path, dict(parse_qsl(query, keep_blank_values=True))
    return path, {}


def read_vectors(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Features ``(N, D)`` (a memory map for .npy), keys ``(N,)`` str, labels ``(N,)`` int64 or None, class names.

    Raises
    ------
    UserError
        One line naming the file and what is wrong.
    """
    p, name = _checked_file(path)
    try:
        if p.suffix.lower() == ".npy":
            features = np.load(p, mmap_mode="r", allow_pickle=False)
            keys, labels, names = np.arange(len(features)).astype(str) if features.ndim else None, None, None
        else:
            features, keys, labels, names = _read_npz(p, name)
    except ValueError as exc:
        raise _unreadable(exc, name) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"vectors file {name} is not a readable NumPy file: {shown(str(exc) or type(exc).__name__)}"
                        ) from None
    _check_features(features, name)
    keys = _check_keys(keys, len(features), name)
    labels, class_names = _check_labels(labels, names, len(features), name)
    return features, keys, labels, class_names


def _checked_file(path: str) -> tuple[Path, str]:
    """The file of a vectors spec (expanded) and its name for messages; refused where it is missing or does
    not start as its suffix says."""
    p = Path(path).expanduser()
    name = shown(str(path))
    if not str(path):
        raise UserError(f"vectors: needs a file, as vectors:FILE.npz; {VALID}")
    if not p.is_file():
        raise UserError(f"vectors file {name} does not exist; {VALID}")
    if p.suffix.lower() not in (".npy", ".npz"):
        raise UserError(f"vectors file {name} is not .npy or .npz; {VALID}")
    with open(p, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"\x93NUMPY" if p.suffix.lower() == ".npy" else b"PK\x03\x04"):
        raise UserError(f"vectors file {name} is not a readable NumPy file: it does not start as a "
                        f"{p.suffix.lower()} file does; {VALID}")
    return p, name


def _unreadable(exc: ValueError, name: str) -> UserError:
    if "allow_pickle" in str(exc) or "object" in str(exc).lower():
        return UserError(f"vectors file {name} holds pickled Python objects, which are never loaded; "
                         "store numbers and text arrays (np.savez with numeric features, str keys)")
    return UserError(f"vectors file {name} is not a readable NumPy file: {shown(str(exc))}")


@dataclass(frozen=True)
class VectorsFacts:
    """What a vectors file holds, told from its arrays' headers and its labels alone (:func:`vectors_facts`).

    Attributes
    ----------
    dim : int
        Columns of the features ``D``.
    num_train : int
        Training rows (the rows the held-out split leaves).
    class_names : tuple of str
        Empty when the file holds no labels (a label file names the classes).
    class_counts : tuple of int or None
        Training rows per class (labels known), None without labels.
    """

    dim: int
    num_train: int
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...] | None


def vectors_facts(spec: DatasetSpec) -> VectorsFacts:
    """The facts of a ``vectors:`` spec that a form shows before a run exists, without reading the features
    or the keys: their shapes and types come from the ``.npy`` headers (the ``.npz`` members' headers), and
    only ``labels`` ``(N,)`` and ``class_names`` are read (the split and the class counts need them).

    Checked here as :func:`read_vectors` checks them: the file, its format, the features' shape and type, the
    keys' shape and type, the labels. Not checked (that would read every row): NaN or infinite features and
    repeated keys; :func:`load_vectors` refuses those when the run is made, with the same one line.

    Cost: a few small reads (headers) and the labels' ``8 N`` bytes; a 1M x 128 file is not read.
    """
    path, test = _path_and_test(spec)
    p, name = _checked_file(path)
    try:
        if p.suffix.lower() == ".npy":
            with open(p, "rb") as fh:
                shape, dtype = _header(fh)
            keys_shape, keys_dtype, labels, names = shape[:1], np.dtype(str), None, None  # keys: the row numbers
        else:
            with zipfile.ZipFile(p) as archive:
                members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
                _require_members(set(members), name)
                with archive.open(members["features"]) as fh:
                    shape, dtype = _header(fh)
                with archive.open(members["keys"]) as fh:
                    keys_shape, keys_dtype = _header(fh)
                labels = names = None
                if "labels" in members:
                    with archive.open(members["labels"]) as fh:
                        labels = np.lib.format.read_array(fh, allow_pickle=False)
                if "class_names" in members:
                    with archive.open(members["class_names"]) as fh:
                        names = np.lib.format.read_array(fh, allow_pickle=False)
    except ValueError as exc:
        raise _unreadable(exc, name) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"vectors file {name} is not a readable NumPy file: {shown(str(exc) or type(exc).__name__)}"
                        ) from None
    _check_shape(shape, dtype, name)
    _check_keys_header(keys_shape, keys_dtype, shape[0], name)
    labels, class_names = _check_labels(labels, names, shape[0], name)
    held = _holdout(shape[0], labels, test)
    counts = None if labels is None else tuple(int(c) for c in np.bincount(labels[~held][labels[~held] >= 0],
                                                                            minlength=len(class_names)))
    return VectorsFacts(int(shape[1]), int((~held).sum()), class_names, counts)


def npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header ``fh`` is at, leaving ``fh`` at the data;
    None for a header version other than 1.0 and 2.0 (3.0: NumPy writes it only for non-Latin-1 field
    names), which the caller reads with its array. Also :mod:`engine.rundir.npzmap`'s reader."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    return None


def _header(fh) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` array ``fh`` is at (its header only; a version 3.0 header is read with
    its array)."""
    header = npy_header(fh)
    if header is None:
        fh.seek(0)
        array = np.lib.format.read_array(fh, allow_pickle=False)
        shape, dtype = array.shape, array.dtype
    else:
        shape, _, dtype = header
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    return shape, dtype


def _require_members(files, name: str) -> None:
    if "features" not in files:
        raise UserError(f"vectors file {name} has no 'features' array (it holds {', '.join(files) or 'none'}); "
                        f"{VALID}")
    if "keys" not in files:
        raise UserError(f"vectors file {name} has no 'keys' array: one key per row is needed; {VALID}")


def _read_npz(p: Path, name: str):
    with np.load(p, allow_pickle=False) as z:
        _require_members(z.files, name)
        return (z["features"], z["keys"], z["labels"] if "labels" in z.files else None,
                z["class_names"] if "class_names" in z.files else None)


def _check_shape(shape: tuple[int, ...], dtype: np.dtype, name: str) -> None:
    """The features' shape and type (their header)."""
    if len(shape) != 2 or shape[0] < 2 or shape[1] < 1:
        raise UserError(f"vectors file {name}: features have shape {tuple(shape)}; valid: 2-D (N, D) with N >= 2 "
                        "rows and D >= 1 columns")
    if dtype.kind not in "fiu":
        raise UserError(f"vectors file {name}: features are {dtype}, not numbers; valid: float or int")


def _check_features(features: np.ndarray, name: str) -> None:
    _check_shape(features.shape, features.dtype, name)
    for start in range(0, len(features), CHUNK):
        block = np.asarray(features[start:start + CHUNK])
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise UserError(f"vectors file {name}: row {bad} has a NaN or infinite value; valid: finite numbers "
                            "only (drop or fix those rows)")


def _check_keys_header(shape: tuple[int, ...], dtype: np.dtype, n: int, name: str) -> None:
    """The keys' shape and type (their header)."""
    if tuple(shape) != (n,) or dtype.kind not in "USiu":
        raise UserError(f"vectors file {name}: keys are {dtype} of shape {tuple(shape)}; valid: ({n},) text or "
                        "whole numbers, one per row of features")


def _check_keys(keys: np.ndarray, n: int, name: str) -> np.ndarray:
    _check_keys_header(keys.shape, keys.dtype, n, name)
    keys = keys.astype(str)
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) < n:
        twice = unique[counts > 1]
        raise UserError(f"vectors file {name}: {len(twice)} key(s) repeat, e.g. {shown(str(twice[0]))}; valid: one "
                        "different key per row")
    return keys


def _check_labels(labels, names, n: int, name: str) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Labels (N,) int64 (-1 unknown) and class names; no classes without labels (a label file brings them)."""
    if labels is None:
        return None, ()
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise UserError(f"vectors file {name}: labels are {labels.dtype} of shape {labels.shape}; valid: ({n},) "
                        "whole numbers, class ids 0..C-1 (-1: unknown)")
    labels = labels.astype(np.int64)
    if labels.min() < -1:
        raise UserError(f"vectors file {name}: label {labels.min()} is not a class id; valid: 0..C-1, or -1 for "
                        "unknown")
    count = int(labels.max()) + 1
    if names is None:
        return labels, tuple(str(c) for c in range(count))
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) < count:
        raise UserError(f"vectors file {name}: class_names {names.dtype} of shape {names.shape} do not name the "
                        f"{count} classes of labels; valid: ({count},) or more text")
    return labels, tuple(str(c) for c in names)


def _holdout(n: int, labels: np.ndarray | None, fraction: float) -> np.ndarray:
    """Boolean mask (N,): the held-out rows, stratified by label where known (never a class's last row)."""
    from .folder import stratified_holdout

    if labels is not None:
        return stratified_holdout(labels, fraction, SPLIT_SEED)
    held = np.zeros(n, bool)
    held[np.random.default_rng(SPLIT_SEED).permutation(n)[: int(round(fraction * n))]] = True
    return held


def label_file_classes(path: str, label_column: str, truth_column: str | None) -> tuple[str, ...]:
    """The classes a label file names (its label column and, if given, truth column): sorted, numerically when
    every one is a whole number. A vectors file without labels takes these as its classes."""
    from .labels import read_label_csv

    table = read_label_csv(path)
    values = set()
    for column in (label_column, truth_column):
        if column and column in table.columns:
            values |= {v.strip() for v in table[column] if v.strip()}
    if all(v.isascii() and v.isdigit() for v in values):
        return tuple(sorted(values, key=int))
    return tuple(sorted(values))
