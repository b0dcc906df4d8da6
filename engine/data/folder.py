"""Image folders a user brings: ``folder:DIR`` with options, e.g.
``folder:/data/pets?size=32&mode=RGB&augment=crop_flip&test=0.2``.

Layout (as torchvision's ``ImageFolder``)::

    DIR/train/<class>/<image>      one folder per class; sub-folders allowed
    DIR/test/<class>/<image>       optional; without it a stratified, seeded
                                   fraction ``test`` (default 0.2) of train is held out

A ``DIR`` with class folders but neither ``train/`` nor ``test/`` is taken as
the training folder itself. Images: PNG, JPEG, BMP, WebP; grayscale or colour.
Every image becomes ``mode`` (default: the majority of the files, ties to RGB)
and ``size x size`` pixels (default: the images' common size when they all
share one no larger than 32, else 32; the aspect ratio is not kept).
A sample's key is its path relative to ``DIR``: ``train/cat/0042.jpg``.
The folder names are the labels of the data, so they are the truth; a label
file (``--labels``) can give other, noisy labels.

Files that are not images, or cannot be decoded, are skipped, listed in
:attr:`Dataset.skipped` and logged; the run goes on. Decoded images are kept in
an in-process LRU cache keyed by path, mtime and file size, so a second load
of the same folder (the app reopening a run) decodes nothing.

Cost: one header read per file, then one decode per file not in the cache,
in a few threads (Pillow releases the GIL while decoding).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError, shown
from .base import Dataset, DatasetSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VALID_LAYOUT = "a folder holding train/<class>/<images> (PNG, JPEG, BMP, WebP) and optionally test/<class>/<images>"
DEFAULT_SIZE = 32  # larger or mixed images are resized to 32x32, the CIFAR size the models expect
MAX_SIZE = 256
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # the held-out test split never changes with the run's seed
OPTIONS = ("size", "mode", "augment", "test", "stream")
STREAM_SIZE = 224  # streamed photos: torchvision's ImageNet input size, what the pretrained backbones read
MAX_STREAM_SIZE = 512
PHOTO_SIDE = 64  # images whose shorter side exceeds this are photos: streamed by default
IN_MEMORY_BYTES = 1 << 30  # a float32 training tensor above this streams instead
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
SHOWN = 5  # offenders named in an error message


def _listing(items, count: int = SHOWN) -> str:
    items = list(items)
    text = ", ".join(shown(i) for i in items[:count])
    return text + (f" and {len(items) - count} more" if len(items) > count else "")


def _utf8(name: str) -> bool:
    """Whether a file name is valid UTF-8 (Python keeps other bytes as surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------- cache
class ImageCache:
    """A thread-safe LRU of decoded images, bounded in bytes.

    Keys hold the file's path, mtime and size, so an edited file is decoded
    again; values are uint8 arrays ``(H, W, C)`` or header tuples.
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key, value) -> None:
        size = value.nbytes if isinstance(value, np.ndarray) else 64
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes if isinstance(old, np.ndarray) else 64

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0


CACHE = ImageCache()


def _file_id(path: str) -> tuple:
    """(absolute path, mtime in ns, size in bytes): a file's cache identity."""
    stat = os.stat(path)
    return path, stat.st_mtime_ns, stat.st_size


# ---------------------------------------------------------------- scanning
@dataclass(frozen=True)
class FolderScan:
    """What a folder holds, from file headers only (nothing decoded).

    Attributes
    ----------
    root : Path
        The dataset folder ``DIR``.
    class_names : tuple of str
        Sorted class folder names of the training split.
    train, test : tuple of (str, int)
        ``(key, class index)`` per image; ``test`` is ``None`` without a test folder.
    skipped : tuple of str
        ``"key: reason"`` for every file passed over.
    sizes : Counter
        ``(width, height)`` -> number of images.
    modes : Counter
        ``"L"`` (grayscale) or ``"RGB"`` (colour) -> number of images.
    """

    root: Path
    class_names: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...] | None
    skipped: tuple[str, ...]
    sizes: Counter
    modes: Counter

    def default_size(self) -> tuple[int, int]:
        """(height, width): the common size when one no larger than 32 is shared, else 32x32."""
        if len(self.sizes) == 1:
            (width, height), = self.sizes
            if max(width, height) <= DEFAULT_SIZE:
                return height, width
        return DEFAULT_SIZE, DEFAULT_SIZE

    def default_mode(self) -> str:
        return "L" if self.modes["L"] > self.modes["RGB"] else "RGB"

    def class_counts(self, split: str = "train") -> dict[str, int]:
        items = self.train if split == "train" else (self.test or ())
        counts = Counter(c for _, c in items)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


def _header(path: str) -> tuple[int, int, str]:
    """(width, height, 'L' or 'RGB') from the file header; raises on a non-image."""
    key = ("header",) + _file_id(path)
    cached = CACHE.get(key)
    if cached is not None:
        return cached
    with Image.open(path) as img:
        info = (int(img.width), int(img.height), "L" if img.mode in GRAY_MODES else "RGB")
    CACHE.put(key, info)
    return info


def _refuse_not_utf8(names: list[str], root: Path) -> None:
    raise UserError(f"{len(names)} file or folder name(s) in {shown(root)} are not UTF-8: {_listing(names, 3)}; "
                    "rename them to UTF-8 names (keys and class names are written to CSV files and the review log)")


def _class_files(class_dir: Path, root: Path):
    """(key, absolute path) of the image files under one class folder
    (recursively, sorted), the skipped ``key: reason``, and the keys whose
    names are not UTF-8."""
    files, skipped, not_utf8 = [], [], []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        prefix = Path(dirpath).relative_to(root).as_posix()
        not_utf8 += [f"{prefix}/{d}/" for d in dirnames if not _utf8(d)]
        dirnames[:] = [d for d in dirnames if _utf8(d)]
        for name in sorted(filenames):
            if _ignored(name):
                continue
            key = f"{prefix}/{name}"
            if not _utf8(name):
                not_utf8.append(key)
                continue
            if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                skipped.append(f"{key}: not an image file (valid: {', '.join(IMAGE_SUFFIXES)})")
                continue
            files.append((key, os.path.join(dirpath, name)))
    return files, skipped, not_utf8


def _scan_split(split_dir: Path, root: Path, class_names: tuple[str, ...] | None):
    """Scan ``split_dir/<class>/...``; returns class names, items, skipped, sizes, modes."""
    entries = sorted(p for p in split_dir.iterdir() if not _ignored(p.name))
    class_dirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file()]
    skipped = [f"{p.relative_to(root).as_posix()}: not inside a class folder" for p in loose if _utf8(p.name)]
    if not class_dirs:
        if loose:
            raise UserError(f"images in {shown(split_dir)} must sit in one folder per class, "
                            f"e.g. {split_dir.name}/cat/0001.jpg; valid: {VALID_LAYOUT}")
        raise UserError(f"folder {shown(split_dir)} is empty; valid: {VALID_LAYOUT}")
    not_utf8 = [p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in entries if not _utf8(p.name)]
    if not_utf8:
        _refuse_not_utf8(not_utf8, root)
    names = tuple(p.name for p in class_dirs)
    if class_names is None:
        class_names = names
    else:
        unknown = [n for n in names if n not in class_names]
        if unknown:
            raise UserError(f"test class folders {_listing(unknown)} in {shown(split_dir)} are not training "
                            f"classes; valid: {_listing(class_names, 20)}")
    items, sizes, modes, empty = [], Counter(), Counter(), []
    for class_dir in class_dirs:
        files, class_skipped, class_not_utf8 = _class_files(class_dir, root)
        skipped += class_skipped
        not_utf8 += class_not_utf8
        count = 0
        for key, path in files:
            try:
                width, height, mode = _header(path)
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
                skipped.append(f"{key}: unreadable image ({type(exc).__name__})")
                continue
            items.append((key, class_names.index(class_dir.name)))
            sizes[(width, height)] += 1
            modes[mode] += 1
            count += 1
        if count == 0:
            empty.append(class_dir.relative_to(root).as_posix())
    if not_utf8:
        _refuse_not_utf8(not_utf8, root)
    if empty:
        raise UserError(f"class folders {_listing(empty)} in {shown(root)} hold no readable images "
                        f"(PNG, JPEG, BMP, WebP); add images or remove the folder")
    return class_names, items, skipped, sizes, modes


def scan_folder(directory: str | Path) -> FolderScan:
    """Check a dataset folder and list its images, reading file headers only.

    This is what the app's Setup page calls to validate a path before a run.

    Raises
    ------
    UserError
        Missing or empty folder, a single class, a class folder without images,
        test classes that are not training classes; each names the path.
    """
    root = Path(str(directory)).expanduser().absolute()
    if not str(directory).strip():
        raise UserError(f"dataset folder is empty; valid: {VALID_LAYOUT}")
    if not root.exists():
        raise UserError(f"dataset folder {shown(root)} does not exist; valid: {VALID_LAYOUT}")
    if not root.is_dir():
        hint = " (extract the .zip first)" if root.suffix.lower() == ".zip" else ""
        raise UserError(f"dataset path {shown(root)} is a file, not a folder{hint}; valid: {VALID_LAYOUT}")
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir():
        if test_dir.is_dir():
            raise UserError(f"dataset folder {shown(root)} has test/ but no train/ folder; valid: {VALID_LAYOUT}")
        train_dir = root
    class_names, train, skipped, sizes, modes = _scan_split(train_dir, root, None)
    if len(class_names) < 2:
        raise UserError(f"dataset folder {shown(train_dir)} has only one class folder ({class_names[0]!r}); "
                        "at least 2 class folders are needed")
    test = None
    if train_dir != root and test_dir.is_dir():
        _, test, test_skipped, test_sizes, test_modes = _scan_split(test_dir, root, class_names)
        skipped, sizes, modes = skipped + test_skipped, sizes + test_sizes, modes + test_modes
        if not test:
            raise UserError(f"test folder {shown(test_dir)} holds no images; add test/<class>/ images "
                            f"or remove it to hold out {TEST_FRACTION:.0%} of train")
    return FolderScan(root, class_names, tuple(train), None if test is None else tuple(test), tuple(skipped),
                      sizes, modes)


def folder_summary(directory: str | Path) -> dict:
    """A JSON-ready description of a dataset folder for the Setup page
    (headers only; raises :class:`UserError` like :func:`scan_folder`)."""
    scan = scan_folder(directory)
    streams = _streams(scan, {"stream": None, "size": None}, scan.default_mode())
    height, width = (STREAM_SIZE, STREAM_SIZE) if streams else scan.default_size()
    return {
        "root": str(scan.root),
        "classes": list(scan.class_names),
        "train_counts": scan.class_counts("train"),
        "test_counts": None if scan.test is None else scan.class_counts("test"),
        "test": "folder" if scan.test is not None else f"{TEST_FRACTION:.0%} of train held out",
        "sizes": {f"{w}x{h}": n for (w, h), n in scan.sizes.most_common()},
        "modes": dict(scan.modes),
        "default_size": f"{width}x{height}",
        "default_mode": scan.default_mode(),
        "streamed": streams,  # by default: photos stay files, decoded at default_size (engine.data.stream)
        "skipped": list(scan.skipped),
    }


# ---------------------------------------------------------------- decoding
def _to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Convert to 'L' or 'RGB'; 16-bit and float grayscale are rescaled, not clipped."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        values = np.asarray(img, dtype=np.float64)
        peak = values.max() if values.size and values.max() > 255 else 255.0
        img = Image.fromarray(np.clip(values / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode) if img.mode != mode else img


def decode_image(path: str, size: tuple[int, int], mode: str) -> np.ndarray:
    """One image as uint8 ``(H, W, C)``, converted and resized; cached.

    Parameters
    ----------
    size : (height, width)
    mode : 'L' or 'RGB'
    """
    key = ("image", *_file_id(str(path)), size, mode)
    cached = CACHE.get(key)
    if cached is not None:
        return cached
    height, width = size
    with Image.open(path) as img:
        img.draft(mode, (width, height))  # JPEG: decode at a reduced scale when much larger
        img = _to_mode(img, mode)
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    array.setflags(write=False)
    CACHE.put(key, array)
    return array


THUMBNAIL_SIZE = 256  # the originals on screen: the longer side, in pixels


def original_thumbnail(path: str, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """An original image file for the screen: uint8 ``(h, w, 3)``, its longer side ``size`` (never enlarged
    beyond it, aspect kept); cached like decoded images.

    Raises
    ------
    UserError
        The file is gone or no longer an image (one line naming it).
    """
    try:
        key = ("thumbnail", *_file_id(str(path)), size)
        cached = CACHE.get(key)
        if cached is not None:
            return cached
        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            img = _to_mode(img, "RGB")
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"image {shown(str(path))} cannot be shown ({type(exc).__name__}); it was moved, "
                        "deleted or changed since the run was made") from None
    array.setflags(write=False)
    CACHE.put(key, array)
    return array


def _decode_all(root: Path, items, size, mode, workers: int, chunk: int = 256):
    """Decode ``items``; returns uint8 (N, H, W, C), kept (N,) mask, skipped list."""
    base = str(root)

    def one(item):
        key, _ = item
        try:
            return decode_image(os.path.join(base, key), size, mode), None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            return None, f"{key}: unreadable image ({type(exc).__name__})"

    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = [r for part in pool.map(lambda part: [one(item) for item in part], chunks) for r in part]
    kept = np.array([array is not None for array, _ in results], dtype=bool)
    channels = 1 if mode == "L" else 3
    arrays = [array for array, _ in results if array is not None]
    stacked = np.stack(arrays) if arrays else np.zeros((0, size[0], size[1], channels), np.uint8)
    return stacked, kept, [reason for _, reason in results if reason]


def _to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    out = np.empty((images.shape[0], images.shape[3], images.shape[1], images.shape[2]), dtype=np.float32)
    np.multiply(images.transpose(0, 3, 1, 2), np.float32(1 / 255), out=out)
    return out


# ---------------------------------------------------------------- options and split
def split_path_options(spec: DatasetSpec) -> tuple[str, dict[str, str]]:
    """``DIR?size=32&mode=L`` -> (``DIR``, options); a path that exists as written wins."""
    path, options = spec.path or "", dict(spec.options)
    if "?" in path and not Path(path).expanduser().exists():
        path, _, query = path.rpartition("?")
        options.update(parse_qsl(query, keep_blank_values=True))
    return path, options


def _read_options(options: dict[str, str], spec_text: str) -> dict:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UserError(f"unknown option(s) {_listing(unknown)} in dataset {shown(spec_text)}; "
                        f"valid: {', '.join(OPTIONS)}")
    parsed = DatasetSpec("folder", tuple(options.items()))
    size = parsed.option("size", None, int)
    if size is not None and not 4 <= size <= (MAX_STREAM_SIZE if options.get("stream") == "1" else MAX_SIZE):
        raise UserError(f"folder option size={size} is out of range; valid: 4..{MAX_SIZE} (4..{MAX_STREAM_SIZE} "
                        "with stream=1)")
    mode = options.get("mode")
    if mode is not None:
        mode = {"l": "L", "gray": "L", "grey": "L", "grayscale": "L", "rgb": "RGB", "color": "RGB"}.get(mode.lower())
        if mode is None:
            raise UserError(f"folder option mode={shown(options['mode'])} is not valid; valid: L (grayscale), RGB")
    augment = options.get("augment")
    if augment is not None and augment not in ("none", "crop_flip"):
        raise UserError(f"folder option augment={shown(augment)} is not valid; valid: none, crop_flip")
    test = parsed.option("test", TEST_FRACTION, float)
    if not 0.0 <= test < 1.0:
        raise UserError(f"folder option test={test} is out of range; valid: 0 <= test < 1")
    stream = options.get("stream")
    if stream is not None and stream not in ("0", "1"):
        raise UserError(f"folder option stream={shown(stream)} is not valid; valid: 1 (files decoded on demand), "
                        "0 (all images in memory)")
    return {"size": size, "mode": mode, "augment": augment, "test": test,
            "stream": None if stream is None else stream == "1"}


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean mask (N,): about ``fraction`` of each class, never a class's last sample.

    Parameters
    ----------
    labels : (N,) int
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(int(round(fraction * len(members))), len(members) - 1)
        mask[rng.permutation(members)[:take]] = True
    return mask


def _default_augment(size: tuple[int, int]) -> str:
    """Crop and flip for CIFAR-like images (24..64 pixels), none otherwise."""
    return "crop_flip" if 24 <= min(size) and max(size) <= 64 else "none"


def load_folder(spec: DatasetSpec) -> Dataset:
    """The :class:`Dataset` of a ``folder:DIR[?options]`` spec (see the module docstring)."""
    path, options = split_path_options(spec)
    spec_text = f"{spec.name}:{spec.path}"
    settings = _read_options(options, spec_text)
    scan = scan_folder(path)
    mode = settings["mode"] or scan.default_mode()
    if _streams(scan, settings, mode):
        return _streamed_folder(scan, settings, mode, spec_text)
    size = (settings["size"], settings["size"]) if settings["size"] else scan.default_size()
    if scan.modes["L"] and scan.modes["RGB"]:
        log.info("folder %s mixes grayscale and colour images; all are converted to %s", scan.root, mode)
    workers = max(1, min(4, os.cpu_count() or 1))
    images, kept, bad = _decode_all(scan.root, scan.train, size, mode, workers)
    labels = np.array([c for (_, c), ok in zip(scan.train, kept) if ok], dtype=np.int64)
    keys = tuple(k for (k, _), ok in zip(scan.train, kept) if ok)
    _check_classes_left(labels, scan)
    if scan.test is not None:
        test_images, test_kept, test_bad = _decode_all(scan.root, scan.test, size, mode, workers)
        test_labels = np.array([c for (_, c), ok in zip(scan.test, test_kept) if ok], dtype=np.int64)
        test_keys = tuple(k for (k, _), ok in zip(scan.test, test_kept) if ok)
        bad += test_bad
        train_images, train_labels, train_keys = images, labels, keys
    else:
        held = stratified_holdout(labels, settings["test"])
        test_images, test_labels = images[held], labels[held]
        train_images, train_labels = images[~held], labels[~held]
        train_keys = tuple(k for k, h in zip(keys, held) if not h)
        test_keys = tuple(k for k, h in zip(keys, held) if h)
    skipped = scan.skipped + tuple(bad)
    if skipped:
        log.warning("skipped %d file(s) in %s: %s", len(skipped), scan.root, "; ".join(skipped[:SHOWN]))
    return Dataset(
        name=spec_text, kind="image", class_names=scan.class_names,
        train_x=_to_float(train_images), train_true=train_labels,
        test_x=_to_float(test_images), test_true=test_labels,
        train_keys=train_keys, test_keys=test_keys, augment=settings["augment"] or _default_augment(size),
        skipped=skipped, root=str(scan.root))


# ---------------------------------------------------------------- streamed
def _streams(scan: FolderScan, settings: dict, mode: str) -> bool:
    """``stream=`` as given; else photos (most images' shorter side above :data:`PHOTO_SIDE`) or a training
    tensor above :data:`IN_MEMORY_BYTES` stream, the rest is held in memory as before."""
    if settings["stream"] is not None:
        return settings["stream"]
    photos = sum(n for (w, h), n in scan.sizes.items() if min(w, h) > PHOTO_SIDE)
    if settings["size"] is None and photos * 2 > sum(scan.sizes.values()):
        return True
    side = settings["size"] or max(scan.default_size())
    channels = 1 if mode == "L" else 3
    return len(scan.train) * channels * side * side * 4 > IN_MEMORY_BYTES


def _streamed_folder(scan: FolderScan, settings: dict, mode: str, spec_text: str) -> Dataset:
    """The folder as files (:class:`engine.data.stream.ImageFiles`) decoded on demand at ``size`` (default
    :data:`STREAM_SIZE`); files whose header is unreadable were skipped by the scan."""
    from .stream import ImageFiles, cache_shares

    side = settings["size"] or STREAM_SIZE
    keys = tuple(k for k, _ in scan.train)
    labels = np.array([c for _, c in scan.train], dtype=np.int64)
    _check_classes_left(labels, scan)
    if scan.test is not None:
        train_keys, train_labels = keys, labels
        test_keys, test_labels = tuple(k for k, _ in scan.test), np.array([c for _, c in scan.test], np.int64)
    else:
        held = stratified_holdout(labels, settings["test"])
        train_keys, train_labels = tuple(k for k, h in zip(keys, held) if not h), labels[~held]
        test_keys, test_labels = tuple(k for k, h in zip(keys, held) if h), labels[held]
    if scan.skipped:
        log.warning("skipped %d file(s) in %s: %s", len(scan.skipped), scan.root, "; ".join(scan.skipped[:SHOWN]))
    files = [str(scan.root / k) for k in train_keys], [str(scan.root / k) for k in test_keys]
    shares = cache_shares(len(train_keys), len(test_keys))  # the two sets' workers keep CACHE_BYTES together
    return Dataset(
        name=spec_text, kind="image", class_names=scan.class_names,
        train_x=ImageFiles(files[0], side, mode, cache_bytes=shares[0]), train_true=train_labels,
        test_x=ImageFiles(files[1], side, mode, cache_bytes=shares[1]), test_true=test_labels,
        train_keys=train_keys, test_keys=test_keys, augment=settings["augment"] or "crop_flip",
        skipped=scan.skipped, root=str(scan.root))


def _check_classes_left(labels: np.ndarray, scan: FolderScan) -> None:
    """After decoding, every class still needs an image (corrupt files may have been all it had)."""
    present = set(labels.tolist())
    missing = [name for i, name in enumerate(scan.class_names) if i not in present]
    if missing:
        raise UserError(f"class folders {_listing(missing)} in {shown(scan.root)} hold no readable images; "
                        "every class needs at least one PNG, JPEG, BMP or WebP file that decodes")
