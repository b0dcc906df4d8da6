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

from app.text import code_span, md

from engine.readers.compare import (PerSample, add_chance, by_method_text, method_label, run_results, same_data,
                                    student_test_right, table_text)
from engine.readers.audit import copy_audit, has_audit, same_samples
from engine.readers.export import safe_csv
from engine.data import parse_dataset_spec
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
    seed: int | None = None  # shown in the label when the set trains several seeds
    relabel_rule: str = "calibrated"

    @property
    def label(self) -> str:
        label = method_label(RunConfig(method=self.method, without=self.without, relabel_rule=self.relabel_rule))
        return label if self.seed is None else f"{label}, seed {self.seed}"


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


MAX_SEEDS = 10  # a comparison set's seeds: each adds a whole set of runs


def seed_name(name: str, own_seed: int, seed: int) -> str:
    """``digits-symmetric40-aml-kd-s0`` -> ``digits-symmetric40-aml-kd-s1``; a name without its own
    ``-s<seed>`` gets ``-s<seed>`` appended."""
    tail = f"-s{own_seed}"
    if seed == own_seed:
        return name
    return name[: -len(tail)] + f"-s{seed}" if name.endswith(tail) else f"{name}-s{seed}"


def plan_set(path: Path, ablations: bool = False, seeds: int = 1, authors_rule: bool = False) -> list[Member]:
    """AML-KD, CE and KD runs (and, with ``ablations``, AML-KD without AWE, without the mutual stage,
    without stage 0; with ``authors_rule``, AML-KD with the authors' relabel rule) with the settings of
    the run at ``path``: same data, noise, seed and schedule, only the method changes; named after it.
    With ``seeds`` > 1 the same again for the next seeds (the run's seed, then seed+1, ...; each seed
    draws its own noisy labels). A run already at a member's name with that very config is reused;
    another one there moves the new run to a free name (``-2``, ``-3``, ...)."""
    if not 1 <= int(seeds) <= MAX_SEEDS:
        raise UserError(f"seeds={seeds!r} is out of range; valid: 1 to {MAX_SEEDS}")
    store = RunStore(path)
    config = store.config()
    rule = config.relabel_rule
    own = name_token(config.method, config.without, rule)
    kinds = [(m, (), rule) for m in SET_METHODS] + ([("aml-kd", w, rule) for w in SET_ABLATIONS] if ablations else [])
    if authors_rule and rule != "authors":
        kinds.append(("aml-kd", (), "authors"))
    members = []
    for seed in range(config.seed, config.seed + int(seeds)):
        for method, without, member_rule in kinds:
            members.append(_member(Path(path), store, config, own, (method, without, member_rule), seed,
                                   int(seeds) > 1))
    return members


def _member(path: Path, store: RunStore, config: RunConfig, own: str, kind: tuple, seed: int,
            several: bool) -> Member:
    method, without, rule = kind
    shown_seed = seed if several else None
    if (method, tuple(without), rule, seed) == (config.method, config.without, config.relabel_rule, config.seed):
        return Member(method, without, path, None, run_results(store, strict=False)[1], shown_seed, rule)
    wanted = config.with_changes(method=method, without=without, seed=seed, relabel_rule=rule)
    stem = member_name(seed_name(path.name, config.seed, seed), own, name_token(method, without, rule))
    target, i = path.parent / stem, 2
    while RunStore(target).exists() or target.exists():
        if _same_config(target, wanted):
            break
        target, i = path.parent / f"{stem}-{i}", i + 1
    exists = RunStore(target).exists()
    return Member(method, without, target, None if exists else wanted,
                  exists and run_results(RunStore(target), strict=False)[1], shown_seed, rule)


def _same_config(path: Path, config: RunConfig) -> bool:
    try:
        return RunStore(path).config() == config
    except UserError:
        return False


def describe_plan(members: list[Member]) -> list[str]:
    """One line per member: what pressing the button does to it."""
    what = lambda m: "finished, kept" if m.done else "exists, trained to the end" if m.config is None \
        else "created and trained"  # noqa: E731
    return [f"**{m.label}** {code_span(m.path.name)}: {what(m)}" for m in members]


def create_and_queue(members: list[Member], root: Path, is_live) -> str | None:
    """Create the set's missing runs and train its unfinished ones one after another
    (:func:`app.worker.train_in_turn`); the reason, as one message, when refused or failed. Refused
    while any run under ``root`` trains; a run that cannot be created keeps those made before it."""
    busy = training_run(root, is_live)
    if busy is not None:
        return TRAINING_MESSAGE.format(name=busy)
    audited = [m.path for m in members if m.config is None and has_audit(m.path)]
    try:
        for member in (m for m in members if m.config is not None):
            get_worker(member.path).adopt(Run.create(member.path, member.config, threads=torch_threads()))
            source = next((a for a in audited if same_samples(member.path, a)), None)
            if source is not None:  # the same samples and given labels (the same seed): the audit made once
                copy_audit(member.path, source)
        train_in_turn([m.path for m in members if not m.done])
    except UserError as exc:
        return f"The comparison set was not started: {exc}"
    return None


def training_run(root: Path, is_live) -> str | None:
    """The name of a run under ``root`` that trains now (``is_live(path)``), or ``None``."""
    return next((p.name for p in list_runs(root) if is_live(p)), None)


def queue_on_data(queue, source: Path) -> bool:
    """Whether a :class:`app.worker.TrainQueue` trains runs on the data of the run at ``source`` (same dataset
    and noise): the Compare page shows a set's progress only beside its own data."""
    try:
        config = RunStore(source).config()
    except UserError:
        return False
    for path in queue.paths:
        try:
            other = RunStore(path).config()
        except UserError:
            continue
        if (other.dataset, other.noise, other.labels) == (config.dataset, config.noise, config.labels):
            return True
    return False


def progress_lines(queue) -> list[str]:
    """One line per run of a :class:`app.worker.TrainQueue`: state and step."""
    lines = []
    for path, state in zip(queue.paths, queue.states):
        status = RunStore(path).status() if path.is_dir() else {}
        step = f" · step {status.get('step', 0)}/{status.get('total_steps', '?')}" if status else ""
        phase = f" · {status.get('phase')}" if state == "training" and status.get("phase") else ""
        lines.append(f"{code_span(path.name)}: {state}{phase}{step}")  # a code span shows the name as text
    return lines


# ---------------------------------------------------------------- chance
def _checkpoint_stamp(path: Path) -> float:
    try:
        return RunStore(path).checkpoint_path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=256)
def _test_right(path: str, stamp: float) -> np.ndarray | None:
    return student_test_right(RunStore(path))


def with_chance(rows: list[dict], stores: list[RunStore]) -> list[dict]:
    """:func:`engine.readers.compare.add_chance` with each run's test predictions cached until its
    checkpoint changes (a redraw of the page classifies nothing again); a run still training gets its
    statistics when it is finished (the page redraws every few seconds meanwhile)."""
    right = {}
    for row, store in zip(rows, stores):
        if row["student_test_accuracy"] is not None and not row["finished"]:
            right[row["run"]] = None
        elif row["student_test_accuracy"] is not None:
            try:
                right[row["run"]] = _test_right(str(store.path), _checkpoint_stamp(store.path))
            except UserError:
                right[row["run"]] = None
    return add_chance(rows, stores, right)


def warnings_block(rows: list[dict]) -> str | None:
    """Every run's warnings as one block, one line per run (its warnings joined), or ``None``."""
    lines = [f"- **{md(r['run'])}**: " + " ".join(md(w["message"]) for w in r["warnings"]) for r in rows
             if r["warnings"]]
    return "\n".join(lines) if lines else None


def by_method_frame(entries: list[dict]) -> pd.DataFrame:
    cells = by_method_text(entries)
    return pd.DataFrame(cells[1:], columns=cells[0])


# ---------------------------------------------------------------- frames
ESTIMATE, ESTIMATE_INTERVAL = "refined prec est", "refined est 90% interval"


def table_frame(rows: list[dict]) -> pd.DataFrame:
    """The comparison table as shown: text cells, CLI's headers, and after the refined labels' estimated
    precision its 90% interval (``0.906–0.917``; ``–`` where the run has none)."""
    cells = table_text(rows)
    frame = pd.DataFrame(cells[1:], columns=cells[0])
    intervals = ["–" if r.get("refined_precision_low") is None or r.get("refined_precision_high") is None else
                 f"{r['refined_precision_low']:.3f}–{r['refined_precision_high']:.3f}" for r in rows]
    frame.insert(list(frame.columns).index(ESTIMATE) + 1, ESTIMATE_INTERVAL, intervals)
    return frame


def table_note(rows: list[dict]) -> str:
    """What the table's columns mean, and that test 'accuracy' is agreement where the test labels are given ones."""
    note = ("*student vs CE*: the student's test accuracy minus the CE run's of the same seed (baseline), with "
            "its 95% interval on the same test samples and an exact McNemar test (*p*). *95% interval*: of the "
            "student's test accuracy (Wilson). –: not measured (CE has no teacher). Unfinished runs show their "
            "last step.")
    if any(r.get("test_labels") == "given" for r in rows):
        note += (" **Test accuracy here is agreement with the given (noisy) test labels**: the label file has no "
                 "truth column.")
    return note


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as the page shows it at 1024 px: each interval in its number's cell
    (``0.860 (0.795–0.907)``, ``+0.020 (-0.050 to +0.090)``), three columns fewer; the CSV keeps them apart."""
    out = frame.copy()
    pairs = (("student acc", "95% interval", "student acc (95%)"),
             ("student vs CE", "vs CE 95% interval", "vs CE (95%)"),
             (ESTIMATE, ESTIMATE_INTERVAL, f"{ESTIMATE} (90%)"))
    for number, interval, header in pairs:
        if number in out and interval in out:
            joined = [n if i in ("–", "") else f"{n} ({i})" for n, i in zip(out[number], out[interval])]
            out.insert(list(out.columns).index(number), header, joined)
            out = out.drop(columns=[number, interval])
    return out


def split_shared(frame: pd.DataFrame, columns=("dataset", "noise", "seed")) -> tuple[pd.DataFrame, str]:
    """The table without the columns whose value every run shares, and those as one line
    (``dataset moons · noise symmetric 30% · seed 0``), so the rest fits a narrow screen."""
    shared = [c for c in columns if c in frame and frame[c].nunique() == 1]
    line = " · ".join(f"{c} **{md(frame[c].iloc[0])}**" for c in shared)
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


def is_vectors_run(store: RunStore) -> bool:
    """Whether the run's samples are precomputed vectors (``vectors:FILE``: no picture to draw)."""
    return parse_dataset_spec(store.config().dataset).name == "vectors"


def vector_cards(keys, samples: list[int], captions: list[str], columns: int = 3) -> None:
    """Samples without a picture as cards: the key as plain text (shown exactly as it is), under it the
    caption (given label, truth, each run's label)."""
    for start in range(0, len(samples), columns):
        for cell, i, caption in zip(st.columns(columns), samples[start:start + columns],
                                    captions[start:start + columns]):
            with cell.container(border=True):
                st.text(str(keys[i]))
                st.caption(md(caption))


# ---------------------------------------------------------------- downloads (Streamlit)
def csv_button(label: str, frame, file_name: str, key: str) -> None:
    """A CSV download of ``frame``: a DataFrame, or a function that returns one, called only when clicked (the
    CSV of every sample of a large run is not built on every draw)."""
    data = (lambda: safe_csv(frame()).encode()) if callable(frame) else safe_csv(frame).encode()
    st.download_button(label, data, file_name=file_name, mime="text/csv", key=key,
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


def table_buttons(frame: pd.DataFrame, note: str, methods: pd.DataFrame | None = None) -> None:
    """The results table (:func:`table_frame`) as CSV and as PNG, with its note (:func:`table_note` and the
    chance sentence); ``methods``: the mean and spread per method over seeds (:func:`by_method_frame`),
    its own CSV and under the table in the PNG."""
    from app.figures.compare_png import table_png

    cells = frame.astype(str).values.tolist()
    if methods is not None:  # the PNG: the per-method rows under the runs, the columns of both
        header = list(frame.columns)
        cells = cells + [[""] * len(header)] + [
            (list(row) + [""] * len(header))[: len(header)] for row in
            [list(methods.columns)] + methods.astype(str).values.tolist()]
    with st.container(horizontal=True):
        csv_button("Table (CSV)", frame, "comparison.csv", "compare-table-csv")
        if methods is not None:
            csv_button("Over the seeds (CSV)", methods, "comparison_by_method.csv", "compare-methods-csv")
        png_button("Table (PNG)", lambda: table_png(list(frame.columns), cells, "Comparison", note.replace("*", "")),
                   "comparison.png", "compare-table-png")
