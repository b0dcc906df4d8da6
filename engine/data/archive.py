"""Safe extraction of an uploaded ``.zip`` of an image folder.

An upload is untrusted: every entry is checked before anything is written.
Refused (:class:`UserError`, naming the entry): absolute paths, ``..``
components, drive letters, symbolic links, encrypted entries, entries that
collide (a file twice, or a file ``x`` beside a folder ``x/``), more than
``max_files`` entries, more than ``max_bytes`` uncompressed in total (checked
against the headers first, then again while streaming, in case a header
lies). Hidden files and macOS ``__MACOSX`` folders are left out. The archive
is unpacked into a temporary folder next to the target and renamed into place
only when complete, so a failed upload leaves nothing behind.
"""

from __future__ import annotations

import logging
import errno
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import UserError, shown

log = logging.getLogger(__name__)

MAX_BYTES = 1 << 30  # 1 GiB uncompressed: far above a CPU-sized image set
MAX_FILES = 100_000
CHUNK = 1 << 20


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The entry's safe relative path; None for entries to leave out; raises on unsafe ones."""
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and len(parts[0]) == 2 and parts[0][1] == ":"):
        raise UserError(f"zip entry {shown(info.filename)} has an absolute path; valid: paths relative to the archive")
    if ".." in parts:
        raise UserError(f"zip entry {shown(info.filename)} points outside the archive ('..'); it is refused")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UserError(f"zip entry {shown(info.filename)} is a symbolic link; valid: plain files and folders")
    if info.flag_bits & 0x1:
        raise UserError(f"zip entry {shown(info.filename)} is encrypted; valid: an unencrypted zip")
    parts = tuple(p for p in parts if p not in ("", "."))
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return PurePosixPath(*parts)


def _plan(archive: zipfile.ZipFile, max_bytes: int, max_files: int) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    entries = archive.infolist()
    if len(entries) > max_files:
        raise UserError(f"zip holds {len(entries)} entries; at most {max_files} are accepted")
    plan = [(info, path) for info in entries if (path := _member_path(info)) is not None]
    _check_collisions(plan)
    declared = sum(info.file_size for info, _ in plan)
    if declared > max_bytes:
        raise UserError(f"zip would unpack to {declared / 2**20:.0f} MiB; at most {max_bytes / 2**20:.0f} MiB "
                        "are accepted")
    return plan


def _check_collisions(plan: list[tuple[zipfile.ZipInfo, PurePosixPath]]) -> None:
    """Refuse two entries that unpack to the same path: a file twice, or a file
    where another entry needs a folder (``x`` and ``x/`` or ``x/y``)."""
    files: dict[PurePosixPath, str] = {}
    folders: dict[PurePosixPath, str] = {}
    for info, path in plan:
        if info.is_dir():
            folders.setdefault(path, info.filename)
        elif path in files:
            raise UserError(f"zip entries {shown(files[path])} and {shown(info.filename)} unpack to the same "
                            "file; valid: each path once")
        else:
            files[path] = info.filename
        for parent in path.parents:
            if parent != PurePosixPath("."):
                folders.setdefault(parent, info.filename)
    for path, name in files.items():
        if path in folders:
            raise UserError(f"zip entries {shown(name)} (a file) and {shown(folders[path])} (needing a folder "
                            f"{shown(path.as_posix() + '/')}) collide; valid: a path is a file or a folder, not both")


def _copy_limited(source, target: Path, budget: int, name: str) -> int:
    """Stream one entry to ``target``; returns bytes written, raises past ``budget``."""
    written = 0
    with open(target, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise UserError(f"zip entry {shown(name)} unpacks to more than its header says or than the size "
                                "limit allows; the upload is refused")
            out.write(chunk)
    return written


def extract_zip(source, target: str | Path, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> Path:
    """Unpack a zip (a path or a binary file object) into the new folder ``target``.

    Returns
    -------
    Path
        The dataset folder inside it (see :func:`find_dataset_root`).

    Raises
    ------
    UserError
        Not a zip, an unsafe entry, too large, or ``target`` exists and is not empty.
    """
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise UserError(f"folder {shown(target)} already holds files; choose a new folder to unpack into")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"the upload is not a readable zip archive: {exc}") from None
    staging = Path(tempfile.mkdtemp(prefix=".unzip-", dir=target.parent))
    try:
        with archive:
            _extract_into(archive, staging, max_bytes, max_files)
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
        log.info("extracted upload into %s", target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return find_dataset_root(target)


def _extract_into(archive: zipfile.ZipFile, staging: Path, max_bytes: int, max_files: int) -> None:
    budget = max_bytes
    base = staging.resolve()
    for info, rel in _plan(archive, max_bytes, max_files):
        destination = staging.joinpath(*rel.parts)
        if not destination.resolve().is_relative_to(base):
            raise UserError(f"zip entry {shown(info.filename)} points outside the archive; it is refused")
        if info.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as source:
                budget -= _copy_limited(source, destination, min(budget, info.file_size), info.filename)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(f"the disk is full (while unpacking {shown(info.filename)}); nothing of the upload "
                                "was kept: free some space or delete old uploads") from None
            raise UserError(f"zip entry {shown(info.filename)} is corrupt: {exc}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise UserError(f"zip entry {shown(info.filename)} is corrupt: {exc}") from None


def find_dataset_root(folder: str | Path) -> Path:
    """The folder to use as ``folder:DIR``: the first one, at most three levels
    down, that holds ``train/``; else ``folder`` less any wrapping folders (a
    lone folder whose contents are all folders)."""
    folder = Path(folder)
    level = [folder]
    for _ in range(4):
        for candidate in level:
            if (candidate / "train").is_dir():
                return candidate
        level = [c for p in level for c in sorted(_visible(p)) if c.is_dir()]
    current = folder
    while True:
        children = _visible(current)
        if len(children) == 1 and children[0].is_dir() and all(c.is_dir() for c in _visible(children[0])):
            current = children[0]
        else:
            return current


def _visible(folder: Path) -> list[Path]:
    return [c for c in folder.iterdir() if not c.name.startswith(".") and c.name != "__MACOSX"]
