"""Photos: folders streamed from disk (engine.data.stream), the features command, the frozen pretrained
teacher. Real images: a few CIFAR-10 files from ../shared/data/cifar10-small, copied (or upscaled into
'photos'); a resnet18 weights file saved from a seeded initialisation stands in for ImageNet's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from engine.data import load_dataset
from engine.data.stream import ImageFiles
from engine.rundir.store import RunStore
from engine.method.config import RunConfig, ScheduleConfig
from engine.steps.run import Run

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-small" / "train"


def _cifar_class(c: str) -> Path:
    """One class folder of ../shared's cifar10-small; the test is skipped on a machine without it."""
    if not CIFAR.is_dir():
        pytest.skip(f"{CIFAR} is absent (these tests use real CIFAR-10 images from ../shared)")
    return CIFAR / c
CLASSES = ("cat", "ship", "truck")
SCHEDULE = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=1, mutual_epochs=1)


def _folder(root: Path, per_class: int, side: int | None = None) -> Path:
    """``root/train/<class>/`` with ``per_class`` CIFAR images each, upscaled to ``side`` when given."""
    for c in CLASSES:
        out = root / "train" / c
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(_cifar_class(c).iterdir())[:per_class]:
            if side is None:
                shutil.copy(f, out / f.name)
            else:
                with Image.open(f) as img:
                    img.convert("RGB").resize((side, side), Image.Resampling.BICUBIC).save(out / (f.stem + ".png"))
    return root


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("small"), 16)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("photos"), 6, side=96)


@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    """TORCH_HOME holding a resnet18 'ImageNet' file made from a seeded initialisation."""
    home = tmp_path / "torch"
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(3)
    torch.save(torchvision.models.resnet18().state_dict(), folder / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _config(dataset: str, **changes) -> RunConfig:
    return replace(RunConfig(dataset=dataset, noise="symmetric:0.3", graph=RunConfig().graph.__class__(k=5)),
                   schedule=SCHEDULE, **changes)


def _snapshots(path: Path) -> dict:
    store = RunStore(path)
    out = {step: {k: np.asarray(v) for k, v in store.snapshot(step).items()} for step in store.steps()}
    assert out, f"no snapshots in {path}"
    return out


def _same(a: dict, b: dict) -> list[str]:
    """Names of snapshot arrays that differ (NaN equal to NaN)."""
    bad = [name for name in a if name not in b]
    for name in a:
        for key, value in a[name].items():
            other = b.get(name, {}).get(key)
            if other is None or not np.array_equal(value, other, equal_nan=value.dtype.kind == "f"):
                bad.append(f"{name}:{key}")
    return bad


# ---------------------------------------------------------------- the dataset
def test_photos_stream_at_224_and_small_images_stay_in_memory(small_folder, photo_folder):
    small = load_dataset(f"folder:{small_folder}")
    assert not small.streamed and small.input_shape == (3, 32, 32)
    photos = load_dataset(f"folder:{photo_folder}")
    assert photos.streamed and isinstance(photos.train_x, ImageFiles)
    assert photos.input_shape == (3, 224, 224) and photos.num_train + len(photos.test_x) == 18
    assert load_dataset(f"folder:{photo_folder}?stream=0").input_shape == (3, 32, 32)  # asked: in memory
    forced = load_dataset(f"folder:{small_folder}?stream=1")
    assert forced.streamed and forced.input_shape == (3, 224, 224)


def test_the_train_and_test_files_workers_share_one_cache_budget(photo_folder):
    from engine.data import stream
    from engine.data.folder import CACHE

    photos = load_dataset(f"folder:{photo_folder}")
    train, test = photos.train_x.cache_bytes, photos.test_x.cache_bytes
    assert train + test <= stream.CACHE_BYTES and train + test > stream.CACHE_BYTES - 2  # split, not each the whole
    assert train * len(photos.test_x) == pytest.approx(test * len(photos.train_x), rel=1e-6)  # by their sizes
    before = CACHE.max_bytes
    try:
        stream._worker_init(test, 0)  # what a worker of the test files runs first
        assert CACHE.max_bytes == test
    finally:
        CACHE.max_bytes = before


def test_streamed_samples_decode_to_the_in_memory_arrays_bit_for_bit(small_folder):
    memory = load_dataset(f"folder:{small_folder}")
    files = load_dataset(f"folder:{small_folder}?stream=1&size=32")
    assert files.keys() == memory.keys() and files.test_keys == memory.test_keys
    assert np.array_equal(files.train_x[5], memory.train_x[5])
    batches = [np.array([3, 0, 7]), np.array([1, 2])]
    decoded = list(files.train_x.batches(batches))  # a DataLoader worker decodes them
    assert [tuple(b.shape) for b in decoded] == [(3, 3, 32, 32), (2, 3, 32, 32)]
    assert np.array_equal(decoded[0].numpy(), memory.train_x[[3, 0, 7]])
    assert decoded[0].is_contiguous(memory_format=torch.channels_last)  # the layout CPU convolutions run faster
    subset = files.train_x[np.array([4, 2])]  # lazy: paths only
    assert isinstance(subset, ImageFiles) and np.array_equal(subset[1], memory.train_x[2])
    again = list(subset.batches([np.array([1]), np.array([0, 1])]))  # through the base's persistent workers
    assert np.array_equal(again[1].numpy(), memory.train_x[[4, 2]])
    assert len(files.train_x._loaders) == 1 and subset._loaders == {}  # one loader, kept across passes
    assert files.original_file(0) == os.path.join(str(small_folder), files.train_keys[0])


@pytest.mark.slow
def test_a_streamed_run_equals_the_in_memory_run_and_resumes_as_it_reran(small_folder, tmp_path):
    memory = Run.create(tmp_path / "memory", _config(f"folder:{small_folder}?stream=0&size=32"))
    memory.run_until(None)
    streamed = Run.create(tmp_path / "files", _config(f"folder:{small_folder}?stream=1&size=32"))
    assert streamed.dataset.streamed
    for _ in range(4):
        streamed.step()
    streamed.close()
    del streamed
    resumed = Run.open(tmp_path / "files")
    resumed.run_until(None)
    assert _same(_snapshots(tmp_path / "memory"), _snapshots(tmp_path / "files")) == []
    assert len(_snapshots(tmp_path / "files")) == 6


# ---------------------------------------------------------------- torchvision's sets
@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    """CIFAR-10's python batches holding real CIFAR images (cifar10-small's), 20 a batch, 2 classes."""
    import pickle

    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    images, labels = [], []
    for label, c in enumerate(("airplane", "automobile")):
        for f in sorted(_cifar_class(c).iterdir())[:60]:
            with Image.open(f) as img:
                images.append(np.asarray(img.convert("RGB"), np.uint8).transpose(2, 0, 1).reshape(-1))
            labels.append(label)
    order = np.random.default_rng(0).permutation(len(images))
    data, targets = np.stack(images)[order], np.array(labels)[order]
    for i in range(6):  # 5 training batches and a test batch of 20
        name = f"data_batch_{i + 1}" if i < 5 else "test_batch"
        part = slice(20 * i, 20 * (i + 1))
        (folder / name).write_bytes(pickle.dumps({"data": data[part], "labels": targets[part].tolist()}, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["airplane", "automobile"]}, protocol=2))
    return root


def test_a_torchvision_set_streams_its_uint8_images_when_asked_or_resized(cifar_root):
    from engine.data.stream import ImageArrays
    from engine.errors import UserError

    memory = load_dataset(f"cifar10:{cifar_root}")
    assert not memory.streamed and memory.train_x.dtype == np.float32  # small and at its size: as ever
    streamed = load_dataset(f"cifar10:{cifar_root}?stream=1")
    assert isinstance(streamed.train_x, ImageArrays) and streamed.input_shape == (3, 32, 32)
    assert streamed.keys() == memory.keys() and np.array_equal(streamed.train_true, memory.train_true)
    assert streamed.train_x.images.dtype == np.uint8 and streamed.train_x.images.nbytes == 100 * 3 * 32 * 32
    decoded = list(streamed.train_x.batches([np.array([7, 0, 99]), np.array([3, 4])]))  # in a worker
    assert np.array_equal(decoded[0].numpy(), memory.train_x[[7, 0, 99]])  # bit for bit
    assert np.array_equal(streamed.test_x[np.array([5, 2])][1], memory.test_x[2])
    big = load_dataset(f"cifar10:{cifar_root}?size=64")  # resized: streams by default
    assert big.streamed and big.input_shape == (3, 64, 64) and big.test_x.shape == (20, 3, 64, 64)
    pil = Image.fromarray((memory.train_x[9] * 255).round().astype(np.uint8).transpose(1, 2, 0))
    expected = np.asarray(pil.resize((64, 64), Image.Resampling.BILINEAR), np.float32).transpose(2, 0, 1) / 255
    assert np.array_equal(big.train_x[9], expected)
    with pytest.raises(UserError, match="size=64 needs the images streamed"):
        load_dataset(f"cifar10:{cifar_root}?size=64&stream=0")
    with pytest.raises(UserError, match="stream=.yes. is not valid"):
        load_dataset(f"cifar10:{cifar_root}?stream=yes")


@pytest.mark.slow
def test_a_streamed_torchvision_set_trains_as_it_does_in_memory(cifar_root, tmp_path):
    memory = Run.create(tmp_path / "memory", _config(f"cifar10:{cifar_root}"))
    memory.run_until(None)
    streamed = Run.create(tmp_path / "arrays", _config(f"cifar10:{cifar_root}?stream=1"))
    assert streamed.dataset.streamed
    streamed.run_until(None)
    assert _same(_snapshots(tmp_path / "memory"), _snapshots(tmp_path / "arrays")) == []
    assert len(_snapshots(tmp_path / "arrays")) == 6


# ---------------------------------------------------------------- features command
@pytest.mark.slow
def test_the_features_command_writes_what_teacher_features_reads(small_folder, torch_home, tmp_path):
    # the README's recipe as written, from the repository root as a fresh clone runs it (resnet18 for speed)
    recipe = next(line.strip() for line in (ROOT / "README.md").read_text().splitlines()
                  if "-m engine features" in line)
    out = tmp_path / "feats" / "resnet18.npz"
    command = recipe.replace("/data/pets/resnet50.npz", str(out)).replace("/data/pets", str(small_folder))
    command = command.replace("torchvision:resnet50", "torchvision:resnet18")
    assert command.startswith(".venv/bin/python -m engine features ")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TORCH_HOME=str(torch_home), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *command.split()[1:]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    dataset = load_dataset(f"folder:{small_folder}")
    with np.load(out) as z:
        features, keys = z["features"], z["keys"]
    assert features.shape == (dataset.num_train, 512) and tuple(keys) == dataset.keys()
    # the originals at 224x224 through the seeded network: the same numbers computed here
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth",
                                     weights_only=True))
    model.fc = torch.nn.Identity()
    with Image.open(Path(small_folder) / keys[2]) as img:
        x = torch.from_numpy(np.asarray(img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)))
    x = x.permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.eval()(x)[0].numpy()
    assert np.allclose(features[2], expected, atol=1e-4)
    from engine.data.features import load_teacher_features

    loaded, pred = load_teacher_features(out, list(dataset.keys()))
    assert np.array_equal(loaded, features) and pred is None
    missing = subprocess.run([sys.executable, "-m", "engine", "features", "--dataset", "digits", "--backbone",
                              "resnet50", "--out", str(tmp_path / "x.npz")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "resnet50-11ad3fa6.pth" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.npz").exists()


# ---------------------------------------------------------------- frozen teacher
@pytest.mark.slow
def test_a_frozen_teacher_trains_only_its_head_on_features_cached_in_the_run(small_folder, torch_home, tmp_path):
    config = _config(f"folder:{small_folder}", teacher="torchvision:resnet18", student="cifar-small-student")
    run = Run.create(tmp_path / "run", config)
    assert run.config.teacher_mode == "frozen"  # the default on a CPU, recorded in config.json
    assert '"teacher_mode": "frozen"' in (tmp_path / "run" / "config.json").read_text()
    backbone_before = {k: v.clone() for k, v in run.teacher.backbone.state_dict().items()}
    head_before = run.teacher.head.weight.detach().clone()
    result = run.step()
    assert result.metrics["teacher_source"] == "frozen backbone"
    cache = run.store.backbone_features()
    assert cache is not None and tuple(cache["train_keys"]) == run.dataset.keys()
    assert cache["train"].shape == (run.dataset.num_train, 512)
    with torch.no_grad():  # the cached features are the backbone's on the images (resized to 224 by the net)
        direct = run.teacher.embed(torch.as_tensor(run.dataset.train_x[:4])).numpy()
    assert np.allclose(cache["train"][:4], direct, atol=1e-4)
    run.step()
    after = run.teacher.backbone.state_dict()
    assert all(torch.equal(backbone_before[k], after[k]) for k in backbone_before)
    assert not torch.equal(head_before, run.teacher.head.weight)
    stamp = run.store.backbone_features_path.stat().st_mtime_ns
    calls = []
    run.teacher.backbone.register_forward_hook(lambda *_: calls.append(1))
    run.run_until(None)
    assert run.store.backbone_features_path.stat().st_mtime_ns == stamp  # computed once per run
    assert run.state.student_epoch > 0 and calls == []  # the student's KD reads the cached features too
    assert run.store.summary()["teacher"] == "torchvision:resnet18"


def test_frozen_mode_needs_pretrained_weights():
    from engine.errors import UserError

    with pytest.raises(UserError, match="teacher-mode frozen needs a pretrained torchvision teacher"):
        RunConfig(teacher="torchvision:resnet18", teacher_weights="none", teacher_mode="frozen")
    with pytest.raises(UserError, match="needs a torchvision teacher"):
        RunConfig(teacher="cifar-small-teacher", teacher_weights="imagenet")
    assert RunConfig(teacher="torchvision:resnet18").teacher_weights == "imagenet"  # never silently random


# ---------------------------------------------------------------- originals on screen
def test_cards_and_grids_show_the_original_file_not_the_training_tensor(tmp_path):
    from app.samples import original_pictures

    root = tmp_path / "big"
    for c, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
        (root / "train" / c).mkdir(parents=True)
        for i in range(4):
            pixels = np.zeros((300, 400, 3), np.uint8)
            pixels[:, :200] = colour  # left half coloured, right half black: the tensor at 32x32 blurs the edge
            Image.fromarray(pixels).save(root / "train" / c / f"{i}.png")
    dataset = load_dataset(f"folder:{root}?stream=0&size=32")  # trained at 32x32, in memory
    picture, = original_pictures(dataset, [1])
    assert picture.shape == (192, 256, 3)  # the file at display size, aspect kept (400x300 -> 256x192)
    assert tuple(picture[96, 10]) == tuple(Image.open(dataset.original_file(1)).getpixel((10, 10)))
    assert tuple(picture[96, 250]) == (0, 0, 0)
    small, = original_pictures(dataset, [0], 112)
    assert small.shape == (84, 112, 3)
    os.remove(dataset.original_file(2))  # a file gone since: its training input instead, scaled up
    fallback, = original_pictures(dataset, [2])
    assert fallback.shape == (256, 256, 3)
    assert original_pictures(load_dataset("digits"), [0]) is None  # no files: the caller draws the inputs


def test_the_setup_pages_folder_facts_see_photos_at_their_streamed_size(small_folder, photo_folder):
    from app.byod import default_models_for, folder_facts
    from engine.data import folder_summary

    photos = folder_summary(photo_folder)
    assert photos["streamed"] and photos["default_size"] == "224x224"
    facts = folder_facts(photos)
    assert facts.input_shape == (3, 224, 224)
    assert default_models_for(facts.kind, facts.input_shape) == ("torchvision:resnet18",
                                                                 "torchvision:mobilenet_v3_small")
    small = folder_summary(small_folder)
    assert not small["streamed"] and small["default_size"] == "32x32"


def test_the_stream_hands_free_heap_back_every_few_batches_it_yields(small_folder, monkeypatch):
    from engine.data import stream

    files = load_dataset(f"folder:{small_folder}?stream=1&size=32").train_x
    calls = []
    monkeypatch.setattr(stream, "release_free_heap", lambda: calls.append(len(seen)))
    monkeypatch.setattr(stream, "TRIM_EVERY", 2)
    seen = []
    for batch in files.batches([np.array([0, 1]), np.array([2]), np.array([3, 4, 5]), np.array([6]), np.array([7])]):
        seen.append(len(batch))
    assert seen == [2, 1, 3, 1, 1] and calls == [2, 4, 5]  # every 2nd batch once the caller is done, and at the end
    stream.release_free_heap()  # the real one (glibc malloc_trim; nothing elsewhere) runs and returns


def test_the_features_commands_single_pass_keeps_no_decoded_images(small_folder):
    from engine.data.folder import ImageCache
    from engine.models.features import input_files

    dataset = load_dataset(f"folder:{small_folder}")
    files = input_files(dataset, 64)
    assert len(files) == dataset.num_train and files.size == 64 and files.cache_bytes == 0
    cache = ImageCache(files.cache_bytes)  # what its workers' cache holds (their share of cache_bytes)
    cache.put(("image", "a.png"), np.zeros((64, 64, 3), np.uint8))
    assert cache.get(("image", "a.png")) is None and cache._bytes == 0


class _HeapProbe(ImageFiles):
    """Files whose decoding worker notes, after each batch, the free bytes its glibc heap holds (mallinfo2)."""

    log: Path

    def decode(self, index):
        import ctypes

        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

        batch = super().decode(index)
        mallinfo2 = ctypes.CDLL(None).mallinfo2
        mallinfo2.restype = Info
        with open(self.log, "a") as fh:
            fh.write(f"{mallinfo2().fordblks}\n")
        return batch


def test_a_decoding_workers_heap_keeps_its_cache_not_the_holes_of_freed_batches(tmp_path):
    import ctypes

    try:
        ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        pytest.skip("glibc 2.33's mallinfo2 is absent (the mmap threshold is glibc's)")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(240):
        paths.append(str(tmp_path / f"{i:03d}.png"))
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    files = _HeapProbe(paths, 112, "RGB", workers=1, cache_bytes=64 << 20)
    files.log = tmp_path / "free.txt"
    decoded = sum(len(b) for b in files.in_order(24))  # 10 batches; every image stays in the cache (9 MB)
    free = [int(line) for line in files.log.read_text().split()]
    assert decoded == 240 and len(free) == 10
    # Left to glibc's rising threshold, each batch's freed buffers (0.9 + 3.6 MB) stay behind as holes below the
    # images cached after them: the free heap went 1.6 -> 20.6 MB over the 10 batches (+2.7 MB a batch, so with N).
    # What the worker inherited free from this process at its start (whatever ran before) may only shrink.
    assert free[-1] - free[0] < 1 << 20, free


def test_float16_features_are_written_in_chunks_as_np_save_writes_them():
    import io

    from engine.rundir.store import save_as

    features = np.random.default_rng(0).standard_normal((1001, 7)).astype(np.float32) * 300
    for rows in (1, 64, 5000):
        ours, theirs = io.BytesIO(), io.BytesIO()
        save_as(ours, features, np.float16, rows=rows)
        np.save(theirs, features.astype(np.float16))
        assert ours.getvalue() == theirs.getvalue()
    ours.seek(0)
    assert np.array_equal(np.load(ours), features.astype(np.float16))


def test_exact_knn_without_an_index_finds_what_the_flat_index_found_bit_for_bit():
    import faiss

    from engine.method.graph import search_knn

    x = np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32)
    x[7] = x[3]  # a duplicate: ties resolved as the flat index resolves them
    idx, sim, report = search_knn(x, 5, "exact", use_gpu=False)
    normed = x.copy()
    faiss.normalize_L2(normed)
    flat = faiss.IndexFlatIP(16)
    flat.add(normed)
    ref_sim, ref_idx = flat.search(normed, 6)
    from engine.method.search import drop_self

    ref_idx, ref_sim = drop_self(ref_idx, ref_sim)
    assert report.method == "exact" and np.array_equal(idx, ref_idx) and np.array_equal(sim, ref_sim)
    assert 3 in idx[7] and 7 in idx[3]
