"""What the Compare page computes, outside its script: the runs that go with
the open one, the comparison set to create from one run's settings, the
tables (as shown and as CSV), which samples each run labels right, and the
download buttons.

The numbers all come from :mod:`engine.readers.compare`; here they only become
frames, text and buttons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from engine.readers.compare import PerSample, method_label, run_results, same_data, table_text
from engine.method import RunConfig
from app.worker import get_worker, torch_threads, train_in_turn
from engine.errors import UserError
from engine.steps import Run
from engine.rundir import RunStore, list_runs

SET_METHODS = ("aml-kd", "ce", "kd")  # the comparison set, in table order
LABEL_KINDS = {"refined": "refined label (what the student trains on)", "student": "student's prediction"}
TRAINING_MESSAGE = ("Run {name!r} is training: a comparison set trains its runs one after another, so wait for it "
                    "to finish or pause it on the Train page first.")


# ---------------------------------------------------------------- which runs
def run_names(root: Path) -> list[str]:
    """Runs under ``root``, newest first."""
    return [p.name for p in list_runs(root)]


def _stamp(path: Path) -> float:
    try:
        return RunStore(path).dataset_path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def _comparable(a: str, b: str, stamp_a: float, stamp_b: float) -> bool:
    return not same_data([RunStore(a), RunStore(b)])


def comparable_with(name: str, root: Path, names: list[str]) -> list[str]:
    """``name`` and every run of ``names`` on the same data as it (the Compare page's default pick),
    AML-KD first, then CE, then KD."""
    a = Path(root) / name
    found = [n for n in names if n == name or _comparable(str(a), str(Path(root) / n), _stamp(a),
                                                            _stamp(Path(root) / n))]
    return sorted(found, key=lambda n: _method_rank(Path(root) / n))


def _method_rank(path: Path) -> int:
    try:
        return SET_METHODS.index(RunStore(path).config().method)
    except (UserError, ValueError):
        return len(SET_METHODS)


def run_labels(rows: list[dict]) -> dict[str, str]:
    """Run -> its short label in captions: the method where no other run of the set has it, else the run."""
    methods = [r["method"].split(" (")[0] for r in rows]
    return {r["run"]: m if methods.count(m) == 1 else r["run"] for r, m in zip(rows, methods)}


# ---------------------------------------------------------------- a comparison set
#: The ablations a comparison set may add: AML-KD without one component each.
SET_ABLATIONS = (("awe",), ("mutual",), ("stage0",))


@dataclass(frozen=True)
class Member:
    """One run of a comparison set: its method and ablation, folder, the config to create it with
    (``None``: it exists) and whether it is finished."""

    method: str
    without: tuple[str, ...]
    path: Path
    config: RunConfig | None
    done: bool
    relabel_rule: str = "calibrated"

    @property
    def label(self) -> str:
        return method_label(RunConfig(method=self.method, without=self.without, relabel_rule=self.relabel_rule))


def name_token(method: str, without: tuple[str, ...] = (), relabel_rule: str = "calibrated") -> str:
    """The part of a run name that names its method: ``aml-kd``, ``ce``, ``aml-kd-no-awe``,
    ``aml-kd-authors-rule``."""
    return "-".join([method] + [f"no-{w}" for w in without] + (["authors-rule"] if relabel_rule == "authors" else []))


def member_name(name: str, own: str, token: str) -> str:
    """``digits-symmetric40-aml-kd-s0`` -> ``digits-symmetric40-ce-s0`` (``own`` and ``token``: the two
    runs' :func:`name_token`); a name without its own token gets ``-ce`` appended."""
    if f"-{own}-" in name:
        return name.replace(f"-{own}-", f"-{token}-", 1)
    if name.endswith(f"-{own}"):
        return name[: -len(own)] + token
    return f"{name}-{token}"


def plan_set(path: Path, ablations: bool = False, authors_rule: bool = False) -> list[Member]:
    """AML-KD, CE and KD runs (and, with ``ablations``, AML-KD without AWE, without the mutual stage,
    without stage 0; with ``authors_rule``, AML-KD with the authors' relabel rule) with the settings of
    the run at ``path``: same data, noise, seed and schedule, only the method changes; named after it.
    A run already at a member's name with that very config is reused; another one there moves the new
    run to a free name (``-2``, ``-3``, ...)."""
    store = RunStore(path)
    config = store.config()
    rule = config.relabel_rule
    own = name_token(config.method, config.without, rule)
    kinds = [(m, (), rule) for m in SET_METHODS] + ([("aml-kd", w, rule) for w in SET_ABLATIONS] if ablations else [])
    if authors_rule and rule != "authors":
        kinds.append(("aml-kd", (), "authors"))
    members = []
    for method, without, member_rule in kinds:
        if (method, tuple(without), member_rule) == (config.method, config.without, rule):
            members.append(Member(method, without, Path(path), None, run_results(store, strict=False)[1], rule))
            continue
        wanted = config.with_changes(method=method, without=without, relabel_rule=member_rule)
        stem = member_name(Path(path).name, own, name_token(method, without, member_rule))
        target, i = Path(path).parent / stem, 2
        while RunStore(target).exists() or target.exists():
            if _same_config(target, wanted):
                break
            target, i = Path(path).parent / f"{stem}-{i}", i + 1
        exists = RunStore(target).exists()
        members.append(Member(method, without, target, None if exists else wanted,
                              exists and run_results(RunStore(target), strict=False)[1], member_rule))
    return members


def _same_config(path: Path, config: RunConfig) -> bool:
    try:
        return RunStore(path).config() == config
    except UserError:
        return False


def describe_plan(members: list[Member]) -> list[str]:
    """One line per member: what pressing the button does to it."""
    what = lambda m: "finished, kept" if m.done else "exists, trained to the end" if m.config is None \
        else "created and trained"  # noqa: E731
    return [f"**{m.label}** `{m.path.name}`: {what(m)}" for m in members]


def create_and_queue(members: list[Member], root: Path, is_live) -> str | None:
    """Create the set's missing runs and train its unfinished ones one after another
    (:func:`app.worker.train_in_turn`); the reason, as one message, when refused or failed. Refused
    while any run under ``root`` trains; a run that cannot be created keeps those made before it."""
    busy = training_run(root, is_live)
    if busy is not None:
        return TRAINING_MESSAGE.format(name=busy)
    try:
        for member in (m for m in members if m.config is not None):
            get_worker(member.path).adopt(Run.create(member.path, member.config, threads=torch_threads()))
        train_in_turn([m.path for m in members if not m.done])
    except UserError as exc:
        return f"The comparison set was not started: {exc}"
    return None


def training_run(root: Path, is_live) -> str | None:
    """The name of a run under ``root`` that trains now (``is_live(path)``), or ``None``."""
    return next((p.name for p in list_runs(root) if is_live(p)), None)


def progress_lines(queue) -> list[str]:
    """One line per run of a :class:`app.worker.TrainQueue`: state and step."""
    lines = []
    for path, state in zip(queue.paths, queue.states):
        status = RunStore(path).status() if path.is_dir() else {}
        step = f" · step {status.get('step', 0)}/{status.get('total_steps', '?')}" if status else ""
        phase = f" · {status.get('phase')}" if state == "training" and status.get("phase") else ""
        lines.append(f"`{path.name}`: {state}{phase}{step}")
    return lines


# ---------------------------------------------------------------- frames
def table_frame(rows: list[dict]) -> pd.DataFrame:
    """The comparison table as shown: text cells, CLI's headers."""
    cells = table_text(rows)
    return pd.DataFrame(cells[1:], columns=cells[0])


def table_note(rows: list[dict]) -> str:
    """What the table's columns mean, and that test 'accuracy' is agreement where the test labels are given ones."""
    note = ("*student vs CE*: the student's test accuracy minus the CE run's (baseline). –: not measured (CE has "
            "no teacher). Unfinished runs show their last step.")
    if any(r.get("test_labels") == "given" for r in rows):
        note += (" **Test accuracy here is agreement with the given (noisy) test labels**: the label file has no "
                 "truth column.")
    return note


def split_shared(frame: pd.DataFrame, columns=("dataset", "noise", "seed")) -> tuple[pd.DataFrame, str]:
    """The table without the columns whose value every run shares, and those as one line
    (``dataset moons · noise symmetric 30% · seed 0``), so the rest fits a narrow screen."""
    shared = [c for c in columns if c in frame and frame[c].nunique() == 1]
    line = " · ".join(f"{c} **{frame[c].iloc[0]}**" for c in shared)
    return frame.drop(columns=shared), line


def curves_frame(points: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(points, columns=["run", "method", "epoch", "step", "phase", "student_test_accuracy",
                                         "label_precision"])


def outcome_patterns(view: PerSample, which: str, labels: dict[str, str] | None = None) -> pd.DataFrame | None:
    """How many samples each combination of right / wrong over the runs has (truth known only), one
    column per run (named by ``labels``); ``None`` without a truth."""
    right = view.right(which)
    if right is None:
        return None
    known = view.true >= 0
    patterns, counts = np.unique(right[:, known].T, axis=0, return_counts=True)
    labels = labels or {}
    frame = pd.DataFrame(np.where(patterns, "right", "wrong"), columns=[labels.get(r, r) for r in view.runs])
    frame["samples"] = counts
    return frame.sort_values("samples", ascending=False, ignore_index=True)


def sample_filters(view: PerSample) -> list[str]:
    """The per-sample view's choices of samples."""
    base = ["where the runs disagree"]
    if view.true is None:
        return base
    return base + [f"only {run} right" for run in view.runs] + [f"{run} wrong" for run in view.runs] + \
        ["every run wrong"]


def filtered_samples(view: PerSample, which: str, choice: str) -> np.ndarray:
    """Indices of the samples of ``choice`` (one of :func:`sample_filters`)."""
    if choice == "where the runs disagree":
        return np.flatnonzero(view.disagree(which))
    right = view.right(which)
    known = view.true >= 0
    if choice == "every run wrong":
        return np.flatnonzero(known & ~right.any(axis=0))
    for r, run in enumerate(view.runs):
        if choice == f"only {run} right":
            return np.flatnonzero(known & right[r] & (right.sum(axis=0) == 1))
        if choice == f"{run} wrong":
            return np.flatnonzero(known & ~right[r])
    raise ValueError(f"unknown choice of samples {choice!r}; valid: {', '.join(sample_filters(view))}")


def sample_caption(view: PerSample, which: str, i: int, labels: dict[str, str] | None = None) -> str:
    """``#12 · given 3 · true 5 · AML-KD: 5 · CE: 3`` with each run's label (runs named by ``labels``)."""
    labels = labels or {}
    name = lambda c: view.class_names[c] if 0 <= c < len(view.class_names) else "?"  # noqa: E731
    chosen = getattr(view, which)
    parts = [f"#{i}", f"given {name(int(view.given[i]))}"]
    if view.true is not None and view.true[i] >= 0:
        parts.append(f"true {name(int(view.true[i]))}")
    parts += [f"{labels.get(run, run)}: {name(int(chosen[r, i]))}" for r, run in enumerate(view.runs)]
    return " · ".join(parts)


# ---------------------------------------------------------------- downloads (Streamlit)
def csv_button(label: str, frame: pd.DataFrame, file_name: str, key: str) -> None:
    st.download_button(label, frame.to_csv(index=False).encode(), file_name=file_name, mime="text/csv", key=key,
                       icon=":material/download:", on_click="ignore")


def png_button(label: str, render, file_name: str, key: str) -> None:
    """A PNG download drawn only when clicked (``render`` returns the bytes: matplotlib, no kaleido)."""
    st.download_button(label, render, file_name=file_name, mime="image/png", key=key, on_click="ignore",
                       icon=":material/image:")


def figure_buttons(points: list[dict], frame: pd.DataFrame, stem: str, key: str) -> None:
    """A curve chart as PNG (the same lines, drawn by matplotlib) and its data as CSV."""
    from app.figures.compare_png import curves_png

    with st.container(horizontal=True):
        png_button("Chart (PNG)", lambda: curves_png(points, stem), f"{stem}.png", f"{key}-png")
        csv_button("Data (CSV)", frame, f"{stem}.csv", f"{key}-csv")


def table_buttons(frame: pd.DataFrame, note: str) -> None:
    """The results table (:func:`table_frame`) as CSV and as PNG, with its note (:func:`table_note`)."""
    from app.figures.compare_png import table_png

    cells = frame.astype(str).values.tolist()
    with st.container(horizontal=True):
        csv_button("Table (CSV)", frame, "comparison.csv", "compare-table-csv")
        png_button("Table (PNG)", lambda: table_png(list(frame.columns), cells, "Comparison", note.replace("*", "")),
                   "comparison.png", "compare-table-png")
