"""Datasets: the embedded digits and 2-D toy sets, and (see ``folder``,
``torchvision_sets``) data a user brings.

Every loader returns a :class:`Dataset`: float32 inputs ready for a network,
class names, and the true labels wherever they are known. A dataset spec is a
string: ``digits``, ``moons``, ``blobs``, ``circles`` (2-D toys; options as
``moons?n=1000&spread=0.15``), ``folder:DIR`` or a torchvision name.
"""

from __future__ import annotations

from .archive import MAX_BYTES as ARCHIVE_MAX_BYTES
from .archive import MAX_FILES as ARCHIVE_MAX_FILES
from .archive import extract_zip, find_dataset_root
from .base import Dataset, DatasetSpec, parse_dataset_spec
from .embedded import TOY_DEFAULTS
from .folder import (TEST_FRACTION, THUMBNAIL_SIZE, VALID_LAYOUT, folder_summary, original_thumbnail,
                     split_path_options, stratified_holdout)
from .labels import guess_columns, label_file_report, label_table_preview, read_label_csv
from .registry import available_datasets, dataset_for_config, load_dataset, with_label_file_classes
from .torchvision_sets import ALIASES as TORCHVISION_ALIASES
from .vectors import TEST_FRACTION as VECTORS_TEST_FRACTION
from .vectors import VALID as VECTORS_VALID
from .vectors import vectors_facts

# The face the app uses (Setup's data inputs); the rest of the engine imports modules by name.
__all__ = ["ARCHIVE_MAX_BYTES", "ARCHIVE_MAX_FILES", "TEST_FRACTION", "THUMBNAIL_SIZE", "TORCHVISION_ALIASES", "TOY_DEFAULTS",
           "VALID_LAYOUT", "Dataset", "DatasetSpec", "available_datasets", "dataset_for_config", "extract_zip",
           "find_dataset_root", "folder_summary", "guess_columns", "label_file_report", "label_table_preview",
           "load_dataset", "original_thumbnail", "parse_dataset_spec", "read_label_csv", "split_path_options", "stratified_holdout",
           "VECTORS_TEST_FRACTION", "VECTORS_VALID", "vectors_facts", "with_label_file_classes"]
