"""Image folders (engine/data/folder.py) and safe zip extraction (archive.py),
on tiny folders of generated images written with PIL."""

from __future__ import annotations

import io
import logging
import os
import stat
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from engine.data import load_dataset
from engine.data.archive import extract_zip, find_dataset_root
from engine.data.folder import CACHE, ImageCache, folder_summary, scan_folder, stratified_holdout
from engine.errors import UserError

COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 220)}


def make_image_folder(root: Path, per_class: int = 10, test_per_class: int = 0, size=(16, 16),
                      mode: str = "RGB", suffix: str = ".png", classes=("cat", "dog", "fox"), seed: int = 0) -> Path:
    """Write ``root/train/<class>/<i>.png`` (and test/) images: one colour per
    class plus pixel noise, so a network can learn them. Returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for name in classes:
            folder = root / split / name
            for i in range(count):
                folder.mkdir(parents=True, exist_ok=True)
                colour = np.array(COLOURS.get(name, (128, 128, 128)), dtype=float)
                pixels = np.clip(colour + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(pixels, "RGB")
                (img.convert("L") if mode == "L" else img).save(folder / f"{i:03d}{suffix}")
    return root


@pytest.fixture()
def pets(tmp_path) -> Path:
    return make_image_folder(tmp_path / "pets", per_class=10, test_per_class=3)


# ---------------------------------------------------------------- loading
def test_folder_with_test_split_loads_keys_labels_and_shapes(pets):
    ds = load_dataset(f"folder:{pets}")
    assert ds.kind == "image" and ds.class_names == ("cat", "dog", "fox")
    assert ds.train_x.shape == (30, 3, 16, 16) and ds.test_x.shape == (9, 3, 16, 16)
    assert ds.train_x.dtype == np.float32 and 0.0 <= ds.train_x.min() and ds.train_x.max() <= 1.0
    assert ds.keys()[:2] == ("train/cat/000.png", "train/cat/001.png")
    assert ds.keys()[-1] == "train/fox/009.png"
    assert np.bincount(ds.train_true).tolist() == [10, 10, 10]
    assert np.bincount(ds.test_true).tolist() == [3, 3, 3]
    assert ds.augment == "none" and ds.skipped == ()
    # the red channel of a cat is high, of a fox low
    assert ds.train_x[ds.train_true == 0, 0].mean() > 0.7 > 0.3 > ds.train_x[ds.train_true == 2, 0].mean()


def test_folder_summary_describes_a_folder_for_the_setup_page(pets):
    (pets / "train" / "cat" / "notes.txt").write_text("x")
    summary = folder_summary(pets)
    assert summary["classes"] == ["cat", "dog", "fox"]
    assert summary["train_counts"] == {"cat": 10, "dog": 10, "fox": 10}
    assert summary["test_counts"] == {"cat": 3, "dog": 3, "fox": 3} and summary["test"] == "folder"
    assert summary["sizes"] == {"16x16": 39} and summary["default_size"] == "16x16"
    assert summary["default_mode"] == "RGB" and summary["skipped"][0].startswith("train/cat/notes.txt: ")


def test_without_test_folder_a_stratified_seeded_fifth_is_held_out(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=10)
    a, b = load_dataset(f"folder:{root}"), load_dataset(f"folder:{root}")
    assert np.bincount(a.test_true).tolist() == [2, 2, 2] and a.num_train == 24
    assert a.keys() == b.keys() and np.array_equal(a.test_x, b.test_x)
    held_out = load_dataset(f"folder:{root}?test=0.5")
    assert np.bincount(held_out.test_true).tolist() == [5, 5, 5]


def test_stratified_holdout_never_takes_the_last_sample_of_a_class():
    labels = np.array([0] * 10 + [1] * 1 + [2] * 3)
    mask = stratified_holdout(labels, 0.2)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [2, 0, 1]


def test_a_folder_of_class_folders_without_train_is_the_training_set(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=5)
    flat = root / "train"
    ds = load_dataset(f"folder:{flat}")
    assert ds.keys()[0].startswith("cat/") and ds.num_train + len(ds.test_x) == 15


def test_non_images_and_corrupt_files_are_skipped_listed_and_logged(pets, caplog):
    (pets / "train" / "cat" / "notes.txt").write_text("not an image")
    (pets / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    good = (pets / "train" / "fox" / "000.png").read_bytes()
    (pets / "train" / "fox" / "truncated.png").write_bytes(good[: len(good) // 2])
    (pets / "train" / "stray.png").write_bytes(good)
    with caplog.at_level(logging.WARNING, logger="engine.data.folder"):
        ds = load_dataset(f"folder:{pets}")
    reasons = dict(item.split(": ", 1) for item in ds.skipped)
    assert set(reasons) == {"train/cat/notes.txt", "train/dog/broken.jpg", "train/fox/truncated.png",
                            "train/stray.png"}
    assert reasons["train/cat/notes.txt"].startswith("not an image file")
    assert reasons["train/stray.png"] == "not inside a class folder"
    assert ds.num_train == 30
    assert "skipped 4 file(s)" in caplog.text


def test_mixed_sizes_and_modes_become_32px_in_the_majority_mode(tmp_path):
    root = tmp_path / "mixed"
    make_image_folder(root, per_class=4, size=(20, 20), mode="L", classes=("a", "b"))
    make_image_folder(root, per_class=2, size=(40, 30), mode="RGB", classes=("a", "b"), seed=1)
    (root / "train" / "a" / "000.png").unlink()
    scan = scan_folder(root)  # a: 001 colour, 002-003 gray; b: 000-001 colour, 002-003 gray
    assert scan.modes == {"L": 4, "RGB": 3} and scan.sizes == {(20, 20): 4, (40, 30): 3}
    assert scan.default_mode() == "L" and scan.default_size() == (32, 32)
    ds = load_dataset(f"folder:{root}?test=0")
    assert ds.input_shape == (1, 32, 32)  # more grayscale files than colour ones
    assert ds.augment == "crop_flip"
    small = load_dataset(f"folder:{root}?size=8&mode=RGB&test=0&augment=none")
    assert small.input_shape == (3, 8, 8) and small.augment == "none"


def test_a_common_small_size_is_kept(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=3, size=(8, 12))
    assert load_dataset(f"folder:{root}").input_shape == (3, 12, 8)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".webp"])
def test_jpeg_bmp_and_webp_load(tmp_path, suffix):
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    root = make_image_folder(tmp_path / "d", per_class=3, suffix=suffix)
    ds = load_dataset(f"folder:{root}")
    assert ds.keys()[0].endswith(suffix) and ds.skipped == ()


def test_sixteen_bit_grayscale_is_rescaled_and_alpha_composited_on_white(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=2, classes=("a", "b"))
    deep = np.full((16, 16), 30000, dtype=np.uint16)
    deep[0, 0] = 60000
    Image.fromarray(deep).save(root / "train" / "a" / "deep.png")
    clear = np.zeros((16, 16, 4), dtype=np.uint8)  # fully transparent
    Image.fromarray(clear, "RGBA").save(root / "train" / "b" / "clear.png")
    ds = load_dataset(f"folder:{root}?test=0&mode=RGB")
    deep_image = ds.train_x[ds.keys().index("train/a/deep.png")]
    assert deep_image.max() == pytest.approx(1.0) and deep_image[0, 1, 1] == pytest.approx(0.5, abs=0.01)
    assert ds.train_x[ds.keys().index("train/b/clear.png")].min() == pytest.approx(1.0)


def test_second_load_decodes_nothing_and_an_edited_file_is_decoded_again(pets):
    load_dataset(f"folder:{pets}")
    misses = CACHE.misses
    load_dataset(f"folder:{pets}")
    assert CACHE.misses == misses
    target = pets / "train" / "cat" / "000.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(target)
    os.utime(target, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    ds = load_dataset(f"folder:{pets}")
    assert CACHE.misses == misses + 2  # its header and its pixels
    assert ds.train_x[0].max() == 0.0


def test_image_cache_evicts_least_recently_used_past_its_byte_budget():
    cache = ImageCache(max_bytes=250)
    for key in "abc":
        cache.put(key, np.zeros(100, np.uint8))
    assert cache.get("a") is None and cache.get("c") is not None


# ---------------------------------------------------------------- bad input
def _error(spec: str) -> str:
    with pytest.raises(UserError) as info:
        load_dataset(spec)
    return str(info.value)


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    message = _error(f"folder:{tmp_path / 'nope'}")
    assert "does not exist" in message and "nope" in message and "train/<class>" in message
    archive = tmp_path / "pets.zip"
    archive.write_bytes(b"PK")
    assert "extract the .zip first" in _error(f"folder:{archive}")


def test_empty_folder_single_class_and_class_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "is empty" in _error(f"folder:{tmp_path / 'empty'}")
    one = make_image_folder(tmp_path / "one", per_class=3, classes=("cat",))
    message = _error(f"folder:{one}")
    assert "only one class folder ('cat')" in message and "at least 2" in message
    hollow = make_image_folder(tmp_path / "hollow", per_class=3)
    for f in (hollow / "train" / "dog").iterdir():
        f.unlink()
    (hollow / "train" / "dog" / "readme.txt").write_text("x")
    message = _error(f"folder:{hollow}")
    assert "'train/dog'" in message and "no readable images" in message


def test_only_corrupt_images_in_a_class_is_an_error_after_decoding(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=3)
    good = (root / "train" / "dog" / "000.png").read_bytes()
    for f in (root / "train" / "dog").iterdir():
        f.write_bytes(good[:60])  # a valid header, truncated pixels
    message = _error(f"folder:{root}")
    assert "'dog'" in message and "no readable images" in message


def test_loose_images_test_classes_and_options_are_checked(tmp_path):
    loose = tmp_path / "loose" / "train"
    loose.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(loose / "a.png")
    assert "one folder per class" in _error(f"folder:{tmp_path / 'loose'}")
    root = make_image_folder(tmp_path / "d", per_class=3, test_per_class=1)
    make_image_folder(root, per_class=0, test_per_class=1, classes=("wolf",))
    message = _error(f"folder:{root}")
    assert "'wolf'" in message and "not training classes" in message
    good = make_image_folder(tmp_path / "g", per_class=3)
    assert "valid: size, mode, augment, test" in _error(f"folder:{good}?colour=1")
    assert "size=2" in _error(f"folder:{good}?size=2")
    assert "valid: L (grayscale), RGB" in _error(f"folder:{good}?mode=cmyk")


# ---------------------------------------------------------------- zip uploads
def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(out, "PNG")
    return out.getvalue()


def test_zip_upload_is_extracted_and_its_dataset_folder_found(tmp_path):
    png = _png()
    data = _zip({"pets/train/cat/1.png": png, "pets/train/dog/1.png": png, "__MACOSX/._x": b"junk",
                 "pets/.DS_Store": b"junk"})
    root = extract_zip(io.BytesIO(data), tmp_path / "upload")
    assert root == tmp_path / "upload" / "pets"
    assert sorted(p.name for p in (root / "train").iterdir()) == ["cat", "dog"]
    assert not (tmp_path / "upload" / "__MACOSX").exists() and not (root / ".DS_Store").exists()
    assert scan_folder(root).class_names == ("cat", "dog")


def test_find_dataset_root_unwraps_a_lone_folder_of_class_folders(tmp_path):
    (tmp_path / "wrap" / "inner" / "cat").mkdir(parents=True)
    (tmp_path / "wrap" / "inner" / "dog").mkdir()
    assert find_dataset_root(tmp_path / "wrap") == tmp_path / "wrap" / "inner"


@pytest.mark.parametrize("entries,symlink,fragment", [
    ({"../evil.png": b"x"}, None, "outside the archive"),
    ({"ok/../../evil.png": b"x"}, None, "outside the archive"),
    ({"/etc/evil.png": b"x"}, None, "absolute path"),
    ({"C:/evil.png": b"x"}, None, "absolute path"),
    ({"a/1.png": b"x"}, "a/link", "symbolic link"),
])
def test_unsafe_zip_entries_are_refused_and_nothing_is_left(tmp_path, entries, symlink, fragment):
    with pytest.raises(UserError, match=fragment):
        extract_zip(io.BytesIO(_zip(entries, symlink)), tmp_path / "upload")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "evil.png").exists()


def test_zip_size_and_count_limits_and_non_zip(tmp_path):
    big = _zip({"a/1.bin": b"\0" * 5000})
    with pytest.raises(UserError, match="at most"):
        extract_zip(io.BytesIO(big), tmp_path / "u1", max_bytes=4000)
    with pytest.raises(UserError, match="entries"):
        extract_zip(io.BytesIO(_zip({f"a/{i}": b"" for i in range(5)})), tmp_path / "u2", max_files=4)
    with pytest.raises(UserError, match="not a readable zip"):
        extract_zip(io.BytesIO(b"plain text"), tmp_path / "u3")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="already holds files"):
        extract_zip(io.BytesIO(big), tmp_path / "full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_zip_whose_header_understates_the_size_is_stopped_while_streaming(tmp_path):
    data = bytearray(_zip({"a/1.bin": b"\0" * 4000}))
    # the local and central headers both say 4000 bytes; lower the central one to 10
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    with pytest.raises(UserError, match="is corrupt|more than its header says"):
        extract_zip(io.BytesIO(bytes(data)), tmp_path / "upload", max_bytes=100)
    assert not (tmp_path / "upload").exists()
