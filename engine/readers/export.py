"""Exports of a run and its review, and the import of decisions.

``export_run(store, out_dir)`` writes:

=====================  ======================================================
samples.csv / .json    every training sample: key, index, given, refined,
                       final label after review, decision, reviewer, AWE
                       weight, propagation confidence (labels as class names)
decisions.csv          one row per reviewer decision (each reviewer's current
                       decision on each sample, ``kind=reviewer``) and one
                       consensus row per reviewed sample (``kind=consensus``,
                       ``disputed`` 1 where reviewers disagree); the file
                       :func:`import_decisions` reads back (it skips the
                       consensus rows)
review_history.csv     every review event, undo included
clean_labels.csv       ``path,label`` of every sample not excluded as an
                       outlier, ready for ``--labels`` (keys, class names)
student.pt             the student's ``state_dict`` (when a checkpoint exists)
audit.json             with an audit log only: the audit's numbers (:func:`engine.readers.audit.audit_report`);
                       samples.csv / .json then also say per sample ``audited``
                       (1 or 0) and ``audited_class`` (a class name, ``outlier``, or empty)
report.md + *.png      the run report (:mod:`engine.readers.report`)
manifest.json          every file above with its size and SHA-256, the run
                       and the step (:func:`engine.readers.exportdir.verify_export`)
=====================  ======================================================

The folder is replaced whole or not at all (see :mod:`engine.readers.exportdir`).
Every CSV cell a spreadsheet would run as a formula (a class, file or reviewer
name starting with ``=``, ``+``, ``-``, ``@``) is written with a ``'`` in front
(:mod:`engine.data.csvcells`, OWASP's rule); reading a file back drops it.

Importing is all-or-nothing: a file naming an unknown sample, class or
decision is rejected with every problem listed, and nothing is recorded.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import exportdir
from ..data.csvcells import restore_frame, safe_csv  # noqa: F401 - safe_csv: the app's CSV downloads too
from ..errors import UserError, shown
from .exportdir import MANIFEST, check_target, staged_folder, write_manifest
from ..rundir.review import DECISIONS, LABELLING, Decision, ReviewStore, consensus_of, current_decisions, run_class_names
from ..rundir.store import RunStore

log = logging.getLogger(__name__)

#: Columns of samples.csv, in order (``true`` is added when the truth is known).
SAMPLE_COLUMNS = ("sample", "index", "given", "refined", "final", "decision", "reviewer", "weight", "confidence")
DECISION_COLUMNS = ("sample", "index", "decision", "label", "reviewer", "time", "step", "proposal", "blind", "kind",
                    "disputed")
CONSENSUS = "consensus"  # the ``kind`` of a consensus row (reviewer rows: ``reviewer``)
MAX_PROBLEMS = 8  # problems listed in an import error


def _names(labels: np.ndarray, class_names) -> list:
    return [class_names[i] if 0 <= i < len(class_names) else "" for i in np.asarray(labels, np.int64)]


def samples_table(store: RunStore, step: int | None = None, reviews: ReviewStore | None = None,
                  class_names=None) -> pd.DataFrame:
    """One row per training sample (see :data:`SAMPLE_COLUMNS`).

    ``refined``, ``weight`` and ``confidence`` are those of ``step`` (default:
    the last); ``final`` is the reviewers' consensus label where it fixes one,
    empty for an outlier, the refined label otherwise; ``decision`` is the
    consensus as a decision (``unsure`` when unresolved) and ``reviewer``
    everyone who decided, comma-separated.
    """
    class_names = class_names or run_class_names(store)
    data = store.dataset_arrays()
    given, keys = data["given"].astype(np.int64), data["keys"].astype(str)
    n = len(given)
    steps = store.steps()
    step = steps[-1] if step is None and steps else step
    snapshot = store.snapshot(step) if step is not None else {}
    refined = np.asarray(snapshot.get("refined", given), np.int64)
    reviews = reviews or ReviewStore(store.path)
    verdicts = reviews.consensus()
    clamped, outliers = reviews.clamps(n)
    final = _names(np.where(clamped >= 0, clamped, refined), class_names)
    for i in np.flatnonzero(outliers):
        final[i] = ""
    table = pd.DataFrame({
        "sample": keys, "index": np.arange(n), "given": _names(given, class_names),
        "refined": _names(refined, class_names), "final": final,
        "decision": [verdicts[i].decision if i in verdicts else "" for i in range(n)],
        "reviewer": [", ".join(verdicts[i].reviewers) if i in verdicts else "" for i in range(n)],
        "weight": np.asarray(snapshot.get("weight", np.full(n, np.nan)), np.float64).round(6),
        "confidence": np.asarray(snapshot.get("lp_confidence", np.full(n, np.nan)), np.float64).round(6),
    })
    true = data.get("true")
    if true is not None and np.any(true >= 0):
        table["true"] = _names(true, class_names)
    from .audit import audit_labels_table

    audit = audit_labels_table(store, class_names)
    if audit is not None:  # the random audit (measures; never a training label): whether each sample was audited, its class
        table["audited"] = audit["audited"]
        table["audited_class"] = audit["audited_class"]
    return table


def decisions_table(decisions: list[Decision], class_names, history: bool = False) -> pd.DataFrame:
    """Decisions as a table, labels as class names.

    Without ``history``: one row per reviewer decision (each reviewer's
    current decision per sample, ``kind=reviewer``), then one consensus row
    per sample (``kind=consensus``, ``reviewer`` everyone who decided,
    ``disputed`` 1 where they disagree, ``decision`` ``unsure`` and no label
    when unresolved). With ``history``: every event as given, plus ``id``,
    ``undoes`` and ``batch``.
    """
    columns = (("id",) if history else ()) + DECISION_COLUMNS + (("undoes", "batch") if history else ())
    decisions = list(decisions) if history else current_decisions(decisions)
    verdicts = {} if history else consensus_of(decisions)
    rows = []
    for d in decisions:
        disputed = int(verdicts[d.sample].disputed) if d.sample in verdicts else 0
        row = {"sample": d.key if d.key is not None else str(d.sample), "index": d.sample, "decision": d.decision,
               "label": "" if d.label is None else class_names[d.label], "reviewer": d.reviewer,
               "time": d.time, "step": d.step, "proposal": "" if d.proposal is None else class_names[d.proposal],
               "blind": int(d.blind), "kind": "reviewer", "disputed": disputed, "id": d.id, "undoes": d.undoes,
               "batch": d.batch}
        rows.append({c: row[c] for c in columns})
    for sample in sorted(verdicts):
        v, newest = verdicts[sample], verdicts[sample].votes[-1]
        rows.append({"sample": newest.key if newest.key is not None else str(sample), "index": sample,
                     "decision": v.decision, "label": "" if v.label is None else class_names[v.label],
                     "reviewer": ", ".join(v.reviewers), "time": max(d.time for d in v.votes), "step": newest.step,
                     "proposal": "" if newest.proposal is None else class_names[newest.proposal],
                     "blind": 0, "kind": CONSENSUS, "disputed": int(v.disputed)})
    table = pd.DataFrame(rows, columns=list(columns))
    for name in ("step", "undoes", "batch"):  # whole numbers with gaps: nullable, written as empty cells
        if name in table:
            table[name] = table[name].astype("Int64")
    return table


def clean_labels_table(samples: pd.DataFrame) -> pd.DataFrame:
    """``path,label`` rows of a sample table, outliers left out: a ``--labels`` file."""
    kept = samples[samples["final"] != ""]
    return pd.DataFrame({"path": kept["sample"].to_numpy(), "label": kept["final"].to_numpy()})


def samples_json(store: RunStore, samples: pd.DataFrame, step: int | None, class_names) -> str:
    records = json.loads(samples.to_json(orient="records"))
    return json.dumps({"run": str(store.path), "step": step, "class_names": list(class_names), "samples": records},
                      indent=1)


def student_weights(store: RunStore) -> bytes:
    """The student's ``state_dict`` from the run's checkpoint, as ``torch.save`` bytes."""
    import torch

    from ..steps.checkpoint import read

    state = read(store.checkpoint_path).get("student")
    if state is None:
        raise UserError(f"checkpoint of run {str(store.path)!r} holds no student")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def export_run(store: RunStore, out_dir, step: int | None = None, report: bool = True,
               force: bool = False) -> dict[str, Path]:
    """Write every export of a run into the folder ``out_dir``; returns name -> path.

    The folder is replaced whole or not at all (:mod:`engine.readers.exportdir`):
    everything is written into a staging folder beside it, listed with sizes
    and SHA-256 in ``manifest.json``, and put in place last. A failed or
    killed export leaves the previous export as it was. The run's files are
    read and checked before anything is written; a damaged one is one
    :class:`UserError` naming it. An earlier export in ``out_dir`` that was
    edited since (a file differs from its manifest) is replaced only with
    ``force`` (:func:`engine.readers.exportdir.check_unedited`).
    """
    if not store.exists():
        raise UserError(f"{str(store.path)!r} is not a run directory (no config.json)")
    out = Path(out_dir)
    check_target(out.absolute())  # before the work: a folder of other files is refused
    if not force:
        exportdir.check_unedited(out.absolute())
    store.dataset_arrays()  # a damaged dataset.npz or snapshot: one line naming it, before anything is written
    class_names = run_class_names(store)
    step = step if step is not None else (store.steps()[-1] if store.steps() else None)
    if step is not None:
        store.snapshot(step)
    reviews = ReviewStore(store.path, num_classes=len(class_names))
    samples = samples_table(store, step, reviews, class_names)
    files = {
        "samples.csv": safe_csv(samples),
        "samples.json": samples_json(store, samples, step, class_names),
        "decisions.csv": safe_csv(decisions_table(reviews.effective(), class_names)),
        "review_history.csv": safe_csv(decisions_table(reviews.history(), class_names, history=True)),
        "clean_labels.csv": safe_csv(clean_labels_table(samples)),
    }
    from .audit import audit_report

    audit = audit_report(store, step)
    if audit is not None:
        files["audit.json"] = json.dumps(audit, indent=1)
    student = student_weights(store) if store.checkpoint_path.is_file() else None
    try:
        with staged_folder(out, force=True) as stage:  # checked above, before the work
            for name, text in files.items():
                exportdir.write_file(stage / name, exportdir.text_bytes(text))
            if student is not None:
                exportdir.write_file(stage / "student.pt", student)
            if report:
                from .report import write_report

                write_report(store, stage, samples=samples, reviews=reviews)
            manifest = write_manifest(stage, run=str(store.path), step=step,
                                      written=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    except OSError as exc:  # a full disk, a folder without write permission
        raise UserError(f"writing the export {shown(out)} failed ({exc.strerror or type(exc).__name__}); "
                        "that folder is as it was before") from None
    names = [f["name"] for f in manifest["files"]]
    order = [n for n in (*files, "student.pt", "report.md") if n in names]
    return {name: out / name for name in (*order, *sorted(set(names) - set(order)), MANIFEST)}


# ---------------------------------------------------------------- import
def read_decision_file(source, name: str | None = None) -> pd.DataFrame:
    """A decisions file (CSV, or JSON: a list of rows or ``{"samples": [...]}``
    / ``{"decisions": [...]}``) as a table of strings.

    ``source`` is a path, or bytes with ``name`` telling the format.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"decisions file {str(path)!r} does not exist")
        name, raw = name or path.name, path.read_bytes()
    else:
        raw, name = bytes(source), name or "upload.csv"
    try:
        if name.lower().endswith(".json"):
            data = json.loads(raw.decode("utf-8"))
            rows = data.get("decisions", data.get("samples")) if isinstance(data, dict) else data
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise UserError(f"decisions file {name!r}: expected a list of rows, or an object with "
                                "'decisions' or 'samples'")
            rows = [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]
            return pd.DataFrame(rows, dtype=object).fillna("")
        return restore_frame(pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False))
    except (UnicodeDecodeError, json.JSONDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"decisions file {shown(name)} is not valid CSV or JSON: "
                        f"{shown(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}") from None


def parse_decisions(frame: pd.DataFrame, keys, class_names, given: np.ndarray,
                    reviewer: str | None = None, source: str = "decisions file") -> list[dict]:
    """Check every row of a decisions table and turn it into events for
    :meth:`ReviewStore.record_many`; rows without a decision are skipped.

    Columns: ``sample`` (the key) or ``index``; ``decision``; ``label`` (or
    ``final``) as a class name or id; ``reviewer`` (or the ``reviewer``
    argument); optional ``proposal`` (or ``refined``), ``step``, ``time``,
    ``blind``. Rows of ``kind`` ``consensus`` (the exported consensus of
    several reviewers) are skipped: the reviewers' own rows carry it.

    Raises
    ------
    UserError
        Listing the bad rows (unknown sample, class or decision, missing
        reviewer) when there is any.
    """
    columns = set(frame.columns)
    if "decision" not in columns or not ({"sample", "index"} & columns):
        raise UserError(f"{source}: needs a 'decision' column and a 'sample' (key) or 'index' column; "
                        f"found {shown(', '.join(map(str, sorted(columns))))}")
    key_index = {str(k): i for i, k in enumerate(keys)}
    class_index = {str(c): i for i, c in enumerate(class_names)}
    events, problems = [], []
    for row_number, row in enumerate(frame.to_dict("records"), start=1):
        decision = str(row.get("decision", "")).strip()
        if not decision or str(row.get("kind", "")).strip() == CONSENSUS:
            continue
        try:
            events.append(_parse_row(row, decision, key_index, class_index, class_names, given, reviewer))
        except UserError as exc:
            problems.append(f"row {row_number}: {exc}")
    if problems:
        listed = "; ".join(problems[:MAX_PROBLEMS]) + ("; ..." if len(problems) > MAX_PROBLEMS else "")
        raise UserError(f"{source}: {len(problems)} bad row(s), nothing imported: {listed}")
    return events


def _parse_row(row: dict, decision: str, key_index: dict, class_index: dict, class_names, given, reviewer) -> dict:
    if decision not in DECISIONS:
        raise UserError(f"unknown decision {shown(decision)} (valid: {', '.join(DECISIONS)})")
    sample = _sample(row, key_index)
    name = str(row.get("reviewer", "") or "").strip() or (reviewer or "").strip()
    if not name:
        raise UserError("no reviewer (add a 'reviewer' column or pass a reviewer name)")
    if len(name) > MAX_REVIEWER:
        raise UserError(f"reviewer {shown(name)} is longer than {MAX_REVIEWER} characters")
    label_text = str(row.get("label", "") or row.get("final", "") or "").strip()
    proposal_text = str(row.get("proposal", "") or row.get("refined", "") or "").strip()
    proposal = _class(proposal_text, class_index, class_names) if proposal_text else None
    label = _class(label_text, class_index, class_names) if label_text else None
    if decision in LABELLING and label is None:
        label = {"keep": int(given[sample]), "accept": proposal}.get(decision)
        if label is None:
            raise UserError(f"decision {decision!r} needs a label")
    return {"sample": sample, "decision": decision, "reviewer": name, "label": label if decision in LABELLING
            else None, "proposal": proposal, "step": _step(row.get("step")), "time": _time(row.get("time")),
            "blind": _blind(row.get("blind"))}


def _sample(row: dict, key_index: dict) -> int:
    key = str(row.get("sample", "")).strip()
    if key:
        if key not in key_index:
            example = next(iter(key_index), "?")
            raise UserError(f"unknown sample {shown(key)} (samples are the run's keys, e.g. {shown(example)})")
        return key_index[key]
    index = str(row.get("index", "")).strip()
    if not (index.isascii() and index.isdigit()) or int(index) >= len(key_index):
        raise UserError(f"unknown sample index {shown(index)} (valid: 0..{len(key_index) - 1})")
    return int(index)


def _class(text: str, class_index: dict, class_names) -> int:
    if text in class_index:
        return class_index[text]
    if text.isascii() and text.isdigit() and int(text) < len(class_names):
        return int(text)
    names = ", ".join(map(str, class_names))
    raise UserError(f"unknown class {shown(text)} (valid: {names[:200] + ' ...' if len(names) > 200 else names})")


MAX_REVIEWER = 200  # characters of a reviewer's name
MAX_STEP = 10**9  # steps are epochs: any real run stays far below
FUTURE_SLACK = 86_400.0  # seconds a decision's time may lie ahead of this machine's clock (a skewed clock)
FLAGS = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


def _number(value, name: str) -> float | None:
    """A cell as a finite number; None when empty."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise UserError(f"{name} {shown(text)} is not a number") from None
    if not math.isfinite(number):
        raise UserError(f"{name} {shown(text)} is not a finite number")
    return number


def _step(value) -> int | None:
    step = _number(value, "step")
    if step is None:
        return None
    if step != int(step) or not 0 <= step <= MAX_STEP:
        raise UserError(f"step {shown(value)} is not a whole number in 0..{MAX_STEP:,}")
    return int(step)


def _time(value) -> float | None:
    when = _number(value, "time")
    if when is None:
        return None
    latest = time.time() + FUTURE_SLACK
    if not 0 <= when <= latest:
        raise UserError(f"time {shown(value)} is not seconds since 1970 up to now (valid: 0..{latest:.0f})")
    return when


def _blind(value) -> bool:
    text = "" if value is None else str(value).strip().lower()
    if text not in FLAGS:
        raise UserError(f"blind {shown(value)} is not a yes/no flag (valid: 1, 0, true, false, yes, no, empty)")
    return FLAGS[text]


def import_decisions(store: RunStore, source, reviewer: str | None = None, name: str | None = None) -> list[Decision]:
    """Record the decisions of a file (path, or bytes with ``name``) in one
    transaction; returns those that were new (a row the log already holds is
    skipped, so importing a file twice adds nothing the second time). Every row is checked (sample, class, decision,
    reviewer, finite ``step`` and ``time`` in range, ``blind`` flag) before the
    review log is opened: if any row is bad, nothing is recorded and no log is
    created."""
    if not store.exists():
        raise UserError(f"{str(store.path)!r} is not a run directory (no config.json)")
    label = name or (str(source) if isinstance(source, (str, Path)) else "uploaded file")
    frame = read_decision_file(source, name)
    data = store.dataset_arrays()
    class_names = run_class_names(store)
    events = parse_decisions(frame, data["keys"].astype(str), class_names, data["given"], reviewer,
                             source=f"decisions file {label!r}")
    if not events:
        raise UserError(f"decisions file {label!r} holds no decisions (no row has a 'decision')")
    return ReviewStore(store.path, num_classes=len(class_names)).record_many(events, skip_recorded=True)
