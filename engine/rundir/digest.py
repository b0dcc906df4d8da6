"""Digests of a run's samples, computed once when its ``dataset.npz`` is written, so that a reader asks
"are these the same samples?" without reading a million keys.

Three SHA-256 digests (hex), each over the arrays in row order:

- :func:`samples_digest`: the keys and the given labels together. The review
  log (:mod:`engine.rundir.review`) stores it and refuses a log written for
  other samples; logs made before this module carry the same digest (the
  formula is unchanged).
- :func:`keys_digest`: the keys alone (Compare: the same training samples).
- :func:`given_digest`: the given labels alone (Compare: the same noisy
  labels, where runs of several seeds are checked against their own seed's).

:meth:`engine.rundir.store.RunStore.write_dataset` stores them in
``dataset.npz`` beside the arrays (:func:`append_digests`: one 0-d text array
each, named as :data:`DIGESTS` lists, and :data:`RECORD`, the CRC-32 that the
zip's directory holds for the ``keys`` and ``given`` members they were computed
from). A reader takes a digest only while those CRCs still match
(:func:`stored_digest`): a ``dataset.npz`` rewritten by other means with its old
digests copied along (``np.savez(**arrays)``) and other keys or given labels
has other CRCs, and its digests are ignored. Runs made before digests hold
none: readers then compute what they need from the arrays (the old cost).

Cost: ``O(N)`` in Python string formatting, about a second per million keys,
paid once per run (and per read of a run made before the digests).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

#: dataset.npz members that hold the digests.
DIGESTS = ("samples_digest", "keys_digest", "given_digest")
#: The dataset.npz member that records which arrays the digests describe: {"keys": CRC-32, "given": CRC-32}.
RECORD = "digests_of"
_DESCRIBED = ("keys", "given")
#: Rows joined into one string at a time (bounded memory for a million keys).
_CHUNK = 65_536


def _keys(keys) -> list[str]:
    return [str(k) for k in np.asarray(keys).ravel()]


def samples_digest(keys, given_labels) -> str:
    """SHA-256 (hex) of a run's samples: their keys and given labels, in order.

    Parameters
    ----------
    keys : array-like of str, shape (N,)
        The sample keys (``dataset.npz``'s ``keys``).
    given_labels : array-like of int, shape (N,)
        Their given labels (``dataset.npz``'s ``given``).

    Two runs get the same digest exactly when they list the same samples with
    the same given labels in the same order, so a review log written for one
    applies to the other.
    """
    keys = _keys(keys)
    given_labels = np.asarray(given_labels, dtype=np.int64).ravel()
    if len(keys) != len(given_labels):
        raise ValueError(f"keys ({len(keys)}) and given_labels ({len(given_labels)}) differ in length")
    digest = hashlib.sha256(f"amlkd-samples v1 n={len(keys)}\n".encode())
    labels = given_labels.tolist()
    for start in range(0, len(keys), _CHUNK):  # the same bytes as one update per sample, in fewer calls
        digest.update("".join(f"{key}\t{label}\n" for key, label in
                              zip(keys[start:start + _CHUNK], labels[start:start + _CHUNK])).encode())
    return digest.hexdigest()


def keys_digest(keys) -> str:
    """SHA-256 (hex) of the sample keys in order (each prefixed by its length: no two lists share one)."""
    keys = _keys(keys)
    digest = hashlib.sha256(f"amlkd-keys v1 n={len(keys)}\n".encode())
    for start in range(0, len(keys), _CHUNK):
        digest.update("".join(f"{len(key)}:{key}\n" for key in keys[start:start + _CHUNK]).encode())
    return digest.hexdigest()


def given_digest(given_labels) -> str:
    """SHA-256 (hex) of the given labels in order (as little-endian int64)."""
    labels = np.ascontiguousarray(np.asarray(given_labels).ravel(), dtype="<i8")
    return hashlib.sha256(f"amlkd-given v1 n={len(labels)}\n".encode() + labels.tobytes()).hexdigest()


def dataset_digests(keys, given_labels) -> dict[str, str]:
    """The :data:`DIGESTS` of a run's samples."""
    return {"samples_digest": samples_digest(keys, given_labels), "keys_digest": keys_digest(keys),
            "given_digest": given_digest(given_labels)}


def _crcs(archive: zipfile.ZipFile) -> dict[str, int] | None:
    try:
        return {name: archive.getinfo(f"{name}.npy").CRC for name in _DESCRIBED}
    except KeyError:
        return None


def append_digests(path: str | Path, keys, given_labels) -> None:
    """Add the :data:`DIGESTS` of ``keys`` and ``given_labels`` to the ``.npz`` at ``path`` (just written with
    those arrays as its ``keys`` and ``given`` members), with the :data:`RECORD` of those members' CRC-32."""
    digests = dataset_digests(keys, given_labels)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
        crcs = _crcs(archive)
        if crcs is None:
            raise ValueError(f"{path} holds no keys and given arrays to describe")
        for name, text in {**digests, RECORD: json.dumps(crcs, sort_keys=True)}.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.array(text), allow_pickle=False)


def stored_digest(path: str | Path, arrays: dict, name: str) -> str | None:
    """Digest ``name`` as the ``.npz`` at ``path`` stores it (``arrays``: its arrays, as read), or None: none
    stored (a run made before digests), or its keys or given labels are not those it was computed from."""
    if name not in DIGESTS:
        raise ValueError(f"unknown digest {name!r}; valid: {', '.join(DIGESTS)}")
    if name not in arrays or RECORD not in arrays:
        return None
    with zipfile.ZipFile(path) as archive:  # the directory only: a few kB
        current = _crcs(archive)
    return str(arrays[name]) if current is not None and json.loads(str(arrays[RECORD])) == current else None
