"""A run's random audit, read: what the audited samples say about the given and the refined labels.

The counting is :mod:`engine.method.audit`'s (Wilson intervals, the paired
change); the decisions are the audit log's (``audit.sqlite``,
:class:`engine.rundir.review.AuditStore`). This module reads the two for a run
and a step:

- :func:`audit_report`: the audited count, the samples left out, the audit
  size that would give ``+-0.03`` at the current rate, the noise rate, the
  given labels' precision, a step's refined labels' precision and the change
  given -> refined (fixed, broken, verdict), and, where the run knows the
  truth, the true numbers beside them;
- :func:`next_to_audit`: the next samples of the run's audit order
  (:func:`engine.method.audit.audit_order` with the run's seed) a reviewer
  has not audited yet;
- :func:`shared_audits`: for several runs, whose audit log each may use (runs
  made from the same samples and given labels share one audit).

Cost: the audit log's current decisions (one SQLite read), then only the
audited rows of ``given``, of the step's ``refined`` and of ``true``: ``O(M)``
for ``M`` audited samples, nothing of the other ``N - M``. The order is
``O(N)`` (one permutation).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..errors import UserError
from ..method.audit import LEVEL, NOT_AUDITED, Audit, Share, audit_of, audit_order, audit_size
from ..rundir.review import AuditStore
from ..rundir.snapshot import read
from ..rundir.store import RunStore

#: The half-width the audit aims at (the "Audited 212 of about 720 for +-0.03" target).
TARGET_HALF_WIDTH = 0.03


def _store(run) -> RunStore:
    return run if isinstance(run, RunStore) else RunStore(run)


def has_audit(run) -> bool:
    """Whether the run directory holds an audit log (``audit.sqlite``); reading never creates one."""
    return _store(run).audit_path.is_file()


def audited(run, num_samples: int | None = None) -> tuple[Audit, np.ndarray] | None:
    """``(Audit, audit labels (N,))`` of the run's audit log, or None without a log; labels are a class,
    ``NO_CLASS`` (-2, an outlier) or ``NOT_AUDITED`` (-1). Only the audited rows of ``given`` are read."""
    store = _store(run)
    if not has_audit(store):
        return None
    arrays = store.dataset_arrays()
    n = len(arrays["given"]) if num_samples is None else int(num_samples)
    labels, left_out = AuditStore(store.path).audit_labels(n)
    given = _on_rows(arrays["given"], np.flatnonzero(labels != NOT_AUDITED), n)
    return audit_of(labels, given, left_out), labels


def _on_rows(values, rows: np.ndarray, n: int) -> np.ndarray:
    """``(N,)`` int64 holding ``values[rows]`` at ``rows`` and ``NOT_AUDITED`` elsewhere: an audit compares a
    labelling on its samples only, so only their rows are read (of a memory-mapped array: their pages)."""
    out = np.full(n, NOT_AUDITED, dtype=np.int64)
    if len(rows):
        out[rows] = np.asarray(values[rows], dtype=np.int64)
    return out


def target_size(audit: Audit, half_width: float = TARGET_HALF_WIDTH, level: float = LEVEL) -> int:
    """Audited samples needed for the rate within ``+-half_width``, at the rate in the current interval
    nearest 0.5 (the largest variance the audit so far allows; 0.5 before anything is audited)."""
    if audit.size == 0:
        return audit_size(0.5, half_width, level)
    rate = audit.rate(level)
    return audit_size(min(max(0.5, rate.low), rate.high), half_width, level)


def _share(share) -> dict:
    return {**asdict(share), "half_width": share.half_width}


def _change(change) -> dict:
    return {**asdict(change), "verdict": change.verdict}


def audit_report(run_dir, step: int | None = None, audit_from=None) -> dict | None:
    """The audit's numbers for the run ``run_dir`` at ``step`` (default: its newest step with a snapshot).

    ``audit_from``: the run directory whose audit log to read (default: ``run_dir``'s own); a run made from
    the same samples and given labels (the same samples digest) may lend it (:func:`shared_audits`).

    Returns
    -------
    dict or None
        None without an audit log or with nothing audited. Else: ``audited`` (samples placed: a class or
        outlier), ``left_out`` (audited but not placed: unsure, a tie), ``reviewers``, ``target`` (audited
        samples for ``+-0.03``, :func:`target_size`), ``rate`` and ``given_precision`` (shares: ``count``,
        ``total``, ``value``, ``low``, ``high``, ``half_width``; 90% Wilson intervals), ``step``,
        ``refined_precision`` (a share; None without a step) and ``change`` (given -> refined: ``fixed``,
        ``broken``, ``value``, ``low``, ``high``, ``verdict``; None without a step); ``truth`` (None
        without a truth column): the step's true ``rate``, ``given_precision`` and ``refined_precision``
        over every sample with a known truth (its metrics line) and ``audit_with_truth`` (a share: audited
        classes equal to the truth, where known). Lower rate, higher precision, positive change: better.
    """
    store = _store(run_dir)
    source = store if audit_from is None else _store(audit_from)
    found = audited(source, len(store.dataset_arrays()["given"]))
    if found is None or found[0].size == 0:
        return None
    audit, labels = found
    given = _on_rows(store.dataset_arrays()["given"], audit.samples, len(labels))
    steps = store.steps()
    step = steps[-1] if step is None and steps else step
    report = {"audited": audit.size, "left_out": audit.left_out, "target": target_size(audit),
              "half_width_goal": TARGET_HALF_WIDTH, "level": LEVEL, "audit_of": source.path.name,
              "reviewers": sorted({d.reviewer for d in AuditStore(source.path).effective()}),
              "rate": _share(audit.rate()), "given_precision": _share(audit.precision(given)),
              "step": step, "refined_precision": None, "change": None, "truth": None}
    if step is not None:
        refined = _on_rows(read(store, step, ("refined",))["refined"], audit.samples, len(labels))
        report["refined_precision"] = _share(audit.precision(refined))
        report["change"] = _change(audit.change(given, refined))
    report["truth"] = _truth(store, audit, labels, step)
    return report


def _truth(store: RunStore, audit: Audit, labels: np.ndarray, step: int | None) -> dict | None:
    """The true numbers beside the counted ones: the step's metrics line (every sample with a known truth)
    and the audited classes against the truth; None without a truth column."""
    if not store.truth_known():
        return None
    true = _on_rows(store.dataset_arrays()["true"], audit.samples, len(labels))[audit.samples]
    known = true >= 0
    line = next((m for m in reversed(store.metrics()) if m.get("step") == step), {}) if step is not None else {}
    given, refined = line.get("given_label_precision"), line.get("refined_label_precision")
    return {"rate": None if given is None else 1 - given, "given_precision": given, "refined_precision": refined,
            "audit_with_truth": _share(Share.of(int(np.sum(audit.classes[known] == true[known])), int(known.sum())))}


def next_to_audit(run_dir, reviewer: str, count: int) -> np.ndarray:
    """``(count,)`` int64 at most: the next samples of the run's audit order (its seed) that ``reviewer`` has not
    decided in the audit log (any decision: unsure too), in order."""
    if count < 0:
        raise UserError(f"count={count} must be >= 0")
    store = _store(run_dir)
    n = len(store.dataset_arrays()["given"])
    order = audit_order(n, store.config().seed)
    done = np.zeros(n, dtype=bool)
    if has_audit(store) and reviewer:
        mine = [d.sample for d in AuditStore(store.path).effective() if d.reviewer == reviewer]
        done[np.asarray(mine, dtype=np.int64)] = True
    return order[~done[order]][:count]


def shared_audits(run_dirs) -> dict[str, str | None]:
    """Run name -> the name of the run whose audit log it uses: its own, else the first run of ``run_dirs``
    with an audit and the same samples digest (same keys and given labels), else None."""
    stores = [_store(r) for r in run_dirs]
    digests = {}
    for store in stores:
        try:
            digests[store.path.name] = store.dataset_digest("samples_digest")
        except UserError:
            digests[store.path.name] = None
    with_audit = [s for s in stores if has_audit(s)]
    out = {}
    for store in stores:
        name = store.path.name
        if has_audit(store):
            out[name] = name
            continue
        mine = digests[name]
        out[name] = next((s.path.name for s in with_audit if mine is not None and digests[s.path.name] == mine),
                         None)
    return out


def audit_rows(run_dirs, steps: dict | None = None) -> list[dict]:
    """One row per run for a comparison: ``run``, ``audit_of`` (whose log; None: no audit) and the
    :func:`audit_report` of the run at its newest step (``steps``: run name -> step) from that log."""
    stores = [_store(r) for r in run_dirs]
    sources = shared_audits(stores)
    by_name = {s.path.name: s for s in stores}
    rows = []
    for store in stores:
        name = store.path.name
        source = sources[name]
        report = None if source is None else audit_report(store, (steps or {}).get(name), by_name[source])
        rows.append({"run": name, "audit_of": source if report is not None else None, "report": report})
    return rows


def audit_labels_table(run_dir, class_names) -> dict[str, list] | None:
    """Per sample, for an export: ``audited`` (1 where its class was placed, else 0) and ``audited_class`` (the
    class name, ``outlier``, or empty); None without an audit log."""
    found = audited(run_dir)
    if found is None:
        return None
    _, labels = found
    names = [class_names[c] if c >= 0 else ("outlier" if c != NOT_AUDITED else "") for c in labels]
    return {"audited": (labels != NOT_AUDITED).astype(int).tolist(), "audited_class": names}




# ---------------------------------------------------------------- the command line's audit (python -m engine audit)
def report_lines(report: dict | None) -> list[str]:
    """The :func:`audit_report` as plain lines for a terminal (``None``: one line saying nothing is audited)."""
    if report is None:
        return ["nothing audited yet: python -m engine audit RUN --next 50 --reviewer NAME lists the samples to audit"]

    def share(s: dict) -> str:
        return f"{s['value']:.3f} (90% interval {s['low']:.3f}-{s['high']:.3f}, {s['count']} of {s['total']})"

    lines = [f"audited {report['audited']} samples ({report['left_out']} left out: unsure or tied); about "
             f"{report['target']} give the rate within +-{report['half_width_goal']:.2f}",
             f"noise rate: {share(report['rate'])}", f"given labels right: {share(report['given_precision'])}"]
    if report["refined_precision"] is not None:
        c = report["change"]
        lines += [f"refined labels right at step {report['step']}: {share(report['refined_precision'])}",
                  f"change given -> refined: {c['value']:+.3f} (90% interval {c['low']:+.3f} to {c['high']:+.3f}; "
                  f"fixed {c['fixed']}, broken {c['broken']}): {c['verdict']}"]
    truth = report.get("truth")
    if truth and truth.get("refined_precision") is not None:
        lines.append(f"true (every sample): noise rate {truth['rate']:.3f}, given {truth['given_precision']:.3f}, "
                     f"refined {truth['refined_precision']:.3f}")
    return lines


def read_audit_file(run_dir, path, reviewer: str) -> list[dict]:
    """The audit decisions of a CSV file (columns ``key`` or ``sample``, and ``class``: a class name or index,
    ``outlier`` or ``unsure``), checked row by row; every sample must lie in the run's audit order among its
    first ``M`` (``M``: the samples audited so far and in the file), so that the audit stays a random sample.
    Raises :class:`UserError` naming the file, the row and what is valid."""
    import csv

    store = _store(run_dir)
    label = f"audit file {str(path)!r}"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{label} cannot be read ({type(exc).__name__}): give a UTF-8 CSV with a header row "
                        "'key,class' (or 'sample,class')") from None
    if not rows or "class" not in rows[0] or not ({"key", "sample"} & set(rows[0])):
        raise UserError(f"{label} needs a header with 'class' and 'key' (or 'sample') and at least one row; "
                        "python -m engine audit RUN --next N --reviewer NAME writes such a file without 'class'")
    arrays = store.dataset_arrays()
    keys = {str(k): i for i, k in enumerate(arrays["keys"])}
    names = [str(c) for c in store.class_names()]
    n = len(arrays["given"])
    events = []
    for number, row in enumerate(rows, start=2):
        where = f"{label}, line {number}"
        sample = _sample_of(row, keys, n, where)
        value = (row.get("class") or "").strip()
        if value.lower() in ("outlier", "unsure"):
            events.append({"sample": sample, "decision": value.lower(), "reviewer": reviewer})
            continue
        cls = names.index(value) if value in names else (int(value) if value.isdigit() else -1)
        if not 0 <= cls < len(names):
            raise UserError(f"{where}: class {value!r} is not a class of this run; valid: "
                            f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}, 0-{len(names) - 1}, "
                            "outlier, unsure")
        events.append({"sample": sample, "decision": "relabel", "reviewer": reviewer, "label": cls})
    _check_in_order(store, [e["sample"] for e in events], label)
    return events


def _sample_of(row: dict, keys: dict, n: int, where: str) -> int:
    key = (row.get("key") or "").strip()
    if key:
        if key not in keys:
            raise UserError(f"{where}: key {key!r} is not a sample of this run")
        return keys[key]
    value = (row.get("sample") or "").strip()
    if not value.isdigit() or int(value) >= n:
        raise UserError(f"{where}: sample {value!r} is not a sample index of this run; valid: 0-{n - 1}")
    return int(value)


def _check_in_order(store: RunStore, samples: list[int], label: str) -> None:
    n = len(store.dataset_arrays()["given"])
    order = audit_order(n, store.config().seed)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    decided = {d.sample for d in AuditStore(store.path).effective()} if has_audit(store) else set()
    first = len(decided | set(samples))
    late = [s for s in samples if position[s] >= first]
    if late:
        keys = store.dataset_arrays()["keys"]
        raise UserError(f"{label}: sample {str(keys[late[0]])!r} is number {position[late[0]] + 1} of the audit "
                        f"order, beyond the first {first} (the samples audited so far and in the file): an audit "
                        "takes the order's samples in turn so that it stays random; python -m engine audit RUN "
                        "--next N --reviewer NAME lists them")


def same_samples(run_a, run_b) -> bool:
    """Whether two runs have the same samples and given labels (their samples digests; computed from the keys
    and given labels for a run made before digests were stored)."""
    from ..rundir.digest import samples_digest

    def digest(s: RunStore) -> str:
        found = s.dataset_digest("samples_digest")
        if found is None:
            arrays = s.dataset_arrays()
            found = samples_digest(arrays["keys"], arrays["given"])
        return found

    return digest(_store(run_a)) == digest(_store(run_b))


def copy_audit(run_dir, source_dir) -> int:
    """Record ``source_dir``'s audit decisions in ``run_dir``'s audit log (a run made from the same samples and
    given labels: the audit is about the samples, not the run); returns how many were new. Refused (one line)
    when the two runs' samples or given labels differ."""
    store, source = _store(run_dir), _store(source_dir)
    for s in (store, source):
        if not s.exists():
            raise UserError(f"{str(s.path)!r} is not a run directory (no config.json)")
    if not has_audit(source):
        raise UserError(f"run {str(source.path)!r} has no audit log (audit.sqlite) to copy")
    if not same_samples(store, source):
        raise UserError(f"the audit of {str(source.path)!r} is about other samples or given labels than run "
                        f"{str(store.path)!r}'s; an audit can be copied only between runs of the same samples")
    events = [{"sample": d.sample, "decision": d.decision, "reviewer": d.reviewer, "label": d.label, "time": d.time}
              for d in AuditStore(source.path).effective()]
    return len(AuditStore(store.path, len(store.class_names())).record_many(events, skip_recorded=True))
