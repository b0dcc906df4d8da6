"""The Embeddings page's parts: colour and size fields, hover texts, selections, the replay
(the page: app/views/embeddings.py)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import present
from app.embedding_replay import missing_layouts, replay_figure
from app.figures.animation import SPEEDS
from app.figures.embedding import density_image, point_sample, samples_in_regions, selected_samples
from app.samples import SELECTED_KEY, load_snapshot, step_label
from engine.readers import embed
from engine.errors import UserError
from engine.readers.explain import per_sample_loss

#: Points drawn at most (WebGL); above, a density of all samples with SAMPLE_POINTS of them on top.
POINTS_MAX = 20_000
#: Points drawn over the density. The density shows where every sample lies; the points show the colours:
#: 5,000 give a class of 1% about 50 points, enough to see which classes share a cluster, and the chart opens
#: about a second sooner than with 20,000 (README "At scale"). WebGL: as SVG, 5,000 points drew slower here.
SAMPLE_POINTS = 5_000
#: Snapshot fields the colour and size options are made of (read only at the drawn rows).
SHOWN_FIELDS = ("refined", "weight", "selection_loss", "student_loss", "teacher_loss", "lp_confidence", "easy",
                "student_pred", "teacher_pred", "student_prob", "teacher_prob")
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


def hover_texts(given, refined, true, class_names, ids=None) -> list[str]:
    """One hover text per row (``ids``: the rows' sample indices, default 0..N-1)."""
    name = [str(c) for c in class_names]
    ids = range(len(given)) if ids is None else ids
    return [f"#{i} · given {name[g]} → refined {name[r]}" + (f" · true {name[t]}" if t >= 0 else "")
            for i, g, r, t in zip(ids, given, refined, true)]


def drawn_rows(snapshot: dict, n: int, chosen: list[int]) -> tuple[np.ndarray, dict]:
    """The rows drawn as points (all up to :data:`POINTS_MAX`, else a seeded sample of
    :data:`SAMPLE_POINTS` and the selected ones) and the snapshot's colour and size fields at those rows only."""
    if n <= POINTS_MAX:
        return np.arange(n), snapshot
    rows = point_sample(n, SAMPLE_POINTS, chosen[:2000])
    return rows, {name: np.asarray(snapshot[name][rows]) for name in SHOWN_FIELDS if name in snapshot}


@st.cache_data(show_spinner=False, max_entries=8)
def _density(run_dir: str, source: str, step: int, stamp: int, _coords: np.ndarray) -> dict:
    return density_image(_coords)


def density(store, step: int, source: str, coords: np.ndarray) -> dict:
    """:func:`app.figures.embedding.density_image` of a step's layout, made once per cached layout (keyed by
    its file's modification time; raw 2-D inputs: by the run's config)."""
    path = embed.embedding_path(store, source, step) if source != "input" else store.config_path
    stamp = path.stat().st_mtime_ns if path.is_file() else 0
    return _density(str(store.path), source, int(step), stamp, coords)


def chart_selection(selection, coords: np.ndarray, sampled: bool) -> list[int]:
    """The samples a chart selection picked: with a sample drawn, every sample inside the drawn boxes and
    lassos (from the full layout); else the selected points."""
    selection = selection or {}
    boxes, lassos = selection.get("box") or [], selection.get("lasso") or []
    if sampled and (boxes or lassos):
        return [int(i) for i in samples_in_regions(coords, boxes, lassos)]
    return selected_samples(selection.get("points") or [])


def update_selection(current: list[int]) -> None:
    """Write a new chart selection to the session (an emptied one clears it)."""
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


def replay(store, steps, phases, source, colour, step, dataset, given, true) -> None:
    """Every step as frames of one animated chart, coloured by ``colour``."""
    run_dir = str(store.path)
    missing = missing_layouts(store, steps, source)
    speed = st.radio("Speed", list(SPEEDS), index=1, horizontal=True, key="emb_speed")
    if missing:  # projected on opening, with progress: the replay never offers a Play with nothing to play
        bar = st.progress(0.0, text=f"Projecting the {SOURCE_LABELS[source]} of {len(missing)} steps (UMAP)…")
        for i, s in enumerate(missing):
            embed.embedding(store, s, source)
            bar.progress((i + 1) / len(missing), text=f"Projecting the {SOURCE_LABELS[source]}: step {s} "
                                                      f"({i + 1} of {len(missing)})")
        bar.empty()

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
    st.caption(f"{len(shown)} step{'s' if len(shown) != 1 else ''}. ▶ Play, ❚❚ Pause, or drag the step scrubber "
               "above the chart."
               + (" Raw 2-D inputs: the points stay where they are; their colours change." if source == "input"
                  else ""))
    st.plotly_chart(present.style_figure(fig), key="embedding_replay_chart", width="stretch")
