"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from a local folder, in
torchvision's on-disk layout: ``mnist:ROOT``, ``fashion-mnist:ROOT``,
``cifar10:ROOT``, ``cifar100:ROOT`` (``ROOT`` defaults to ``$AMLKD_DATA_DIR``
or ``./data``). Options after ``?``:

- ``download=1``  fetch the files into ROOT when they are not there yet (only
                  when asked; files already on disk are used as they are). Offline it
                  fails within seconds with a clear message: a HEAD request for
                  the first file, with a short timeout, runs first, and the
                  download itself runs under a socket timeout.
- ``n=N``, ``test_n=N``  a stratified, seeded subset of train / test (CPU-sized runs).
- ``size=S``      read the images at ``S x S`` (e.g. 224 for a pretrained torchvision
                  backbone); implies streaming.
- ``stream=1|0``  stream the images (:class:`engine.data.stream.ImageArrays`: the
                  uint8 originals kept, each batch resized and scaled in DataLoader
                  workers, as a photo folder's files are) or hold one float32 tensor
                  (0). Default: stream when ``size`` differs from the images' own or
                  the float tensor would exceed 1 GiB; else in memory, as ever.

Files read (as torchvision writes them)::

    ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    ROOT/FashionMNIST/raw/...   (same names)
    ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    ROOT/cifar-100-python/{train, test, meta}

The files are parsed here rather than through torchvision's classes, so that
loading needs no torchvision import and no checksum pass; CIFAR's pickles are
read with an unpickler that only builds numpy arrays and plain containers.
Keys are ``train/<index in the official train split>``.
"""

from __future__ import annotations

import gzip
import http.client
import io
import logging
import os
import pickle
import socket
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from ..errors import UserError, shown
from .base import Dataset, DatasetSpec
from .folder import IN_MEMORY_BYTES, MAX_STREAM_SIZE, stratified_holdout

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # seconds for the connectivity check before a download
SOCKET_TIMEOUT = 30.0  # seconds without data before a running download gives up
OPTIONS = ("download", "n", "test_n", "size", "stream")
SUBSET_SEED = 0

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

# name -> (folder under ROOT, torchvision class name, a file the download fetches: the probe)
SETS = {
    "mnist": ("MNIST", "MNIST", "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST",
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz"),
    "cifar10": ("cifar-10-batches-py", "CIFAR10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", "CIFAR100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}
ALIASES = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}


# ---------------------------------------------------------------- spec
def _settings(spec: DatasetSpec) -> tuple[str, Path, dict]:
    name = ALIASES.get(spec.name, spec.name)
    path, options = spec.path or "", dict(spec.options)
    if "?" in path:
        path, _, query = path.rpartition("?")
        options.update(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        names = ", ".join(shown(u) for u in unknown[:5])
        raise UserError(f"unknown option(s) {names} for dataset {name!r}; valid: {', '.join(OPTIONS)}")
    parsed = DatasetSpec(name, tuple(options.items()))
    settings = {"download": options.get("download", "0").lower() in ("1", "true", "yes"),
                "n": parsed.option("n", None, int), "test_n": parsed.option("test_n", None, int),
                "size": parsed.option("size", None, int), "stream": options.get("stream")}
    for key in ("n", "test_n"):
        if settings[key] is not None and settings[key] < 10:
            raise UserError(f"dataset option {key}={settings[key]} is too small; valid: at least 10")
    if settings["size"] is not None and not 4 <= settings["size"] <= MAX_STREAM_SIZE:
        raise UserError(f"dataset option size={settings['size']} is out of range; valid: 4..{MAX_STREAM_SIZE}")
    if settings["stream"] is not None:
        if settings["stream"] not in ("0", "1"):
            raise UserError(f"dataset option stream={shown(settings['stream'])} is not valid; valid: 1 (images "
                            "read batch by batch), 0 (all images in memory)")
        settings["stream"] = settings["stream"] == "1"
    root = Path(path or os.environ.get("AMLKD_DATA_DIR", "data")).expanduser()
    return name, root, settings


# ---------------------------------------------------------------- readers
def _open_maybe_gz(path: Path) -> bytes:
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            with opener(candidate, "rb") as handle:
                return handle.read()
    raise FileNotFoundError(path)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format) as a uint8 array of its stated shape."""
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{shown(path)} is not an IDX file of unsigned bytes (MNIST format)")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{shown(path)} is truncated: {body.size} bytes for shape {tuple(dims)}")
    return body.reshape(tuple(int(d) for d in dims))


class _SafeUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only; anything else is refused."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("copyreg", "_reconstructor"),
               ("builtins", "object")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            data = _SafeUnpickler(io.BytesIO(handle.read()), encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"{shown(path)} is not a CIFAR python batch: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{shown(path)} is not a CIFAR python batch (expected a dictionary)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _mnist_split(folder: Path, prefix: str):
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte")  # (N, 28, 28)
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte").astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"{shown(folder)}: {len(images)} images but {len(labels)} labels in the {prefix} split")
    return images[:, None], labels  # (N, 1, 28, 28) uint8


def _cifar_batches(folder: Path, files: list[str], label_key: str):
    images, labels = [], []
    for name in files:
        batch = _read_pickle(folder / name)
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        images.append(data)
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)  # (N, 3, 32, 32) uint8


def _candidates(root: Path, folder: str) -> list[Path]:
    return [root / folder / "raw", root / folder, root / "raw", root] if folder in ("MNIST", "FashionMNIST") \
        else [root / folder, root]


def _read_set(name: str, root: Path):
    """(class names, train x, train y, test x, test y) from the first folder that has the files."""
    folder = SETS[name][0]
    for where in _candidates(root, folder):
        try:
            if name in ("mnist", "fashion-mnist"):
                classes = MNIST_CLASSES if name == "mnist" else FASHION_CLASSES
                return (classes, *_mnist_split(where, "train"), *_mnist_split(where, "t10k"))
            if name == "cifar10":
                meta = _read_pickle(where / "batches.meta")
                classes = tuple(str(c) for c in meta["label_names"])
                train = _cifar_batches(where, [f"data_batch_{i}" for i in range(1, 6)], "labels")
                return (classes, *train, *_cifar_batches(where, ["test_batch"], "labels"))
            meta = _read_pickle(where / "meta")
            classes = tuple(str(c) for c in meta["fine_label_names"])
            train = _cifar_batches(where, ["train"], "fine_labels")
            return (classes, *train, *_cifar_batches(where, ["test"], "fine_labels"))
        except FileNotFoundError:
            continue
    raise UserError(f"{name} files not found under {shown(root)} (looked in {str(root / folder)!r}); "
                    f"valid: a folder in torchvision's layout, or add ?download=1 to fetch them "
                    f"(e.g. {name}:{root}?download=1)")


# ---------------------------------------------------------------- download
def probe_url(name: str) -> str:
    """The URL whose reachability decides whether a download is tried
    (``$AMLKD_DOWNLOAD_PROBE`` overrides it, for tests)."""
    return os.environ.get("AMLKD_DOWNLOAD_PROBE") or SETS[name][2]


def check_online(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a HEAD request for ``url`` succeeds (status < 400) within ``timeout`` seconds.

    A TCP connection alone proves little (a proxy may accept any), so the probe
    asks for the very file. It runs in a daemon thread, so that a hanging DNS
    lookup cannot block the caller longer than ``timeout``.
    """
    outcome = {"ok": False}

    def attempt():
        try:
            request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "aml-kd-explorer"})
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed https URLs
                outcome["ok"] = response.status < 400
        except (OSError, ValueError, http.client.HTTPException):
            pass

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return outcome["ok"]


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download(name: str, root: Path) -> None:
    """Fetch a torchvision set into ``root``; :class:`UserError` within seconds when offline."""
    url = probe_url(name)
    if not check_online(url):
        raise UserError(f"cannot download {name}: {url} is not reachable (offline?); put the files "
                        f"under {shown(root)} in torchvision's layout and drop ?download=1")
    import torchvision.datasets as tvd  # slow import: only when downloading

    cls = getattr(tvd, SETS[name][1])
    root.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s", name, root)
    try:
        with _socket_timeout(SOCKET_TIMEOUT):
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"downloading {name} into {shown(root)} failed: {str(exc).splitlines()[0][:200]}") from None


# ---------------------------------------------------------------- loader
def _subset(labels: np.ndarray, n: int | None) -> np.ndarray:
    """Sorted indices of a stratified, seeded subset of about ``n`` samples (all when None)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    drop = stratified_holdout(labels, 1.0 - n / len(labels), seed=SUBSET_SEED)
    return np.flatnonzero(~drop)


def _streams(settings: dict, images: np.ndarray) -> bool:
    """Whether the images stream (see the module docstring); :class:`UserError` for a size kept in memory."""
    native, size = images.shape[-1], settings["size"]
    if settings["stream"] is False and size is not None and size != native:
        raise UserError(f"dataset option size={size} needs the images streamed (they are {native}x{native}); "
                        "valid: drop stream=0, or drop size")
    if settings["stream"] is not None:
        return settings["stream"]
    side = size or native
    return (size is not None and size != native) or len(images) * images.shape[1] * side * side * 4 > IN_MEMORY_BYTES


def load_torchvision(spec: DatasetSpec) -> Dataset:
    """A torchvision dataset from a local root (see the module docstring)."""
    name, root, settings = _settings(spec)
    try:  # files already on disk win: ?download=1 only fetches what is missing
        classes, train_x, train_y, test_x, test_y = _read_set(name, root)
    except UserError:
        if not settings["download"]:
            raise
        download(name, root)
        classes, train_x, train_y, test_x, test_y = _read_set(name, root)
    train_idx, test_idx = _subset(train_y, settings["n"]), _subset(test_y, settings["test_n"])
    train_images, test_images = train_x[train_idx], test_x[test_idx]  # uint8 (N, C, H, W)
    if _streams(settings, train_images):
        from .stream import ImageArrays

        size = settings["size"] or train_images.shape[-1]
        train_inputs, test_inputs = ImageArrays(train_images, size), ImageArrays(test_images, size)
    else:
        train_inputs = train_images.astype(np.float32) / 255.0
        test_inputs = test_images.astype(np.float32) / 255.0
    return Dataset(
        name=f"{name}:{spec.path or root}",
        kind="image",
        class_names=tuple(classes),
        train_x=train_inputs,
        train_true=train_y[train_idx],
        test_x=test_inputs,
        test_true=test_y[test_idx],
        train_keys=tuple(f"train/{i}" for i in train_idx),
        augment="crop_flip" if name.startswith("cifar") else "none",
    )
