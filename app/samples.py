"""Samples as pictures, and the plumbing the Embeddings, Propagation graph and
Losses pages share.

- Thumbnails (pure, tested): an image sample as its pixels (8x8 digits scaled
  up, ink dark on white), a 2-D point as a dot on a faint map of the whole
  dataset; precomputed vectors have no picture (a blank tile where a page
  needs one; the grid shows their keys instead).
- :func:`render_sample_grid`: a grid of thumbnails captioned ``#index ·
  given -> refined · w weight``.
- Cached loads of the open run's dataset and snapshots.
- The selection: ``st.session_state[SELECTED_KEY]`` holds the selected
  sample indices (a list of int). The Embeddings page writes it from a box or
  lasso selection; the other pages read it (the graph page centres on its
  first sample). Set it from a test to inject a selection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import streamlit as st

from app.text import md

from engine.method import RunConfig
from engine.data import THUMBNAIL_SIZE, dataset_for_config, original_thumbnail, parse_dataset_spec
from engine.errors import UserError
from engine.rundir import RunStore

#: Session-state key of the selected sample indices (list of int).
SELECTED_KEY = "selected_samples"
THUMB_SIZE = 64
MAX_GRID = 48
POINT_BACKGROUND = 235  # grey level of the blank map
POINT_DATA = 190  # grey level of the other samples


# ---------------------------------------------------------------------- thumbnails (pure)


def image_thumbnail(x: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """An image sample as an RGB picture.

    Parameters
    ----------
    x : np.ndarray, shape (C, H, W), values in [0, 1]
        C = 1 (drawn dark on white) or 3.
    size : int
        Target edge; the image is scaled by the largest whole factor that fits
        (at least 1), nearest neighbour, so pixels stay crisp.

    Returns
    -------
    np.ndarray, shape (H * f, W * f, 3), uint8
    """
    x = np.clip(np.asarray(x, dtype=np.float32), 0, 1)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"an image sample must have shape (1 or 3, H, W), got {x.shape}")
    rgb = np.repeat(1.0 - x, 3, axis=0) if x.shape[0] == 1 else x  # (3, H, W)
    factor = max(1, size // max(x.shape[1:]))
    rgb = rgb.repeat(factor, axis=1).repeat(factor, axis=2)
    return (np.transpose(rgb, (1, 2, 0)) * 255).round().astype(np.uint8)


def _pixel_coords(points: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    lo, hi = bounds
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (np.asarray(points, dtype=np.float64) - lo) / span  # (M, 2) in [0, 1]
    cols = np.clip(np.round(scaled[:, 0] * (size - 1)), 0, size - 1).astype(int)
    rows = np.clip(np.round((1 - scaled[:, 1]) * (size - 1)), 0, size - 1).astype(int)  # y up
    return np.stack([rows, cols], axis=1)


def point_map(points: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """The whole 2-D dataset as faint dots: the background of point thumbnails.

    Parameters
    ----------
    points : np.ndarray, shape (N, 2)

    Returns
    -------
    np.ndarray, shape (size, size, 3), uint8
    """
    points = np.asarray(points, dtype=np.float64)
    canvas = np.full((size, size, 3), POINT_BACKGROUND, dtype=np.uint8)
    if len(points):
        rc = _pixel_coords(points, (points.min(axis=0), points.max(axis=0)), size)
        canvas[rc[:, 0], rc[:, 1]] = POINT_DATA
    return canvas


def point_thumbnail(points: np.ndarray, index: int, background: np.ndarray | None = None,
                    color: Sequence[int] = (214, 39, 40), radius: int = 2, ring: int = 3) -> np.ndarray:
    """One 2-D sample as a red dot on the map of all samples, inside a black ring ``ring`` pixels outside
    the dot (0: none), so that it stands out of the grey cloud at a glance.

    Parameters
    ----------
    points : np.ndarray, shape (N, 2)
    index : int
    background : np.ndarray, shape (S, S, 3), uint8, optional
        :func:`point_map` of ``points`` (computed when missing).
    color : RGB of the dot
    radius : int
        Half-width of the square dot, in pixels.

    Returns
    -------
    np.ndarray, shape (S, S, 3), uint8 (a new array)
    """
    points = np.asarray(points, dtype=np.float64)
    canvas = (point_map(points) if background is None else background).copy()
    size = canvas.shape[0]
    r, c = _pixel_coords(points[[index]], (points.min(axis=0), points.max(axis=0)), size)[0]
    if ring > 0:
        rows, cols = np.ogrid[:size, :size]
        distance = np.sqrt((rows - r) ** 2 + (cols - c) ** 2)
        canvas[(distance >= radius + ring - 0.5) & (distance < radius + ring + 1.0)] = 0
    canvas[max(r - radius, 0): r + radius + 1, max(c - radius, 0): c + radius + 1] = color
    return canvas


def sample_caption(index: int, given: int, refined: int, weight: float, class_names: Sequence[str]) -> str:
    """``#12 · 3 → 5 · w 0.42`` (the weight left out when unknown)."""
    name = lambda c: class_names[c] if 0 <= c < len(class_names) else "?"  # noqa: E731
    text = f"#{index} · {name(int(given))} → {name(int(refined))}"
    return text + (f" · w {weight:.2f}" if np.isfinite(weight) else "")


def thumbnails(kind: str, train_x: np.ndarray, indices: Sequence[int], size: int = THUMB_SIZE) -> list[np.ndarray]:
    """Thumbnails of the samples ``indices``.

    Parameters
    ----------
    kind : {'image', 'points', 'vectors'}
    train_x : np.ndarray
        ``(N, C, H, W)`` images, ``(N, 2)`` points or ``(N, D)`` vectors (a blank tile each: nothing to draw).
    indices : sequence of int

    Returns
    -------
    list of np.ndarray, uint8 RGB
    """
    if kind == "image":
        return [image_thumbnail(train_x[i], size) for i in indices]
    if kind == "points":
        background = point_map(train_x, size)
        return [point_thumbnail(train_x, i, background) for i in indices]
    if kind == "vectors":
        return [np.full((size, size), POINT_BACKGROUND, np.uint8) for _ in indices]
    raise ValueError(f"dataset kind {kind!r} is unknown; valid: image, points, vectors")


def original_pictures(dataset, indices: Sequence[int], size: int = THUMBNAIL_SIZE) -> list[np.ndarray] | None:
    """The training samples' original image files at display size (longer side ``size``), never the training
    tensor; None for data without files (digits, toys, torchvision's arrays: draw their inputs instead).
    A file gone since the run was made shows its training input, scaled up."""
    if getattr(dataset, "root", None) is None or dataset.kind != "image":
        return None
    pictures = []
    for i in indices:
        try:
            pictures.append(original_thumbnail(dataset.original_file(int(i)), size))
        except UserError:
            pictures.append(image_thumbnail(dataset.train_x[int(i)], size))
    return pictures


# ---------------------------------------------------------------------- Streamlit plumbing


def render_sample_grid(indices: Sequence[int], kind: str, train_x: np.ndarray, given: np.ndarray,
                       refined: np.ndarray, weights: np.ndarray, class_names: Sequence[str],
                       columns: int = 8, limit: int = MAX_GRID, dataset=None, keys=None) -> None:
    """A grid of the selected samples: picture and ``given → refined · weight``; ``keys``: the samples' keys
    (the run's ``dataset.npz`` array, read at the shown rows), else the dataset's."""
    indices = [int(i) for i in indices]
    if not indices:
        st.info("No samples selected. Draw a box or a lasso around points in the chart above.")
        return
    shown = indices[:limit]
    if len(indices) > limit:
        st.caption(f"Showing the first {limit} of {len(indices)} selected samples.")
    if kind == "vectors":  # no picture: the sample's key and its labels
        if keys is None:
            keys = dataset.keys() if dataset is not None else [str(i) for i in range(len(given))]
        for start in range(0, len(shown), columns):
            for cell, i in zip(st.columns(columns), shown[start:start + columns]):
                cell.text(keys[i])  # plain text: a key is shown exactly as it is
                cell.caption(md(sample_caption(i, given[i], refined[i], float(weights[i]), class_names)))
        return
    pictures = original_pictures(dataset, shown) or thumbnails(kind, train_x, shown)
    for start in range(0, len(shown), columns):
        cells = st.columns(columns)
        for cell, i, picture in zip(cells, shown[start:start + columns], pictures[start:start + columns]):
            cell.image(picture, caption=md(sample_caption(i, given[i], refined[i], float(weights[i]), class_names)),
                       width="stretch")


def selected() -> list[int]:
    """The selected sample indices (``st.session_state[SELECTED_KEY]``)."""
    return [int(i) for i in st.session_state.get(SELECTED_KEY, []) or []]


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def _load_dataset(config_json: str):
    return dataset_for_config(RunConfig.from_dict(json.loads(config_json)))


@dataclass(frozen=True)
class RunVectors:
    """A ``vectors:`` run's samples as the pages draw them: a key and labels, no picture.

    Its class names and keys come from the run's ``dataset.npz`` (the keys
    memory-mapped: a page reads the rows it shows); the vectors file itself is
    not read: no page draws a vector's values (at 1M x 128, loading it is
    0.5 GB read, checked and standardised on a server's first open of a page).
    ``train_x`` and ``root`` are None, as a page that asks whether there are
    inputs or original files to draw expects.
    """

    class_names: tuple[str, ...]
    stored_keys: np.ndarray
    kind: str = "vectors"
    train_x: None = None
    root: None = None

    def keys(self) -> np.ndarray:
        return self.stored_keys


def load_dataset(run_dir: str):
    """The run's dataset as the pages draw it: a ``vectors:`` run's :class:`RunVectors` (nothing of the
    vectors file read); any other run's dataset, loaded once per run config (cached)."""
    store = RunStore(run_dir)
    config = store.config()
    if parse_dataset_spec(config.dataset).name == "vectors":
        return RunVectors(store.class_names(), store.dataset_arrays()["keys"])
    return _load_dataset(config.to_json())


def load_snapshot(run_dir: str, step: int) -> dict:
    """A step's arrays, memory-mapped (engine.rundir.snapshot.read): a page reads the rows and fields it uses,
    not the whole step (a run made before that format reads its compressed file's arrays whole)."""
    return RunStore(run_dir).snapshot(int(step))


def step_phases(metrics: list[dict]) -> dict[int, str]:
    """Step -> phase from the run's metrics."""
    return {int(m["step"]): m.get("phase", "") for m in metrics if m.get("step") is not None}


def step_label(step: int, phases: dict[int, str]) -> str:
    """``"12 · refine"``."""
    return f"{step} · {phases.get(step, '?')}"
