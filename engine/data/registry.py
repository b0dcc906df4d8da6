"""Dataset name -> loader."""

from __future__ import annotations

from ..errors import UserError, shown
from . import embedded, folder, torchvision_sets
from .base import Dataset, parse_dataset_spec

_LOADERS = {
    "digits": embedded.load_digits,
    "moons": embedded.load_toy,
    "blobs": embedded.load_toy,
    "circles": embedded.load_toy,
    "folder": folder.load_folder,
    **{name: torchvision_sets.load_torchvision for name in torchvision_sets.SETS},
}

#: What the Setup page offers: (spec prefix, description, example spec).
DATASET_KINDS = (
    ("digits", "1,797 real 8x8 handwritten digits (ships with scikit-learn)", "digits"),
    ("moons", "two interleaved half-moons of 2-D points", "moons?n=600&spread=0.15"),
    ("blobs", "Gaussian blobs of 2-D points", "blobs?n=600&classes=4"),
    ("circles", "two concentric circles of 2-D points", "circles?n=600"),
    ("folder", "your image folder: DIR/train/<class>/<images>, optional DIR/test/<class>/; "
               "options size, mode (L or RGB), augment (none or crop_flip), test (held-out fraction)",
     "folder:/data/pets?size=32"),
    ("mnist", "MNIST from a local folder in torchvision's layout; ?download=1 fetches it", "mnist:data"),
    ("fashion-mnist", "Fashion-MNIST from a local folder; ?download=1 fetches it", "fashion-mnist:data"),
    ("cifar10", "CIFAR-10 from a local folder (cifar-10-batches-py); ?download=1, ?n=10000 for a subset",
     "cifar10:data?n=10000"),
    ("cifar100", "CIFAR-100 from a local folder (cifar-100-python); ?download=1", "cifar100:data"),
)


def register(name: str, loader) -> None:
    """Add a loader for ``name`` (used by optional dataset modules)."""
    _LOADERS[name] = loader


def available_datasets() -> list[str]:
    return sorted(_LOADERS)


def dataset_kinds() -> list[dict]:
    """The dataset kinds a user can pick, with a description and an example spec."""
    return [{"kind": kind, "description": text, "example": example} for kind, text, example in DATASET_KINDS]


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
    if getattr(config, "labels", None):
        from .labels import apply_label_file

        dataset = apply_label_file(dataset, config.labels, config.key_column, config.label_column,
                                   config.truth_column)
    return dataset
