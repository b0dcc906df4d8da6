"""The Propagation graph page's parts: cached replays and what-ifs, the centre sample and its
story buttons, the 'why' and what-if sections (the page: app/views/graph.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app.text import md

from app.figures.embedding import embedding_figure, selected_samples
from app.figures.graph import class_scores_figure, confidence_figure
from app.graph_story import relabelled_in_step, walk
from app.samples import load_snapshot, selected
from engine.readers import embed, explain
from engine.method import RunConfig
from engine.errors import UserError
from engine.rundir import RunStore

SAMPLE_KEY = "graph_sample"
CHART_KEY = "graph_chart"
LAST_SELECTION_KEY = "_graph_last_selection"
LAST_CLICK_KEY = "_graph_last_click"
STORY_STEP_KEY = "_graph_story_step"  # the step whose relabelled samples the centre follows
#: Above this many samples the page shows a step's stored outcome and propagates only when asked: a replay
#: solves for every sample (a million: about a minute and a half on this machine's shared cores).
REPLAY_ON_OPEN_MAX = 20_000
REPLAYED_KEY = "_graph_replayed"  # "run:step" of the steps whose replay was asked for (large runs)


def replay_allowed(run_dir: str, step: int, n: int) -> bool:
    """Whether the page may propagate the step again now: a small run always; a large one once asked."""
    return n <= REPLAY_ON_OPEN_MAX or f"{run_dir}:{step}" in st.session_state.get(REPLAYED_KEY, [])


def replay_button(run_dir: str, step: int, n: int, what: str) -> None:
    """The button that lets a large run's step propagate again (for ``what``: the iterations, the reason,
    the what-if); pressed, every section of the step may replay from then on (cached)."""
    if st.button(f"Replay this step's propagation ({n:,} samples) {what}", key=f"graph_replay_{what}_{step}",
                 icon=":material/replay:"):
        st.session_state[REPLAYED_KEY] = [*st.session_state.get(REPLAYED_KEY, []), f"{run_dir}:{step}"]
        st.rerun()


@st.cache_data(show_spinner=False, max_entries=32)
def cached_replay(run_dir: str, step: int, phase: str, num_classes: int, nodes: tuple, config_json: str,
                  mtime: float):
    """Replay of a step's propagation recording ``nodes`` (cached per input)."""
    config = RunConfig.from_dict(json.loads(config_json))
    snapshot = load_snapshot(run_dir, step)
    result = explain.replay(snapshot, phase, num_classes, config.graph, config.propagation, np.asarray(nodes))
    return result.history, result.iterations, result.scores[list(nodes)], result.confidence[list(nodes)]


@st.cache_data(show_spinner=False, max_entries=32)
def _relabelled_at(run_dir: str, step: int, previous: int | None, mtime: float) -> np.ndarray:
    """The samples step ``step`` relabelled (:func:`app.graph_story.relabelled_in_step`). Every sample's label
    before and after the step is read: which samples changed is what the page walks through and counts on its
    step slider. Cached per snapshot version, so that whole read is done once per server, not per redraw."""
    before = load_snapshot(run_dir, previous)["refined"] if previous is not None else \
        RunStore(run_dir).dataset_arrays()["given"]
    return relabelled_in_step(load_snapshot(run_dir, step)["refined"], before)


def relabelled(store, run_dir: str, step: int) -> np.ndarray:
    """The samples ``step`` relabelled, against the step before it (the given labels before the first), (M,)
    ascending; cached per snapshot version."""
    earlier = [s for s in store.steps() if s < step]
    return _relabelled_at(run_dir, step, earlier[-1] if earlier else None, store.snapshot_path(step).stat().st_mtime)


def step_changes(store, run_dir: str, lp_steps: list[int]) -> dict[int, int]:
    """Per propagating step, how many samples it relabelled (against the step before it), cached per
    snapshot version."""
    return {step: len(relabelled(store, run_dir, step)) for step in lp_steps}


@st.cache_data(show_spinner=False, max_entries=16)
def cached_what_if(run_dir: str, step: int, k: int | None = None, power: float | None = None,
                   alpha: float | None = None, keep_fraction: float | None = None, mtime: float = 0.0):
    """A what-if replay of the step (None: the step's own setting), cached per settings."""
    return explain.what_if(RunStore(run_dir), step, k=k, alpha=alpha, power=power, keep_least_confident=keep_fraction)


def sync_centre(n: int) -> bool:
    """Move the centre to a newly selected sample or a clicked node (before the widget exists); whether it
    moved."""
    moved = False
    chosen = selected()
    first = chosen[0] if chosen else None
    if first is not None and first != st.session_state.get(LAST_SELECTION_KEY) and 0 <= first < n:
        st.session_state[SAMPLE_KEY] = first
        moved = True
    st.session_state[LAST_SELECTION_KEY] = first
    event = st.session_state.get(CHART_KEY)
    try:
        points = event["selection"]["points"] if event else []
    except (KeyError, TypeError):
        points = []
    clicked = selected_samples(points)
    if clicked and clicked != st.session_state.get(LAST_CLICK_KEY) and 0 <= clicked[0] < n:
        st.session_state[SAMPLE_KEY] = clicked[0]
        moved = True
    st.session_state[LAST_CLICK_KEY] = clicked
    return moved


def follow_step(step: int, order: np.ndarray, picked: bool) -> None:
    """On opening, and whenever the step changes, centre on the step's most telling relabelled sample
    (unless the centre is one of the step's relabelled samples already, or was just ``picked``)."""
    if st.session_state.get(STORY_STEP_KEY) == step and SAMPLE_KEY in st.session_state:
        return
    st.session_state[STORY_STEP_KEY] = step
    if picked:
        return
    current = st.session_state.get(SAMPLE_KEY)
    if len(order) and (current is None or current not in set(order.tolist())):
        st.session_state[SAMPLE_KEY] = int(order[0])
    elif current is None:
        st.session_state[SAMPLE_KEY] = 0


def _go(order: tuple, delta: int) -> None:
    target = walk(np.asarray(order), int(st.session_state.get(SAMPLE_KEY, 0)), delta)
    if target is not None:
        st.session_state[SAMPLE_KEY] = target


def story_buttons(order: np.ndarray, center: int, step_text: str, what: str = "relabelled") -> None:
    """Previous / next over the samples ``what`` (relabelled, fixed) at this step (keys J / L)."""
    ids = tuple(int(i) for i in order)
    row = st.container(horizontal=True, key="graph_story", vertical_alignment="center")
    row.button("Previous", shortcut="J", key="graph_prev", on_click=_go, args=(ids, -1), disabled=not ids,
               icon=":material/arrow_back:", help="The previous sample relabelled at this step (J).")
    row.button("Next", shortcut="L", key="graph_next", on_click=_go, args=(ids, 1), disabled=not ids,
               icon=":material/arrow_forward:", help="The next sample relabelled at this step (L).")
    if not ids:
        row.caption(f"Step {step_text} {'fixed' if what == 'fixed' else 'relabelled'} no sample.")
    elif center in ids:
        row.caption(f"{what.capitalize()} at step {step_text}: #{center} is {ids.index(center) + 1} of {len(ids)}, "
                    "most telling first.")
    else:
        row.caption(f"#{center} is not one of the {len(ids)} samples {what} at step {step_text}.")


def previous_labels(store, run_dir: str, step: int, given: np.ndarray) -> np.ndarray:
    """The refined labels before ``step``: the previous snapshot's, or the given labels."""
    earlier = [s for s in store.steps() if s < step]
    return load_snapshot(run_dir, earlier[-1])["refined"] if earlier else given


def layout(store, step: int, source: str, dataset, snapshot: dict) -> np.ndarray | None:
    """Coordinates of every sample: raw 2-D inputs, else the step's embedding."""
    if dataset.kind == "points":
        return embed.input_coordinates(dataset.train_x)
    with st.spinner(f"Projecting the {source} features of step {step} (UMAP)…"):
        return embed.embedding(store, step, source, snapshot=snapshot)


def neighbours_table(center: int, snapshot: dict, seeds, given, true, names, power: float,
                     truth: bool = True) -> pd.DataFrame:
    """The centre's neighbours (their rows only); ``truth``: whether the run knows any truth (a column)."""
    idx = snapshot["neighbor_idx"][center].astype(np.int64)
    sim = snapshot["neighbor_sim"][center].astype(np.float32)
    name = lambda c: names[c] if c >= 0 else "?"  # noqa: E731
    table = pd.DataFrame({
        "sample": idx, "similarity": sim.round(3), "edge weight": (np.maximum(sim, 0) ** power).round(3),
        "seed label": [name(int(seeds[j])) for j in idx], "given": [name(int(given[j])) for j in idx],
        "refined": [name(int(snapshot["refined"][j])) for j in idx]})
    if truth:
        table["true"] = [name(int(true[j])) for j in idx]
    return table


def render_why(run_dir, step, center, snapshot, given, true, names, seeds, final_scores, config, mtime,
               full: bool = True, truth: bool = True) -> None:
    """Why the centre has its label (``full``: the step replayed with its own rules; else, on a large run
    not replayed yet, the stored facts and a button that replays)."""
    st.subheader(f"Why does #{center} have label {md(names[int(snapshot['refined'][center])])}?")
    conf_all = snapshot.get("lp_confidence")
    conf = float(conf_all[center])
    cutoff = None
    if full:
        own = cached_what_if(run_dir, step, mtime=mtime)  # the step replayed with its own rules
        settings = own.settings
        cutoff = own.cutoff if own.relabelling.rule == "confidence" else None
        st.markdown(explain.why(center, own.relabelling, given, snapshot["working"], [md(n) for n in names],
                                conf, settings.keep_least_confident, settings.noise_rate))
    else:
        st.caption(f"The reason comes from the step's own rule, which needs its propagation over all "
                   f"{len(given):,} samples replayed. The class scores below are the stored top classes.")
        replay_button(run_dir, step, len(given), "for the reason")
    facts = {"given": names[int(given[center])], "seed": names[int(seeds[center])],
             "refined": names[int(snapshot["refined"][center])]}
    if true[center] >= 0:
        facts["true"] = names[int(true[center])]
    if np.isfinite(snapshot["weight"][center]):
        facts["AWE weight"] = f"{float(snapshot['weight'][center]):.3f}"
    st.caption(" · ".join(f"{k}: **{v}**" for k, v in facts.items()))
    left, right = st.columns(2)
    left.plotly_chart(class_scores_figure(final_scores, names, given=int(given[center]),
                                          refined=int(snapshot["refined"][center]), title="class scores"),
                      key="graph_scores", width="stretch")
    right.plotly_chart(confidence_figure(conf_all, conf, cutoff), key="graph_confidence", width="stretch")
    st.markdown("**Its neighbours**")
    st.dataframe(neighbours_table(center, snapshot, seeds, given, true, names, config.graph.power, truth),
                 hide_index=True, width="stretch")


def render_what_if(run_dir, store, step, phase, snapshot, coords, given, true, names, config, mtime,
                   full: bool = True, truth: bool = True) -> None:
    st.subheader("What if?")
    st.caption("Re-run this step's propagation with other settings. The run is not changed.")
    if not full:
        replay_button(run_dir, step, len(given), "to try other settings")
        return
    settings = explain.step_settings(config, phase)
    c1, c2, c3, c4 = st.columns(4)
    # Keys carry the step: moving the step slider starts every knob from that step's own settings.
    k = c1.slider("k neighbours", 1, min(50, len(given) - 1), min(settings.k, len(given) - 1),
                  key=f"whatif_k_{step}")
    alpha = c2.slider("alpha", 0.50, 0.999, settings.alpha, step=0.001, format="%.3f", key=f"whatif_alpha_{step}")
    power = c3.slider("edge power", 0.5, 6.0, settings.power, step=0.5, key=f"whatif_power_{step}")
    known_rate = settings.noise_rate is not None
    percent = c4.slider("keep % least confident", 0, 50, int(round(settings.keep_least_confident * 100)),
                        key=f"whatif_keep_{step}", disabled=known_rate,
                        help=(f"The noise rate is known ({settings.noise_rate:.0%}): stage 0 changes only the "
                              "labels the propagation supports least, so no confidence cut applies."
                              if known_rate else "This share of the least confident samples keeps its label "
                              "from before the propagation (stage 0: the given label; stages 1-2: the working one)."))
    try:
        with st.spinner("Propagating…"):
            result = cached_what_if(run_dir, step, int(k), float(power), float(alpha),
                                    None if known_rate else percent / 100, mtime)
    except UserError as exc:
        st.error(md(exc))
        return
    tried = result.settings
    own = (tried.k, tried.power, tried.alpha, tried.keep_least_confident) == \
        (settings.k, settings.power, settings.alpha, settings.keep_least_confident)
    counts = result.counts(snapshot["refined"], true, known=truth)  # the changed rows
    m1, m2, m3 = st.columns(3)
    m1.metric("Samples that would change label", counts["changed"])
    if counts["to_correct"] is not None:
        m2.metric("would become correct", counts["to_correct"])
        m3.metric("would become wrong", counts["to_wrong"])
    st.caption(f"Computed in {result.seconds:.2f} s." + (
        " These are the step's own settings: the replay is the step, so nothing changes." if own else ""))
    if len(result.changed):
        name = lambda c: names[c] if c >= 0 else "?"  # noqa: E731
        table = pd.DataFrame({"sample": result.changed,
                              "step's label": [name(int(snapshot["refined"][i])) for i in result.changed],
                              "what-if label": [name(int(result.labels[i])) for i in result.changed],
                              "given": [name(int(given[i])) for i in result.changed]})
        if truth:
            table["true"] = [name(int(true[i])) for i in result.changed]
        st.dataframe(table, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(table)))
    fig = embedding_figure(coords, result.labels, "category", category_names=names, highlight=result.changed,
                           highlight_name="would change", title="labels under the what-if (circled: changed)")
    st.plotly_chart(fig, key="whatif_chart", width="stretch")
