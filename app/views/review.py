"""Review: decide, one sample at a time, on what the method relabels or finds ambiguous.

Decisions go straight to the run's ``reviews.sqlite`` (see
:mod:`engine.review`); a decision shown as saved is committed and synced.
The page keeps no state of its own beyond widgets: the open run, the reviewer
and the sample on screen are also in the URL (``?run=NAME&reviewer=ME&sample=I``),
so a reload comes back to the same place.

Keys (Streamlit button shortcuts): A accept the proposal, K keep the given
label, 0-9 choose that class, U unsure, O outlier, Z undo my last decision,
J / Left previous, L / Right next. Streamlit ignores shortcuts while a text
field or select box has the focus: Enter (in the reviewer field) or Escape
hands the keys back to the review.

Expected impact (queue order 'impact'): how many other samples change label
when this one is fixed (clamped to its proposal, or to its given label, or to
the runner-up class) and the step's propagation is re-run. Exact for the 40
queued samples with the most reverse neighbours that could flip (one
propagation each), the rest ordered by that neighbour count
(:func:`engine.triage.impact_scores`).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app.common import RUN_DIR_KEY, open_run, require_store, runs_root
from app.figures import review as figs
from engine.data import dataset_for_config
from engine.errors import UserError
from engine.export import (clean_labels_table, decisions_table, import_decisions, parse_decisions,
                           read_decision_file, samples_json, samples_table, student_weights)
from engine.review import ReviewStore, agreement, label_history, run_class_names
from engine.triage import FLAGS, ORDERS, bulk_candidates, impact_scores, repropagate, review_flags, review_queue
from engine.store import RunStore

NEIGHBOURS_SHOWN = 20
#: Streamlit ignores button shortcuts while an <input> has the focus, and a
#: toggle keeps it after a click: give the keys back to the review after a
#: toggle or checkbox changes, after Enter in a text field, and on Escape.
KEEP_KEYS_SCRIPT = """<script>
(() => {
  if (window.__amlkdReviewKeys) return;
  window.__amlkdReviewKeys = true;
  const isInput = (t) => t && t.tagName === "INPUT";
  const releaseChoice = () => setTimeout(() => {
    const t = document.activeElement;
    if (isInput(t) && ["checkbox", "radio"].includes(t.type)) t.blur();
  }, 50);
  document.addEventListener("click", releaseChoice, true);
  document.addEventListener("change", releaseChoice, true);
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (!isInput(t)) return;
    if (e.key === "Escape" || (e.key === "Enter" && t.type === "text" && !t.getAttribute("role"))) {
      setTimeout(() => t.blur(), 0);
    }
  }, true);
})();
</script>"""
FLASH = "review_flash"
RIPPLE = "review_ripple"


# ---------------------------------------------------------------- cached reads
@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def _dataset(path: str, stamp: int):
    return dataset_for_config(RunStore(path).config())


@st.cache_data(show_spinner=False, max_entries=8)
def _snapshot(path: str, step: int, stamp: int) -> dict:
    return RunStore(path).snapshot(step)


@st.cache_data(show_spinner=False, max_entries=4)
def _history(path: str, steps: tuple, stamp: int):
    return label_history(RunStore(path), ("refined", "weight", "student_loss"))


@st.cache_data(show_spinner="Estimating the impact of each fix…", max_entries=8)
def _impact(path: str, step: int, stamp: int, queue: tuple, version: int):
    store = RunStore(path)
    clamped, _ = ReviewStore(path).clamps(len(store.dataset_arrays()["given"]))
    return impact_scores(store, step, np.asarray(queue, np.int64), clamped_labels=clamped)


@st.cache_data(show_spinner="Re-propagating with the reviewed labels…", max_entries=4)
def _ripple(path: str, step: int, stamp: int, version: int):
    store = RunStore(path)
    clamped, outliers = ReviewStore(path).clamps(len(store.dataset_arrays()["given"]))
    return repropagate(store, step, clamped, outliers)


def _stamp(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


# ---------------------------------------------------------------- the open run
def _store() -> RunStore:
    """The open run; ``?run=NAME`` (a folder under the runs root) opens one."""
    name = st.query_params.get("run")
    if name and Path(name).name == name and not st.session_state.get(RUN_DIR_KEY):
        if RunStore(runs_root() / name).exists():
            open_run(runs_root() / name)
            st.rerun()  # once, so that the sidebar (drawn before this page) shows the run too
        else:
            st.warning(f"Run {name!r} was not found under {str(runs_root())!r}.")
    store = require_store()
    if store.path.parent.resolve() == runs_root().resolve():
        st.query_params["run"] = store.path.name
    return store


def _flash() -> None:
    """The message the last action left, in a container that is always there, so
    that the elements below keep their place (and expanders their state)."""
    kind, text = st.session_state.pop(FLASH, (None, None))
    with st.container(key="review_flash_slot"):
        if kind == "error":
            st.error(text, icon=":material/error:")
        elif kind:
            st.success(text, icon=":material/check_circle:")


# ---------------------------------------------------------------- callbacks (run before the rerun)
def _go(sample: int | None) -> None:
    if sample is not None:
        st.query_params["sample"] = str(int(sample))


def _decide(path: str, sample: int, decision: str, label, proposal: int, step: int, blind: bool,
            after: int | None, num_classes: int, class_names: tuple) -> None:
    reviewer = st.session_state.get("review_reviewer", "")
    try:
        d = ReviewStore(path, num_classes=num_classes).record(sample, decision, reviewer, label, step=step,
                                                              proposal=proposal, blind=blind)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    what = d.decision if d.label is None else f"{d.decision} → {class_names[d.label]}"
    st.session_state[FLASH] = ("success", f"Saved: {d.key or d.sample}: {what} (by {d.reviewer}).")
    _go(after)


def _undo(path: str, step: int) -> None:
    try:
        d = ReviewStore(path).undo(st.session_state.get("review_reviewer", ""), step=step)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[FLASH] = ("success", f"Undone: your last decision on {d.key or d.sample}.")
    _go(d.sample)


def _bulk_accept(path: str, rows: tuple, refined: tuple, step: int, num_classes: int) -> None:
    reviewer = st.session_state.get("review_reviewer", "")
    events = [dict(sample=i, decision="accept", reviewer=reviewer, label=p, proposal=p, step=step)
              for i, p in zip(rows, refined)]
    try:
        ReviewStore(path, num_classes=num_classes).record_many(events)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[FLASH] = ("success", f"Accepted {len(events)} proposals.")


def _import(path: str, data: bytes, name: str) -> None:
    try:
        events = import_decisions(RunStore(path), data, st.session_state.get("review_reviewer") or None, name=name)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[FLASH] = ("success", f"Imported {len(events)} decisions from {name}.")


def _pick_from_queue(rows: tuple) -> None:
    selected = st.session_state["review_queue_table"]["selection"]["rows"]
    if selected:
        _go(rows[selected[0]])


def _remember_reviewer() -> None:
    st.query_params["reviewer"] = st.session_state.get("review_reviewer", "")


# ---------------------------------------------------------------- sidebar
def _controls(steps: list[int], class_names) -> dict:
    if "review_reviewer" not in st.session_state:
        st.session_state["review_reviewer"] = st.query_params.get("reviewer", "")
    with st.sidebar:
        st.text_input("Reviewer", key="review_reviewer", on_change=_remember_reviewer,
                      placeholder="your name (required)")
        blind = st.toggle("Blind mode", key="review_blind",
                          help="Label each sample before the method's proposal is shown.")
        step = st.selectbox("Step", steps[::-1], key="review_step", help="Whose snapshot to review (default: last).")
        flags = st.multiselect("Flags", FLAGS, default=list(FLAGS), key="review_flags")
        classes = st.multiselect("Classes", range(len(class_names)), format_func=lambda c: class_names[c],
                                 key="review_classes", help="Given or refined label among these (empty: all).")
        order = st.selectbox("Order", ORDERS, key="review_order",
                             format_func={"ambiguity": "most ambiguous first", "confidence": "least confident first",
                                          "impact": "largest expected impact first"}.get)
        hide = st.toggle("Hide reviewed", key="review_hide")
    return {"reviewer": st.session_state["review_reviewer"].strip(), "blind": blind, "step": int(step),
            "flags": flags, "classes": classes or None, "order": order, "hide": hide}


# ---------------------------------------------------------------- the sample card
def _labels_panel(ctx: dict, sample: int, revealed: bool) -> None:
    names, snap = ctx["class_names"], ctx["snapshot"]
    decision = ctx["latest"].get(sample)
    st.markdown(f"**Given label:** {names[ctx['given'][sample]]}")
    if revealed:
        st.markdown(f"**Proposal (refined):** {names[snap['refined'][sample]]}")
        details = []
        if np.isfinite(snap["weight"][sample]):
            details.append(f"AWE weight {snap['weight'][sample]:.2f}")
        if "lp_confidence" in snap:
            details.append(f"propagation confidence {snap['lp_confidence'][sample]:.2f}")
        st.caption(" · ".join(details))
    else:
        st.markdown("**Proposal:** hidden until you decide (blind mode)")
    if decision is None:
        st.markdown("**Decision:** not reviewed yet")
    else:
        label = "" if decision.label is None else f" → {names[decision.label]}"
        st.markdown(f"**Decision:** {decision.decision}{label} · {decision.reviewer}")
    if revealed:
        sources = {name: (snap[f"{key}_top" if key != "lp" else "lp_top_classes"][sample],
                          snap[f"{key}_prob" if key != "lp" else "lp_top_scores"][sample])
                   for name, key in (("propagation", "lp"), ("teacher", "teacher"), ("student", "student"))
                   if (f"{key}_top" if key != "lp" else "lp_top_classes") in snap}
        if sources:
            st.plotly_chart(figs.top3_figure(sources, names), key="review_top3")


def _neighbours(ctx: dict, sample: int) -> tuple[np.ndarray, np.ndarray]:
    snap = ctx["snapshot"]
    if "neighbor_idx" in snap:
        return snap["neighbor_idx"][sample].astype(np.int64), snap["neighbor_sim"][sample].astype(np.float32)
    features = snap["features"].astype(np.float32)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sims = features @ features[sample]
    sims[sample] = -np.inf
    order = np.argsort(-sims, kind="stable")[:NEIGHBOURS_SHOWN]
    return order, sims[order]


def _card(ctx: dict, sample: int, revealed: bool) -> None:
    names, dataset = ctx["class_names"], ctx["dataset"]
    neighbours, sims = _neighbours(ctx, sample)
    labels = ctx["snapshot"]["refined"] if revealed else ctx["given"]
    left, middle, right = st.columns([1.0, 1.1, 1.5])
    with left:
        if dataset.kind == "image":
            st.plotly_chart(figs.sample_image_figure(dataset.train_x[sample]), key="review_image",
                            width="content")
        else:
            st.plotly_chart(figs.points_figure(dataset.train_x, labels, names, sample, neighbours, size=340),
                            key="review_points", width="content")
    with middle:
        _labels_panel(ctx, sample, revealed)
    with right:
        if revealed:
            steps, values = ctx["history"]
            events = ctx["reviews"].history(sample)
            undone = {d.undoes for d in events}
            marks = [(d.step, d.decision) for d in events
                     if d.step is not None and d.decision != "undo" and d.id not in undone]
            st.plotly_chart(figs.history_figure(steps, values["refined"][:, sample], values["weight"][:, sample],
                                                values["student_loss"][:, sample], names,
                                                int(ctx["given"][sample]), marks), key="review_history")
        else:
            st.caption("The label's history is hidden in blind mode until you decide.")
    edge = np.maximum(sims, 0) ** ctx["power"]
    st.caption(f"{len(neighbours)} nearest neighbours ({'refined' if revealed else 'given'} label · edge weight)")
    if dataset.kind == "image":
        st.image([figs.thumbnail(dataset.train_x[j], scale=6) for j in neighbours],
                 caption=[f"{names[labels[j]]} · {w:.2f}" for j, w in zip(neighbours, edge)], width=56)
    else:
        st.dataframe(pd.DataFrame({"sample": ctx["keys"][neighbours], "label": [names[labels[j]] for j in neighbours],
                                   "edge weight": edge.astype(np.float64)}), hide_index=True, height=240,
                     column_config={"edge weight": st.column_config.NumberColumn(format="%.3f")}, width=420)


def _actions(ctx: dict, sample: int, nav: dict, revealed: bool) -> None:
    names, snap, opts = ctx["class_names"], ctx["snapshot"], ctx["opts"]
    proposal = int(snap["refined"][sample])
    given = int(ctx["given"][sample])
    blind = opts["blind"] and not revealed
    disabled = not opts["reviewer"]
    common = dict(proposal=proposal, step=opts["step"], blind=blind, after=nav["next"],
                  num_classes=len(names), class_names=tuple(names))
    path = str(ctx["store"].path)

    def button(label, shortcut, decision, label_id=None, key=None, **kw):
        st.button(label, shortcut=shortcut, key=key or f"review_{decision}", disabled=disabled, on_click=_decide,
                  args=(path, sample, decision, label_id), kwargs=common, **kw)

    with st.container(horizontal=True, key="review_actions"):
        if not blind:
            button(f"Accept {names[proposal]}", "A", "accept", proposal, type="primary", icon=":material/check:")
        button(f"Keep given {names[given]}", "K", "keep", given, icon=":material/undo:")
        button("Unsure", "U", "unsure", icon=":material/help:")
        button("Outlier", "O", "outlier", icon=":material/block:")
        st.button("Undo", shortcut="Z", key="review_undo", disabled=disabled, on_click=_undo,
                  args=(path, opts["step"]), icon=":material/history:")
    with st.container(horizontal=True, key="review_classes_row"):
        for c, name in enumerate(names[:10]):
            button(name, str(c), "keep" if c == given else "relabel", c, key=f"review_class_{c}")
        if len(names) > 10:
            pick = st.selectbox("Other class", range(len(names)), format_func=lambda c: names[c],
                                key="review_pick", label_visibility="collapsed")
            button("Relabel to chosen", None, "relabel", pick, key="review_pick_apply")
    with st.container(horizontal=True, key="review_nav"):
        st.button("Previous", shortcut="J", key="review_prev", on_click=_go, args=(nav["prev"],),
                  disabled=nav["prev"] is None, icon=":material/arrow_back:", help="J or ←")
        st.button("Next", shortcut="L", key="review_next", on_click=_go, args=(nav["next"],),
                  disabled=nav["next"] is None, icon=":material/arrow_forward:", help="L or →")
    with st.container(key="review_arrows"):  # the arrow keys: same actions, buttons not shown
        st.html("<style>.st-key-review_arrows {display: none;}</style>" + KEEP_KEYS_SCRIPT,
                unsafe_allow_javascript=True)
        st.button("Previous (arrow)", shortcut="Left", key="review_left", on_click=_go, args=(nav["prev"],),
                  disabled=nav["prev"] is None)
        st.button("Next (arrow)", shortcut="Right", key="review_right", on_click=_go, args=(nav["next"],),
                  disabled=nav["next"] is None)
    if disabled:
        st.info("Enter your name in the sidebar (Reviewer) to record decisions.", icon=":material/person:")


def _decision_log(ctx: dict, sample: int) -> None:
    events = ctx["reviews"].history(sample)
    if events:
        table = decisions_table(events, ctx["class_names"], history=True)
        table["time"] = pd.to_datetime(table["time"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        st.dataframe(table.drop(columns=["sample", "index"]), hide_index=True)


# ---------------------------------------------------------------- other sections
def _queue_table(ctx: dict, queue: np.ndarray, exact: dict) -> None:
    names, snap = ctx["class_names"], ctx["snapshot"]
    flags = ctx["flags"]
    rows = queue[:500]
    table = pd.DataFrame({
        "sample": ctx["keys"][rows], "given": [names[ctx["given"][i]] for i in rows],
        "refined": [names[snap["refined"][i]] for i in rows] if not ctx["opts"]["blind"] else "",
        "flags": [", ".join(f for f in FLAGS if flags[f][i]) for i in rows],
        "decision": [ctx["latest"][i].decision if i in ctx["latest"] else "" for i in rows],
        "impact": pd.array([exact.get(int(i)) for i in rows], dtype="Int64")})
    st.dataframe(table, hide_index=True, on_select=partial(_pick_from_queue, tuple(int(i) for i in rows)),
                 selection_mode="single-row", key="review_queue_table", height=260)


def _bulk(ctx: dict) -> None:
    names, snap, opts = ctx["class_names"], ctx["snapshot"], ctx["opts"]
    if "lp_confidence" not in snap:
        st.caption("This step did not propagate labels: choose a propagation or refinery step.")
        return
    cols = st.columns(2)
    threshold = cols[0].slider("Minimum propagation confidence", 0.0, 1.0, 0.5, 0.05, key="review_bulk_conf")
    limit = cols[1].number_input("At most", 1, 100_000, 20, key="review_bulk_limit")
    reviewed = np.zeros(len(ctx["given"]), bool)
    reviewed[list(ctx["latest"])] = True
    rows = bulk_candidates(snap, ctx["given"], reviewed, threshold, limit)
    st.dataframe(pd.DataFrame({"sample": ctx["keys"][rows], "given": [names[ctx["given"][i]] for i in rows],
                               "proposal": [names[snap["refined"][i]] for i in rows],
                               "confidence": snap["lp_confidence"][rows].round(3)}), hide_index=True, height=200)
    st.button(f"Accept these {len(rows)} proposals", key="review_bulk_accept", on_click=_bulk_accept,
              args=(str(ctx["store"].path), tuple(int(i) for i in rows), tuple(int(snap["refined"][i]) for i in rows),
                    opts["step"], len(names)),
              disabled=not len(rows) or not opts["reviewer"] or opts["blind"],
              help="Disabled in blind mode and without a reviewer name.")


def _layout(ctx: dict) -> tuple[np.ndarray, str]:
    """2-D coordinates for the ripple: the points themselves, a cached UMAP layout, or PCA."""
    from engine.embed import embedding_path

    if ctx["dataset"].kind == "points":
        return ctx["dataset"].train_x, "the points"
    for source in ("student", "teacher"):
        path = embedding_path(ctx["store"], source, ctx["opts"]["step"])
        if path.is_file():
            return np.load(path), f"the {source} UMAP layout"
    features = ctx["snapshot"]["features"].astype(np.float32)
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "the first two principal components of the step's features"


def _compute_umap(store: RunStore, step: int) -> None:
    from engine.embed import embedding

    with st.spinner("Computing the UMAP layout of this step…"):
        for source in ("student", "teacher"):
            if embedding(store, step, source) is not None:
                return


def _ripple_section(ctx: dict) -> None:
    names, store, opts = ctx["class_names"], ctx["store"], ctx["opts"]
    st.caption("Re-runs this step's propagation with every reviewed label clamped (weight 1, never relabelled) "
               "and outliers left out, and shows which other samples change label.")
    if st.button("Apply and re-propagate", key="review_apply", icon=":material/bubble_chart:"):
        st.session_state[RIPPLE] = True
    if not st.session_state.get(RIPPLE):
        return
    ripple = _ripple(str(store.path), opts["step"], ctx["stamp"], ctx["version"])
    coords, how = _layout(ctx)
    cols = st.columns(3)
    cols[0].metric("Reviewed labels clamped", len(ripple.clamped))
    cols[1].metric("Other samples changed", len(ripple.changed))
    if ctx["true"] is not None and (ctx["true"] >= 0).any():
        fixed = int(np.sum(ripple.after[ripple.changed] == ctx["true"][ripple.changed]))
        cols[2].metric("Of those now correct", fixed)
    st.plotly_chart(figs.ripple_figure(coords, ripple.before, ripple.after, ripple.changed, ripple.clamped, names),
                    key="review_ripple_fig")
    st.caption(f"Layout: {how}.")
    if how.startswith("the first two principal"):
        if st.button("Lay out with UMAP instead", key="review_umap", help="Cached in the run for the other pages."):
            _compute_umap(ctx["store"], opts["step"])
            st.rerun()
    rows = ripple.changed
    st.dataframe(pd.DataFrame({"sample": ctx["keys"][rows], "before": [names[ripple.before[i]] for i in rows],
                               "after": [names[ripple.after[i]] for i in rows]}), hide_index=True, height=200)


def _report_zip(path: str, step: int | None) -> bytes:
    from engine.report import write_report

    store = RunStore(path)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(store, tmp, samples=samples_table(store, step))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(Path(tmp).iterdir()):
                archive.write(file, arcname=f"report/{file.name}")
        return buffer.getvalue()


def _export_section(ctx: dict) -> None:
    store, step, names = ctx["store"], ctx["opts"]["step"], tuple(ctx["class_names"])
    path = str(store.path)

    def table():
        return samples_table(RunStore(path), step, class_names=names)

    downloads = [
        ("samples.csv", lambda: table().to_csv(index=False), "text/csv"),
        ("samples.json", lambda: samples_json(RunStore(path), table(), step, names), "application/json"),
        ("decisions.csv", lambda: decisions_table(ReviewStore(path).effective(), names).to_csv(index=False),
         "text/csv"),
        ("clean_labels.csv", lambda: clean_labels_table(table()).to_csv(index=False), "text/csv"),
        ("report.zip", lambda: _report_zip(path, step), "application/zip"),
    ]
    if store.checkpoint_path.is_file():
        downloads.append(("student.pt", lambda: student_weights(RunStore(path)), "application/octet-stream"))
    with st.container(horizontal=True):
        for name, data, mime in downloads:
            st.download_button(name, data, file_name=name, mime=mime, on_click="ignore",
                               key=f"review_download_{name}", icon=":material/download:")
    upload = st.file_uploader("Import decisions (decisions.csv, samples.csv or .json)", type=["csv", "json"],
                              key="review_upload")
    if upload is not None:
        data = upload.getvalue()
        try:
            frame = read_decision_file(data, upload.name)
            arrays = store.dataset_arrays()
            events = parse_decisions(frame, ctx["keys"], names, arrays["given"], ctx["opts"]["reviewer"] or None,
                                     source=f"decisions file {upload.name!r}")
        except UserError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        st.button(f"Import {len(events)} decisions", key="review_import", on_click=_import,
                  args=(path, data, upload.name), disabled=not events)


def _agreement(ctx: dict) -> None:
    mine = [d for d in ctx["latest"].values() if d.reviewer == ctx["opts"]["reviewer"]]
    stats = agreement(mine, ctx["true"], blind_only=True)
    if not stats["labelled"]:
        st.caption("Blind mode: your labels will be compared with the method's proposals (and with the truth, "
                   "where known) once you decide.")
        return

    def pct(v):
        return "–" if v is None else f"{100 * v:.0f}%"

    st.caption(f"Blind mode, {stats['labelled']} labelled by you: agreement with the method {pct(stats['with_method'])}"
               f"; with the truth {pct(stats['with_truth'])} (the method's own: {pct(stats['method_with_truth'])}).")


# ---------------------------------------------------------------- the page
def main() -> None:
    store = _store()
    steps = store.steps()
    st.title("Review")
    if not steps:
        st.info("This run has no steps yet: train it first (Train page), then review what it relabels.")
        st.stop()
    class_names = run_class_names(store)
    opts = _controls(steps, class_names)
    step = opts["step"]
    stamp = _stamp(store.snapshot_path(step))
    arrays = store.dataset_arrays()
    reviews = ReviewStore(store.path, num_classes=len(class_names))
    latest = reviews.latest()
    snapshot = _snapshot(str(store.path), step, stamp)
    ctx = {"store": store, "class_names": class_names, "opts": opts, "snapshot": snapshot, "stamp": stamp,
           "given": arrays["given"].astype(np.int64), "keys": arrays["keys"].astype(str),
           "true": arrays["true"] if (arrays["true"] >= 0).any() else None,
           "dataset": _dataset(str(store.path), _stamp(store.config_path)), "reviews": reviews,
           "latest": latest, "version": reviews.version(), "power": store.config().graph.power,
           "history": _history(str(store.path), tuple(steps), _stamp(store.path / "metrics.jsonl"))}
    ctx["flags"] = review_flags(snapshot, ctx["given"])
    queue = review_queue(snapshot, ctx["given"], opts["flags"], opts["classes"], "ambiguity")
    if opts["hide"]:
        queue = queue[~np.isin(queue, list(latest))]
    exact: dict = {}
    if opts["order"] != "ambiguity" and len(queue):
        impact = None
        if opts["order"] == "impact":
            impact, exact = _impact(str(store.path), step, stamp, tuple(int(i) for i in queue), ctx["version"])
        queue = review_queue(snapshot, ctx["given"], opts["flags"], opts["classes"], opts["order"], impact)
        if opts["hide"]:
            queue = queue[~np.isin(queue, list(latest))]
    _flash()
    st.caption(f"{len(queue)} samples in the queue · {len(latest)} reviewed in this run · step {step}")
    if not len(queue):
        st.info("Nothing to review with these filters.")
    else:
        raw = st.query_params.get("sample", "")
        position = int(np.flatnonzero(queue == int(raw))[0]) if raw.isdigit() and int(raw) in queue else 0
        sample = int(queue[position])
        nav = {"prev": int(queue[position - 1]) if position > 0 else None,
               "next": int(queue[position + 1]) if position + 1 < len(queue) else None}
        mine = any(d.reviewer == opts["reviewer"] for d in [latest.get(sample)] if d)
        revealed = not opts["blind"] or mine
        flags = ", ".join(f for f in FLAGS if ctx["flags"][f][sample])
        st.subheader(f"Sample {ctx['keys'][sample]} · {position + 1} of {len(queue)}")
        st.caption(f"index {sample} · flagged: {flags or 'no flag'}")
        _actions(ctx, sample, nav, revealed)
        _card(ctx, sample, revealed)
        _decision_log(ctx, sample)
        if opts["blind"]:
            _agreement(ctx)
        with st.expander("Queue"):
            _queue_table(ctx, queue, exact)
    with st.expander("Bulk accept"):
        _bulk(ctx)
    with st.expander("Apply and re-propagate"):
        _ripple_section(ctx)
    with st.expander("Export and import"):
        _export_section(ctx)


main()
