"""Setup, the custom run's data: built in, an image folder, an uploaded zip, a
torchvision set or a file of vectors (the Streamlit-free parts live in :mod:`app.byod`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

import pandas as pd
import streamlit as st

from app.text import md

from app.byod import (
    AUGMENTS,
    IMAGE_MODES,
    IMAGE_SIZES,
    SOURCES,
    TORCHVISION_SETS,
    UNPACK_LIMIT_TEXT,
    UPLOAD_LIMIT_MB,
    DataFacts,
    dataset_facts,
    file_stamp,
    folder_facts,
    scan_summary,
    torchvision_pending_facts,
    torchvision_spec,
    save_vectors_upload,
    unpack_upload,
    uploads_dir,
    vectors_spec,
)
from app.common import runs_root
from app.settings import DATASETS, SetupValues
from engine.data import VALID_LAYOUT, VECTORS_VALID
from engine.errors import UserError


@dataclass
class DataChoice:
    """The data part of the form: field values, what the data holds, and the
    reasons it cannot be used (already shown inline; they keep Create disabled)."""

    values: dict
    facts: DataFacts | None = None
    problems: list[str] = field(default_factory=list)
    signature: str = ""  # changes when the data does (label-file checks are cached on it)


def _refuse(message: str, values: dict | None = None) -> DataChoice:
    st.error(md(message))
    return DataChoice(values or {}, None, [message])


def data_section(v: SetupValues, key: str) -> DataChoice:
    sources = list(SOURCES)
    source = st.radio("Data source", sources, index=sources.index(v.source if v.source in SOURCES else "builtin"),
                      format_func=SOURCES.get, horizontal=True, key=f"{key}source")
    handler = {"builtin": _builtin_data, "folder": _folder_data, "upload": _upload_data,
               "torchvision": _torchvision_data, "vectors": _vectors_data}[source]
    choice = handler(v, key)
    choice.values["source"] = source
    return choice


def _builtin_data(v: SetupValues, key: str) -> DataChoice:
    columns = st.columns(4)
    with columns[0]:
        values = {"dataset": st.selectbox("Dataset", DATASETS, index=DATASETS.index(v.dataset), key=f"{key}dataset",
                                          help="digits: 1,437 real 8x8 handwritten digits; the others are 2-D toys")}
    if values["dataset"] != "digits":
        with columns[1]:
            values["toy_size"] = st.number_input("Training points", 20, 200_000, int(v.toy_size), step=100,
                                                 key=f"{key}toy_size")
        with columns[2]:
            values["toy_spread"] = st.slider("Spread (noise of the points)", 0.0, 3.0, float(v.toy_spread), 0.01,
                                             key=f"{key}toy_spread")
        if values["dataset"] == "blobs":
            with columns[3]:
                values["blob_classes"] = st.number_input("Classes", 2, 20, int(v.blob_classes),
                                                         key=f"{key}blob_classes")
    spec = replace(v, source="builtin", **values).dataset_spec()
    try:
        facts = dataset_facts(spec)
    except UserError as exc:
        return _refuse(str(exc), values)
    return DataChoice(values, facts, signature=spec)


def _folder_data(v: SetupValues, key: str) -> DataChoice:
    path = st.text_input("Image folder", v.folder_path, key=f"{key}folder_path",
                         placeholder="/data/pets  (holds train/<class>/<images>, or one folder per class)",
                         help=f"A folder on the machine running this app: {VALID_LAYOUT}. "
                              "A folder holding only class folders is the training set itself.")
    if not path.strip():
        message = "Type the path of an image folder (train/<class>/<images>, optional test/<class>/<images>)."
        st.info(message)
        return DataChoice({"folder_path": ""}, None, [message])
    return _folder_choice(path, v, key)


def _upload_data(v: SetupValues, key: str) -> DataChoice:
    st.caption(f"A .zip of an image folder (train/<class>/<images>, optional test/), at most "
               f"{UPLOAD_LIMIT_MB} MB; {UNPACK_LIMIT_TEXT}. It is unpacked under `{uploads_dir(runs_root())}` "
               "on this machine: nothing leaves it.")
    upload = st.file_uploader(f"Zip of an image folder (at most {UPLOAD_LIMIT_MB} MB)", type=["zip"],
                              key=f"{key}upload", max_upload_size=UPLOAD_LIMIT_MB)
    if upload is None:
        return DataChoice({}, None, ["Upload a zip of an image folder."])
    try:
        with st.spinner(f"Unpacking {upload.name}..."):
            root = unpack_upload(upload.name, upload.getvalue(), runs_root(), upload_id=upload.file_id)
    except UserError as exc:
        return _refuse(str(exc))
    st.caption(f"Unpacked into {md(root)}.")
    return _folder_choice(str(root), v, key)


def _folder_choice(path: str, v: SetupValues, key: str) -> DataChoice:
    try:
        summary = scan_summary(path)
    except UserError as exc:
        return _refuse(str(exc), {"folder_path": path})
    options = _image_options(v, key, summary)
    facts = folder_facts(summary, options["image_size"], options["image_mode"], options["test_fraction"])
    _show_folder_summary(summary, facts)
    signature = json.dumps([summary["root"], summary["train_counts"], summary["test_counts"], summary["skipped"]])
    return DataChoice({"folder_path": summary["root"], **options}, facts, signature=signature)


def _image_options(v: SetupValues, key: str, summary: dict) -> dict:
    size_col, mode_col, test_col, augment_col = st.columns(4)
    mode_names = {"auto": f"as the files ({summary['default_mode']})", "L": "grayscale (L)", "RGB": "colour (RGB)"}
    with size_col:
        size = st.selectbox("Image size", IMAGE_SIZES, index=IMAGE_SIZES.index(v.image_size)
                            if v.image_size in IMAGE_SIZES else 0, key=f"{key}image_size-{summary['default_size']}",
                            format_func=lambda s: f"auto ({summary['default_size']})" if s == 0 else f"{s}x{s}",
                            help="Every image is resized to this (the aspect ratio is not kept). Auto: the images' "
                                 "common size when they share one up to 32, else 32x32.")
    with mode_col:
        mode = st.selectbox("Colour", IMAGE_MODES, index=IMAGE_MODES.index(v.image_mode)
                            if v.image_mode in IMAGE_MODES else 0, format_func=mode_names.get,
                            key=f"{key}image_mode-{summary['default_mode']}")  # 'auto' names the folder's own
    with test_col:
        has_test = summary["test_counts"] is not None
        test = st.slider("Held-out test fraction", 0.0, 0.5, float(v.test_fraction), 0.05, key=f"{key}test_fraction",
                         disabled=has_test, help="The folder's test/ is the test set" if has_test else
                         "A stratified, seeded fraction of train/ held out for test accuracy; 0: every image "
                         "trains, and the run has no test metrics. A label file may label these images too.")
        if not has_test and test == 0:
            st.caption("No held-out images: the run reports no test accuracy.")
    with augment_col:
        augment = st.selectbox("Augmentation", AUGMENTS, index=AUGMENTS.index(v.augment)
                               if v.augment in AUGMENTS else 0, key=f"{key}augment",
                               format_func=lambda a: {"auto": "auto (crop + flip for 24-64 px)",
                                                      "crop_flip": "random crop + flip"}.get(a, a))
    return {"image_size": int(size), "image_mode": mode, "test_fraction": float(test), "augment": augment}


def _show_folder_summary(summary: dict, facts: DataFacts) -> None:
    test = summary["test_counts"]
    channels, height, width = facts.input_shape
    sizes = ", ".join(f"{md(size)} ({n})" for size, n in list(summary["sizes"].items())[:4])
    more = f" and {len(summary['sizes']) - 4} more" if len(summary["sizes"]) > 4 else ""
    modes = ", ".join(f"{'grayscale' if m == 'L' else 'colour'} ({n})" for m, n in summary["modes"].items())
    if test is not None:
        split = f"{facts.num_train:,} training images · {sum(test.values()):,} test images (test/)"
    else:
        files = sum(summary["train_counts"].values())
        split = f"{files:,} images: {facts.num_train:,} for training, {files - facts.num_train:,} held out for testing"
    st.success(f"**{len(summary['classes'])} classes** · {split} · file sizes {sizes}{more} · {modes} → the "
               f"networks see {channels}x{height}x{width}")
    table = pd.DataFrame({"class": summary["classes"],
                          "train/ images": [summary["train_counts"][c] for c in summary["classes"]]})
    if test is not None:
        table["test/ images"] = [test[c] for c in summary["classes"]]
    with st.expander(f"Images per class ({len(summary['classes'])} classes)"):
        st.dataframe(table, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(table)))
    skipped = summary["skipped"]
    if skipped:
        st.warning(f"{len(skipped)} file(s) skipped: they are left out of the run.")
        with st.expander("Skipped files and why"):
            st.code("\n".join(skipped[:200]) + (f"\n... and {len(skipped) - 200} more" if len(skipped) > 200 else ""),
                    language=None)


def _torchvision_data(v: SetupValues, key: str) -> DataChoice:
    name_col, root_col, n_col, test_col = st.columns([2, 3, 2, 2])
    names = list(TORCHVISION_SETS)
    with name_col:
        name = st.selectbox("torchvision dataset", names, index=names.index(v.tv_name) if v.tv_name in names else 0,
                            format_func=TORCHVISION_SETS.get, key=f"{key}tv_name")
    with root_col:
        root = st.text_input("Root folder", v.tv_root or os.environ.get("AMLKD_DATA_DIR", "data"),
                             key=f"{key}tv_root", help="torchvision's layout: ROOT/MNIST/raw/..., "
                             "ROOT/FashionMNIST/raw/..., ROOT/cifar-10-batches-py/, ROOT/cifar-100-python/")
    with n_col:
        n = st.number_input("Training subset (0 = all)", 0, 1_000_000, int(v.tv_n), step=1000, key=f"{key}tv_n",
                            help="A stratified, seeded subset keeps CPU runs short")
    with test_col:
        test_n = st.number_input("Test subset (0 = all)", 0, 1_000_000, int(v.tv_test_n), step=1000,
                                 key=f"{key}tv_test_n")
    download = st.checkbox("Download if missing (needs internet; only when the files are not there)",
                           bool(v.tv_download), key=f"{key}tv_download")
    values = {"tv_name": name, "tv_root": root.strip(), "tv_n": int(n), "tv_test_n": int(test_n), "tv_download": False}
    small = [label for label, value in (("training subset", n), ("test subset", test_n)) if 0 < value < 10]
    if small:
        return _refuse(f"The {' and '.join(small)} must be 0 (all) or at least 10 samples.", values)
    spec = torchvision_spec(name, root.strip(), int(n), int(test_n))
    try:
        with st.spinner(f"Reading {TORCHVISION_SETS[name]} from {root}..."):
            facts = dataset_facts(spec)
    except UserError as exc:
        if not download:
            refused = _refuse(f"{exc}. Or tick 'Download if missing'.", values)
            return replace(refused, facts=torchvision_pending_facts(name))  # models still fit the set
        st.info(f"{TORCHVISION_SETS[name]} is not under `{root}` yet: it is downloaded when you press "
                "**Create run** (needs internet; offline, Create answers within seconds and makes nothing).")
        return DataChoice({**values, "tv_download": True}, torchvision_pending_facts(name), signature=spec)
    channels, height, width = facts.input_shape
    st.success(f"**{TORCHVISION_SETS[name]}** · {facts.num_classes} classes · {facts.num_train:,} training images "
               f"of {channels}x{height}x{width}")
    return DataChoice(values, facts, signature=spec)


VECTORS_FROM = {"path": "A file on this machine", "upload": "Upload a file"}


def _vectors_data(v: SetupValues, key: str) -> DataChoice:
    where = st.radio("Vectors from", list(VECTORS_FROM), format_func=VECTORS_FROM.get, horizontal=True,
                     key=f"{key}vectors_from")
    path_col, test_col = st.columns([3, 1])
    with path_col:
        path, refused = _vectors_path(v, key, where)
    with test_col:
        test = st.slider("Held-out test fraction", 0.0, 0.5, float(v.vectors_test), 0.05, key=f"{key}vectors_test",
                         help="A seeded fraction of the rows held out for test accuracy (stratified by label "
                              "where the file has labels); 0: every row trains.")
    values = {"vectors_path": path, "vectors_test": float(test)}
    if refused:
        return _refuse(refused, values)
    if not path:
        message = ("Type the path of a vectors file (.npz of features and keys, or .npy of features)."
                   if where == "path" else "Upload a vectors file (.npz of features and keys, or .npy of features).")
        st.info(message)
        return DataChoice(values, None, [message])
    spec = vectors_spec(path, test)
    try:
        with st.spinner(f"Reading {path}..."):
            facts = dataset_facts(spec, file_stamp(path))
    except UserError as exc:
        return _refuse(str(exc), values)
    classes = f"{facts.num_classes} classes" if facts.class_names else "no labels in the file: a label file " \
        "below names each row's class"
    st.success(f"**{facts.input_shape[0]}-D vectors** · {facts.num_train:,} training rows · {classes}")
    return DataChoice(values, facts, signature=json.dumps([spec, list(file_stamp(path))]))


def _vectors_path(v: SetupValues, key: str, where: str) -> tuple[str, str | None]:
    """``(path, None)``: the vectors file typed, or where an upload is kept; ``("", message)`` for an upload
    refused."""
    valid = VECTORS_VALID.removeprefix("valid: ")
    if where == "path":
        return st.text_input("Vectors file", v.vectors_path, key=f"{key}vectors_path",
                             placeholder="/data/embeddings.npz",
                             help=f"Precomputed embeddings on the machine running this app, one row per sample: "
                                  f"{valid} (choose the label file below). The teacher and the student are small "
                                  "MLPs over the vectors.").strip(), None
    upload = st.file_uploader(f"Vectors file (.npz or .npy, at most {UPLOAD_LIMIT_MB} MB; kept under "
                              f"{uploads_dir(runs_root()) / 'vectors'})", type=["npz", "npy"],
                              key=f"{key}vectors_upload", max_upload_size=UPLOAD_LIMIT_MB, help=valid)
    if upload is None:
        return "", None
    try:
        return str(save_vectors_upload(upload.name, upload.getvalue(), runs_root())), None
    except UserError as exc:
        return "", str(exc)


# ---------------------------------------------------------------- label file
