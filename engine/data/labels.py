"""Label files: a CSV of given labels (and optionally true labels) per sample.

Columns (names configurable):

- key column (default ``path``): the sample's key. For an image folder, its path
  relative to the dataset folder (``train/cat/0042.jpg``; ``cat/0042.jpg`` is
  accepted too when unambiguous); for an embedded dataset, its key or its index
  (``digits/17`` or ``17``; for toys the row number ``0..N-1``).
- label column (default ``label``): a class name or a class id ``0..C-1``; it
  replaces the given labels, so no synthetic noise is applied.
- truth column (optional): the true class of each sample; an empty cell means
  unknown (metrics against the truth then leave that sample out).

Without a truth column the dataset's own labels stay the truth: for an image
folder those are the class folder names (they are labels of the data), for
digits the real digits. ``--truth-column`` overrides them.

Every training sample must appear exactly once; an image folder's held-out
and test images may appear too, and then their labels become the test split's
labels (against the truth column if there is one; without it the test metric
is agreement with the file's given labels). One error lists every problem at
once, a count and the first rows of each kind: unknown classes, duplicate
keys, keys that match no image, and training samples missing from the file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from .csvcells import restore_frame
from ..errors import UserError, shown
from .base import Dataset

SHOWN = 5  # offenders named in an error message
MAX_BYTES = 256 << 20  # a label file far above any dataset this tool trains on is not one
KEY_GUESSES = ("path", "key", "file", "filename", "image", "index", "id")
LABEL_GUESSES = ("label", "given", "given_label", "noisy_label", "class", "annotation")
TRUTH_GUESSES = ("truth", "true", "true_label", "clean_label", "gold")


def _listing(items, count: int = SHOWN, quoted: bool = False) -> str:
    """The first ``count`` items, each cut by :func:`shown` (``quoted``: already shown), and how many more."""
    items = list(items)
    text = ", ".join(i if quoted else shown(i) for i in items[:count])
    return text + (f" and {len(items) - count} more" if len(items) > count else "")


def read_label_csv(path: str | Path) -> pd.DataFrame:
    """The label file as a table of strings (no type guessing, no NaN)."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise UserError(f"label file {shown(p)} does not exist; valid: a CSV file with a key and a label column")
    if p.stat().st_size > MAX_BYTES:
        raise UserError(f"label file {shown(p)} is {p.stat().st_size / 2**20:,.0f} MiB; at most "
                        f"{MAX_BYTES / 2**20:.0f} MiB are read (one short row per sample)")
    try:
        table = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except UnicodeDecodeError as exc:
        raise UserError(f"label file {shown(p)} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position "
                        f"{exc.start}); save it as UTF-8 CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"label file {shown(p)} is not a readable CSV: {shown(reason)}") from None
    if table.empty:
        raise UserError(f"label file {shown(p)} has no rows; valid: a header line, then one row per sample")
    table = restore_frame(table)  # a label file we exported: names that start like a formula carry a quote
    table.columns = [str(c).strip() for c in table.columns]
    return table


def guess_columns(columns) -> dict[str, str | None]:
    """Likely key, label and truth column names among ``columns`` (for a form's defaults)."""
    lowered = {str(c).lower(): str(c) for c in columns}

    def first(guesses):
        return next((lowered[g] for g in guesses if g in lowered), None)

    return {"key": first(KEY_GUESSES), "label": first(LABEL_GUESSES), "truth": first(TRUTH_GUESSES)}


KEY_MATCH = 0.5  # share of a column's values that must be sample keys for it to count as a key column


def key_columns(table: pd.DataFrame, dataset: Dataset) -> list[str]:
    """Columns of ``table`` whose values are mostly (:data:`KEY_MATCH`) keys of ``dataset``'s samples."""
    lookup = _key_lookup(dataset.keys())
    found = []
    for column in table.columns:
        hits = sum(_normalise_key(str(k)) in lookup for k in table[column])
        if hits and hits >= KEY_MATCH * len(table):
            found.append(column)
    return found


def label_table_preview(dataset: Dataset, path: str | Path, rows: int = 8) -> dict:
    """A label file's columns and first rows, shown only when it is a label table of ``dataset``.

    The Setup page reads files anywhere on the machine it runs on; so that it
    cannot show the lines of any readable file, nothing of the file (rows,
    column names) is returned unless some column's values are mostly keys of
    the dataset's samples. Otherwise ``error`` says what is wrong in one line
    without repeating the file.

    Returns
    -------
    dict
        ``ok``; ``error`` (str or None); when ok, ``columns`` (all),
        ``key_columns`` (those holding sample keys) and ``head`` (the first ``rows`` rows).
    """
    refused = {"ok": False, "columns": None, "key_columns": None, "head": None}
    try:
        table = read_label_csv(path)
    except UserError as exc:  # these messages name the file and the problem, never its lines
        return {**refused, "error": str(exc)}
    keys = key_columns(table, dataset)
    if not keys:
        example = _listing(dataset.keys()[:2], 2)
        return {**refused, "error": f"label file {shown(path)} is not a label table of {dataset.name!r}: none of its "
                                    f"{len(table.columns)} column(s) holds the samples' keys (they look like "
                                    f"{example}, or an index 0..{dataset.num_train - 1}); its contents are not "
                                    "shown"}
    return {"ok": True, "error": None, "columns": list(table.columns), "key_columns": keys, "head": table.head(rows)}


def _key_lookup(keys: tuple[str, ...]) -> dict[str, int]:
    """Key -> position in ``keys``, with unambiguous aliases: a trailing index (``digits/17`` -> ``17``)
    and a folder path without its split (``train/cat/1.jpg`` -> ``cat/1.jpg``)."""
    lookup = {k: i for i, k in enumerate(keys)}
    aliases: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        head, _, tail = k.rpartition("/")
        if head and tail.isascii() and tail.isdigit():
            aliases.setdefault(str(int(tail)), []).append(i)
        for split in ("train/", "test/"):
            if k.startswith(split):
                aliases.setdefault(k[len(split):], []).append(i)
    for alias, hits in aliases.items():
        if len(hits) == 1 and alias not in lookup:
            lookup[alias] = hits[0]
    return lookup


def _normalise_key(key: str) -> str:
    key = key.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def _class_ids(values: pd.Series, dataset: Dataset, allow_empty: bool) -> tuple[np.ndarray, list[str]]:
    """Class names or ids (strings) -> ids (N,), -1 where empty (if allowed) or not a class;
    and the offending values with their line numbers."""
    by_name = {name: i for i, name in enumerate(dataset.class_names)}
    by_lower = {name.lower(): i for i, name in enumerate(dataset.class_names)}
    ids, bad = np.full(len(values), -1, dtype=np.int64), []
    for row, raw in enumerate(values):
        text = raw.strip()
        if text == "" and allow_empty:
            continue
        if text in by_name:
            ids[row] = by_name[text]
        elif text.lower() in by_lower:
            ids[row] = by_lower[text.lower()]
        elif text.isascii() and text.isdigit() and int(text) < dataset.num_classes:
            ids[row] = int(text)
        else:
            bad.append(f"{shown(text)} (line {row + 2})")
    return ids, bad


def _require_column(table: pd.DataFrame, column: str | None, role: str, path) -> str:
    if column is None or column not in table.columns:
        raise UserError(f"label file {shown(path)} has no {role} column {shown(column)}; "
                        f"its columns are {_listing(table.columns, 20)} (choose with --{role}-column)")
    return column


@dataclasses.dataclass
class LabelMatch:
    """A label file matched to a dataset's samples.

    ``train_rows`` (N_train_rows,) / ``test_rows``: the file's rows naming a
    training / a test sample, and ``train_index`` / ``test_index`` the sample
    each names; ``problems``: every problem found, one sentence each.
    """

    train_rows: np.ndarray
    train_index: np.ndarray
    test_rows: np.ndarray
    test_index: np.ndarray
    problems: list[str]


def match_rows(table: pd.DataFrame, dataset: Dataset, key_column: str, path) -> LabelMatch:
    """Which sample each row names (training samples first, then held-out and test ones), and every
    problem: keys that match no image, samples named twice, training samples the file leaves out."""
    keys = [_normalise_key(k) for k in table[key_column]]
    train_keys, test_keys = dataset.keys(), tuple(dataset.test_keys)
    lookup = _key_lookup(train_keys + test_keys)
    target = np.array([lookup.get(k, -1) for k in keys], dtype=np.int64)
    problems = []
    unmatched = [f"{shown(k)} (line {i + 2})" for i, (k, t) in enumerate(zip(keys, target)) if t < 0]
    if unmatched:
        example = _listing(train_keys[:3], 3)
        problems.append(f"{len(unmatched)} key(s) match no image of {shown(dataset.name)}: {_listing(unmatched, quoted=True)} "
                        f"(valid keys look like {example})")
    counts = np.bincount(target[target >= 0], minlength=len(train_keys) + len(test_keys))
    duplicated = list(dict.fromkeys(k for k, t in zip(keys, target) if t >= 0 and counts[t] > 1))
    if duplicated:
        problems.append(f"{len(duplicated)} sample(s) appear more than once: {_listing(duplicated)} (each sample "
                        "needs exactly one row)")
    missing = np.flatnonzero(counts[:len(train_keys)] == 0)
    if len(missing):
        held = f" (the {len(test_keys)} held-out or test images may be left out)" if test_keys else ""
        problems.append(f"it leaves out {len(missing)} of {len(train_keys)} training samples: "
                        f"{_listing([train_keys[i] for i in missing])}{held}")
    rows = np.arange(len(keys))
    is_train = (target >= 0) & (target < len(train_keys))
    is_test = target >= len(train_keys)
    return LabelMatch(rows[is_train], target[is_train], rows[is_test], target[is_test] - len(train_keys), problems)


def _problem_message(path, problems: list[str]) -> str:
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    return f"label file {shown(path)} has {count}: " + "; ".join(problems)


def apply_label_file(dataset: Dataset, path: str | Path, key_column: str = "path", label_column: str = "label",
                     truth_column: str | None = None) -> Dataset:
    """The dataset with given labels (and truth, if asked) from a label CSV.

    Every training sample needs a row; the held-out and test images (an image
    folder's) may have rows too: their labels become the test split's labels
    (against the truth column when there is one; without it the test labels
    are the file's given labels, ``test_labels == "given"``).

    Returns
    -------
    Dataset
        A copy whose ``train_given`` (N,) holds the file's labels and, with a
        truth column, whose ``train_true`` (N,) holds its truth (-1: unknown).

    Raises
    ------
    UserError
        One line listing every problem at once (a count and the first rows of
        each kind): unknown classes, keys that match no image, duplicate rows,
        training samples left out.
    """
    table = read_label_csv(path)
    key_column = _require_column(table, key_column, "key", path)
    label_column = _require_column(table, label_column, "label", path)
    if truth_column:
        truth_column = _require_column(table, truth_column, "truth", path)
    match = match_rows(table, dataset, key_column, path)
    problems = list(match.problems)
    labels, bad = _class_ids(table[label_column], dataset, allow_empty=False)
    valid = f"valid: {_listing(dataset.class_names, 20)} or ids 0..{dataset.num_classes - 1}"
    if bad:
        problems.insert(0, f"{len(bad)} value(s) in column {shown(label_column)} are not classes of "
                           f"{shown(dataset.name)}: {_listing(bad, quoted=True)} ({valid})")
    truth = None
    if truth_column:
        truth, bad_truth = _class_ids(table[truth_column], dataset, allow_empty=True)
        if bad_truth:
            problems.insert(1 if bad else 0, f"{len(bad_truth)} value(s) in the truth column {shown(truth_column)} "
                                             f"are not classes: {_listing(bad_truth, quoted=True)} ({valid})")
    if problems:
        raise UserError(_problem_message(path, problems))
    given = np.empty(dataset.num_train, dtype=np.int64)
    given[match.train_index] = labels[match.train_rows]
    true = dataset.train_true
    if truth is not None:
        true = np.empty(dataset.num_train, dtype=np.int64)
        true[match.train_index] = truth[match.train_rows]
    test_true, test_labels = dataset.test_true, dataset.test_labels
    if len(match.test_rows):
        test_true = np.array(dataset.test_true if dataset.test_true is not None
                             else np.full(len(dataset.test_x), -1), dtype=np.int64, copy=True)
        source = truth if truth is not None else labels
        test_true[match.test_index] = source[match.test_rows]
        test_labels = "truth" if truth is not None else "given"
    return dataclasses.replace(dataset, train_given=given, train_true=true, test_true=test_true,
                               test_labels=test_labels)


def labels_with_noise_problem(labels: str | None, noise: str | None) -> str | None:
    """Why a label file and a synthetic noise spec cannot go together; None when they can.

    A label file's labels are the given labels as they are: synthetic noise is
    never added on top of them (the run's summary would report a noise that
    is not the file's), so any noise but ``none`` is refused.
    """
    from ..method.noise import parse_noise_spec

    if not labels or parse_noise_spec(noise or "none").kind == "none":
        return None
    return (f"--labels {shown(labels)} brings the given labels, so --noise {shown(noise)} would not be applied; "
            "drop --noise (or pass --noise none): synthetic noise is never added on top of a label file")


def label_file_report(dataset: Dataset, path: str | Path, key_column: str, label_column: str,
                      truth_column: str | None = None) -> dict:
    """Check a label file against a dataset without starting a run (the Setup page).

    Returns
    -------
    dict
        ``ok`` (bool), ``error`` (the message, or None), ``rows``, and when ok:
        ``changed`` (labels differing from the dataset's truth, or None) and
        ``truth_known`` (samples whose truth is known) and ``noise_rate`` (the
        file's known noise rate, :func:`engine.method.noise.known_noise_rate`:
        ``changed / truth_known``, or None).
    """
    from ..method.noise import known_noise_rate

    try:
        labelled = apply_label_file(dataset, path, key_column, label_column, truth_column)
    except UserError as exc:
        return {"ok": False, "error": str(exc), "rows": None, "changed": None, "truth_known": None,
                "noise_rate": None}
    true = labelled.train_true
    known = None if true is None else true >= 0
    changed = None if known is None else int(np.sum(labelled.train_given[known] != true[known]))
    return {"ok": True, "error": None, "rows": labelled.num_train, "changed": changed,
            "truth_known": None if known is None else int(known.sum()),
            "noise_rate": known_noise_rate("none", true, given_labels=labelled.train_given, label_file=True)}
