"""Embeddings: a 2-D UMAP of the teacher's or the student's features at a
step, coloured by labels, flags or numbers; a box or lasso selection opens a
grid of the selected samples.

Session state
-------------
``st.session_state["selected_samples"]`` (``app.samples.SELECTED_KEY``): the
selected sample indices, a list of int. A selection in the chart or the
"Select by index" field writes it; the Propagation graph and Losses pages read
it. Setting it from outside (a test) selects those samples.

"Replay the steps" turns the chart into an animation of every step (plotly
frames: Play, Pause, drag the step scrubber; three speeds). Layouts of the
steps not projected yet are computed on request; raw 2-D inputs need none
(the points stay, the colours move).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import present
from app.common import require_steps, require_store
from app.embedding_replay import missing_layouts, replay_figure
from app.figures.animation import SPEEDS
from app.figures.embedding import embedding_figure, selected_samples
from app.samples import (SELECTED_KEY, load_dataset, load_snapshot, render_sample_grid, selected, step_label,
                         step_phases)
from engine import embed
from engine.errors import UserError
from engine.explain import per_sample_loss

SOURCE_LABELS = {"teacher": "teacher features", "student": "student features", "input": "raw 2-D inputs"}
EVENT_KEY = "_embedding_last_event"
#: Colour options that are two-valued fields with their own shapes (app.figures.palette.FLAG_STYLES).
FLAG_FIELDS = {"refined label correct vs wrong": "correct", "relabelled (refined ≠ given)": "relabelled",
               "small-loss easy flag": "easy"}


def label_names(class_names) -> dict[int, str]:
    return {i: str(name) for i, name in enumerate(class_names)}


def colour_fields(snapshot: dict, given: np.ndarray, true: np.ndarray, class_names) -> dict:
    """Colour options: name -> (values (N,), kind, category names)."""
    names = label_names(class_names)
    refined = snapshot["refined"].astype(np.int64)
    known = true >= 0
    fields = {"refined label": (refined, "category", names), "given label": (given, "category", names)}
    if known.any():
        fields["true label"] = (true, "category", names)
        correct = np.where(known, refined == true, False)
        fields["refined label correct vs wrong"] = (correct, "flag", ("wrong (or unknown)", "correct"))
    fields["relabelled (refined ≠ given)"] = (refined != given, "flag", ("kept", "relabelled"))
    fields["AWE weight"] = (snapshot["weight"], "continuous", None)
    fields["loss"] = (per_sample_loss(snapshot)[0], "continuous", None)
    fields["propagation confidence"] = (snapshot.get("lp_confidence", np.full(len(given), np.nan)),
                                        "continuous", None)
    fields["small-loss easy flag"] = (snapshot["easy"], "flag", ("not easy", "easy"))
    for who in ("student", "teacher"):
        pred = snapshot.get(f"{who}_pred")
        if pred is not None and pred.min() >= 0:
            fields[f"{who} prediction"] = (pred.astype(np.int64), "category", names)
    return fields


def size_fields(snapshot: dict, n: int) -> dict:
    """Size options: name -> values (N,) or None."""
    nan = np.full(n, np.nan)
    fields = {"same size": None, "AWE weight": snapshot["weight"], "loss": per_sample_loss(snapshot)[0],
              "propagation confidence": snapshot.get("lp_confidence", nan)}
    for who in ("student", "teacher"):
        prob = snapshot.get(f"{who}_prob")
        if prob is not None:
            fields[f"{who} confidence (top probability)"] = prob[:, 0].astype(np.float32)
    return fields


def hover_texts(given, refined, true, class_names) -> list[str]:
    name = [str(c) for c in class_names]
    return [f"#{i} · given {name[g]} → refined {name[r]}" + (f" · true {name[t]}" if t >= 0 else "")
            for i, (g, r, t) in enumerate(zip(given, refined, true))]


def update_selection(points) -> None:
    """Write a new chart selection to the session (an emptied one clears it)."""
    current = selected_samples(points)
    if current != st.session_state.get(EVENT_KEY, []):
        st.session_state[EVENT_KEY] = current
        st.session_state[SELECTED_KEY] = current


def parse_indices(text: str, n: int) -> list[int]:
    """``"3, 17 40"`` -> [3, 17, 40]; :class:`UserError` naming a bad entry."""
    out = []
    for token in text.replace(",", " ").split():
        if not token.isdigit() or int(token) >= n:
            raise UserError(f"sample index {token!r} is not valid; valid: whole numbers 0..{n - 1}")
        out.append(int(token))
    return sorted(set(out))


def main() -> None:
    st.title("Embeddings")
    store = require_store()
    steps = require_steps(store)
    run_dir = str(store.path)
    phases = step_phases(store.metrics())
    config = store.config()
    dataset = load_dataset(run_dir)
    arrays = store.dataset_arrays()
    given, true = arrays["given"].astype(np.int64), arrays["true"].astype(np.int64)

    sources = [s for s in ("teacher", "student") if not (s == "teacher" and config.method == "ce")]
    if dataset.kind == "points":
        sources.append("input")
    c1, c2, c3 = st.columns([1.2, 1.4, 1.2])
    source = c1.radio("Features", sources, format_func=SOURCE_LABELS.get, horizontal=True, key="emb_source")
    s1, s2 = st.columns([4, 1], vertical_alignment="bottom")
    step = s1.select_slider("Step", options=steps, value=steps[-1], key="emb_step",
                            format_func=lambda s: step_label(s, phases),
                            help="Each step's layout starts from the nearest step already projected, so "
                                 "points move rather than jump.")
    s2.toggle("▶ Replay the steps", key="emb_replay", help="Play every step as an animation.")
    snapshot = load_snapshot(run_dir, step)
    fields = colour_fields(snapshot, given, true, dataset.class_names)
    colour = c2.selectbox("Colour by", list(fields), key="emb_colour")
    sizes = size_fields(snapshot, len(given))
    size = c3.selectbox("Size by", list(sizes), key="emb_size")

    try:
        with st.spinner(f"Projecting the {SOURCE_LABELS[source]} of step {step} (UMAP)…"):
            coords = embed.embedding(store, step, source, inputs=dataset.train_x if source == "input" else None,
                                     snapshot=snapshot)
    except UserError as exc:
        st.error(str(exc))
        st.stop()
    if coords is None:
        st.info(f"Step {step_label(step, phases)} has no {SOURCE_LABELS[source]}: the student only trains after "
                "the teacher's phases. Pick a later step, or the teacher's features.")
        st.stop()

    values, kind, names = fields[colour]
    if st.session_state.get("emb_replay"):
        replay(store, steps, phases, source, colour, step, dataset, given, true)
        st.stop()
    if kind == "continuous" and not np.isfinite(np.asarray(values, dtype=float)).any():
        st.info(f"Step {step_label(step, phases)} has no {colour} (this phase does not compute it); "
                "points are drawn grey.")
    refined = snapshot["refined"].astype(np.int64)
    chosen = selected()
    fig = embedding_figure(coords, values, kind, category_names=names, sizes=sizes[size],
                           hover=hover_texts(given, refined, true, dataset.class_names),
                           highlight=np.asarray(chosen, dtype=np.int64) if chosen else None,
                           flag_field=FLAG_FIELDS.get(colour), color_title=colour, title=f"{SOURCE_LABELS[source]} · step {step_label(step, phases)}")
    event = st.plotly_chart(present.style_figure(fig), key="embedding_chart", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
    update_selection(event.selection.get("points", []) if event and event.selection else [])

    with st.expander("Select by index, or project every step"):
        text = st.text_input("Sample indices (comma or space separated)", key="emb_index_text")
        b1, b2, b3 = st.columns(3)
        if b1.button("Select these", key="emb_select_text"):
            try:
                st.session_state[SELECTED_KEY] = parse_indices(text, len(given))
                st.rerun()
            except UserError as exc:
                st.error(str(exc))
        if b2.button("Clear selection", key="emb_clear"):
            st.session_state[SELECTED_KEY] = []
            st.rerun()
        if source != "input" and b3.button("Project every step", key="emb_all",
                                           help="Caches a layout for each step so the slider replays smoothly."):
            bar = st.progress(0.0)
            for i, s in enumerate(steps):
                embed.embedding(store, s, source)
                bar.progress((i + 1) / len(steps), text=f"step {s}")

    chosen = selected()
    st.subheader(f"Selected samples ({len(chosen)})")
    render_sample_grid(chosen, dataset.kind, dataset.train_x, given, refined, snapshot["weight"],
                       dataset.class_names)


def replay(store, steps, phases, source, colour, step, dataset, given, true) -> None:
    """Every step as frames of one animated chart, coloured by ``colour``."""
    run_dir = str(store.path)
    missing = missing_layouts(store, steps, source)
    speed = st.radio("Speed", list(SPEEDS), index=1, horizontal=True, key="emb_speed")
    if missing:
        st.caption(f"{len(missing)} of {len(steps)} steps have no {SOURCE_LABELS[source]} layout yet.")
        if st.button(f"Project the {len(missing)} missing steps (UMAP)", key="emb_replay_project"):
            bar = st.progress(0.0)
            for i, s in enumerate(missing):
                embed.embedding(store, s, source)
                bar.progress((i + 1) / len(missing), text=f"step {s}")
            st.rerun()

    def field(s: int):
        fields = colour_fields(load_snapshot(run_dir, s), given, true, dataset.class_names)
        if colour not in fields:  # e.g. the student's prediction at a teacher step
            return np.full(len(given), -1), "category", None, None
        values, kind, names = fields[colour]
        return values, kind, names, FLAG_FIELDS.get(colour)

    fig, shown = replay_figure(store, steps, source, field, [step_label(s, phases) for s in steps],
                               inputs=dataset.train_x if source == "input" else None, duration_ms=SPEEDS[speed],
                               start_step=step, title=f"{SOURCE_LABELS[source]} · {colour}", color_title=colour)
    if fig is None:
        st.info(f"No step has a {SOURCE_LABELS[source]} layout yet: project them first.")
        return
    st.caption(f"{len(shown)} steps. ▶ Play, ❚❚ Pause, or drag the step scrubber under the chart."
               + (" Raw 2-D inputs: the points stay where they are; their colours change." if source == "input"
                  else ""))
    st.plotly_chart(present.style_figure(fig), key="embedding_replay_chart", width="stretch")


main()
