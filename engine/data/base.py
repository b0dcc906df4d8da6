"""The :class:`Dataset` container and dataset spec parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import numpy as np

from ..errors import UserError, shown


@dataclass(frozen=True)
class Dataset:
    """Inputs and labels of one dataset, train and test.

    Attributes
    ----------
    name : str
        The spec it was loaded from, e.g. ``"digits"``.
    kind : str
        ``"image"`` (inputs ``(N, C, H, W)``), ``"points"`` (2-D toy inputs
        ``(N, 2)``, drawn as they are) or ``"vectors"`` (precomputed
        embeddings ``(N, D)``: nothing to draw, a sample is shown by its key).
    class_names : tuple of str
        Names of the ``C`` classes; label ``i`` means ``class_names[i]``.
    train_x, test_x : np.ndarray, float32
        Network-ready inputs (images scaled to [0, 1]).
    train_true, test_true : np.ndarray of int64 or None
        True labels, where known (``-1`` marks an unknown one).
    train_given : np.ndarray of int64 or None
        Labels that came with the data (for example a label file of human
        annotations); ``None`` means synthetic noise is applied to the truth.
    train_keys : tuple of str
        A stable key per training sample: its index, or its relative path.
    test_keys : tuple of str
        The same for the test samples (an image folder's held-out images and
        ``test/`` folder), so that a label file can name them too.
    test_labels : str
        What ``test_true`` is: ``"truth"``, or ``"given"`` when a label file
        without a truth column brought the test labels (then a test
        "accuracy" is agreement with given, possibly noisy, labels).
    augment : str
        Training augmentation: ``"none"`` or ``"crop_flip"``.
    skipped : tuple of str
        Files that were passed over while loading, with the reason.
    root : str or None
        The folder the keys are paths in (image folders): a sample's original
        file is ``root/key`` (:meth:`original_file`). ``None`` for data
        without files (digits, toys, torchvision's arrays).

    ``train_x`` and ``test_x`` are arrays in memory for small data, or
    :class:`engine.data.stream.ImageFiles` for images decoded on demand (a
    photo folder): both have ``shape``, ``len`` and ``x[i]``.
    """

    name: str
    kind: str
    class_names: tuple[str, ...]
    train_x: np.ndarray
    train_true: np.ndarray | None
    test_x: np.ndarray
    test_true: np.ndarray | None
    train_given: np.ndarray | None = None
    train_keys: tuple[str, ...] = ()
    test_keys: tuple[str, ...] = ()
    test_labels: str = "truth"
    augment: str = "none"
    skipped: tuple[str, ...] = field(default=())
    root: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train_x.shape[1:])

    @property
    def streamed(self) -> bool:
        """Whether the images stay files, decoded on demand (not arrays in memory)."""
        return not isinstance(self.train_x, np.ndarray)

    def original_file(self, index: int, split: str = "train") -> str | None:
        """The original image file of a sample (None for data without files)."""
        keys = self.train_keys if split == "train" else self.test_keys
        if self.root is None or not keys:
            return None
        import os

        return os.path.join(self.root, keys[index])

    def keys(self) -> tuple[str, ...]:
        """Sample keys; the index as a string when none were given."""
        return self.train_keys or tuple(str(i) for i in range(self.num_train))


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec: ``name[?opt=value&...]`` or ``folder:DIR``."""

    name: str
    options: tuple[tuple[str, str], ...] = ()
    path: str | None = None

    def option(self, key: str, default, kind=float):
        for k, v in self.options:
            if k == key:
                try:
                    return kind(v)
                except ValueError:
                    raise UserError(
                        f"dataset option {key}={shown(v)} is not a valid {kind.__name__}"
                    ) from None
        return default

    def check_options(self, valid: tuple[str, ...], takes_path: bool = False) -> None:
        """Refuse options other than ``valid``, an option given twice, and a path where none is taken.

        Raises
        ------
        UserError
            Naming the option and the valid ones, e.g. ``unknown option 'nn' for dataset 'moons'; valid: n, spread``.
        """
        example = f"{self.name}?{valid[0]}=..." if valid else self.name
        if self.path is not None and not takes_path:
            raise UserError(f"dataset {self.name!r} takes no path ({shown(self.name + ':' + self.path)}); "
                            f"valid: {example}")
        keys = [k for k, _ in self.options]
        unknown = [k for k in dict.fromkeys(keys) if k not in valid]
        if unknown:
            names = ", ".join(shown(k) for k in unknown[:5])
            if not valid:
                raise UserError(f"dataset {self.name!r} takes no options (got {names}); valid: {self.name}")
            raise UserError(f"unknown option{'s' if len(unknown) > 1 else ''} {names} for dataset {self.name!r}; "
                            f"valid: {', '.join(valid)}")
        twice = [k for k in dict.fromkeys(keys) if keys.count(k) > 1]
        if twice:
            raise UserError(f"dataset option {shown(twice[0])} is given twice for dataset {self.name!r}; "
                            "give each option once")


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Split ``moons?n=500&spread=0.2`` or ``folder:/data/pets`` into parts."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("dataset is empty; valid: digits, moons, blobs, circles, folder:DIR, mnist, ...")
    spec = spec.strip()
    if ":" in spec.split("?", 1)[0]:
        name, path = spec.split(":", 1)
        return DatasetSpec(name=name.lower(), path=path)
    name, _, query = spec.partition("?")
    options = tuple(parse_qsl(query, keep_blank_values=True)) if query else ()
    return DatasetSpec(name=name.lower(), options=options)
