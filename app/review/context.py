"""The facts of the open run that one redraw of the Review page needs, read once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from app.text import md  # noqa: F401 - the review modules import it from here

from app.samples import load_dataset  # a vectors run: its keys and classes, never the vectors file
from engine.rundir import Consensus, Decision, ReviewStore, consensus_of, current_decisions, label_history
from engine.rundir import RunStore
from engine.method import RunConfig

FLASH = "review_flash"


@dataclass(frozen=True)
class Options:
    """What the reviewer chose in the sidebar."""

    reviewer: str
    blind: bool
    step: int
    which: str  # one of engine.readers.triage.QUEUE_FILTERS
    order: str  # one of engine.readers.triage.ORDERS
    fraction: float  # queue size, fraction of the samples
    classes: tuple[int, ...] | None
    hide: bool  # hide samples I decided


@dataclass
class ReviewContext:
    """One redraw's view of the run: snapshot of the chosen step, dataset, the review log."""

    store: RunStore
    class_names: tuple[str, ...]
    opts: Options
    snapshot: dict
    stamp: int  # mtime of the step's snapshot: a cache key
    given: np.ndarray  # (N,) int64
    keys: np.ndarray  # (N,) str
    true: np.ndarray | None  # (N,) int64, -1 unknown; None when nothing is known
    dataset: object
    reviews: ReviewStore
    decisions: list[Decision]  # every reviewer's current decision
    verdicts: dict[int, Consensus]
    version: int  # the log's newest event id
    power: int  # edge weight exponent of the graph
    mine: dict[int, Decision] = field(default_factory=dict)  # this reviewer's current decisions
    config: RunConfig | None = None  # the run's settings
    phase: str = ""  # the phase of the step reviewed

    @property
    def path(self) -> str:
        return str(self.store.path)

    @property
    def num_samples(self) -> int:
        return len(self.given)

    def proposal(self, sample: int) -> int:
        return int(self.snapshot["refined"][sample])

    def history_of(self, sample: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One sample's refined label, weight and student loss over the steps: steps ``(S,)``, field ->
        ``(S,)`` (only that sample's rows are read)."""
        steps, values = _history(self.path, sample, stamp(self.store.metrics_path))
        return steps, {name: column[:, 0] for name, column in values.items()}


def _snapshot(path: str, step: int) -> dict:
    """The step's arrays, memory-mapped: the page reads the rows and columns it uses, not the whole step."""
    return RunStore(path).snapshot(step)


@st.cache_data(show_spinner=False, max_entries=64)
def _history(path: str, sample: int, stamp: int):
    return label_history(RunStore(path), ("refined", "weight", "student_loss"), samples=[sample])


@st.cache_data(show_spinner=False, max_entries=16)
def _phase(path: str, step: int, stamp: int) -> str:
    """The phase step ``step`` ran in (its metrics line; '' when it has none)."""
    return next((m.get("phase", "") for m in RunStore(path).metrics() if m.get("step") == step), "")


def _arrays(path: str, stamp: int) -> dict:
    """``dataset.npz``'s arrays, memory-mapped (a few small reads: not cached, since a cached copy would be
    every key read whole)."""
    return RunStore(path).dataset_arrays()


def stamp(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def load_context(store: RunStore, class_names, steps: list[int], opts: Options) -> ReviewContext:
    """Read everything once; raises :class:`engine.errors.UserError` for a log the run cannot use."""
    path = str(store.path)
    arrays = _arrays(path, stamp(store.dataset_path))
    reviews = ReviewStore(store.path, num_classes=len(class_names))
    events = reviews.history()
    decisions = current_decisions(events)
    step_stamp = stamp(store.snapshot_path(opts.step))
    snapshot = _snapshot(path, opts.step)
    true = arrays["true"].astype(np.int64) if "true" in arrays and (arrays["true"] >= 0).any() else None
    return ReviewContext(
        store=store, class_names=tuple(class_names), opts=opts, snapshot=snapshot, stamp=step_stamp,
        given=arrays["given"].astype(np.int64), keys=arrays["keys"], true=true,
        dataset=load_dataset(path), reviews=reviews, decisions=decisions,
        verdicts=consensus_of(decisions), version=events[-1].id if events else 0,
        power=store.config().graph.power,
        mine={d.sample: d for d in decisions if d.reviewer == opts.reviewer},
        config=store.config(), phase=_phase(path, opts.step, stamp(store.metrics_path)))


def flash(kind: str, text: str) -> None:
    """Leave a message for the next redraw (``kind``: 'success' or 'error')."""
    st.session_state[FLASH] = (kind, text)


def show_flash() -> None:
    """The message the last action left, in a container that is always there, so
    that the elements below keep their place (and expanders their state)."""
    kind, text = st.session_state.pop(FLASH, (None, None))
    with st.container(key="review_flash_slot"):
        if kind == "error":
            st.error(text, icon=":material/error:")
        elif kind:
            st.success(text, icon=":material/check_circle:")


