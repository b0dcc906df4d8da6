"""Errors a user can cause.

Anything raised as :class:`UserError` names the bad input and what would be
valid; the CLI prints its message on one line and exits with status 2, the app
shows it as a message. Everything else is a bug and keeps its traceback.
"""

import zipfile
import zlib
from contextlib import contextmanager


class UserError(ValueError):
    """A bad path, value, file or checkpoint given by the user."""


#: Characters of a user's input repeated in a message (a 5 MB key stays out of the terminal).
ECHO_LIMIT = 200


def shown(value, limit: int = ECHO_LIMIT) -> str:
    """``repr(str(value))`` cut to about ``limit`` characters, with how much was left out.

    For every piece of user input (a key, a class, a path, a column) a message
    repeats: the message stays one readable line whatever the input holds.
    """
    text = repr(str(value))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(value)):,} characters)"


def damaged(path, exc: BaseException, advice: str) -> UserError:
    """The one-line error of a run file that exists but cannot be read.

    Names the file, what went wrong (the exception's type and first line,
    cut short) and ``advice``: what the user can do about it.
    """
    if isinstance(exc, FileNotFoundError):
        return UserError(f"{str(path)!r} is missing; {advice}")
    reason = str(exc).splitlines()[0] if str(exc) else ""
    reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    if len(reason) > ECHO_LIMIT:
        reason = reason[:ECHO_LIMIT] + "..."
    return UserError(f"{str(path)!r} is damaged ({reason}); {advice}")


#: What reading a damaged file raises: numpy (truncated, garbage, bad CRC, a missing
#: field), json, and the file system.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error)


@contextmanager
def reading(path, advice: str):
    """Turn a failure to read ``path`` inside the block into :func:`damaged`'s one line.

    A :class:`UserError` raised inside (already one clear line) passes through.
    """
    try:
        yield
    except UserError:
        raise
    except READ_ERRORS as exc:
        raise damaged(path, exc, advice) from None


#: errno values that mean "no space left": the disk, or the user's quota.
_FULL = {28, 122}  # ENOSPC, EDQUOT
#: errno values that mean "not allowed to write here".
_READ_ONLY = {1, 13, 30}  # EPERM, EACCES, EROFS


def cannot_write(path, exc: BaseException) -> UserError | None:
    """The one-line error of a write that failed for lack of space or permission, else None.

    Distinct from :func:`damaged`: the file is not broken, the disk or folder
    refuses it, and what is already saved stays as it was.
    """
    import os
    from pathlib import Path

    errno = getattr(exc, "errno", None)
    if errno is None and isinstance(exc, RuntimeError) and "writ" in str(exc).lower():
        folder = Path(path).parent  # torch's zip writer says "file write failed" without an errno
        errno = 30 if not os.access(folder, os.W_OK) else 28
    if errno in _FULL:
        why = "the disk is full"
    elif errno in _READ_ONLY:
        why = "the folder is read-only (or not yours to write)"
    else:
        return None
    return UserError(f"cannot write {str(path)!r}: {why}; nothing already saved was changed; "
                     "free some space or make the folder writable, then try again")


@contextmanager
def writing(path):
    """Turn a full disk or a read-only folder inside the block into :func:`cannot_write`'s one line."""
    try:
        yield
    except UserError:
        raise
    except (OSError, RuntimeError) as exc:
        error = cannot_write(path, exc)
        if error is None:
            raise
        raise error from None
