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
(:class:`engine.data.folder.ImageCache`, :data:`CACHE_BYTES` in all), whatever N.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .folder import CACHE, decode_image

#: Decoded images kept by all workers together (each worker holds its share).
CACHE_BYTES = 512 << 20
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


def _worker_init(worker_id: int) -> None:  # each worker's cache holds its share of CACHE_BYTES
    info = torch.utils.data.get_worker_info()
    CACHE.max_bytes = CACHE_BYTES // max(1, info.num_workers if info else 1)
    torch.set_num_threads(1)


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
    """

    def __init__(self, paths: Sequence[str], size: int, mode: str, workers: int = DEFAULT_WORKERS):
        self.paths = np.asarray(paths, dtype=object)
        self.size, self.mode, self.workers = int(size), mode, int(workers)
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
        subset = ImageFiles(self.paths[index], self.size, self.mode, self.workers)
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
        arrays = [decode_image(str(self.paths[i]), (self.size, self.size), self.mode) for i in np.asarray(index)]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (B, C, H, W) uint8
        return batch.float().mul_(float(np.float32(1 / 255)))  # as the in-memory path scales: same bits

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
                persistent_workers=True, worker_init_fn=_worker_init, prefetch_factor=2,
                multiprocessing_context="fork" if os.name == "posix" else None)
            self._loaders[pin_memory] = (loader, plan)
        loader, plan = self._loaders[pin_memory]
        plan.batches = batches
        yield from loader

    def in_order(self, batch_size: int, pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """Every sample in order, ``batch_size`` at a time (evaluation and features)."""
        n = len(self)
        yield from self.batches([np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)],
                                pin_memory=pin_memory)


def is_streamed(inputs) -> bool:
    """Whether ``inputs`` are files decoded on demand (else an in-memory array or tensor)."""
    return isinstance(inputs, ImageFiles)
