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


class _Batches(torch.utils.data.Dataset):
    """A DataLoader dataset whose items are whole batches: item ``j`` is ``batches[j]`` decoded."""

    def __init__(self, files: ImageFiles, batches: Sequence[np.ndarray]):
        self.files, self.batches = files, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.files.decode(self.batches[j])


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
        Decoding processes for :meth:`batches` (0: in this process).
    """

    def __init__(self, paths: Sequence[str], size: int, mode: str, workers: int = DEFAULT_WORKERS):
        self.paths = np.asarray(paths, dtype=object)
        self.size, self.mode, self.workers = int(size), mode, int(workers)
        self.dtype = np.float32

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
        return ImageFiles(self.paths[np.asarray(index)], self.size, self.mode, self.workers)

    def decode(self, index: np.ndarray) -> torch.Tensor:
        """Samples ``index`` decoded: float32 ``(B, C, size, size)`` in [0, 1]."""
        arrays = [decode_image(str(self.paths[i]), (self.size, self.size), self.mode) for i in np.asarray(index)]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (B, C, H, W) uint8
        return batch.float().mul_(float(np.float32(1 / 255)))  # as the in-memory path scales: same bits

    def batches(self, batches: Sequence[np.ndarray], pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """Decode ``batches`` (arrays of sample indices) in order; one tensor per batch."""
        batches = [np.asarray(b.cpu() if isinstance(b, torch.Tensor) else b) for b in batches]
        if self.workers == 0 or len(batches) <= 1:
            for b in batches:
                yield self.decode(b)
            return
        loader = torch.utils.data.DataLoader(_Batches(self, batches), batch_size=None, shuffle=False,
                                             num_workers=min(self.workers, len(batches)), pin_memory=pin_memory,
                                             worker_init_fn=_worker_init, prefetch_factor=2,
                                             multiprocessing_context="fork" if os.name == "posix" else None)
        yield from loader

    def in_order(self, batch_size: int, pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """Every sample in order, ``batch_size`` at a time (evaluation and features)."""
        n = len(self)
        yield from self.batches([np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)],
                                pin_memory=pin_memory)


def is_streamed(inputs) -> bool:
    """Whether ``inputs`` are files decoded on demand (else an in-memory array or tensor)."""
    return isinstance(inputs, ImageFiles)
