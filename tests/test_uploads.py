"""Upload quotas: a per-upload and a total budget for unpacked uploads, the list with sizes, admin delete,
and a full disk in one line."""

from __future__ import annotations

import errno
import shutil

import pytest

from app.byod import delete_upload, list_uploads, unpack_upload, uploads_dir
from engine.errors import UserError
from test_app_byod import make_folder, zip_bytes, zip_folder


@pytest.fixture
def pets(tmp_path):
    return make_folder(tmp_path / "pets-src", per_class=12, size=8)


def test_a_small_zip_that_unpacks_past_the_per_upload_budget_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLKD_UPLOAD_MAX_MB", "1")
    bomb = zip_bytes({"d/train/cat/big.png": b"\0" * (3 << 20), "d/train/dog/a.png": b"x"})
    assert len(bomb) < 20_000  # a few KiB that would unpack to 3 MiB
    with pytest.raises(UserError, match="'bomb.zip' was refused and nothing was unpacked: zip would unpack to 3 MiB; "
                                        "at most 1 MiB"):
        unpack_upload("bomb.zip", bomb, tmp_path)
    assert not uploads_dir(tmp_path).exists()


def test_the_total_budget_counts_every_upload_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLKD_UPLOAD_MAX_MB", "3")
    monkeypatch.setenv("AMLKD_UPLOADS_TOTAL_MB", "5")
    first = zip_bytes({"a/train/cat/x.bin": b"\1" * (2 << 20), "a/train/dog/y.bin": b"\2" * (1 << 20)})
    unpack_upload("first.zip", first, tmp_path)
    second = zip_bytes({"b/train/cat/x.bin": b"\3" * (int(2.5 * 2**20)), "b/train/dog/y.bin": b"\4"})
    with pytest.raises(UserError, match=r"the uploads hold 3 MiB of their 5 MiB budget: 2 MiB are left; an admin "
                                        r"can delete old uploads"):
        unpack_upload("second.zip", second, tmp_path)
    listed = list_uploads(tmp_path)
    assert [(e["name"].split("-")[0], e["bytes"], e["files"]) for e in listed] == [("first", 3 << 20, 2)]
    delete_upload(tmp_path, listed[0]["name"])
    assert list_uploads(tmp_path) == []
    unpack_upload("second.zip", second, tmp_path)  # room again: the same zip is accepted now
    assert [e["name"].split("-")[0] for e in list_uploads(tmp_path)] == ["second"]


def test_an_upload_a_run_uses_is_not_deleted(tmp_path, pets):
    from engine.method.config import RunConfig
    from engine.steps.run import Run

    root = unpack_upload("pets.zip", zip_folder(pets, "pets"), tmp_path)
    Run.create(tmp_path / "pets-run", RunConfig(dataset=f"folder:{root}?size=8", noise="symmetric:0.2"))  # not trained
    [entry] = list_uploads(tmp_path)
    assert entry["used_by"] == ["pets-run"] and entry["bytes"] > 0 and entry["files"] == 36
    with pytest.raises(UserError, match="is the data of run.s. pets-run; delete those runs first"):
        delete_upload(tmp_path, entry["name"])
    assert root.is_dir()
    shutil.rmtree(tmp_path / "pets-run")
    delete_upload(tmp_path, entry["name"])
    assert not root.exists()
    with pytest.raises(UserError, match="no upload named"):
        delete_upload(tmp_path, entry["name"])


def test_a_full_disk_is_one_line_and_keeps_nothing(tmp_path, monkeypatch, pets):
    from engine.data import archive

    def full(source, destination, limit, name):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive, "_copy_limited", full)
    with pytest.raises(UserError) as raised:
        unpack_upload("pets.zip", zip_folder(pets, "pets"), tmp_path)
    message = str(raised.value)
    assert "the disk is full" in message and "nothing of the upload was kept" in message and "\n" not in message
    assert list_uploads(tmp_path) == [] and not any(p.name.startswith(".unzip-") for p in tmp_path.rglob("*"))
