"""Annotator review: decisions that last, several reviewers, and a consensus
that feeds the next propagation.

Storage
-------
Decisions live in ``reviews.sqlite`` inside the run directory, one row per
event (an append-only log; nothing is ever updated or deleted)::

    events(id, sample, key, decision, label, reviewer, time, step,
           proposal, blind, undoes, batch, client_id)
    meta(key, value)        -- 'samples_digest': whose samples the log is about

``decision`` is one of ``accept`` (the method's proposal, recorded in
``label``), ``keep`` (the given label), ``relabel`` (a chosen class),
``unsure`` (no label), ``outlier`` (exclude the sample from training) or
``undo``. An undo event cancels its reviewer's latest not-yet-undone decision
on that sample (``undoes`` names it). ``batch`` numbers the decisions of one
bulk action, which :meth:`ReviewStore.undo_last` undoes as a whole.

Several reviewers
-----------------
A reviewer's *current* decision on a sample is their latest decision there
that is neither an undo nor undone; every reviewer's current decision counts
(a second reviewer never replaces the first). Per sample the
:class:`Consensus` of those votes (:func:`consensus_of`):

- a vote is the label a decision fixes (accept/keep/relabel), ``outlier``, or
  nothing (``unsure`` abstains);
- the consensus is the majority vote; a tie between the top votes goes to the
  method's proposal when the proposal is one of them (the proposal recorded
  with the newest vote), otherwise the sample stays unresolved (no clamp);
- the sample is *disputed* when its votes are not all the same.

This is the majority-vote consensus that CROWDLAB (cleanlab.multiannotator)
starts from; CROWDLAB then reweights votes by a model's predicted
probabilities and estimated annotator quality. That weighting is left out on
purpose: here the consensus clamps the very method whose predictions would
weigh in, and a handful of reviewers per sample is too few to estimate
annotator quality (see the README's Review section).

Identity of the samples
-----------------------
A log names samples by index, so it only means something for the samples it
was written for. The log stores :func:`samples_digest` of the run's keys and
given labels when it is created, and :class:`ReviewStore` refuses (a
:class:`UserError` naming the file) to read or write a log whose digest is
not the run's. The run's digest is stored in its ``dataset.npz`` when the run
is made (:mod:`engine.rundir.digest`), so checking a log reads no key; a run
made before that computes it from its keys and given labels (every key, once
per version of the file per process). A log written before digests existed gets the run's digest on
first open if every sample it names exists in the run (an index out of range
means it belongs to other samples: refused). A file that is not SQLite is
refused the same way, never a traceback.

Durability and concurrency: the database is in WAL mode with
``synchronous=FULL``, so a committed decision survives ``kill -9`` of the
writer (and a power loss). Every call opens its own connection (safe across
threads, processes and browser sessions), writes inside ``BEGIN IMMEDIATE``
and waits up to ``busy_timeout`` for other writers, so concurrent writers
serialise and none is lost.

Feedback into training
----------------------
:meth:`ReviewStore.clamps` turns the consensus into clamped labels and an
outlier mask; :func:`engine.method.refinery.apply_clamps` makes the clamped labels seeds of weight 1
that propagation never relabels (they are kept as 'easy') and excludes
outliers from seeding and training. :func:`engine.readers.triage.repropagate` re-runs
one step's propagation with the clamps, to show their ripple.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .digest import samples_digest
from .store import RunStore

log = logging.getLogger(__name__)

#: Decisions a reviewer can record (``undo`` is recorded by :meth:`ReviewStore.undo`).
DECISIONS = ("accept", "keep", "relabel", "unsure", "outlier")
UNDO = "undo"
#: Decisions that fix a label (they become clamped seeds).
LABELLING = ("accept", "keep", "relabel")
#: The vote of an ``outlier`` decision (labels are the other votes).
OUTLIER = "outlier"
MAX_REVIEWER_LENGTH = 64
DIGEST_KEY = "samples_digest"

_COLUMNS = ("id", "sample", "key", "decision", "label", "reviewer", "time", "step", "proposal", "blind", "undoes",
            "batch", "client_id")
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
    undoes INTEGER REFERENCES events(id),
    batch INTEGER,
    client_id TEXT
);
CREATE INDEX IF NOT EXISTS events_by_sample ON events(sample, reviewer);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def check_reviewer(name) -> str:
    """A reviewer name, stripped; raises :class:`UserError` when unusable.

    Any printable text of 1 to :data:`MAX_REVIEWER_LENGTH` characters (quotes
    and markup included: pages show it as text).
    """
    name = str(name or "").strip()
    if not name:
        raise UserError("a reviewer name is required before recording a decision")
    if len(name) > MAX_REVIEWER_LENGTH:
        raise UserError(f"reviewer name {name[:20]!r}… is {len(name)} characters long; at most "
                        f"{MAX_REVIEWER_LENGTH} are allowed")
    if any(not ch.isprintable() for ch in name):
        raise UserError(f"reviewer name {name!r} holds control characters; use printable text")
    return name


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
    batch : int or None
        Number of the bulk action the decision belongs to (``None``: a single decision).
    client_id : str or None
        The id the browser gave the press that made it (a resend of the same id records nothing new).
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
    batch: int | None = None
    client_id: str | None = None

    @property
    def vote(self):
        """What the decision says about the sample: its label, ``"outlier"``, or ``None`` (abstains)."""
        if self.decision in LABELLING:
            return self.label
        return OUTLIER if self.decision == OUTLIER else None


@dataclass(frozen=True)
class Consensus:
    """The reviewers' verdict on one sample.

    Attributes
    ----------
    sample : int
    label : int or None
        The consensus label (clamped in the next propagation); ``None`` when
        the verdict is an outlier, all abstained, or a tie stayed unresolved.
    outlier : bool
        The verdict excludes the sample from training.
    disputed : bool
        The reviewers' votes differ.
    tie_broken : bool
        The top votes tied and the method's proposal decided.
    votes : tuple of Decision
        Each reviewer's current decision, oldest first.
    """

    sample: int
    label: int | None
    outlier: bool
    disputed: bool
    tie_broken: bool
    votes: tuple

    @property
    def resolved(self) -> bool:
        return self.label is not None or self.outlier

    @property
    def reviewers(self) -> tuple[str, ...]:
        return tuple(d.reviewer for d in self.votes)

    @property
    def decision(self) -> str:
        """The verdict as a decision: the kind of the newest vote for the consensus
        (accept/keep/relabel/outlier), ``unsure`` when unresolved."""
        if not self.resolved:
            return "unsure"
        winner = OUTLIER if self.outlier else self.label
        return next(d.decision for d in reversed(self.votes) if d.vote == winner)


def current_decisions(events: Iterable[Decision]) -> list[Decision]:
    """Each reviewer's current decision per sample (latest, not undone, no undo event), oldest first.

    ``events`` is a log's events in id order (undo events included).
    """
    events = list(events)
    undone = {e.undoes for e in events if e.undoes is not None}
    current: dict[tuple[int, str], Decision] = {}
    for e in events:
        if e.decision != UNDO and e.id not in undone:
            current.pop((e.sample, e.reviewer), None)  # re-insert: dict order = id order of the current ones
            current[(e.sample, e.reviewer)] = e
    return sorted(current.values(), key=lambda d: d.id)


def consensus_of(decisions: Iterable[Decision], proposals: Mapping[int, int] | np.ndarray | None = None
                 ) -> dict[int, Consensus]:
    """The consensus of every reviewed sample (see the module docstring).

    Parameters
    ----------
    decisions : iterable of Decision
        Current decisions, at most one per (sample, reviewer)
        (:func:`current_decisions`); oldest first.
    proposals : mapping or np.ndarray (N,), optional
        The method's proposal per sample, the tie-breaker. Default: the
        proposal recorded with the sample's newest vote that has one.

    Returns
    -------
    dict of sample -> Consensus
    """
    by_sample: dict[int, list[Decision]] = {}
    for d in decisions:
        by_sample.setdefault(d.sample, []).append(d)
    result = {}
    for sample, votes in by_sample.items():
        proposal = None
        if proposals is not None:
            proposal = int(proposals[sample]) if (not isinstance(proposals, Mapping) or sample in proposals) else None
        if proposal is None:
            proposal = next((d.proposal for d in reversed(votes) if d.proposal is not None), None)
        result[sample] = _verdict(sample, tuple(votes), proposal)
    return result


def _verdict(sample: int, votes: tuple, proposal: int | None) -> Consensus:
    counts = Counter(d.vote for d in votes if d.vote is not None)
    disputed = len(counts) > 1
    if not counts:
        return Consensus(sample, None, False, False, False, votes)
    top = max(counts.values())
    winners = [v for v, c in counts.items() if c == top]
    tie_broken = False
    if len(winners) == 1:
        winner = winners[0]
    elif proposal is not None and proposal in winners:
        winner, tie_broken = proposal, True
    else:
        return Consensus(sample, None, False, disputed, False, votes)
    outlier = winner == OUTLIER
    return Consensus(sample, None if outlier else int(winner), outlier, disputed, tie_broken, votes)


#: Samples digests computed for runs made before ``dataset.npz`` stored one: (path, mtime_ns, size) -> digest.
_COMPUTED_DIGESTS: dict[tuple[str, int, int], str] = {}


class _LogFile:
    """The review log's SQLite file: connections, schema, the check that it belongs to this run, one-line
    errors, and the run facts a decision is checked against. :class:`ReviewStore` adds the decisions."""

    #: What the log is called in messages, and which of the run directory's paths holds it.
    kind = "review log"
    _path_of = "reviews_path"

    def __init__(self, run_dir, num_classes: int | None = None, busy_timeout: float = 30.0):
        self.run_dir = Path(run_dir)
        self.path = getattr(RunStore(self.run_dir), self._path_of)
        self.num_classes = num_classes
        self.busy_timeout = busy_timeout
        self._static: dict | None = None
        self._checked = False

    # ------------------------------------------------------------ connection
    @contextmanager
    def _connect(self, write: bool):
        if not self.run_dir.is_dir():
            raise UserError(f"run directory {str(self.run_dir)!r} does not exist")
        try:
            con = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        try:
            try:
                con.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
                _ensure_wal(con, self.busy_timeout)
                con.execute("PRAGMA synchronous=FULL")
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
            if write:
                con.execute("BEGIN IMMEDIATE")
                try:
                    self._ensure_schema(con)
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            else:
                yield con
        except sqlite3.Error as exc:
            if _code(exc) in (None, 1):  # SQLITE_ERROR: a bug in our SQL, not the file
                raise
            raise self._damaged(exc) from None
        finally:
            con.close()

    def _damaged(self, exc: Exception) -> UserError:
        """One line for a failed read or write of the log: damaged only when SQLite says the file is.

        A full disk, a read-only folder or a busy log is said as such, with the
        decisions already saved intact; only a damaged file gets the advice to
        start a new log.
        """
        code, first = _code(exc), (str(exc).splitlines() or [type(exc).__name__])[0]
        where = f"{self.kind} {str(self.path)!r}"
        intact = "the decisions already saved in it are intact"
        if code == _FULL or (code == _IOERR and _disk_nearly_full(self.run_dir)):
            return UserError(f"cannot write {where}: the disk is full; {intact}; free some space, then decide again")
        if code in _READ_ONLY or (code in (_CANTOPEN, _IOERR) and not os.access(self.run_dir, os.W_OK)):
            return UserError(f"cannot write {where}: the folder is read-only (or not yours to write); {intact}; "
                             "make it writable, then decide again")
        if code == _BUSY:
            return UserError(f"{where} is busy (another writer held it for {self.busy_timeout:.0f} s); {intact}; "
                             "try again")
        if code in _DAMAGED:
            return UserError(f"{where} is damaged ({first}): it is not an intact SQLite file; restore it from a "
                             "backup, or move it out of the run folder to start a new log")
        return UserError(f"{where} could not be read or written ({first}); {intact}; try again")

    def _ensure_schema(self, con: sqlite3.Connection) -> None:
        """Tables, the ``batch`` column of logs made before it, and the samples digest of a new log."""
        for statement in filter(str.strip, _SCHEMA.split(";")):
            con.execute(statement)
        columns = {row[1] for row in con.execute("PRAGMA table_info(events)")}
        if "batch" not in columns:
            con.execute("ALTER TABLE events ADD COLUMN batch INTEGER")
        if "client_id" not in columns:
            con.execute("ALTER TABLE events ADD COLUMN client_id TEXT")
        con.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_by_client ON events(client_id) "
                    "WHERE client_id IS NOT NULL")
        digest = self._run_digest()
        if digest is not None:
            con.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (DIGEST_KEY, digest))

    def _check_log(self) -> None:
        """Refuse a damaged log or one written for other samples; stamp a log made before digests.

        Checked once per :class:`ReviewStore` (the pages make one per redraw).
        """
        if self._checked or not self.path.is_file():
            return
        try:
            with self._connect(write=False) as con:
                tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                stored = None
                if "meta" in tables:
                    row = con.execute("SELECT value FROM meta WHERE key = ?", (DIGEST_KEY,)).fetchone()
                    stored = row[0] if row else None
                columns = {row[1] for row in con.execute("PRAGMA table_info(events)")} if "events" in tables else set()
                largest = con.execute("SELECT MAX(sample) FROM events").fetchone()[0] if "events" in tables else None
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        digest = self._run_digest()
        if digest is not None:
            if stored is not None and stored != digest:
                raise UserError(f"{self.kind} {str(self.path)!r} was written for other samples (its samples digest "
                                f"{stored[:12]}… is not this run's {digest[:12]}…): move it out of the run folder "
                                "to start a new log, or put it back in the run it belongs to")
            n = len(self._dataset()["given"])
            if stored is None and largest is not None and largest >= n:
                raise UserError(f"{self.kind} {str(self.path)!r} names sample {largest}, but this run has {n} samples "
                                f"(0..{n - 1}): it belongs to other samples; move it out of the run folder")
        if tables and ("meta" not in tables or not {"batch", "client_id"} <= columns or (stored is None and digest is not None)):
            with self._connect(write=True):  # a log made before digests: adopt this run's samples
                log.info("%s %s: recorded the samples digest of this run", self.kind, self.path)
        self._checked = True

    def _rows(self, sql: str, params: tuple = ()) -> list[Decision]:
        if not self.path.is_file():
            return []
        self._check_log()
        with self._connect(write=False) as con:
            try:
                rows = con.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
        return [_decision(row) for row in rows]

    # ------------------------------------------------------------ run facts
    def _dataset(self) -> dict:
        """The run's ``given`` and ``keys`` (memory-mapped: a decision reads its sample's row) and the
        samples digest ``dataset.npz`` stores; empty without a ``dataset.npz``."""
        if self._static is None:
            store = RunStore(self.run_dir)
            self._static = {}
            if store.dataset_path.is_file():
                arrays = store.dataset_arrays()
                self._static = {"given": arrays["given"], "keys": arrays["keys"],
                                "digest": store.dataset_digest(DIGEST_KEY)}
        return self._static

    def _run_digest(self) -> str | None:
        """The run's samples digest: stored in ``dataset.npz`` when the run was made, so no key is read;
        a run made before that: computed from every key and given label (once per version of the file in
        this process)."""
        static = self._dataset()
        if not static:
            return None
        if static["digest"] is None:
            info = RunStore(self.run_dir).dataset_path.stat()
            version = (str(self.run_dir.resolve()), info.st_mtime_ns, info.st_size)
            if version not in _COMPUTED_DIGESTS:
                if len(_COMPUTED_DIGESTS) >= 8:
                    _COMPUTED_DIGESTS.pop(next(iter(_COMPUTED_DIGESTS)))
                _COMPUTED_DIGESTS[version] = samples_digest(static["keys"], static["given"])
            static["digest"] = _COMPUTED_DIGESTS[version]
        return static["digest"]

    def samples_digest(self) -> str | None:
        """The digest stored in the log (``None``: no log yet, or a log made before digests)."""
        if not self.path.is_file():
            return None
        self._check_log()
        with self._connect(write=False) as con:
            try:
                row = con.execute("SELECT value FROM meta WHERE key = ?", (DIGEST_KEY,)).fetchone()
            except sqlite3.OperationalError:
                return None
        return row[0] if row else None

    def _prepare(self, sample: int, decision: str, reviewer: str, label, key, step, proposal, blind, when) -> dict:
        """Validate one event and fill in what the run directory knows."""
        if decision not in DECISIONS:
            raise UserError(f"unknown decision {decision!r}; valid: {', '.join(DECISIONS)}")
        reviewer = check_reviewer(reviewer)
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
                "proposal": proposal, "blind": int(bool(blind)), "undoes": None, "batch": None, "client_id": None}

    def _check_label(self, label) -> int:
        label = _as_index(label, "label")
        if self.num_classes is not None and label >= self.num_classes:
            raise UserError(f"class {label} does not exist; valid: 0..{self.num_classes - 1}")
        return label


class ReviewStore(_LogFile):
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
    the sample keys and the given labels (used by ``keep`` and by the
    samples digest).
    """

    # ------------------------------------------------------------ writing
    def record(self, sample: int, decision: str, reviewer: str, label: int | None = None, *,
               key: str | None = None, step: int | None = None, proposal: int | None = None,
               blind: bool = False, time: float | None = None, once: bool = False) -> Decision:
        """Append one decision; returns it as stored.

        ``accept`` without ``label`` takes ``proposal``; ``keep`` without
        ``label`` takes the given label from the run directory. With
        ``once``, a decision equal to the reviewer's current one on that
        sample (same decision and label) is not recorded again: the current
        one is returned (a repeated key press, a second tab, a resent click).
        """
        return self.record_many([dict(sample=sample, decision=decision, reviewer=reviewer, label=label, key=key,
                                      step=step, proposal=proposal, blind=blind, time=time)], once=once)[0]

    def record_many(self, events: list[dict], once: bool = False, batch: bool = False,
                    skip_recorded: bool = False) -> list[Decision]:
        """Append several decisions in one transaction: all are stored, or none.

        Each event is a dict of :meth:`record`'s arguments. ``once`` as in
        :meth:`record`; ``batch`` marks them as one action (one
        :meth:`undo_last` undoes them all). With ``skip_recorded`` (an import),
        an event the log already holds is left out and not returned: the same
        sample, reviewer, decision, label and time, or, for an event without a
        time, the same as the reviewer's current decision there. Importing a
        file twice adds nothing the second time.
        """
        rows = [self._prepare(e["sample"], e["decision"], e["reviewer"], e.get("label"), e.get("key"),
                              e.get("step"), e.get("proposal"), e.get("blind", False), e.get("time"))
                for e in events]
        for row, e in zip(rows, events):
            row["time_given"] = e.get("time") is not None
        self._check_log()
        with self._connect(write=True) as con:
            number = con.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM events").fetchone()[0] if batch else None
            stored = []
            for row in rows:
                if skip_recorded and _already_recorded(con, row):
                    continue
                same = _current_same(con, row) if once else None
                if same is not None:
                    stored.append(same)
                    continue
                stored.append(_insert(con, {**row, "batch": number}))
            return stored

    def submit(self, sample: int, decision: str, reviewer: str, label: int | None = None, *, client_id: str,
               seen: int | None, step: int | None = None, proposal: int | None = None, blind: bool = False,
               key: str | None = None) -> tuple[str, Decision | None]:
        """One decision sent by a browser, acknowledged by its ``client_id``.

        ``seen`` is the id of the reviewer's current decision on ``sample`` that
        the browser showed when the key went down (0: none). Returns
        ``(status, decision)``:

        - ``"saved"``: recorded now;
        - ``"duplicate"``: this ``client_id`` was recorded before (a resend after
          a lost answer): the stored decision, nothing new;
        - ``"conflict"``: the reviewer's current decision there is no longer the
          one the browser showed (another tab of the same reviewer decided, or
          undid, in between): nothing recorded; the current decision (or ``None``).
        """
        client_id = str(client_id)
        if not 0 < len(client_id) <= 64 or not client_id.isprintable():
            raise UserError(f"client id {client_id[:20]!r} is not 1-64 printable characters")
        row = self._prepare(sample, decision, reviewer, label, key, step, proposal, blind, None)
        self._check_log()
        with self._connect(write=True) as con:
            found = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE client_id = ?",
                                (client_id,)).fetchone()
            if found is not None:
                return "duplicate", _decision(found)
            current = _current_of(con, row["sample"], row["reviewer"])
            if seen is not None and (0 if current is None else current.id) != int(seen):
                return "conflict", current
            return "saved", _insert(con, {**row, "client_id": client_id})

    def undo(self, reviewer: str, sample: int | None = None, step: int | None = None) -> Decision:
        """Cancel ``reviewer``'s latest not-yet-undone decision on ``sample``
        (on any sample when ``None``); returns the undo event.

        Raises
        ------
        UserError
            If the reviewer has nothing left to undo there.
        """
        reviewer = check_reviewer(reviewer)
        where, params = "reviewer = ?", [reviewer]
        if sample is not None:
            where, params = where + " AND sample = ?", params + [_as_index(sample, "sample")]
        self._check_log()
        with self._connect(write=True) as con:
            target = _undo_target(con, where, params)
            if target is None:
                place = "" if sample is None else f" on sample {sample}"
                raise UserError(f"reviewer {reviewer!r} has no decision{place} left to undo")
            return _insert(con, _undo_row(target, reviewer, step))

    def undo_last(self, reviewer: str, step: int | None = None) -> list[Decision]:
        """Cancel ``reviewer``'s last action: their latest decision, or the whole
        bulk action it belongs to. Returns the undo events (oldest first).

        Raises
        ------
        UserError
            If the reviewer has nothing left to undo.
        """
        reviewer = check_reviewer(reviewer)
        self._check_log()
        with self._connect(write=True) as con:
            targets = _last_action(con, reviewer)
            if not targets:
                raise UserError(f"reviewer {reviewer!r} has no decision left to undo")
            return [_insert(con, _undo_row(t, reviewer, step)) for t in targets]

    def undo_client(self, reviewer: str, target: str, client_id: str,
                    step: int | None = None) -> tuple[str, Decision | None]:
        """Undo, sent by a browser as ``client_id``, of the decision that browser sent as ``target``.

        Returns ``(status, current)``: ``"undone"`` (the decision is cancelled now), ``"duplicate"`` (this
        undo was recorded before), or ``"gone"`` (nothing to undo: the decision was never recorded, is not
        the reviewer's, or was undone already); ``current`` is the reviewer's current decision on that
        sample afterwards (or ``None``).
        """
        def undo(con: sqlite3.Connection, reviewer: str) -> tuple[str, Decision | None]:
            row = _undo_target(con, "client_id = ? AND reviewer = ?", [target, reviewer])
            if row is None:
                sample = _sample_sent_as(con, target)
                return "gone", None if sample is None else _current_of(con, sample, reviewer)
            _insert(con, {**_undo_row(row, reviewer, step), "client_id": client_id})
            return "undone", _current_of(con, row[1], reviewer)

        return self._once(reviewer, client_id, undo)

    def undo_last_client(self, reviewer: str, client_id: str, step: int | None = None) -> tuple[str, Decision | None]:
        """:meth:`undo_last`, sent by a browser as ``client_id`` (recorded once); ``(status, current)`` as
        :meth:`undo_client`, ``current`` on the sample of the (newest) decision undone."""
        def undo(con: sqlite3.Connection, reviewer: str) -> tuple[str, Decision | None]:
            targets = _last_action(con, reviewer)
            if not targets:
                return "gone", None
            for n, t in enumerate(targets):
                _insert(con, {**_undo_row(t, reviewer, step), "client_id": client_id if n == 0 else None})
            return "undone", _current_of(con, targets[-1][1], reviewer)

        return self._once(reviewer, client_id, undo)

    def _once(self, reviewer: str, client_id: str, write) -> tuple[str, Decision | None]:
        """Make ``write(con, reviewer)`` once per ``client_id``: a browser resends what it has no answer for,
        so an id recorded before answers ``("duplicate", current)`` and writes nothing."""
        reviewer = check_reviewer(reviewer)
        self._check_log()
        with self._connect(write=True) as con:
            done = _sample_sent_as(con, client_id)
            if done is not None:
                return "duplicate", _current_of(con, done, reviewer)
            return write(con, reviewer)

    # ------------------------------------------------------------ reading
    def history(self, sample: int | None = None) -> list[Decision]:
        """Every event, oldest first (of one sample when given), undo events included."""
        if sample is None:
            return self._rows(f"SELECT {', '.join(_COLUMNS)} FROM events ORDER BY id")
        return self._rows(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE sample = ? ORDER BY id",
                          (_as_index(sample, "sample"),))

    def effective(self) -> list[Decision]:
        """Each reviewer's current decision on each sample (:func:`current_decisions`), oldest first."""
        return current_decisions(self.history())

    def latest(self) -> dict[int, Decision]:
        """The newest current decision of every reviewed sample, whoever made it
        (for the consensus of several reviewers see :meth:`consensus`)."""
        return {d.sample: d for d in self.effective()}  # oldest first, so the newest wins

    def consensus(self, proposals=None) -> dict[int, Consensus]:
        """Every reviewed sample's :class:`Consensus` (``proposals``: see :func:`consensus_of`)."""
        return consensus_of(self.effective(), proposals)

    def version(self) -> int:
        """Id of the newest event (0 when none): changes whenever anything is recorded."""
        events = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM events ORDER BY id DESC LIMIT 1")
        return events[0].id if events else 0

    def clamps(self, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """Clamped labels and outliers from the reviewers' consensus.

        Returns
        -------
        clamped_labels : np.ndarray, shape (N,), int64
            The consensus label (accept: the proposal; keep: the given label;
            relabel: the chosen class); -1 where not clamped (no decision,
            all ``unsure``, an unresolved tie, an outlier).
        outlier_mask : np.ndarray, shape (N,), bool
            Samples to exclude from training.
        """
        clamped = np.full(num_samples, -1, dtype=np.int64)
        outliers = np.zeros(num_samples, dtype=bool)
        for sample, verdict in self._verdicts(num_samples):
            if verdict.label is not None:
                clamped[sample] = verdict.label
            elif verdict.outlier:
                outliers[sample] = True
        return clamped, outliers

    def _verdicts(self, num_samples: int, proposals=None):
        """``(sample, Consensus)`` of every decided sample, refused (one line) where the log names a sample the
        run does not have."""
        for sample, verdict in consensus_of(self.effective(), proposals).items():
            if sample >= num_samples:
                raise UserError(f"{self.kind} {str(self.path)!r} names sample {sample}, but the run has "
                                f"{num_samples} samples")
            yield sample, verdict


class AuditStore(ReviewStore):
    """The audit log of one run directory (``audit.sqlite``): reviewers name the class of randomly drawn samples
    (:func:`engine.method.audit.audit_order`) to count the noise rate and the labels' precision.

    The same log as :class:`ReviewStore` (decisions, several reviewers and their consensus, undo, resends,
    the samples digest) in a file of its own: an audit measures the labels and none of its labels is a training
    label, so nothing reads it as clamps (the calibrated rule reads it as evidence: engine.steps.run.Run.audit),
    and a run made again from the same samples keeps it (engine.steps.lifecycle).
    """

    kind = "audit log"
    _path_of = "audit_path"

    def _prepare(self, sample: int, decision: str, reviewer: str, label, key, step, proposal, blind, when) -> dict:
        """An audit decision names the sample's class blind to the method: no proposal, no ``accept``."""
        if decision == "accept":
            raise UserError("an audit names a sample's class, it does not accept the method's proposal; valid: "
                            "keep, relabel, unsure, outlier")
        return super()._prepare(sample, decision, reviewer, label, key, step, None, True, when)

    def audit_labels(self, num_samples: int) -> tuple[np.ndarray, int]:
        """``(labels (N,) int64, left_out)``: each audited sample's consensus class, ``NO_CLASS`` (-2) for an
        outlier, ``NOT_AUDITED`` (-1) where nobody audited it; ``left_out`` counts the samples audited but not
        placed (every reviewer unsure, or a tie).

        Audit decisions carry no proposal, so a tie stays a tie.
        """
        from ..method.audit import NO_CLASS, NOT_AUDITED

        labels = np.full(num_samples, NOT_AUDITED, dtype=np.int64)
        left_out = 0
        for sample, verdict in self._verdicts(num_samples, proposals={}):
            if verdict.label is not None:
                labels[sample] = verdict.label
            elif verdict.outlier:
                labels[sample] = NO_CLASS
            else:
                left_out += 1
        return labels, left_out


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


#: An event that is a decision still in force: not an undo, and not undone.
_IN_FORCE = "decision != 'undo' AND id NOT IN (SELECT undoes FROM events WHERE undoes IS NOT NULL)"


def _undo_target(con: sqlite3.Connection, where: str, params: list):
    """(id, sample, key, batch) of the newest not-yet-undone decision matching ``where``."""
    return con.execute(f"SELECT id, sample, key, batch FROM events WHERE {where} AND {_IN_FORCE} "
                       "ORDER BY id DESC LIMIT 1", params).fetchone()


def _last_action(con: sqlite3.Connection, reviewer: str) -> list:
    """(id, sample, key, batch) of each decision of ``reviewer``'s last action still in force, oldest first:
    their newest decision not undone, or every such decision of the bulk action it belongs to; [] when none."""
    target = _undo_target(con, "reviewer = ?", [reviewer])
    if target is None:
        return []
    if target[3] is None:
        return [target]
    return con.execute(f"SELECT id, sample, key, batch FROM events WHERE reviewer = ? AND batch = ? AND {_IN_FORCE} "
                       "ORDER BY id", (reviewer, target[3])).fetchall()


def _sample_sent_as(con: sqlite3.Connection, client_id: str) -> int | None:
    """The sample of the event a browser sent as ``client_id`` (``None``: nothing was recorded under it)."""
    found = con.execute("SELECT sample FROM events WHERE client_id = ?", (client_id,)).fetchone()
    return None if found is None else int(found[0])


def _undo_row(target, reviewer: str, step) -> dict:
    return {"sample": target[1], "key": target[2], "decision": UNDO, "label": None, "reviewer": reviewer,
            "time": time.time(), "step": step, "proposal": None, "blind": 0, "undoes": target[0], "batch": target[3],
            "client_id": None}


def _current_of(con: sqlite3.Connection, sample: int, reviewer: str) -> Decision | None:
    """The reviewer's current decision on ``sample`` (latest, not undone), or ``None``."""
    found = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE sample = ? AND reviewer = ? AND {_IN_FORCE} "
                        "ORDER BY id DESC LIMIT 1", (sample, reviewer)).fetchone()
    return None if found is None else _decision(found)


def _current_same(con: sqlite3.Connection, row: dict) -> Decision | None:
    """The reviewer's current decision on the row's sample when it is the same decision and label."""
    current = _current_of(con, row["sample"], row["reviewer"])
    if current is None:
        return None
    return current if (current.decision, current.label) == (row["decision"], row["label"]) else None


def _already_recorded(con: sqlite3.Connection, row: dict) -> bool:
    """Whether an imported event is in the log already (see :meth:`ReviewStore.record_many`)."""
    if not row.get("time_given"):
        return _current_same(con, row) is not None
    return con.execute("SELECT 1 FROM events WHERE sample = ? AND reviewer = ? AND decision = ? AND label IS ? AND "
                       "time = ? LIMIT 1", (row["sample"], row["reviewer"], row["decision"], row["label"],
                                            row["time"])).fetchone() is not None


def _insert(con: sqlite3.Connection, row: dict) -> Decision:
    row = {"client_id": None, **row}
    names = [c for c in _COLUMNS if c != "id"]
    cursor = con.execute(f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [row[c] for c in names])
    return _decision((cursor.lastrowid, *[row[c] for c in names]))


def _decision(row) -> Decision:
    values = dict(zip(_COLUMNS, row))
    values["blind"] = bool(values["blind"])
    return Decision(**values)


# ---------------------------------------------------------------- run facts for the review
def run_class_names(store) -> tuple[str, ...]:
    """Class names of a run's dataset (``RunStore.class_names``)."""
    return store.class_names()


def label_history(store, fields=("refined", "weight", "student_loss"), samples=None
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-sample values over all steps (:func:`engine.rundir.snapshot.history`), of every sample or only
    of ``samples`` (then only their rows are read: values ``(S, len(samples))``)."""
    from .snapshot import history

    return history(store, tuple(fields), samples=samples)


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


def reviewer_agreement(decisions: Iterable[Decision], true_labels: np.ndarray | None = None,
                       proposals=None) -> dict[str, dict]:
    """Per reviewer: how many decisions, how often they agree with the consensus and with the truth.

    Parameters
    ----------
    decisions : iterable of Decision
        Current decisions, one per (sample, reviewer) (:meth:`ReviewStore.effective`).
    true_labels : np.ndarray, shape (N,), optional
        -1 where unknown.
    proposals : optional
        Tie-breakers of the consensus (see :func:`consensus_of`).

    Returns
    -------
    dict of reviewer -> dict
        ``decisions`` (current decisions), ``labelled`` (of them, fixing a
        label); ``with_consensus``: the fraction of their votes equal to the
        consensus, over the samples that at least one other reviewer also
        voted on and whose consensus is resolved (``compared_with_consensus``
        of them; a sample only they reviewed says nothing about agreement);
        ``disputed``: their samples that are disputed; ``with_truth``: the
        fraction of their labels equal to the true label where known
        (``compared_with_truth``). ``None`` where nothing can be compared.
        Higher = more agreement.
    """
    decisions = list(decisions)
    verdicts = consensus_of(decisions, proposals)
    stats: dict[str, dict] = {}
    for d in decisions:
        s = stats.setdefault(d.reviewer, {"decisions": 0, "labelled": 0, "disputed": 0, "_cons": [], "_truth": []})
        s["decisions"] += 1
        verdict = verdicts[d.sample]
        s["disputed"] += int(verdict.disputed)
        if d.decision in LABELLING:
            s["labelled"] += 1
            if true_labels is not None and true_labels[d.sample] >= 0:
                s["_truth"].append(d.label == int(true_labels[d.sample]))
        others = [v for v in verdict.votes if v.reviewer != d.reviewer and v.vote is not None]
        if d.vote is not None and others and verdict.resolved:
            s["_cons"].append(d.vote == (OUTLIER if verdict.outlier else verdict.label))
    for s in stats.values():
        cons, truth = s.pop("_cons"), s.pop("_truth")
        s.update(with_consensus=float(np.mean(cons)) if cons else None, compared_with_consensus=len(cons),
                 with_truth=float(np.mean(truth)) if truth else None, compared_with_truth=len(truth))
    return dict(sorted(stats.items()))


# SQLite's primary result codes (the low byte of an extended code) that matter for the one-line errors.
_BUSY, _READ_ONLY_CODE, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB, _PERM, _AUTH = 5, 8, 10, 11, 13, 14, 26, 3, 23
_READ_ONLY = {_READ_ONLY_CODE, _PERM, _AUTH}
_DAMAGED = {_CORRUPT, _NOTADB}


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _disk_nearly_full(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < (1 << 20)
