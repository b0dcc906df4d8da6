"""Compare's two lower sections, drawn by the page (``app/views/compare.py``): the runs' numbers counted on a
random audit, and the per-sample view (which samples each run labels right, with their pictures)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.audit_text import compare_row
from app.compare_widgets import (LABEL_KINDS, csv_button, filtered_samples, is_vectors_run, outcome_patterns,
                                 png_button, sample_caption, sample_filters, vector_cards)
from app.figures.compare_png import grid_png
from app.samples import load_dataset, original_pictures, thumbnails
from app.text import md, text_table
from engine.errors import UserError
from engine.readers.audit import audit_rows
from engine.readers.compare import per_sample

GRID = 18  # samples shown in the per-sample view


def audit_section(stores) -> None:
    """Each run's numbers counted on a random audit (the Review page's audit mode); runs of the same samples
    share the audit of whichever run has one."""
    try:
        rows = audit_rows(stores)
    except UserError as exc:
        st.warning(f"The audit cannot be read: {md(exc)}", icon=":material/warning:")
        return
    if not any(r["report"] for r in rows):
        return
    st.markdown("**Counted on a random audit** (90% intervals; the change is given → refined labels, "
                "\"within chance\" while its interval holds 0)")
    st.table(text_table(pd.DataFrame([compare_row(r) for r in rows]).set_index("run")))
    borrowed = sorted({(r["run"], r["audit_of"]) for r in rows if r["audit_of"] not in (None, r["run"])})
    if borrowed:
        st.caption("Same samples and given labels, so one audit serves: " +
                   "; ".join(f"{md(run)} uses the audit of {md(source)}" for run, source in borrowed) + ".")


def per_sample_view(stores, labels: dict[str, str]) -> None:
    st.subheader("Per sample")
    try:
        view = per_sample(stores)
    except UserError as exc:
        st.info(f"No per-sample view yet: {md(exc)}.")
        return
    which = st.radio("Compare each run's", list(LABEL_KINDS), format_func=LABEL_KINDS.get, horizontal=True,
                     key="compare-which")
    patterns = outcome_patterns(view, which, labels)
    if patterns is not None:
        st.caption("Samples by which runs label them right (truth known):")
        st.table(text_table(patterns))
    choice = st.selectbox("Show samples", sample_filters(view), key="compare-filter")
    indices = filtered_samples(view, which, choice)
    st.caption(f"{len(indices)} samples {choice}" + (f"; the first {GRID} shown." if len(indices) > GRID else "."))
    shown, pictures, captions = [], [], []
    if len(indices):
        shown = [int(i) for i in indices[:GRID]]
        captions = [sample_caption(view, which, i, labels) for i in shown]
        if is_vectors_run(stores[0]):  # no picture to draw: a card of its key and labels
            vector_cards(view.keys, shown, captions)
        else:
            dataset = load_dataset(str(stores[0].path))
            pictures = original_pictures(dataset, shown) or thumbnails(dataset.kind, dataset.train_x, shown)
            for start in range(0, len(shown), 6):
                for cell, picture, caption in zip(st.columns(6), pictures[start:start + 6], captions[start:start + 6]):
                    cell.image(picture, caption=md(caption), width="stretch")  # image captions are Markdown
    with st.container(horizontal=True):
        csv_button("Every sample (CSV)", lambda: pd.DataFrame(view.rows()), "per_sample.csv",  # made on click
                   "compare-samples-csv")
        if pictures:
            first = f" (the first {len(shown)})" if len(indices) > len(shown) else ""
            title = f"{len(indices)} samples {choice}{first}; each run's {LABEL_KINDS[which]}"
            png_button("These samples (PNG)", lambda: grid_png(pictures, captions, title), "samples.png",
                       "compare-samples-png")
