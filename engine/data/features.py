"""Features from elsewhere (``--teacher-features FILE``): embeddings of the
training samples from a stronger model (CLIP, DINOv2, an ImageNet ResNet) that
replace the teacher network's features in the kNN graph and in stage 0.

A deviation from the paper (docs/ALGORITHM.md): the authors' graph is the
teacher's. The teacher network is still trained, for distillation; only the
graph (stage 0, stage 1, stage 2's teacher turns) and stage 0's seeds change.
Stage-0 seeds: the file's ``pred`` when it has one (a run's own
``teacher_outputs.npz`` does, so it reproduces that run's stage 0), else a
linear head (logistic regression) fit on the features to the given labels,
predicted out of fold (5 folds), so that no sample's seed is the head having
memorised its own noisy label.

Accepted files, rows in the dataset's sample order unless keyed:

- ``.npy``: an array ``(N, D)``;
- ``.npz``: ``features (N, D)``, optional ``keys (N,)`` (sample keys, any
  order), optional ``pred (N,)``;
- ``.csv``: a ``key`` column (else the first column) and numeric feature columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError

FOLDS = 5


def _show(items, limit: int = 3) -> str:
    text = ", ".join(repr(str(i))[:60] for i in list(items)[:limit])
    return text + (", ..." if len(items) > limit else "")


def _read_features_file(path: Path, name: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(features, keys or None, pred or None)`` as the file holds them; one :class:`UserError` if unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None, None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "features" not in data.files:
                    raise UserError(f"teacher features {name} has no 'features' array (it has "
                                    f"{_show(data.files)}); valid: features (N, D), optional keys, pred")
                return (data["features"], data["keys"].astype(str) if "keys" in data.files else None,
                        data["pred"] if "pred" in data.files else None)
        if suffix == ".csv":
            import pandas as pd

            frame = pd.read_csv(path)
            key_column = "key" if "key" in frame.columns else frame.columns[0]
            values = frame.drop(columns=[key_column])
            non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
            if non_numeric:
                raise UserError(f"teacher features {name}: column(s) {_show(non_numeric)} are not numbers; valid: "
                                f"a key column ({key_column!r}) and numeric feature columns")
            return values.to_numpy(), frame[key_column].astype(str).to_numpy(), None
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad file
        raise UserError(f"teacher features {name} is unreadable ({type(exc).__name__})") from None
    raise UserError(f"teacher features {name}: {suffix or 'no suffix'} is not a features file; valid: "
                    ".npy, .npz, .csv")


def load_teacher_features(path: str | Path, keys: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Features ``(N, D)`` float32 in the order of ``keys``, and stage-0 predictions ``(N,)`` or None.

    Raises
    ------
    UserError
        Unreadable file, wrong shape, missing or extra keys, non-finite rows:
        one line naming the file and what would be valid.
    """
    path = Path(path)
    n = len(keys)
    name = repr(str(path))[:200]
    if not path.is_file():
        raise UserError(f"teacher features {name} is not a file; valid: a .npy or .npz of shape (N, D), or a CSV "
                        "with a key column")
    features, file_keys, pred = _read_features_file(path, name)
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] < 1 or not np.issubdtype(features.dtype, np.number):
        raise UserError(f"teacher features {name} has shape {features.shape} ({features.dtype}); valid: numbers "
                        f"of shape (N, D) with N = {n} training samples")
    if file_keys is not None:
        features, pred = _align(features, pred, file_keys, keys, name)
    elif features.shape[0] != n:
        raise UserError(f"teacher features {name} has {features.shape[0]} rows; the dataset has {n} training "
                        "samples (rows in sample order, or give the keys)")
    features = features.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad.size:
        raise UserError(f"teacher features {name}: {bad.size} row(s) hold NaN or infinite values, e.g. sample(s) "
                        f"{_show(bad.tolist())}; valid: finite numbers")
    if pred is not None:
        pred = np.asarray(pred)
        if pred.shape != (n,) or not np.issubdtype(pred.dtype, np.integer):
            raise UserError(f"teacher features {name}: 'pred' has shape {pred.shape} ({pred.dtype}); valid: "
                            f"({n},) class ids")
        pred = pred.astype(np.int64)
    return features, pred


def _align(features, pred, file_keys, keys, name):
    if features.shape[0] != len(file_keys):
        raise UserError(f"teacher features {name}: {features.shape[0]} rows but {len(file_keys)} keys")
    position = {k: i for i, k in enumerate(file_keys)}
    if len(position) != len(file_keys):
        seen, dup = set(), []
        for k in file_keys:
            (dup.append(k) if k in seen else seen.add(k))
        raise UserError(f"teacher features {name}: {len(dup)} duplicate key(s), e.g. {_show(dup)}")
    missing = [k for k in keys if k not in position]
    extra = sorted(set(file_keys) - set(keys))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} training sample(s) missing, e.g. {_show(missing)}")
        if extra:
            parts.append(f"{len(extra)} key(s) that are no training sample, e.g. {_show(extra)}")
        raise UserError(f"teacher features {name}: " + "; ".join(parts) + "; valid: one row per training sample")
    order = np.array([position[k] for k in keys])
    return features[order], None if pred is None else np.asarray(pred)[order]


def linear_head_predictions(features: np.ndarray, given: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Out-of-fold predictions ``(N,)`` of a logistic regression on ``features`` fit to ``given``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    counts = np.bincount(given, minlength=num_classes)
    folds = int(min(FOLDS, counts[counts > 0].min())) if (counts > 0).any() else 2
    head = LogisticRegression(max_iter=500, C=1.0)
    normed = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    if folds < 2:  # a class with one sample: fit on everything (no fold can hold it out)
        return head.fit(normed, given).predict(normed).astype(np.int64)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(head, normed, given, cv=cv).astype(np.int64)
