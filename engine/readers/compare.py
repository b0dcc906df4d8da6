"""Several runs side by side: are they comparable, and how do they compare.

A comparison is fair only when the runs saw the same training samples with
the same given labels (same data, noise, seed or label file); the method,
the schedule and the knobs may differ. :func:`same_data` checks that from
each run's ``dataset.npz`` (sample keys, given labels, class names) and says,
naming the runs, what differs. The other functions read each run's own files
(``summary.json`` when finished, else the last line of ``metrics.jsonl``;
``metrics.jsonl`` for curves; the last snapshot for per-sample labels) and
return plain rows that the CLI prints, the Compare page shows and both write
as CSV. Nothing here trains, writes, or imports the app.

- :func:`comparison_table`: one row per run: method, dataset as the user
  named it, noise, seed, given / refined label precision, student and
  teacher test accuracy, the student's difference to the CE run of the set,
  steps, wall time.
- :func:`curves`: per run and student epoch, test accuracy and (truth
  known) label precision.
- :func:`per_sample`: per sample, each run's final refined label and
  student prediction and whether each is right (truth known), and where the
  runs disagree.

Cost: a table or the curves read a few small JSON files per run; the
per-sample view reads two arrays of one snapshot per run, ``O(R N)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from ..errors import UserError
from ..rundir.health import below_baseline, run_warnings
from ..method.noise import parse_noise_spec
from ..rundir.store import UPLOADS, RunStore

METHOD_NAMES = {"aml-kd": "AML-KD", "ce": "CE", "kd": "KD"}
ABLATION_NAMES = {"awe": "AWE", "mutual": "mutual", "stage0": "stage 0"}
STUDENT_PHASES = ("warmup", "refine", "mutual", "student")
UPLOAD_HASH = re.compile(r"-[0-9a-f]{12}$")  # app.byod names an unpacked upload NAME-<12 hex digits>

#: Columns of :func:`comparison_table`: (key, header, format of a number).
COLUMNS = (
    ("run", "run", "{}"),
    ("method", "method", "{}"),
    ("dataset", "dataset", "{}"),
    ("noise", "noise", "{}"),
    ("seed", "seed", "{}"),
    ("given_label_precision", "given prec", "{:.3f}"),
    ("refined_label_precision", "refined prec", "{:.3f}"),
    ("refined_precision_estimate", "refined prec est", "{:.3f}"),
    ("student_test_accuracy", "student acc", "{:.3f}"),
    ("teacher_test_accuracy", "teacher acc", "{:.3f}"),
    ("student_vs_ce", "student vs CE", "{:+.3f}"),
    ("steps", "steps", "{}"),
    ("wall_seconds", "seconds", "{:.1f}"),
)


def _stores(stores: Sequence[RunStore | str | Path]) -> list[RunStore]:
    return [s if isinstance(s, RunStore) else RunStore(s) for s in stores]


def _name(store: RunStore) -> str:
    return store.path.name


# ---------------------------------------------------------------- names as the user gave them
def dataset_label(spec: str) -> str:
    """A dataset as its user named it.

    ``digits``; ``moons (600 points)``; an image folder by its own name
    (``pets``; a ``train`` folder by its parent's), an uploaded zip by the
    zip's name (``pets.zip``, the content hash the app adds dropped); a
    torchvision set by its name (``mnist``). Parsed here rather than with
    :func:`engine.data.base.parse_dataset_spec`, whose package loads
    scikit-learn: ``python -m engine compare`` starts in well under a second.
    """
    text = str(spec).strip()
    name, _, query = text.partition("?")
    if ":" in name:  # folder:DIR or a torchvision set mnist:ROOT, as engine.data.base.parse_dataset_spec splits it
        kind, path = text.split(":", 1)
        if kind.lower() != "folder":
            return kind.lower()
        path = Path(path.split("?", 1)[0].rstrip("/\\"))
        parts = [p for p in path.parts if p not in ("", "/")]
        if UPLOADS in parts[:-1]:  # <runs>/uploads/NAME-<hash>/...: the upload's folder names the zip
            upload = parts[parts.index(UPLOADS) + 1]
            if UPLOAD_HASH.search(upload):
                return UPLOAD_HASH.sub("", upload) + ".zip"
        label = path.parent.name if path.name.lower() == "train" else path.name
        return label or str(path)
    n = dict(parse_qsl(query)).get("n")
    return f"{name.lower()} ({n} points)" if n else name.lower()


def noise_label(config, given: np.ndarray | None = None, true: np.ndarray | None = None) -> str:
    """The noise of a run: ``symmetric 40%``, ``none``, ``matrix``, or, when a
    label file brought the labels, ``label file`` with its measured
    disagreement with the truth where a truth is known (``label file (20% wrong)``)."""
    if config.labels:
        rate = label_disagreement(given, true)
        return "label file" if rate is None else f"label file ({rate:.0%} wrong)"
    noise = parse_noise_spec(config.noise)
    if noise.kind == "none":
        return "none"
    if noise.kind == "matrix":
        return "matrix"
    return f"{noise.kind} {noise.rate:.0%}"


def label_disagreement(given: np.ndarray | None, true: np.ndarray | None) -> float | None:
    """Fraction of given labels that differ from the truth, over samples whose truth is known."""
    if given is None or true is None:
        return None
    known = np.asarray(true) >= 0
    return float(np.mean(np.asarray(given)[known] != np.asarray(true)[known])) if known.any() else None


def method_label(config) -> str:
    """``AML-KD``, ``CE``, ``KD``, or an ablation: ``AML-KD w/o AWE``, ``AML-KD w/o mutual, stage 0``."""
    name = METHOD_NAMES.get(config.method, config.method)
    if config.method == "aml-kd" and getattr(config, "relabel_rule", "calibrated") == "authors":
        name += " (authors' rule)"
    without = getattr(config, "without", ())
    return f"{name} w/o {', '.join(ABLATION_NAMES.get(w, w) for w in without)}" if without else name


# ---------------------------------------------------------------- comparable?
def same_data(stores: Sequence[RunStore | str | Path]) -> list[str]:
    """Why the runs cannot be compared; empty when they can.

    Runs are comparable when they hold the same training samples (sample
    keys; built-in data, whose keys are only indices, also the same dataset
    spec), the same class names and the same given labels. Each problem
    names the two runs and what differs.

    Returns
    -------
    list of str
        Empty when every run matches the first.
    """
    stores = _stores(stores)
    problems, loaded = [], []
    for store in stores:
        try:
            arrays = store.dataset_arrays()
            loaded.append((store, store.config(), arrays))
        except UserError as exc:
            problems.append(f"run {_name(store)!r} cannot be read: {exc}")
    if len(loaded) < 2:
        return problems
    first, first_config, ref = loaded[0]
    a = _name(first)
    for store, config, arrays in loaded[1:]:
        b = _name(store)
        n_a, n_b = len(ref["keys"]), len(arrays["keys"])
        if n_a != n_b:
            problems.append(f"runs {a!r} and {b!r} have different sample counts ({n_a} and {n_b} training samples)")
            continue
        differ = np.flatnonzero(ref["keys"].astype(str) != arrays["keys"].astype(str))
        if len(differ):
            i = int(differ[0])
            problems.append(f"runs {a!r} and {b!r} hold different samples: {len(differ)} of {n_a} keys differ "
                            f"(sample {i}: {str(ref['keys'][i])!r} and {str(arrays['keys'][i])!r})")
            continue
        if _index_keys(ref["keys"]) and first_config.dataset != config.dataset:
            problems.append(f"runs {a!r} and {b!r} are on different data ({first_config.dataset!r} and "
                            f"{config.dataset!r})")
            continue
        names_a, names_b = _class_names(ref), _class_names(arrays)
        if names_a is not None and names_b is not None and names_a != names_b:
            problems.append(f"runs {a!r} and {b!r} have different classes ({', '.join(names_a)} and "
                            f"{', '.join(names_b)})")
            continue
        wrong = int(np.sum(ref["given"] != arrays["given"]))
        if wrong:
            problems.append(f"runs {a!r} and {b!r} have different given labels on {wrong} of {n_a} samples "
                            f"(noise {first_config.noise!r} and {config.noise!r}, seed {first_config.seed} and "
                            f"{config.seed}{_label_files(first_config, config)}): train them with the same "
                            "noise, seed and label file")
    return problems


def _index_keys(keys: np.ndarray) -> bool:
    return len(keys) > 0 and all(str(k).isdigit() for k in keys[:50])


def _class_names(arrays: dict) -> tuple[str, ...] | None:
    return tuple(str(c) for c in arrays["class_names"]) if "class_names" in arrays else None


def _label_files(a, b) -> str:
    if not (a.labels or b.labels):
        return ""
    return f", label file {Path(a.labels).name if a.labels else 'none'!r} and " \
           f"{Path(b.labels).name if b.labels else 'none'!r}"


def require_same_data(stores: Sequence[RunStore | str | Path]) -> None:
    """:class:`UserError` with the first reason when the runs are not comparable."""
    problems = same_data(stores)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"cannot compare: {problems[0]}{more}")


# ---------------------------------------------------------------- the table
def run_results(store: RunStore, strict: bool = True) -> tuple[dict, bool]:
    """The run's results and whether it is finished: ``summary.json``, else the
    last metrics line with the wall time summed over its steps.

    A damaged ``summary.json`` raises one :class:`UserError` naming it and how
    to rewrite it (:meth:`engine.rundir.store.RunStore.summary`); with ``strict=False``
    (a list of every run, where one damaged run must not hide the others) the
    metrics stand in for it.
    """
    try:
        summary = store.summary()
    except UserError:
        if strict:
            raise
        summary = None
    if summary is not None:
        return summary, True
    metrics = store.metrics()
    last = dict(metrics[-1]) if metrics else {}
    last["steps"] = last.get("step", 0)
    last["wall_seconds"] = float(sum(m.get("step_seconds") or 0.0 for m in metrics))
    return last, False


def comparison_table(stores: Sequence[RunStore | str | Path]) -> list[dict]:
    """One row per run (keys: see :data:`COLUMNS`, plus ``finished`` and
    ``total_steps``), in the order given.

    ``student_vs_ce`` is the student's test accuracy minus that of the first
    finished CE run of the set (``None`` where there is none, and for that
    run itself, whose ``baseline`` is True). ``warnings``: the run's
    :mod:`engine.rundir.health` warnings (``code``, ``message``), ``below_ce`` added
    where its student falls below that CE run's. Numbers are ``None`` where the
    run does not measure them (no teacher in CE, no truth for a label file).
    """
    rows = []
    for store in _stores(stores):
        config = store.config()
        arrays = store.dataset_arrays()
        results, finished = run_results(store)
        true = arrays.get("true")
        true = None if true is None or not (true >= 0).any() else true
        method = method_label(config)
        if not finished:  # a 'running' left by a process that is gone reads as stopped
            state = store.live_state()
            method += f" ({'training' if state == 'running' else 'stopped' if state in ('stopped', 'error') else 'unfinished'})"
        rows.append({
            "run": _name(store), "method": method,
            "method_id": config.method, "dataset": dataset_label(config.dataset),
            "noise": noise_label(config, arrays.get("given"), true), "seed": config.seed,
            "given_label_precision": results.get("given_label_precision"),
            "refined_label_precision": results.get("refined_label_precision"),
            "refined_precision_estimate": results.get("refined_precision_estimate"),
            "student_test_accuracy": results.get("student_test_accuracy"),
            "teacher_test_accuracy": results.get("teacher_test_accuracy") if config.method != "ce" else None,
            "student_vs_ce": None, "baseline": False, "steps": results.get("steps"),
            "total_steps": store.status().get("total_steps"), "wall_seconds": results.get("wall_seconds"),
            "finished": finished, "warnings": _warnings(store, results, finished),
            "test_labels": results.get("test_labels"),  # 'given': test 'accuracy' is agreement with given labels
        })
    baseline = next((r for r in rows if r["method_id"] == "ce" and r["finished"]
                     and r["student_test_accuracy"] is not None), None)
    if baseline is not None:
        baseline["baseline"] = True
        for row in rows:
            if row is not baseline and row["student_test_accuracy"] is not None:
                row["student_vs_ce"] = row["student_test_accuracy"] - baseline["student_test_accuracy"]
                below = below_baseline(row["student_test_accuracy"], baseline["student_test_accuracy"])
                if below is not None and all(w.get("code") != "below_ce" for w in row["warnings"]):
                    row["warnings"] = row["warnings"] + [below]
    return rows


def _warnings(store: RunStore, results: dict, finished: bool) -> list[dict]:
    """The run's health warnings (:mod:`engine.rundir.health`): kept in summary.json, else checked now."""
    if finished and isinstance(results.get("warnings"), list):
        return [w for w in results["warnings"] if isinstance(w, dict)]
    try:
        return run_warnings(store)
    except UserError:
        return []


def format_cell(row: dict, key: str, fmt: str) -> str:
    """A table cell as text: ``–`` for unknown, ``baseline`` for the CE run's own difference."""
    if key == "student_vs_ce" and row.get("baseline"):
        return "baseline"
    value = row.get(key)
    if value is None:
        return "–"
    if key == "steps" and not row.get("finished") and row.get("total_steps"):
        return f"{value}/{row['total_steps']}"
    return fmt.format(value)


def table_text(rows: list[dict]) -> list[list[str]]:
    """Header and body of the table as text cells (the CLI prints them, the page shows them)."""
    return [[header for _, header, _ in COLUMNS]] + [[format_cell(r, k, f) for k, _, f in COLUMNS] for r in rows]


def format_table(rows: list[dict]) -> str:
    """The table as aligned plain text."""
    cells = table_text(rows)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------- curves
def curves(stores: Sequence[RunStore | str | Path]) -> list[dict]:
    """Per run and student epoch (1, 2, ...; the phases warm-up, refine,
    mutual, or a baseline's plain epochs): ``run``, ``method``, ``epoch``,
    ``step``, ``phase``, ``student_test_accuracy`` and ``label_precision``
    (the refined labels' precision; ``None`` without a truth)."""
    points = []
    for store in _stores(stores):
        method = method_label(store.config())
        epoch = 0
        for m in store.metrics():
            if m.get("phase") not in STUDENT_PHASES:
                continue
            epoch += 1
            points.append({"run": _name(store), "method": method, "epoch": epoch, "step": m.get("step"),
                           "phase": m.get("phase"), "student_test_accuracy": m.get("student_test_accuracy"),
                           "label_precision": m.get("refined_label_precision")})
    return points


# ---------------------------------------------------------------- per sample
@dataclass(frozen=True)
class PerSample:
    """Each run's final labels of every training sample.

    Attributes
    ----------
    runs : tuple of str, length R
    keys : np.ndarray, shape (N,), str
    given : np.ndarray, shape (N,), int
        The (shared) given labels.
    true : np.ndarray or None, shape (N,), int
        The truth (-1 where unknown), ``None`` when no sample has one.
    refined : np.ndarray, shape (R, N), int
        Each run's refined label after its last step (a baseline's: the given label).
    student : np.ndarray, shape (R, N), int
        Each run's student prediction after its last step (-1 before the student trained).
    class_names : tuple of str
    """

    runs: tuple[str, ...]
    keys: np.ndarray
    given: np.ndarray
    true: np.ndarray | None
    refined: np.ndarray
    student: np.ndarray
    class_names: tuple[str, ...]

    def right(self, which: str = "refined") -> np.ndarray | None:
        """``(R, N)`` bool: the run's label (``refined`` or ``student``) equals the truth; ``None`` without truth."""
        if self.true is None:
            return None
        return getattr(self, which) == self.true[None, :]

    def disagree(self, which: str = "refined") -> np.ndarray:
        """``(N,)`` bool: the runs do not all give the sample the same label."""
        labels = getattr(self, which)
        return np.any(labels != labels[:1], axis=0)

    def rows(self) -> list[dict]:
        """One dict per sample: index, key, given, true, then per run its refined label, student
        prediction and (truth known) whether each is right, and whether the runs disagree."""
        name = lambda c: self.class_names[c] if 0 <= c < len(self.class_names) else ""  # noqa: E731
        right_r, right_s = self.right("refined"), self.right("student")
        dis_r, dis_s = self.disagree("refined"), self.disagree("student")
        out = []
        for i in range(len(self.keys)):
            row = {"index": i, "key": str(self.keys[i]), "given": name(int(self.given[i]))}
            if self.true is not None:
                row["true"] = name(int(self.true[i]))
            for r, run in enumerate(self.runs):
                row[f"{run}: refined"] = name(int(self.refined[r, i]))
                if right_r is not None:
                    row[f"{run}: refined right"] = bool(right_r[r, i]) if self.true[i] >= 0 else None
                row[f"{run}: student"] = name(int(self.student[r, i]))
                if right_s is not None:
                    row[f"{run}: student right"] = bool(right_s[r, i]) if self.true[i] >= 0 else None
            row["refined labels disagree"] = bool(dis_r[i])
            row["students disagree"] = bool(dis_s[i])
            out.append(row)
        return out


def per_sample(stores: Sequence[RunStore | str | Path]) -> PerSample:
    """Each run's final refined label and student prediction per sample.

    Raises
    ------
    UserError
        When the runs are not on the same data (:func:`same_data`), or one has no step yet.
    """
    stores = _stores(stores)
    require_same_data(stores)
    from ..rundir.snapshot import read

    arrays = stores[0].dataset_arrays()
    refined, student = [], []
    for store in stores:
        steps = store.steps()
        if not steps:
            raise UserError(f"run {_name(store)!r} has no steps yet: train it first")
        snap = read(store, steps[-1], ("refined", "student_pred"))
        refined.append(np.asarray(snap["refined"], dtype=np.int64))
        student.append(np.asarray(snap.get("student_pred", np.full(len(arrays["given"]), -1)), dtype=np.int64))
    true = arrays.get("true")
    true = None if true is None or not (true >= 0).any() else np.asarray(true, dtype=np.int64)
    return PerSample(runs=tuple(_name(s) for s in stores), keys=arrays["keys"].astype(str),
                     given=np.asarray(arrays["given"], dtype=np.int64), true=true,
                     refined=np.stack(refined), student=np.stack(student), class_names=stores[0].class_names())
