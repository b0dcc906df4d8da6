"""Accounts of a shared app: a local users file with hashed passwords and roles.

The file is named by ``$AMLKD_USERS``; the app uses accounts whenever it
exists (:func:`users_path`). It is JSON, written atomically and readable by
its owner only (mode 0600)::

    {"format": 1, "users": {"alice": {"role": "reviewer", "hash": "$argon2id$..."}}}

Passwords are hashed with Argon2id (``argon2-cffi``, the algorithm OWASP's
password storage cheat sheet recommends first); only the hash is stored, and
a hash made with weaker parameters than the library's current defaults is
replaced at the next sign-in (:func:`verify_password`).

Roles, least to most (:data:`PERMISSIONS`):

- ``viewer``: look at every page;
- ``reviewer``: also record review decisions, import and export them;
- ``admin``: also create, rename, reset and delete runs, and start trainings.

``python -m engine users add NAME --role ROLE`` (password on standard input)
writes the file.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from pathlib import Path

from ..errors import UserError, shown
from .store import atomic_write_text

USERS_ENV = "AMLKD_USERS"
FORMAT = 1
ROLES = ("viewer", "reviewer", "admin")
#: What each role may do; every action the app offers names one of these.
PERMISSIONS = {
    "viewer": frozenset({"look"}),
    "reviewer": frozenset({"look", "review", "export"}),
    "admin": frozenset({"look", "review", "export", "manage", "train"}),
}
ACTIONS = frozenset().union(*PERMISSIONS.values())
MAX_NAME = 64
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def users_path() -> Path | None:
    """The users file named by ``$AMLKD_USERS`` (``None`` when the variable is unset or empty)."""
    raw = os.environ.get(USERS_ENV, "").strip()
    return Path(raw).expanduser() if raw else None


def accounts_enabled() -> bool:
    """Whether the app uses accounts: the users file exists."""
    path = users_path()
    return path is not None and path.is_file()


def allowed(role: str | None, action: str) -> bool:
    """Whether ``role`` may do ``action`` (one of :data:`ACTIONS`); no role may do nothing."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid: {', '.join(sorted(ACTIONS))}")
    return role in PERMISSIONS and action in PERMISSIONS[role]


def check_name(name) -> str:
    name = str(name or "").strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise UserError(f"user name {shown(name[:MAX_NAME])} is not 1-{MAX_NAME} printable characters")
    return name


def check_role(role) -> str:
    if role not in ROLES:
        raise UserError(f"role {shown(role)} is not one of {', '.join(ROLES)}")
    return role


def _hasher():
    from argon2 import PasswordHasher  # imported when a password is used: reading a run never needs it

    return PasswordHasher()


def read_users(path: Path | None = None) -> dict[str, dict]:
    """name -> ``{"role", "hash"}`` of the users file (empty when it does not exist)."""
    path = users_path() if path is None else Path(path)
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        users = data["users"]
        if data.get("format") != FORMAT or not isinstance(users, dict):
            raise ValueError("not format 1")
        for name, entry in users.items():
            check_role(entry["role"])
            if not str(entry["hash"]).startswith("$argon2"):
                raise ValueError(f"the entry of {name!r} holds no Argon2 hash")
    except (OSError, ValueError, KeyError, TypeError, UserError) as exc:
        raise UserError(f"users file {shown(path)} cannot be read ({exc}); write it again with "
                        "`python -m engine users add NAME --role ROLE`") from None
    return users


def _write(path: Path, users: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"format": FORMAT, "users": users}, indent=1, sort_keys=True) + "\n")
    os.chmod(path, 0o600)


def add_user(name: str, role: str, password: str, path: Path | None = None) -> bool:
    """Add ``name`` with ``role`` and ``password`` (hashed), or change an existing user's role and password.

    Returns ``True`` when the user is new.
    """
    path = users_path() if path is None else Path(path)
    if path is None:
        raise UserError(f"set {USERS_ENV} to the users file (e.g. {USERS_ENV}=/data/users.json)")
    name, role = check_name(name), check_role(role)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters; got {len(password)}")
    users = read_users(path)
    new = name not in users
    users[name] = {"role": role, "hash": _hasher().hash(password)}
    _write(path, users)
    return new


def remove_user(name: str, path: Path | None = None) -> None:
    path = users_path() if path is None else Path(path)
    users = read_users(path)
    if name not in users:
        raise UserError(f"no user {shown(name)} in {shown(path)}")
    del users[name]
    _write(path, users)


def verify_password(name: str, password: str, path: Path | None = None) -> str | None:
    """The user's role when ``password`` is theirs, else ``None`` (an unknown name costs one hash too)."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    path = users_path() if path is None else Path(path)
    users = read_users(path)
    entry = users.get(str(name or "").strip())
    hasher = _hasher()
    if entry is None:
        try:  # the same work as for a known name: the answer time does not tell which names exist
            hasher.verify(_dummy_hash(), password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            pass
        return None
    try:
        hasher.verify(entry["hash"], password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if hasher.check_needs_rehash(entry["hash"]):
        users[str(name).strip()]["hash"] = hasher.hash(password)
        _write(path, users)
    return entry["role"]


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, checked for unknown names."""
    return _hasher().hash(secrets.token_hex(16))
