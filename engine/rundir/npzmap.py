"""The arrays of an ``.npz`` file memory-mapped, so that a reader of a few rows reads only those rows.

``np.savez`` writes a zip whose members are ``.npy`` files *stored* (not
compressed): each member's bytes lie in the file as they are, after the zip's
local header and the ``.npy`` header. :func:`load` finds where each member's
data starts and maps it read-only (``np.memmap`` at that offset), so opening
a run's ``dataset.npz`` of a million keys costs a few small reads, and
``keys[rows]`` reads only the pages of those rows. A compressed member
(``np.savez_compressed``) cannot be mapped and is read whole, as
``np.load`` would.

The file format is unchanged: any ``.npz`` that ``np.load`` reads, this
reads too (runs made before this module open as they did).

Cost: one read of the zip's central directory and of each member's two
headers; nothing of the arrays' data until used.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from ..data.vectors import npy_header

#: Members smaller than this are read whole: as fast as mapping them, and a file rewritten in place (not
#: renamed over, as RunStore writes it) cannot take a small run's reader down. A mapped member read after its
#: file was truncated in place raises SIGBUS, as for the snapshots' memory-mapped fields.
MAP_MIN_BYTES = 1 << 20
#: Bytes of a zip local file header before its name and extra field (PKWARE APPNOTE 4.3.7).
_LOCAL_HEADER = 30
_LOCAL_MAGIC = b"PK\x03\x04"


def _member_offset(fh, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: past its local header, name and extra field (the local
    extra field may differ from the central directory's, so it is read here)."""
    fh.seek(info.header_offset)
    local = fh.read(_LOCAL_HEADER)
    if len(local) != _LOCAL_HEADER or local[:4] != _LOCAL_MAGIC:
        raise ValueError(f"member {info.filename!r} has no local header where the directory says")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return info.header_offset + _LOCAL_HEADER + name_length + extra_length


def _mapped_member(path: Path, fh, info: zipfile.ZipInfo) -> np.ndarray | None:
    """A stored member as a read-only array over the file's pages; None where mapping is not worth it or
    not possible (a scalar, an empty array, an ``.npy`` header version this reader does not parse): the
    caller reads it whole."""
    start = _member_offset(fh, info)
    fh.seek(start)
    header = npy_header(fh)
    if header is None:
        return None
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise ValueError(f"member {info.filename!r} holds Python objects, which are not read (allow_pickle=False)")
    data_start = fh.tell()
    if data_start - start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > info.file_size:
        raise ValueError(f"member {info.filename!r} is shorter than its header says")
    if not shape or int(np.prod(shape, dtype=np.int64)) == 0:
        return None  # a scalar or an empty array: nothing worth mapping (and an empty one cannot be)
    mapped = np.memmap(path, dtype=dtype, mode="r", offset=data_start, shape=shape, order="F" if fortran else "C")
    return mapped.view(np.ndarray)  # a plain array over the same pages (memmap's subclass quirks left out)


def load(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of ``path`` (an ``.npz``): memory-mapped and read-only where stored and at least
    :data:`MAP_MIN_BYTES`, else read whole.

    Raises
    ------
    OSError, ValueError, zipfile.BadZipFile, zlib.error
        A missing or damaged file (the caller names it: :func:`engine.errors.reading`).
    """
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            mappable = info.compress_type == zipfile.ZIP_STORED and info.file_size >= MAP_MIN_BYTES
            array = _mapped_member(path, fh, info) if mappable else None
            if array is None:
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
            out[name] = array
    return out
