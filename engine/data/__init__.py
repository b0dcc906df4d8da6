"""Datasets: the embedded digits and 2-D toy sets, and (see ``folder``,
``torchvision_sets``) data a user brings.

Every loader returns a :class:`Dataset`: float32 inputs ready for a network,
class names, and the true labels wherever they are known. A dataset spec is a
string: ``digits``, ``moons``, ``blobs``, ``circles`` (2-D toys; options as
``moons?n=1000&spread=0.15``), ``folder:DIR`` or a torchvision name.
"""

from __future__ import annotations

from .base import Dataset, DatasetSpec, parse_dataset_spec
from .registry import available_datasets, dataset_for_config, load_dataset

__all__ = ["Dataset", "DatasetSpec", "available_datasets", "dataset_for_config", "load_dataset", "parse_dataset_spec"]
