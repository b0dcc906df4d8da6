"""Train page: the headline numbers, the charts (only those the run's method has), the warnings and the takeaway."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import present
from app.audit_text import train_line
from app.figures.train import CHARTS, disk_line, phase_timeline_figure, timeline_caption
from app.samples import load_dataset, load_snapshot, render_sample_grid
from app.settings import phase_plan
from app.takeaway import (
    comparison_runs,
    early_stop_note,
    instructive_samples,
    noise_outcome,
    noise_rate_line,
    precision_estimate_line,
    precision_label,
    takeaway_lines,
)
from engine.errors import UserError
from engine.readers.audit import audit_report
from engine.rundir import disk_per_step, run_warnings
from engine.rundir import RunStore

#: Charts shown at once in presentation mode (one row on a projector); the others in an expander.
PRESENT_CHARTS = ("labels", "detection", "accuracy")
CHART_HELP = {
    "labels": "Fraction of training labels that are right: the given (noisy) ones, dashed, and the refined ones.",
    "detection": "Precision: of the samples relabelled away from their given label, the fraction whose given "
                 "label was wrong. Recall: of the wrong given labels, the fraction relabelled.",
    "accuracy": "Accuracy on the clean test set.",
    "relabels": "Refined labels that fixed a wrong given label, and refined labels that broke a right one.",
    "weights": "AUROC of the ambiguity weight (AWE) of each given label as a sign that it is right (0.5: no "
               "better than chance), and the fraction of small-loss 'easy' samples whose given label is right.",
    "losses": "Mean training loss of each epoch: the teacher's CE, then the student's terms.",
}


#: Charts each method has (CE and KD relabel nothing and weigh nothing: no detection, relabels, weights).
METHOD_CHARTS = {"aml-kd": ("labels", "detection", "accuracy", "relabels", "weights", "losses"),
                 "kd": ("accuracy", "losses"), "ce": ("accuracy", "losses")}


def test_metric_names(test_labels: str | None) -> dict[str, str]:
    """Headline names of the test metrics: accuracy against the truth, or agreement with the given labels
    of the held-out images (a label file without a truth column)."""
    if test_labels == "given":
        return {"student_test_accuracy": "Student agreement with given test labels",
                "teacher_test_accuracy": "Teacher agreement with given test labels"}
    return {"student_test_accuracy": "Student test accuracy", "teacher_test_accuracy": "Teacher test accuracy"}


def headline(metrics: list[dict], status: dict, method: str = "aml-kd", test_labels: str | None = "truth",
             audit: str | None = None) -> None:
    last = metrics[-1] if metrics else {}
    names = test_metric_names(test_labels)
    shown = [precision_label(metrics), ("student_test_accuracy", names["student_test_accuracy"])]
    if method != "ce":  # CE has no teacher
        shown.append(("teacher_test_accuracy", names["teacher_test_accuracy"]))
    cols = st.columns(2 + len(shown))
    cols[0].metric("Step", f"{status.get('step', 0)} / {status.get('total_steps', '?')}")
    cols[1].metric("Phase", status.get("phase", "?"))
    for col, (key, label) in zip(cols[2:], shown):  # precision: the given labels' until a step propagated labels
        value = last.get(key)
        col.metric(label, "–" if value is None else f"{value:.3f}")
    estimates = [line for line in (noise_rate_line(metrics), precision_estimate_line(last), audit) if line]
    if estimates:
        st.caption("  \n".join(estimates))
    if test_labels is None:
        st.caption("This run holds no images out (test fraction 0): it has no test metrics.")
    elif test_labels == "given":
        st.caption("The label file has no truth column: test numbers are the agreement with its given (possibly "
                   "noisy) labels of the held-out images, not an accuracy.")


_AUDITS: dict = {}  # (run, audit log's version on disk, step) -> its line: the live panel redraws every second


def audit_line(store: RunStore, step: int | None) -> str | None:
    """The run's audit counted (engine.readers.audit), one line beside the estimates; None without an audit.
    Read again only when the audit log's files or the step change."""
    files = (store.audit_path, store.audit_path.with_name(store.audit_path.name + "-wal"))
    if not files[0].is_file():
        return None
    stamps = tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None for f in files)
    key = (str(store.path), stamps, step)
    if key not in _AUDITS:
        try:
            line = train_line(audit_report(store.path))
        except UserError as exc:  # an audit log of other samples, a damaged file: one line, the page stays up
            line = f"The audit log cannot be read: {exc}"
        if len(_AUDITS) > 64:
            _AUDITS.clear()
        _AUDITS[key] = line
    return _AUDITS[key]


_WARNINGS: dict = {}  # (run, step) -> warnings: computed once per step, not on every redraw


def warning_banners(store: RunStore, status: dict) -> None:
    """The run's health checks (engine.rundir.health), each a banner that says what to do."""
    key = (str(store.path), status.get("step"), status.get("state"))
    if key not in _WARNINGS:
        try:
            _WARNINGS[key] = run_warnings(store)
        except UserError:
            _WARNINGS[key] = []
        if len(_WARNINGS) > 256:
            _WARNINGS.clear()
    for warning in _WARNINGS.get(key, []):
        st.warning(warning["message"], icon="⚠️")


_FIGURES: dict = {}  # (run, chart, presenting) -> (metrics digest, figure): the live panel redraws every second


def cached_figure(path: str, key: str, build, metrics: list[dict], presenting: bool):
    """A chart's figure, rebuilt only when the run's metrics changed (a new step), not on every redraw."""
    digest = hash(tuple((m.get("step"), m.get("phase"), m.get("step_seconds")) for m in metrics))
    cached = _FIGURES.get((path, key, presenting))
    if cached is not None and cached[0] == digest:
        return cached[1]
    fig = present.style_figure(build(metrics), presenting)
    if len(_FIGURES) > 64:
        _FIGURES.clear()
    _FIGURES[(path, key, presenting)] = (digest, fig)
    return fig


def charts(path: str, metrics: list[dict], method: str = "aml-kd") -> None:
    presenting = present.is_on()
    own = [c for c in CHARTS if c[0] in METHOD_CHARTS.get(method, METHOD_CHARTS["aml-kd"])]
    shown = [c for c in own if c[0] in PRESENT_CHARTS] if presenting else own
    rest = [c for c in own if c not in shown]
    for row in (shown[:3], shown[3:]):
        _chart_row(path, row, metrics, presenting)
    if rest and st.toggle("More charts", key="train-more-charts", help="Relabels, weights and losses."):
        _chart_row(path, rest, metrics, presenting)


def _chart_row(path: str, row, metrics: list[dict], presenting: bool) -> None:
    if not row:
        return
    for col, (key, build) in zip(st.columns(3), row):
        with col:
            fig = cached_figure(path, key, build, metrics, presenting)
            st.plotly_chart(fig, key=f"train-chart-{key}", config={"displaylogo": False})
            if not presenting:
                st.caption(CHART_HELP[key])


def results_panel(store: RunStore, status: dict) -> None:
    """The phase timeline, the latest numbers and the charts over steps."""
    try:
        config = store.config()
    except UserError:  # a reset is rewriting the directory this very moment
        st.info("The run is being recreated from its settings...")
        return
    metrics = store.metrics()
    timeline = phase_plan(config, metrics, status.get("phase"))
    st.plotly_chart(present.style_figure(phase_timeline_figure(timeline, status.get("phase"))), key="train-timeline",
                    config={"displayModeBar": False})
    note = early_stop_note(metrics, config)
    disk = disk_line(disk_per_step(store, metrics))
    st.caption(timeline_caption(timeline, status.get("phase")) + (f"  \n{note}" if note else "")
               + (f"  \n{disk}" if disk else ""))
    warning_banners(store, status)  # what went wrong, before the takeaway and the numbers
    if status.get("phase") == "done":
        takeaway(store, config, metrics)
    try:
        test_labels = store.test_labels()
    except UserError:
        test_labels = "truth"
    headline(metrics, status, config.method, test_labels, audit_line(store, status.get("step")))
    charts(str(store.path), metrics, config.method)


def takeaway(store: RunStore, config, metrics: list[dict]) -> None:
    """The end of the lecture: what the refinery did to the labels, and the student against the baselines."""
    steps = store.steps()
    if not steps:
        return
    arrays = store.dataset_arrays()
    given, true = arrays["given"].astype(np.int64), arrays["true"].astype(np.int64)
    snapshot = load_snapshot(str(store.path), steps[-1])
    refined = snapshot["refined"].astype(np.int64)
    outcome = noise_outcome(given, refined, true)
    comparisons = comparison_runs(store.path.parent, config, exclude=store.path)
    with st.container(border=True, key="train-takeaway"):
        st.markdown("#### Takeaway")
        for line in takeaway_lines(metrics, outcome, config.method, comparisons):
            st.markdown(line)
        try:
            dataset = load_dataset(str(store.path))
        except UserError:
            return
        fixed = instructive_samples(given, refined, true, snapshot.get("lp_confidence"),
                                    positions=dataset.train_x if dataset.kind == "points" else None)
        if fixed:
            st.caption("Five labels the method fixed (given → refined · AWE weight), the propagation surest"
                       + (", spread over the data (the red ring marks each on the map):"
                          if dataset.kind == "points" else ":"))
            render_sample_grid(fixed, dataset.kind, dataset.train_x, given, refined, snapshot["weight"],
                               dataset.class_names, columns=len(fixed), dataset=dataset)


