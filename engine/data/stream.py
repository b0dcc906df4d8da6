"""Images that stay files: decoded on demand, in ``DataLoader`` worker processes,
at the size the networks read.

:class:`ImageFiles` stands where an in-memory dataset holds its inputs array
``(N, C, H, W)``: it has the same ``shape``, ``len`` and indexing by sample,
but holds only file paths. What reads it:

- ``files[i]`` decodes sample ``i``: float32 ``(C, H, W)`` in [0, 1] (the app's
  thumbnails, a few at a time);
- ``files[index]`` with an array or tensor of samples is a lazy subset (nothing
  decoded);
- :meth:`ImageFiles.batches` decodes a list of index batches, in order, in
  ``workers`` processes, each batch one stacked tensor (pinned when asked, for
  non-blocking copies to a GPU). The order is given by the caller, so the
  training loop's seeded generator decides it: a resume and a rerun read the
  same batches, and augmentation (:mod:`engine.method.augment`) stays in the
  training process on the same generator.

Memory: the paths, plus each worker's bounded cache of decoded images
(:class:`engine.data.folder.ImageCache`, :data:`CACHE_BYTES` in all over a
dataset's train and test workers: :func:`cache_shares`), whatever N. A worker
writes each batch straight into the shared memory that carries it to the
loader, and its large blocks are mapped apart from its heap
(:func:`keep_large_blocks_out_of_heap`), so that heap holds the cache and
little else however many batches it decodes.

:class:`ImageArrays` is the same for images that come as uint8 arrays in a few
large files (torchvision's MNIST and CIFAR): the same reading, the same
workers, the originals kept at their own size.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .folder import CACHE, decode_image

#: Decoded images kept by all workers together (each worker holds its share).
CACHE_BYTES = 512 << 20
#: Batches between two hand-backs of the heap's free pages (:func:`release_free_heap`), and one at a pass's end.
#: After every batch it cost a training loop 25-30% of its images per CPU second (the freed buffers are
#: faulted in again); every 16th bounds the creep for about 2%.
TRIM_EVERY = 16
#: Worker processes decoding batches (0: decode in the calling process).
DEFAULT_WORKERS = min(4, max(1, (os.cpu_count() or 1) - 1))


class _Plan:
    """The sampler of a persistent loader: the batches of the next pass, set just before it starts."""

    def __init__(self):
        self.batches: list[np.ndarray] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Decoder(torch.utils.data.Dataset):
    """A DataLoader dataset whose items are whole batches: item ``index`` (an array) is those samples decoded."""

    def __init__(self, files: ImageFiles):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: np.ndarray) -> torch.Tensor:
        return self.files.decode(index)


def _worker_init(cache_bytes: int, worker_id: int) -> None:  # each worker's cache holds its share of cache_bytes
    info = torch.utils.data.get_worker_info()
    CACHE.max_bytes = cache_bytes // max(1, info.num_workers if info else 1)
    torch.set_num_threads(1)
    keep_large_blocks_out_of_heap()


#: glibc's ``mallopt`` parameter number of the mmap threshold (``M_MMAP_THRESHOLD`` in malloc.h).
M_MMAP_THRESHOLD = -3
#: Blocks from this size up are mapped on their own and unmapped when freed, in the decoding workers:
#: glibc's default, fixed so that it never rises (:func:`keep_large_blocks_out_of_heap`). Cached images
#: above it (224x224 RGB: 147 KB) are mapped one by one too and handed back when evicted.
MMAP_THRESHOLD = 128 << 10


def keep_large_blocks_out_of_heap() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` in this process (a decoding worker); whether it was.

    Left alone, glibc raises the threshold to the largest mapped block freed so far: after its first batch a
    worker allocates each batch's buffers (the stacked uint8 images and their float32 copy, 2.4 and 9.6 MB for
    64 images at 112x112) in its heap. The images its cache keeps land above them, so the freed buffers become
    holes the next batch does not fit, and the heap grows by ~7 MB a batch beyond what the cache holds: one pass
    over 8,000 files at 112x112 left 1,249 MB of heap (815 MB of it free) for 276 MB of cached images, and a
    worker's memory grew with the number of batches, so with N. Fixed, the buffers are mapped and unmapped with
    every batch: after the same pass 424 MB of heap, none of it free. No decoded value changes.
    Nothing elsewhere than glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class ImageFiles:
    """N image files read as ``(N, C, size, size)`` float32 inputs, decoded when asked.

    Parameters
    ----------
    paths : sequence of str
        One file per sample, in sample order.
    size : int
        Side every image is resized to (the networks' input size).
    mode : 'L' or 'RGB'
    workers : int
        Decoding processes for :meth:`batches` (0: in this process). They start at the first pass and stay
        (persistent workers, each with its share of the cache) for every later pass, subsets' passes included.
    cache_bytes : int
        Decoded images these workers keep, together. The file sets of one dataset (train, test) each have their
        own workers, so a dataset splits :data:`CACHE_BYTES` between them (:func:`cache_shares`).
    """

    def __init__(self, paths: Sequence[str], size: int, mode: str, workers: int = DEFAULT_WORKERS,
                 cache_bytes: int = CACHE_BYTES):
        self.paths = np.asarray(paths, dtype=object)
        self.size, self.mode, self.workers, self.cache_bytes = int(size), mode, int(workers), int(cache_bytes)
        self.dtype = np.float32
        self._base, self._index = self, None  # a subset reads through its base's workers
        self._loaders: dict[bool, tuple[torch.utils.data.DataLoader, _Plan]] = {}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 1 if self.mode == "L" else 3, self.size, self.size)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.decode(np.array([int(index)]))[0].numpy()
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        index = np.asarray(index)
        subset = copy.copy(self)  # the same kind of source (files or arrays), its samples ``index``
        subset.paths, subset._loaders = self.paths[index], {}
        subset._base = self._base
        subset._index = index if self._index is None else self._index[index]
        return subset

    def __getstate__(self):  # workers get the paths, never the loaders
        state = dict(self.__dict__)
        state["_loaders"], state["_base"] = {}, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._base = self._base or self

    def decode(self, index: np.ndarray) -> torch.Tensor:
        """Samples ``index`` decoded in this process: float32 ``(B, C, size, size)`` in [0, 1]."""
        arrays = [self._decode_one(self.paths[i]) for i in np.asarray(index)]
        if torch.utils.data.get_worker_info() is None:
            batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (B, C, H, W) uint8
            return self._scale(batch)
        # A decoding worker writes the batch straight into shared memory, which is how it reaches the loader:
        # no stacked and no float copy in its heap, and no copy into shared memory when it is sent.
        shared = torch.empty((len(arrays), *arrays[0].shape)).share_memory_()  # (B, H, W, C) float32
        view = shared.numpy()
        for row, array in zip(view, arrays):
            row[...] = array  # uint8 -> float32: exact, as ``.float()``
        return self._scale(shared.permute(0, 3, 1, 2))  # scaled in place: the same bits

    def _decode_one(self, source) -> np.ndarray:
        """One sample as uint8 ``(size, size, C)``."""
        return decode_image(str(source), (self.size, self.size), self.mode)

    @staticmethod
    def _scale(batch: torch.Tensor) -> torch.Tensor:
        return batch.float().mul_(float(np.float32(1 / 255)))  # as the in-memory folder scales: same bits

    def batches(self, batches: Sequence[np.ndarray], pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """Decode ``batches`` (arrays of sample indices) in order; one tensor per batch."""
        batches = [np.asarray(b.cpu() if isinstance(b, torch.Tensor) else b) for b in batches]
        if self._index is not None:
            batches = [self._index[b] for b in batches]
        yield from self._base._stream(batches, pin_memory)

    def _stream(self, batches: list[np.ndarray], pin_memory: bool) -> Iterator[torch.Tensor]:
        if self.workers == 0 or len(batches) <= 1:
            for b in batches:
                yield self.decode(b)
            return
        if pin_memory not in self._loaders:
            plan = _Plan()
            loader = torch.utils.data.DataLoader(
                _Decoder(self), batch_size=None, sampler=plan, num_workers=self.workers, pin_memory=pin_memory,
                persistent_workers=True, worker_init_fn=functools.partial(_worker_init, self.cache_bytes),
                prefetch_factor=2,
                multiprocessing_context="fork" if os.name == "posix" else None)
            self._loaders[pin_memory] = (loader, plan)
        loader, plan = self._loaders[pin_memory]
        plan.batches = batches
        done = 0
        for batch in loader:
            yield batch
            done += 1  # the caller is done with the batch before it asks for the next
            if done % TRIM_EVERY == 0 or done == len(batches):
                release_free_heap()

    def in_order(self, batch_size: int, pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """Every sample in order, ``batch_size`` at a time (evaluation and features)."""
        n = len(self)
        yield from self.batches([np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)],
                                pin_memory=pin_memory)


class ImageArrays(ImageFiles):
    """Images held as uint8 arrays at their own size (torchvision's MNIST and CIFAR, whose files are batches of
    many images), read as ``(N, C, size, size)`` float32 like :class:`ImageFiles`: resized (bilinear, as a
    file is) and scaled in the decoding workers, one batch at a time.

    Memory: the uint8 originals (CIFAR-10: 3 KB an image; shared with the forked workers, not copied), never
    a float tensor of every image at ``size`` (CIFAR-10 at 224x224: 30 GB).

    Parameters
    ----------
    images : np.ndarray, uint8 (N, C, H, W)
    size : int
        Side every image is read at (its own: no resize, the values of the in-memory path bit for bit).
    """

    def __init__(self, images: np.ndarray, size: int, workers: int = DEFAULT_WORKERS):
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, 1 or 3, H, W), not {images.dtype} {images.shape}")
        super().__init__(np.arange(len(images)), size, "L" if images.shape[1] == 1 else "RGB", workers)
        self.paths = np.arange(len(images))  # a sample's source: its row of ``images``
        self.images = images

    def _decode_one(self, source) -> np.ndarray:
        image = self.images[int(source)].transpose(1, 2, 0)  # (H, W, C) uint8
        if image.shape[:2] == (self.size, self.size):
            return image
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image, self.mode)
        resized = np.asarray(pil.resize((self.size, self.size), Image.Resampling.BILINEAR), dtype=np.uint8)
        return resized[:, :, None] if resized.ndim == 2 else resized

    @staticmethod
    def _scale(batch: torch.Tensor) -> torch.Tensor:
        return batch.float().div_(255.0)  # as torchvision_sets' in-memory path divides: same bits


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_heap() -> None:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim(0)``; nothing elsewhere).

    A network's activations on a batch of 224x224 images are many buffers of 1-32 MB that glibc keeps in its
    heap once freed (its mmap threshold rises to the largest buffer freed). Between batches, small objects that
    live on land among them, so the next batch's buffers no longer fit the holes and the heap's resident size
    creeps up with every batch (measured: +61 MB over 40 batches of a MobileNet-V3-small feature pass, and
    +150 MB over one 10,000-photo run's teacher phase). Trimmed after each batch it stayed flat; the streamed
    passes trim every :data:`TRIM_EVERY` batches (the page faults of the buffers handed back are the cost).
    No computed value changes.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def cache_shares(*counts: int) -> list[int]:
    """:data:`CACHE_BYTES` split between file sets of ``counts`` samples each, in proportion."""
    total = max(1, sum(counts))
    return [CACHE_BYTES * n // total for n in counts]


def is_streamed(inputs) -> bool:
    """Whether ``inputs`` are files decoded on demand (else an in-memory array or tensor)."""
    return isinstance(inputs, ImageFiles)
