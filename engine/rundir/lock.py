"""One trainer per run: an exclusive OS file lock on the run directory.

Whoever trains a run (the CLI's ``run``/``resume``, the app's worker) holds
``flock(LOCK_EX)`` on the run's lock file (its name is
:attr:`engine.rundir.store.RunStore.lock_path`) for as long as it trains. The
kernel drops the lock when its process ends, however it ends, so a lock left
by a dead process never blocks. The file also says who holds it (pid, host,
since), for the one-line refusal a second trainer gets.

Within one process the lock is re-entrant (counted per run directory): the
app's worker and the tests open the same run more than once in a process; two
processes never train one run at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from pathlib import Path

from ..errors import UserError, writing

_HELD: dict[str, tuple[int, int]] = {}  # resolved lock path -> (fd, holders in this process)
_GUARD = threading.Lock()


def holder(lock_path: Path) -> dict:
    """Who wrote the lock file last (pid, host, since); {} if unknown."""
    try:
        value = json.loads(Path(lock_path).read_text() or "{}")
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def describe(info: dict) -> str:
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"process {info.get('pid')} on {info.get('host')} (since {since})"


def acquire(lock_path: Path, run_path: Path) -> None:
    """Hold the run's lock (re-entrant in this process); :class:`UserError` naming the holder if taken."""
    key = str(Path(lock_path).resolve())
    with _GUARD:
        if key in _HELD:
            fd, count = _HELD[key]
            _HELD[key] = (fd, count + 1)
            return
        with writing(lock_path):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"run {str(run_path)!r} is being trained by {describe(holder(lock_path))}; "
                            "wait for it to stop, or stop it, then try again") from None
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only its holder is unnamed
            pass
        _HELD[key] = (fd, 1)


def release(lock_path: Path) -> None:
    """Give up one hold; the lock goes when the last holder in this process releases it."""
    key = str(Path(lock_path).resolve())
    with _GUARD:
        if key not in _HELD:
            return
        fd, count = _HELD[key]
        if count > 1:
            _HELD[key] = (fd, count - 1)
            return
        del _HELD[key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def held_elsewhere(lock_path: Path) -> dict | None:
    """The holder's facts if another process holds the lock now, else None (a probe; takes nothing)."""
    key = str(Path(lock_path).resolve())
    if key in _HELD or not Path(lock_path).exists():
        return None
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return holder(lock_path)
    finally:
        os.close(fd)
