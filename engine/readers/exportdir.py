"""An export folder that is replaced whole or not at all.

:func:`staged_folder` hands out a staging folder beside the target
(``.NAME.export-PID-XXXX``, on the same file system); everything is written
there, then :func:`write_manifest` lists every file (name, bytes, SHA-256) in
``manifest.json``, and only then does the staging folder take the target's
place:

- on Linux, with one ``renameat2(RENAME_EXCHANGE)``: the target is the old
  export or the new one at every instant, never a mix and never absent;
- elsewhere, with two renames (old aside as ``.NAME.export-PID-XXXX.old``,
  new in); a kill between them is undone by the next export, which puts the
  old folder back before it starts.

A failed export (any exception) removes its staging folder and leaves the
target as it was. A killed one leaves its hidden staging folder, which the
next export to the same place removes (only folders of processes that are
gone, so two exports at once do not clean up each other's work).

A target folder that holds anything but an export's files is refused rather
than replaced: an export never deletes files it did not write.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError, shown
from ..rundir.store import process_alive

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
STAGING = ".{name}.export-"  # + pid-random; an old export set aside ends in OLD
OLD = ".old"
#: Files an export may hold (an older export without a manifest is recognised by them).
EXPORT_FILES = frozenset({MANIFEST, "samples.csv", "samples.json", "decisions.csv", "review_history.csv",
                          "clean_labels.csv", "student.pt", "report.md", "labels.png", "accuracy.png",
                          "weights.png", "decisions.png"})
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def write_file(path: Path, data: bytes) -> None:
    """Write one file of an export (into the staging folder) and flush it to disk.

    Every file of an export goes through here, so a test can fail any one write.
    """
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def text_bytes(text: str) -> bytes:
    """UTF-8 bytes of an export's text. A name Python read from a file system
    that is not UTF-8 (kept as surrogate escapes, e.g. in an image folder's
    path) goes back as its original bytes instead of failing the export."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, **about) -> dict:
    """List every file of ``folder`` (name, bytes, sha256) in ``manifest.json``; returns the manifest."""
    folder = Path(folder)
    files = [{"name": p.name, "bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST]
    manifest = {"format": MANIFEST_FORMAT, **about, "files": files}
    write_file(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def verify_export(folder) -> list[str]:
    """Problems of an export folder against its manifest (missing, extra, changed
    files); an empty list when every file is the one the export wrote."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        listed = {f["name"]: f for f in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST} is missing or unreadable ({type(exc).__name__})"]
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    problems = [f"{name} is missing" for name in sorted(set(listed) - present)]
    problems += [f"{name} is not in the manifest" for name in sorted(present - set(listed))]
    for name in sorted(set(listed) & present):
        entry, path = listed[name], folder / name
        if path.stat().st_size != entry.get("bytes") or sha256(path) != entry.get("sha256"):
            problems.append(f"{name} differs from the manifest")
    return problems


def _leftovers(target: Path) -> list[tuple[Path, int]]:
    """Staging or set-aside folders of exports to ``target`` that died, with their pid."""
    prefix = STAGING.format(name=target.name)
    found = []
    for p in target.parent.glob(prefix + "*"):
        pid_text = p.name[len(prefix):].split("-", 1)[0]
        if p.is_dir() and pid_text.isdigit() and not process_alive(int(pid_text)):
            found.append((p, int(pid_text)))
    return found


def recover(target: Path) -> None:
    """Undo what a killed export left beside ``target``: an old export set aside
    goes back when the target is gone; staging folders are removed."""
    target = Path(target)
    for path, _ in sorted(_leftovers(target), key=lambda item: not item[0].name.endswith(OLD)):
        if path.name.endswith(OLD) and not target.exists():
            os.rename(path, target)
            log.warning("put back the previous export %s (an export was killed while replacing it)", target)
        else:
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed %s, left by a killed export", path)


def _listed(folder: Path) -> set[str]:
    """Names the folder's manifest lists (none without a readable manifest)."""
    try:
        return {str(f["name"]) for f in json.loads((folder / MANIFEST).read_text())["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def check_target(target: Path) -> None:
    """Refuse a target that is a file, or a folder with files an export does not write."""
    if target.exists() and not target.is_dir():
        raise UserError(f"export folder {shown(target)} exists and is not a folder; choose a folder path")
    if not target.is_dir():
        return
    allowed = EXPORT_FILES | _listed(target)
    foreign = [p for p in target.iterdir() if not (p.is_file() and p.name in allowed)]
    if foreign:
        raise UserError(f"export folder {shown(target)} holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} "
                        f"that are not an export's (e.g. {shown(foreign[0].name)}); an export replaces its folder "
                        "whole, so choose a new or empty folder")


def check_unedited(target: Path) -> None:
    """Refuse to replace an export that was edited since it was written (``force`` in :func:`staged_folder`
    skips this): a file changed, added or removed against its manifest, or export files without a manifest
    (an older export: whether it was edited cannot be told)."""
    if not target.is_dir() or not any(target.iterdir()):
        return
    if (target / MANIFEST).is_file():
        problems = verify_export(target)
        if problems:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            raise UserError(f"export folder {shown(target)} was edited since it was exported ({problems[0]}{more}); "
                            "replace it with --force (the app asks first), or choose another folder")
    else:
        raise UserError(f"export folder {shown(target)} has no {MANIFEST}, so whether it was edited cannot be "
                        "told; replace it with --force (the app asks first), or choose another folder")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot swap
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _put_in_place(staging: Path, target: Path) -> None:
    _fsync_dir(staging)
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the old export: the new one is in place
    else:
        aside = staging.with_name(staging.name + OLD)
        os.rename(target, aside)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(aside, target)  # the old export back where it was
            raise
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(target.parent)


@contextmanager
def staged_folder(target, force: bool = False):
    """Yield an empty staging folder; on success it replaces ``target`` whole.

    Raises
    ------
    UserError
        ``target`` is a file, or a folder holding files that are not an export's,
        or (unless ``force``) an export edited since it was written (:func:`check_unedited`).
    """
    target = Path(target).absolute()
    if target.is_symlink():  # replace the folder it points to, never the link itself
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    check_target(target)
    if not force:
        check_unedited(target)
    staging = Path(tempfile.mkdtemp(prefix=STAGING.format(name=target.name) + f"{os.getpid()}-",
                                    dir=target.parent))
    try:
        yield staging
        _put_in_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
