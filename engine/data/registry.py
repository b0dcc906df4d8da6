"""Dataset name -> loader."""

from __future__ import annotations

from ..errors import UserError, shown
from . import embedded, folder, torchvision_sets, vectors
from .base import Dataset, parse_dataset_spec

_LOADERS = {
    "digits": embedded.load_digits,
    "moons": embedded.load_toy,
    "blobs": embedded.load_toy,
    "circles": embedded.load_toy,
    "folder": folder.load_folder,
    "vectors": vectors.load_vectors,
    **{name: torchvision_sets.load_torchvision for name in torchvision_sets.SETS},
}


def available_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(spec: str) -> Dataset:
    """Load a dataset from its spec string; :class:`UserError` if unknown."""
    parsed = parse_dataset_spec(spec)
    loader = _LOADERS.get(parsed.name)
    if loader is None:
        valid = ", ".join(available_datasets())
        raise UserError(f"unknown dataset {shown(spec)}; valid: {valid}")
    return loader(parsed)


def dataset_for_config(config) -> Dataset:
    """The dataset a run config asks for, with its label file applied if any."""
    dataset = load_dataset(config.dataset)
    if not dataset.class_names and not getattr(config, "labels", None):  # vectors without labels
        raise UserError(f"dataset {shown(config.dataset)} has no labels; give them with --labels FILE (a CSV of "
                        "key and label columns) or store labels (N,) in the .npz")
    if getattr(config, "labels", None):
        from .labels import apply_label_file

        dataset = with_label_file_classes(dataset, config.labels, config.label_column, config.truth_column)
        dataset = apply_label_file(dataset, config.labels, config.key_column, config.label_column,
                                   config.truth_column)
    return dataset


def with_label_file_classes(dataset: Dataset, labels: str, label_column: str, truth_column: str | None) -> Dataset:
    """``dataset`` itself, or where it has no classes (vectors without labels) with the classes the label file
    names (:func:`engine.data.vectors.label_file_classes`): what a label file is checked against."""
    if dataset.class_names:
        return dataset
    import dataclasses

    return dataclasses.replace(dataset, class_names=vectors.label_file_classes(labels, label_column, truth_column))
