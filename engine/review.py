"""Annotator review: decisions that last, and that feed the next propagation.

Storage
-------
Decisions live in ``reviews.sqlite`` inside the run directory, one row per
event (an append-only log; nothing is ever updated or deleted)::

    events(id, sample, key, decision, label, reviewer, time, step,
           proposal, blind, undoes)

``decision`` is one of ``accept`` (the method's proposal, recorded in
``label``), ``keep`` (the given label), ``relabel`` (a chosen class),
``unsure`` (no label), ``outlier`` (exclude the sample from training) or
``undo``. An undo event cancels its reviewer's latest not-yet-undone decision
on that sample (``undoes`` names it). The *effective* decision of a sample is
its latest decision that is neither an undo nor undone, whoever made it.

Durability and concurrency: the database is in WAL mode with
``synchronous=FULL``, so a committed decision survives ``kill -9`` of the
writer (and a power loss). Every call opens its own connection (safe across
threads, processes and browser sessions), writes inside ``BEGIN IMMEDIATE``
and waits up to ``busy_timeout`` for other writers, so concurrent writers
serialise and none is lost.

Feedback into training
----------------------
:meth:`ReviewStore.clamps` turns the effective decisions into clamped labels
and an outlier mask; :func:`apply_clamps` makes the clamped labels seeds of
weight 1 that propagation never relabels (they are kept as 'easy') and
excludes outliers from seeding and training. :func:`engine.triage.repropagate` re-runs one
step's propagation with the clamps, to show their ripple.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

log = logging.getLogger(__name__)

REVIEWS_FILE = "reviews.sqlite"
#: Decisions a reviewer can record (``undo`` is recorded by :meth:`ReviewStore.undo`).
DECISIONS = ("accept", "keep", "relabel", "unsure", "outlier")
UNDO = "undo"
#: Decisions that fix a label (they become clamped seeds).
LABELLING = ("accept", "keep", "relabel")

_COLUMNS = ("id", "sample", "key", "decision", "label", "reviewer", "time", "step", "proposal", "blind", "undoes")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample INTEGER NOT NULL CHECK (sample >= 0),
    key TEXT,
    decision TEXT NOT NULL CHECK (decision IN ({", ".join(repr(d) for d in DECISIONS + (UNDO,))})),
    label INTEGER CHECK (label IS NULL OR label >= 0),
    reviewer TEXT NOT NULL CHECK (length(trim(reviewer)) > 0),
    time REAL NOT NULL,
    step INTEGER,
    proposal INTEGER,
    blind INTEGER NOT NULL DEFAULT 0,
    undoes INTEGER REFERENCES events(id)
);
CREATE INDEX IF NOT EXISTS events_by_sample ON events(sample, reviewer);
"""


@dataclass(frozen=True)
class Decision:
    """One review event.

    Attributes
    ----------
    id : int
        Position in the log (increasing with time of commit).
    sample : int
        Index of the training sample.
    key : str or None
        The sample's key (index string or relative path).
    decision : str
        One of :data:`DECISIONS` or ``"undo"``.
    label : int or None
        The class the decision fixes (``accept``/``keep``/``relabel``), else ``None``.
    reviewer : str
    time : float
        Seconds since the epoch.
    step : int or None
        The run step whose snapshot the reviewer was looking at.
    proposal : int or None
        The method's proposed (refined) label at that step.
    blind : bool
        Whether the reviewer decided before the proposal was shown.
    undoes : int or None
        For an undo event, the id of the decision it cancels.
    """

    id: int
    sample: int
    key: str | None
    decision: str
    label: int | None
    reviewer: str
    time: float
    step: int | None = None
    proposal: int | None = None
    blind: bool = False
    undoes: int | None = None

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in _COLUMNS}


class ReviewStore:
    """The review log of one run directory.

    Parameters
    ----------
    run_dir : path
        The run directory (must exist); the log is ``run_dir/reviews.sqlite``.
    num_classes : int, optional
        When given, labels are checked to lie in ``0..num_classes-1``.
    busy_timeout : float
        Seconds a writer waits for another writer before giving up.

    The run's ``dataset.npz`` (when present) supplies the number of samples,
    the sample keys and the given labels (used by ``keep``).
    """

    def __init__(self, run_dir, num_classes: int | None = None, busy_timeout: float = 30.0):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / REVIEWS_FILE
        self.num_classes = num_classes
        self.busy_timeout = busy_timeout
        self._static: dict | None = None

    # ------------------------------------------------------------ connection
    @contextmanager
    def _connect(self, write: bool):
        if not self.run_dir.is_dir():
            raise UserError(f"run directory {str(self.run_dir)!r} does not exist")
        con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            _ensure_wal(con, self.busy_timeout)
            con.execute("PRAGMA synchronous=FULL")
            if write:
                con.execute("BEGIN IMMEDIATE")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    con.execute(statement)
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            else:
                yield con
        finally:
            con.close()

    def _rows(self, sql: str, params: tuple = ()) -> list[Decision]:
        if not self.path.is_file():
            return []
        with self._connect(write=False) as con:
            try:
                rows = con.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise
        return [_decision(row) for row in rows]

    # ------------------------------------------------------------ run facts
    def _dataset(self) -> dict:
        if self._static is None:
            path = self.run_dir / "dataset.npz"
            self._static = {}
            if path.is_file():
                with np.load(path, allow_pickle=False) as data:
                    self._static = {"given": data["given"].astype(np.int64), "keys": data["keys"].astype(str)}
        return self._static

    def _prepare(self, sample: int, decision: str, reviewer: str, label, key, step, proposal, blind, when) -> dict:
        """Validate one event and fill in what the run directory knows."""
        if decision not in DECISIONS:
            raise UserError(f"unknown decision {decision!r}; valid: {', '.join(DECISIONS)}")
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise UserError("a reviewer name is required before recording a decision")
        sample = _as_index(sample, "sample")
        static = self._dataset()
        if static and not 0 <= sample < len(static["given"]):
            raise UserError(f"sample {sample} does not exist; valid: 0..{len(static['given']) - 1}")
        if key is None and static:
            key = str(static["keys"][sample])
        if decision == "accept" and label is None:
            label = proposal
        if decision == "keep" and label is None and static:
            label = int(static["given"][sample])
        if decision in LABELLING:
            if label is None:
                raise UserError(f"decision {decision!r} on sample {sample} needs a label")
            label = self._check_label(label)
        else:
            label = None
        if proposal is not None:
            proposal = self._check_label(proposal)
        return {"sample": sample, "key": key, "decision": decision, "label": label, "reviewer": reviewer,
                "time": float(time.time() if when is None else when), "step": None if step is None else int(step),
                "proposal": proposal, "blind": int(bool(blind)), "undoes": None}

    def _check_label(self, label) -> int:
        label = _as_index(label, "label")
        if self.num_classes is not None and label >= self.num_classes:
            raise UserError(f"class {label} does not exist; valid: 0..{self.num_classes - 1}")
        return label

    # ------------------------------------------------------------ writing
    def record(self, sample: int, decision: str, reviewer: str, label: int | None = None, *,
               key: str | None = None, step: int | None = None, proposal: int | None = None,
               blind: bool = False, time: float | None = None) -> Decision:
        """Append one decision; returns it as stored.

        ``accept`` without ``label`` takes ``proposal``; ``keep`` without
        ``label`` takes the given label from the run directory.
        """
        return self.record_many([dict(sample=sample, decision=decision, reviewer=reviewer, label=label, key=key,
                                      step=step, proposal=proposal, blind=blind, time=time)])[0]

    def record_many(self, events: list[dict]) -> list[Decision]:
        """Append several decisions in one transaction: all are stored, or none.

        Each event is a dict of :meth:`record`'s arguments.
        """
        rows = [self._prepare(e["sample"], e["decision"], e["reviewer"], e.get("label"), e.get("key"),
                              e.get("step"), e.get("proposal"), e.get("blind", False), e.get("time"))
                for e in events]
        with self._connect(write=True) as con:
            return [_insert(con, row) for row in rows]

    def undo(self, reviewer: str, sample: int | None = None, step: int | None = None) -> Decision:
        """Cancel ``reviewer``'s latest not-yet-undone decision on ``sample``
        (on any sample when ``None``); returns the undo event.

        Raises
        ------
        UserError
            If the reviewer has nothing left to undo there.
        """
        reviewer = (reviewer or "").strip()
        if not reviewer:
            raise UserError("a reviewer name is required to undo a decision")
        where, params = "reviewer = ?", [reviewer]
        if sample is not None:
            where, params = where + " AND sample = ?", params + [_as_index(sample, "sample")]
        with self._connect(write=True) as con:
            target = con.execute(
                f"SELECT id, sample, key FROM events WHERE {where} AND decision != 'undo' AND id NOT IN "
                "(SELECT undoes FROM events WHERE undoes IS NOT NULL) ORDER BY id DESC LIMIT 1", params).fetchone()
            if target is None:
                place = "" if sample is None else f" on sample {sample}"
                raise UserError(f"reviewer {reviewer!r} has no decision{place} left to undo")
            row = {"sample": target[1], "key": target[2], "decision": UNDO, "label": None, "reviewer": reviewer,
                   "time": time.time(), "step": step, "proposal": None, "blind": 0, "undoes": target[0]}
            return _insert(con, row)

    # ------------------------------------------------------------ reading
    def history(self, sample: int | None = None) -> list[Decision]:
        """Every event, oldest first (of one sample when given), undo events included."""
        if sample is None:
            return self._rows(f"SELECT {', '.join(_COLUMNS)} FROM events ORDER BY id")
        return self._rows(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE sample = ? ORDER BY id",
                          (_as_index(sample, "sample"),))

    def effective(self) -> list[Decision]:
        """Decisions that are neither undo events nor undone, oldest first."""
        return self._rows(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE decision != 'undo' AND id NOT IN "
                          "(SELECT undoes FROM events WHERE undoes IS NOT NULL) ORDER BY id")

    def latest(self) -> dict[int, Decision]:
        """The effective decision of every reviewed sample: sample -> its latest."""
        return {d.sample: d for d in self.effective()}  # oldest first, so the latest wins

    def version(self) -> int:
        """Id of the newest event (0 when none): changes whenever anything is recorded."""
        events = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM events ORDER BY id DESC LIMIT 1")
        return events[0].id if events else 0

    def clamps(self, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Clamped labels and outliers from the effective decisions.

        Returns
        -------
        clamped_labels : np.ndarray, shape (N,), int64
            The reviewed label (accept: the proposal; keep: the given label;
            relabel: the chosen class); -1 where not clamped (no decision,
            ``unsure``, ``outlier``).
        outlier_mask : np.ndarray, shape (N,), bool
            Samples to exclude from training.
        """
        clamped = np.full(num_samples, -1, dtype=np.int64)
        outliers = np.zeros(num_samples, dtype=bool)
        for sample, d in self.latest().items():
            if sample >= num_samples:
                raise UserError(f"review log {str(self.path)!r} names sample {sample}, but the run has "
                                f"{num_samples} samples")
            if d.decision in LABELLING:
                clamped[sample] = d.label
            elif d.decision == "outlier":
                outliers[sample] = True
        return clamped, outliers


def _ensure_wal(con: sqlite3.Connection, timeout: float) -> None:
    """Switch the database to WAL, retrying while another connection holds it.

    Changing the journal mode needs an exclusive lock and SQLite's busy
    handler does not always wait for it: several writers opening a new
    database at once would otherwise get 'database is locked'.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _as_index(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise UserError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def _insert(con: sqlite3.Connection, row: dict) -> Decision:
    names = [c for c in _COLUMNS if c != "id"]
    cursor = con.execute(f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [row[c] for c in names])
    return _decision((cursor.lastrowid, *[row[c] for c in names]))


def _decision(row) -> Decision:
    values = dict(zip(_COLUMNS, row))
    values["blind"] = bool(values["blind"])
    return Decision(**values)


# ---------------------------------------------------------------- feedback into propagation
# How decisions clamp a propagation is a rule of the method: engine.refinery.apply_clamps. It stays
# importable from here, lazily (PEP 562), so that reading a review log does not import torch.
def __getattr__(name: str):
    if name == "apply_clamps":
        from .refinery import apply_clamps

        return apply_clamps
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- run facts for the review
def run_class_names(store) -> tuple[str, ...]:
    """Class names of a run's dataset (``RunStore.class_names``)."""
    return store.class_names()


def label_history(store, fields=("refined", "weight", "student_loss")) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-sample values over all steps (:func:`engine.snapshot.history`)."""
    from .snapshot import history

    return history(store, tuple(fields))


def agreement(decisions, true_labels: np.ndarray | None = None, blind_only: bool = True) -> dict:
    """How a reviewer's labels compare with the method's proposals and the truth.

    Parameters
    ----------
    decisions : iterable of Decision
        Effective decisions (e.g. ``ReviewStore.latest().values()``).
    true_labels : np.ndarray, shape (N,), optional
        -1 where unknown.
    blind_only : bool
        Count only decisions made before the proposal was shown.

    Returns
    -------
    dict
        ``labelled`` (decisions with a label), ``with_method`` (fraction equal
        to the proposal), ``with_truth`` (fraction equal to the truth),
        ``method_with_truth`` (the proposals' own accuracy on those samples);
        ``None`` where nothing can be compared. Higher = more agreement.
    """
    chosen = [d for d in decisions if d.decision in LABELLING and (d.blind or not blind_only)]
    with_method = [d.label == d.proposal for d in chosen if d.proposal is not None]
    known = [d for d in chosen if true_labels is not None and true_labels[d.sample] >= 0]
    with_truth = [d.label == true_labels[d.sample] for d in known]
    method_truth = [d.proposal == true_labels[d.sample] for d in known if d.proposal is not None]

    def mean(values):
        return float(np.mean(values)) if values else None

    return {"labelled": len(chosen), "with_method": mean(with_method), "with_truth": mean(with_truth),
            "method_with_truth": mean(method_truth), "compared_with_truth": len(known)}
