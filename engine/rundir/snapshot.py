"""The snapshot format: the per-sample arrays one step writes, and every reader of them.

This module is the format's one owner: :data:`FIELDS` lists every key a step
writes (name, dtype, shape, meaning, phases that fill it); :func:`pack` is the
one builder the step machine calls and :func:`validate` checks a snapshot
against the list before it is written; :func:`read`, :func:`rows`,
:func:`step_seeds`, :func:`step_graph` and :func:`history` are the readers
every explainer uses.

Shapes: ``N`` training samples, ``k`` neighbours, ``D`` feature width,
``T = min(3, C)`` top classes kept.

On disk
-------
A step is a folder ``snapshots/step_NNNNN/`` holding one uncompressed ``.npy``
per field (``RunStore.write_snapshot`` names and writes them: a temporary
folder renamed into place, so a reader never sees half a step). :func:`read`
memory-maps them, so a reader that indexes rows reads only those rows' pages:
a page of the Review queue at a million samples reads 200 rows of 3 fields in
milliseconds instead of decompressing whole arrays. Runs made before
2026-12-07 hold one compressed ``snapshots/step_NNNNN.npz`` per step; every
reader takes both (an ``.npz`` is read whole, only the asked arrays).

Measured by ``bench/snapshot_format.py`` (one refine step, N = 1,000,000,
D = 128, C = 10, k = 20; 2 shared cores; see README "At scale"): the folder
writes several times faster than ``savez_compressed``, takes about 1.4x the
disk, and reads 200 rows of 3 fields far faster (numbers in the README).

Policy: which fields at which steps
-----------------------------------
- Every per-sample field :data:`FIELDS` lists for the step's phase, every step
  (they are what the pages show and the explainers replay: labels, losses,
  weights, propagation scores, the graph the step used).
- ``features (N, D)``, by far the largest field, only where the app needs it:
  at every step while ``N * D <= FEATURES_EVERY_STEP_MAX`` (small runs: the
  Embeddings replay and the graph what-ifs work at any step); above that, at
  the first and last step of each phase and every
  :data:`FEATURES_EVERY`-th step of a phase (:func:`keeps_features`); the
  frozen teacher's features are kept apart once (``teacher_features.npy``).
  A step without them says so on the Embeddings page and in the graph's
  what-if (a different ``k`` needs features).
- The disk a step took is in its metrics line (``snapshot_bytes``) and on the
  Train page.
"""

from __future__ import annotations

import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from ..errors import UserError
from ..method.stages import CLAMPED_PHASES as CLAMPED
from ..method.stages import LP_PHASES as LP
from ..method.stages import REFINE_PHASES
from ..method.stages import STUDENT_PHASES as STUDENT
from ..method.stages import WORKING_PHASES as ALL

TOP = 3  # classes kept per sample for predictions and propagation scores
#: Features at every step up to this many values (8 MB of float16: 65k samples of 64, 32k of 128).
FEATURES_EVERY_STEP_MAX = 4 * 1024 * 1024
#: Above it, features every this many steps of a phase (and at its first and last step).
FEATURES_EVERY = 10


def keeps_features(n: int, d: int, phase_epoch: int, phase_length: int) -> bool:
    """Whether the ``phase_epoch``-th step (from 1) of a phase of ``phase_length`` steps stores its
    ``(n, d)`` features (the policy above)."""
    if n * d <= FEATURES_EVERY_STEP_MAX:
        return True
    return phase_epoch in (1, phase_length) or phase_epoch % FEATURES_EVERY == 0


@dataclass(frozen=True)
class Field:
    """One array of a snapshot."""

    dtype: str
    shape: str
    meaning: str
    phases: tuple[str, ...] = ALL  # phases whose snapshots hold it
    optional: bool = False  # absent in some snapshots of those phases (see meaning)


#: Every array a step writes.
FIELDS: dict[str, Field] = {
    "refined": Field("int64", "(N,)", "label after this step (the label the student trains on next)"),
    "working": Field("int64", "(N,)", "stages 1-2: label after small-loss selection and reviews, the seed "
                                      "class; -1 in other phases"),
    "easy": Field("bool", "(N,)", "stages 1-2: small-loss or reviewed sample (keeps its working label); "
                                  "False in other phases"),
    "weight": Field("float32", "(N,)", "stages 1-2: AWE weight of the label trained on; NaN elsewhere"),
    "weight_given": Field("float32", "(N,)", "stages 1-2: AWE weight of the given label; NaN elsewhere"),
    "selection_loss": Field("float32", "(N,)", "stages 1-2: the student's CE against the given label before "
                                               "the epoch (the small-loss criterion); NaN elsewhere"),
    "seed_weight": Field("float32", "(N,)", "seed mass of each sample in the step's propagation, reviews "
                                            "applied (0: no seed)", LP, optional=True),
    "seed_label": Field("int64", "(N,)", "seed class of each sample in the step's propagation, reviews applied",
                        LP, optional=True),
    "teacher_loss": Field("float32", "(N,)", "teacher CE against the given label; NaN without a teacher"),
    "teacher_pred": Field("int64", "(N,)", "teacher argmax; -1 without a teacher"),
    "teacher_top": Field("int16", "(N, T)", "teacher's top classes", optional=True),
    "teacher_prob": Field("float16", "(N, T)", "their softmax probabilities", optional=True),
    "student_loss": Field("float32", "(N,)", "student CE against the given label after the step; NaN "
                                             "before the student trains"),
    "student_pred": Field("int64", "(N,)", "student argmax after the step; -1 before it trains"),
    "student_top": Field("int16", "(N, T)", "student's top classes", STUDENT),
    "student_prob": Field("float16", "(N, T)", "their softmax probabilities", STUDENT),
    "lp_top_classes": Field("int16", "(N, T)", "top classes of the propagation", LP),
    "lp_top_scores": Field("float16", "(N, T)", "their normalised scores", LP),
    "lp_confidence": Field("float32", "(N,)", "1 - entropy / log C of the propagation scores", LP),
    "lp_labels": Field("int64", "(N,)", "argmax of the propagation scores", LP),
    "neighbor_idx": Field("int32", "(N, k)", "the kNN graph the step used (or, without a propagation, the "
                                             "graph of its features)", CLAMPED),
    "neighbor_sim": Field("float32", "(N, k)", "cosine similarity to each neighbour (float32, as the step used "
                                               "it: a replay rebuilds the very same graph)", CLAMPED),
    "features": Field("float16", "(N, D)", "features the step's graph was built on (teacher's in the "
                                           "teacher and propagate phases, else the student's); at large N only "
                                           "at the steps keeps_features names", optional=True),
    "posterior": Field("float16", "(N, C)", "P(true class | sample, given label) the step's calibrated rule and "
                                            "precision estimate used (engine.method.confident)", LP, optional=True),
    "previous": Field("int64", "(N,)", "stages 1-2: labels before the step (the calibrated rule keeps them when "
                                       "the step's estimated precision falls)", ("refine", "mutual"), optional=True),
    "audit_verdict": Field("int8", "(N,)", "the random audit's gate: 0 took the proposed label, 1 kept the label "
                                           "before the step, -1 not judged (engine.method.audit.gate_changes)", LP,
                           optional=True),
    "clamped": Field("int64", "(N,)", "reviewed label applied in this step, -1 where none", CLAMPED),
    "outlier": Field("bool", "(N,)", "reviewed outlier (no seed, no training) in this step", CLAMPED),
}


def pack(refined: np.ndarray, teacher=None, student=None, given: np.ndarray | None = None, graph=None,
         lp=None, easy=None, working=None, weights=None, weights_given=None, selection_loss=None,
         features=None, clamped=None, outliers=None, seeds=None, posterior=None,
         previous=None, audit_verdict=None) -> dict[str, np.ndarray]:
    """A step's snapshot from what the step computed (arrays not given get their 'none' value).

    ``teacher`` and ``student`` are model outputs with ``pred (N,)``,
    ``loss(labels) -> (N,)`` and ``probs() -> (N, C)``; ``graph`` has
    ``neighbor_idx`` and ``neighbor_sim``; ``lp`` is a ``PropagationResult``.
    """
    n = len(refined)
    nan = np.full(n, np.nan, dtype=np.float32)
    minus = np.full(n, -1, dtype=np.int64)
    arrays = {"refined": np.asarray(refined, np.int64),
              "working": minus if working is None else np.asarray(working, np.int64),
              "easy": np.zeros(n, bool) if easy is None else np.asarray(easy, bool),
              "weight": nan if weights is None else np.asarray(weights, np.float32),
              "weight_given": nan if weights_given is None else np.asarray(weights_given, np.float32),
              "selection_loss": nan if selection_loss is None else np.asarray(selection_loss, np.float32)}
    for name, out in (("teacher", teacher), ("student", student)):
        arrays[f"{name}_loss"] = nan if out is None else out.loss(given).astype(np.float32)
        arrays[f"{name}_pred"] = minus if out is None else out.pred.astype(np.int64)
        if out is not None:
            top, prob = _top(out.probs())
            arrays[f"{name}_top"], arrays[f"{name}_prob"] = top, prob
    if lp is not None:
        top, scores = _top(lp.scores)
        arrays.update(lp_top_classes=top, lp_top_scores=scores, lp_confidence=lp.confidence.astype(np.float32),
                      lp_labels=lp.labels.astype(np.int64))
    if graph is not None:
        arrays.update(neighbor_idx=graph.neighbor_idx.astype(np.int32),
                      neighbor_sim=graph.neighbor_sim.astype(np.float32))
    if features is not None:
        arrays["features"] = np.asarray(features).astype(np.float16)
    if clamped is not None:
        arrays.update(clamped=np.asarray(clamped, np.int64), outlier=np.asarray(outliers, bool))
    if posterior is not None:  # already float16 values (engine.method.confident.NoiseEstimate.posterior)
        arrays["posterior"] = np.asarray(posterior).astype(np.float16)
    if previous is not None:
        arrays["previous"] = np.asarray(previous, np.int64)
    if audit_verdict is not None:
        arrays["audit_verdict"] = np.asarray(audit_verdict, np.int8)
    if seeds is not None:  # engine.method.refinery.Seeds of the step's propagation
        arrays["seed_weight"] = np.asarray(seeds.weights, np.float32)
        arrays["seed_label"] = np.asarray(seeds.labels, np.int64)
    return arrays


def _top(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top = np.argsort(-probs, axis=1, kind="stable")[:, :TOP]
    return top.astype(np.int16), np.take_along_axis(probs, top, 1).astype(np.float16)


def validate(arrays: dict[str, np.ndarray], phase: str) -> None:
    """Check a snapshot against :data:`FIELDS`; ``ValueError`` names the first misfit."""
    n = len(arrays["refined"])
    for name, values in arrays.items():
        spec = FIELDS.get(name)
        if spec is None:
            raise ValueError(f"snapshot key {name!r} is not in snapshot.FIELDS")
        if values.dtype != np.dtype(spec.dtype):
            raise ValueError(f"snapshot key {name!r} has dtype {values.dtype}, FIELDS says {spec.dtype}")
        if values.shape[:1] != (n,) or values.ndim != (1 if spec.shape == "(N,)" else 2):
            raise ValueError(f"snapshot key {name!r} has shape {values.shape}, FIELDS says {spec.shape}")
        if phase not in spec.phases:
            raise ValueError(f"snapshot key {name!r} is not listed for phase {phase!r}")
    missing = [name for name, spec in FIELDS.items()
               if phase in spec.phases and not spec.optional and name not in arrays]
    if missing:
        raise ValueError(f"a {phase!r} snapshot lacks {missing}")


# ---------------------------------------------------------------- readers
def read(store, step: int, fields: tuple[str, ...] | list[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of step ``step`` (all, or only ``fields`` that it holds).

    A snapshot folder's arrays come back memory-mapped (read-only): indexing
    rows reads only those rows' pages, so a reader that takes ``a[rows]``
    pays for what it shows. An old ``.npz`` snapshot decompresses only the
    asked arrays, whole.
    """
    path = store.snapshot_path(step)
    if not path.exists():
        raise UserError(f"run {str(store.path)!r} has no snapshot for step {step}; steps: {store.steps()[-5:]}")
    try:
        if path.is_dir():
            held = sorted(store.snapshot_fields(step), key=lambda n: _ORDER.get(n, len(_ORDER)))  # pack's order
            names = held if fields is None else [f for f in fields if f in held]
            arrays = {name: _mapped(store.snapshot_field_path(step, name)) for name in names}
        else:
            with np.load(path, allow_pickle=False) as data:
                names = data.files if fields is None else [f for f in fields if f in data.files]
                arrays = {name: data[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(f"snapshot {str(path)!r} is damaged ({type(exc).__name__}); resume the run to rewrite "
                        "it, or choose another step") from None
    return watched(arrays, step)


#: The order :func:`pack` builds a snapshot in; a folder's fields are read back in it (as an ``.npz`` keeps it).
_ORDER = {name: i for i, name in enumerate((
    "refined", "working", "easy", "weight", "weight_given", "selection_loss", "teacher_loss", "teacher_pred",
    "teacher_top", "teacher_prob", "student_loss", "student_pred", "student_top", "student_prob", "lp_top_classes",
    "lp_top_scores", "lp_confidence", "lp_labels", "neighbor_idx", "neighbor_sim", "features", "clamped", "outlier",
    "posterior", "previous", "audit_verdict", "seed_weight", "seed_label"))}


def _mapped(path) -> np.ndarray:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return array if array.size else np.load(path, allow_pickle=False)  # an empty file cannot be mapped


def rows(store, step: int, fields, index) -> dict[str, np.ndarray]:
    """Only rows ``index`` (int array, or a slice) of ``fields`` at step ``step``, as in-memory arrays."""
    return {name: np.asarray(array[index]) for name, array in read(store, step, fields).items()}


def disk_per_step(store, metrics: list[dict] | None = None) -> dict[int, int]:
    """Step -> bytes its snapshot takes on disk: the metrics line's ``snapshot_bytes``, measured for runs made
    before it (``metrics``: the run's lines when the caller has read them)."""
    metrics = store.metrics() if metrics is None else metrics
    recorded = {int(m["step"]): int(m["snapshot_bytes"]) for m in metrics if m.get("snapshot_bytes") is not None}
    return {step: recorded[step] if step in recorded else store.snapshot_bytes(step) for step in store.steps()}


# ---------------------------------------------------------------- what readers touch
class AccessLog:
    """Rows and fields of snapshots that readers touched while :func:`recording` was on.

    ``touched[(step, field)]`` is the largest number of rows one access read
    (``N`` for a whole-array use: any arithmetic, ``np.asarray``, a method).
    """

    def __init__(self) -> None:
        self.touched: dict[tuple[int, str], int] = {}
        self.sizes: dict[tuple[int, str], int] = {}

    def add(self, step: int, name: str, count: int, size: int) -> None:
        key = (int(step), name)
        self.touched[key] = max(self.touched.get(key, 0), int(count))
        self.sizes[key] = size

    def whole(self) -> set[tuple[int, str]]:
        """(step, field) pairs some access read whole."""
        return {key for key, count in self.touched.items() if count >= self.sizes[key]}

    def most_rows(self, exclude=()) -> int:
        """The most rows any access read of a field not in ``exclude``."""
        return max((c for (_, name), c in self.touched.items() if name not in exclude), default=0)


_LOGS: list[AccessLog] = []
#: The step a run's ``dataset.npz`` arrays (given, true, keys) are recorded under: they belong to no step.
DATASET_STEP = -1


def watched(arrays: dict, step: int) -> dict:
    """``arrays`` as they are, or, while :func:`recording`, each wrapped to report its use under
    ``(step, name)`` (the store hands out ``dataset.npz``'s arrays through it, under :data:`DATASET_STEP`)."""
    for log in _LOGS:
        arrays = {name: _Recorded(array, step, name, log) if np.ndim(array) else array
                  for name, array in arrays.items()}
    return arrays


@contextmanager
def recording():
    """Record, in the yielded :class:`AccessLog`, what every :func:`read` in this process hands out is used
    for (tests: a page that reads a whole array fails its bound)."""
    log = AccessLog()
    _LOGS.append(log)
    try:
        yield log
    finally:
        _LOGS.remove(log)


def _count_rows(key, n: int) -> int:
    first = key[0] if isinstance(key, tuple) and key else key
    if first is Ellipsis:
        return n
    if isinstance(first, slice):
        return len(range(*first.indices(n)))
    if isinstance(first, (int, np.integer)):
        return 1
    first = np.asarray(first)
    if first.dtype == bool:
        return int(first.sum())
    return int(np.unique(first).size)


class _Recorded(NDArrayOperatorsMixin):
    """A snapshot array that reports to an :class:`AccessLog` how many rows each use of it reads."""

    def __init__(self, array, step: int, name: str, log: AccessLog):
        self._array, self._step, self._name, self._log = array, step, name, log

    @property
    def shape(self):
        return self._array.shape

    @property
    def dtype(self):
        return self._array.dtype

    @property
    def ndim(self):
        return self._array.ndim

    def __len__(self):
        return len(self._array)

    def _whole(self) -> np.ndarray:
        self._log.add(self._step, self._name, len(self._array), len(self._array))
        return np.asarray(self._array)

    def __getitem__(self, key):
        self._log.add(self._step, self._name, _count_rows(key, len(self._array)), len(self._array))
        inner = self._array._array if isinstance(self._array, _Recorded) else self._array
        return np.asarray(inner[key])

    def __array__(self, dtype=None, copy=None):
        whole = self._whole()
        return whole if dtype is None else whole.astype(dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = tuple(np.asarray(x) if isinstance(x, _Recorded) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        plain = lambda x: np.asarray(x) if isinstance(x, _Recorded) else x  # noqa: E731
        args = tuple(plain(a) if not isinstance(a, (list, tuple)) else type(a)(plain(b) for b in a) for a in args)
        return func(*args, **{k: plain(v) for k, v in kwargs.items()})

    def __iter__(self):
        return iter(self._whole())

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._whole(), attr)

    def __reduce__(self):
        return np.asarray, (self._whole(),)


def step_seeds(snapshot: dict[str, np.ndarray], phase: str, num_classes: int):
    """The seeds of a step's propagation, exactly as the step made them.

    The stored ``seed_label`` and ``seed_weight`` (reviews applied). Snapshots
    written before those existed: stage 0, :func:`engine.method.refinery.stage0_seeds`
    of the stored teacher predictions and reviews; stages 1-2, the working
    labels weighted by the AWE ``weight`` (approximate).

    Returns
    -------
    engine.method.refinery.Seeds
    """
    from ..method.refinery import Seeds, stage0_seeds

    n = len(snapshot["refined"])
    if phase in LP and "seed_label" in snapshot:  # stored as the step made them
        return Seeds(np.asarray(snapshot["seed_label"], np.int64), np.asarray(snapshot["seed_weight"], np.float32))
    if phase == "propagate":
        teacher_pred = np.asarray(snapshot["teacher_pred"], np.int64)
        if teacher_pred.min(initial=0) < 0:
            raise UserError("this step holds no teacher predictions to seed its propagation")
        return stage0_seeds(teacher_pred, num_classes, snapshot.get("clamped", np.full(n, -1, np.int64)),
                            snapshot.get("outlier", np.zeros(n, bool)))
    if phase not in REFINE_PHASES:
        raise UserError(f"a {phase!r} step runs no propagation; valid phases: {', '.join(LP)}")
    working = np.asarray(snapshot["working"], np.int64)
    if working.min(initial=0) < 0:
        raise UserError("this step holds no working labels to seed its propagation")
    weight = np.asarray(snapshot.get("seed_weight", snapshot["weight"]), np.float32)
    return Seeds(working, np.where(np.isfinite(weight) & (weight >= 0), weight, 1.0).astype(np.float32))


def step_graph(snapshot: dict[str, np.ndarray], power: float, k: int | None = None):
    """``Wn (N, N)`` of the graph a step stored; rebuilt from its features
    with ``k`` neighbours when it stored none or when ``k`` differs from it."""
    from ..method.config import GraphConfig
    from ..method.graph import affinity, build_graph, normalize_affinity

    stored = "neighbor_idx" in snapshot
    if stored and (k is None or k == snapshot["neighbor_idx"].shape[1]):
        w = affinity(np.asarray(snapshot["neighbor_idx"], np.int64), np.asarray(snapshot["neighbor_sim"],
                                                                                np.float32), power)
        return normalize_affinity(w)
    if "features" not in snapshot:
        raise UserError("this step's snapshot holds neither a graph nor features; choose another step")
    features = np.asarray(snapshot["features"], np.float32)
    k = snapshot["neighbor_idx"].shape[1] if k is None else k
    if k >= len(features):
        raise UserError(f"k={k} must be smaller than the number of samples ({len(features)}); "
                        f"valid: 1..{len(features) - 1}")
    return build_graph(features, GraphConfig(k=k, power=power)).normalized


def history(store, fields: tuple[str, ...] = ("refined",), steps: list[int] | None = None,
            samples=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-sample values over steps, reading only the asked arrays (and, with ``samples``, only those rows).

    Parameters
    ----------
    samples : array of int, shape (M,), optional
        Rows to read; default every sample.

    Returns
    -------
    steps : np.ndarray, shape (S,)
    values : dict of field -> np.ndarray, shape (S, N) (or (S, M) with ``samples``)
        The field's dtype from :data:`FIELDS` (widened to float32 or int64);
        NaN (floats) or -1 (integers) where a step lacks it.
    """
    steps = np.asarray(store.steps() if steps is None else steps, dtype=np.int64)
    index = None if samples is None else np.asarray(samples, np.int64)
    n = len(store.dataset_arrays()["given"]) if index is None else len(index)
    values = {}
    for name in fields:
        integer = np.issubdtype(np.dtype(FIELDS[name].dtype), np.integer) or FIELDS[name].dtype == "bool"
        dtype, fill = (np.int64, -1) if integer else (np.float32, np.nan)
        values[name] = np.full((len(steps), n), fill, dtype)
    for row, step in enumerate(steps):
        for name, array in read(store, int(step), fields).items():
            values[name][row] = (array if index is None else array[index]).astype(values[name].dtype)
    return steps, values
