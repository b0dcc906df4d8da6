"""Photos that stay files: memory and throughput of the streaming path.

Its own data: the cifar10-small training images upscaled to ``--side`` pixels
(default 160) and repeated with flips (none, horizontal, vertical, both) up to
each size asked (default 2,000, 10,000 and 40,000 JPEG files). A resnet18
weights file saved from a seeded initialisation stands in for ImageNet's
(which cannot be fetched here), in a TORCH_HOME of its own.

    python bench/photos.py                              # the issue's sizes (hours on a 2-core CPU)
    python bench/photos.py --sizes 500,2000 --batches 4 # a quick look
    python bench/photos.py --sizes 10000,40000 --skip-speed --teacher mobilenet_v3_small --stream-size 112

Measures, one table:

- peak RSS of a frozen-teacher AML-KD run (resnet18 -> mobilenet_v3_small,
  the photo default) through its teacher phase (features of every image
  from the files, the head's epoch) and stage 0 (the kNN graph and the
  propagation over all N), per size: the growth
  from one size to the next should be the per-sample arrays only (goal: about
  +300 MB from 10k to 40k), not the images;
- the training loop's images per second (engine.method.training.train_epoch on
  the streamed files) against a bare DataLoader + the same model + SGD loop on
  the same files, workers, threads and batch (goal: within 1.25x), both as a
  tutorial writes it (NCHW batches) and fed the NHWC layout the engine's
  decoding workers deliver (faster convolutions on a CPU): the second compares
  only what the engine does per batch; wall and CPU seconds (process and
  workers), since the machine may be shared;
- the features command's images per second (engine.models.features) against
  the same bare loops, forward only, both from start-up to the last image.

Where the run process stood highest in each phase is sampled every 5 ms (its
innermost engine frames), so that a row that grows says where.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

CIFAR = REPO.parent / "shared" / "data" / "cifar10-small" / "train"
FLIPS = (None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180)


def make_photos(root: Path, n: int, side: int, source: Path | None = None, cifar: Path = CIFAR) -> Path:
    """``root/train/<class>/`` with ``n`` JPEGs of ``side`` pixels from cifar10-small (made once).

    File ``i`` is the same at every size, so a smaller set is hard links to the first ``n`` files of a larger
    one made already (``source``, same ``side``): the sizes share their disk and page cache. ``cifar``: the
    class folders the images come from (default ``../shared/data/cifar10-small/train``).
    """
    done = root / f".done-{n}-{side}"
    if done.exists():
        return root
    if not Path(cifar).is_dir():
        raise SystemExit(f"no cifar10-small training folder at {cifar}: the photos are made from its images "
                         "(train/<class>/<image>); give it with CIFAR_SMALL=DIR (bench/gpu_check.sh)")
    by_class = [sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".png"))
                for d in sorted(Path(cifar).iterdir()) if d.is_dir()]
    sources = [files[i] for i in range(max(map(len, by_class))) for files in by_class if i < len(files)]  # classes
    # interleaved, so that any n holds every class
    for i in range(n):
        src, flip = sources[i % len(sources)], FLIPS[(i // len(sources)) % len(FLIPS)]
        out = root / "train" / src.parent.name / f"{i:06d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            continue
        made = None if source is None else source / "train" / src.parent.name / f"{i:06d}.jpg"
        if made is not None and made.exists():
            os.link(made, out)
            continue
        with Image.open(src) as img:
            img = img.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            (img.transpose(flip) if flip is not None else img).save(out, quality=90)
    done.touch()
    return root


def seeded_weights(home: Path, arch: str = "resnet18") -> None:
    """``arch``'s weights saved from a seeded initialisation under torchvision's ImageNet file name in ``home``."""
    from engine.models.zoo import weights_enum

    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / weights_enum(arch).url.rsplit("/", 1)[-1]
    if not path.exists():
        torch.manual_seed(0)
        torch.save(torchvision.models.get_model(arch).state_dict(), path)


RSS_CHILD = r"""
import json, os, resource, sys, threading, time, traceback, torch
torch.set_num_threads(int(sys.argv[1]))
from engine.method.config import RunConfig, ScheduleConfig
from engine.steps.run import Run
from dataclasses import replace

def rss_mb(pid, field="Pss"):  # proportional set of one process (shared pages split between their sharers), 0 once gone
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith(field + ":")) / 1024
    except (OSError, StopIteration):
        return 0.0

def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except OSError:
        return []

def own_rss_mb():  # this process's resident set now (what ru_maxrss is the maximum of)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def where():  # the run's innermost engine frames, where its memory stands highest
    frames = traceback.extract_stack(sys._current_frames()[MAIN])
    ours = [f"{f.filename.rsplit('/engine/', 1)[-1]}:{f.lineno} {f.name}" for f in frames if "/engine/" in f.filename]
    return " < ".join(reversed(ours[-4:]))

MAIN = threading.main_thread().ident
peak = {"workers": 0.0, "total": 0.0, "phase": "created", "each": {}}  # each: worker pid -> highest (PSS, private)
high = {}  # phase -> (sampled MB of the run process at its highest, where)
def sample():  # the decoding workers' share: the run's process alone is ru_maxrss
    last, tick = 0.0, 0
    while True:
        own = own_rss_mb()
        if own > high.get(peak["phase"], (0.0, ""))[0] + 1:
            high[peak["phase"]] = (own, where())
        if tick % 40 == 0:  # the workers' PSS every 0.2 s (reading smaps is not free)
            each = {c: (rss_mb(c), rss_mb(c, "Private_Dirty")) for c in children(os.getpid())}
            workers = sum(pss for pss, _ in each.values())
            for c, (pss, private) in each.items():
                high_c = peak["each"].get(str(c), (0.0, 0.0))
                peak["each"][str(c)] = (max(high_c[0], pss), max(high_c[1], private))
            peak["workers"] = max(peak["workers"], workers)
            peak["total"] = max(peak["total"], workers + rss_mb(os.getpid()))
        tick += 1
        if time.time() - last > 10:  # so far, for a run stopped before its end
            last = time.time()
            with open(sys.argv[3] + ".so-far.json", "w") as fh:
                json.dump({**peak, "run": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                           "high": high, "seconds": time.perf_counter() - t0}, fh)
        time.sleep(0.005)
t0 = time.perf_counter()
threading.Thread(target=sample, daemon=True).start()

config = replace(RunConfig(dataset=sys.argv[2], noise="symmetric:0.4", teacher="torchvision:" + sys.argv[4],
                           student="torchvision:mobilenet_v3_small", teacher_mode="frozen"),
                 schedule=ScheduleConfig(teacher_epochs=1, teacher_holdout=0.0, warmup_epochs=1, refine_epochs=1,
                                         mutual_epochs=0))
run = Run.create(sys.argv[3], config, force=True)
phases = {"created": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
while run.phase.value != "warmup":
    phase = peak["phase"] = run.phase.value
    run.step()
    phases[phase] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
time.sleep(0.5)
print(json.dumps({"peak": phases[max(phases, key=phases.get)], "phases": phases, "workers": peak["workers"],
                  "total": peak["total"], "high": high, "each": list(peak["each"].values()),
                  "seconds": time.perf_counter() - t0}))
"""


def peak_rss_mb(folder: Path, out: Path, threads: int, env: dict, teacher: str, size: int | None = None) -> dict:
    """The run's peak RSS in MB (``peak``: its own process; ``workers``: its decoding workers together, sampled;
    ``total``: both at once, sampled), per phase, and its seconds. ``size``: the photos streamed at this side
    instead of 224."""
    spec = f"folder:{folder}" + (f"?size={size}&stream=1" if size else "")
    proc = subprocess.run([sys.executable, "-c", RSS_CHILD, str(threads), spec, str(out), teacher],
                          cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


class BareFiles(torch.utils.data.Dataset):
    """The bare loop's dataset: open, convert, resize, to a tensor: what a tutorial writes."""

    def __init__(self, paths, labels, side):
        self.paths, self.labels, self.side = paths, labels, side

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB").resize((self.side, self.side), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
        return x, self.labels[i]


def _model(arch: str, classes: int):
    from engine.models import build_model

    torch.manual_seed(0)
    return build_model(f"torchvision:{arch}", (3, 224, 224), classes, "image")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds() -> float:
    """CPU seconds of this process and its live children (the decoding workers) so far."""
    total = time.process_time()
    for pid in _children(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


class Clock:
    """Images, wall and CPU seconds of a loop: from the end of its first batch (workers and kernels warmed up)
    on, or (``from_start``) from its creation, start-up included."""

    def __init__(self, from_start: bool = False):
        self.start = (time.perf_counter(), cpu_seconds()) if from_start else None
        self.base = 0

    def tick(self, done: int, total: int | None = None) -> None:
        """After a batch: ``done`` images so far (a progress callback)."""
        now = (time.perf_counter(), cpu_seconds())
        if self.start is None:
            self.start, self.base = now, done
        self.end, self.seen = now, done - self.base

    def rates(self) -> tuple[float, float]:
        """(images per second, images per CPU second)."""
        return self.seen / (self.end[0] - self.start[0]), self.seen / (self.end[1] - self.start[1])


def bare_loop(paths, labels, arch, batches, batch_size, workers, train: bool, channels_last: bool = False,
              from_start: bool = False) -> Clock:
    """What a tutorial writes: a DataLoader of :class:`BareFiles`, the same model and (training) the engine's
    optimiser settings, cross-entropy, ``batches`` timed batches after a warm-up one. ``channels_last``: the
    batches in the memory layout the engine's decoding workers deliver (NHWC strides; faster convolutions on a
    CPU), so that the two loops differ only by what the engine does per batch."""
    from engine.method.config import TrainConfig
    from engine.method.training import make_optimizer

    clock = Clock(from_start)
    model = _model(arch, int(labels.max()) + 1)
    opt = make_optimizer(model, TrainConfig(batch_size=batch_size, lr=0.01))
    loader = torch.utils.data.DataLoader(BareFiles(paths, labels, 224), batch_size=batch_size, shuffle=train,
                                         num_workers=workers, generator=torch.Generator().manual_seed(0))
    model.train(train)
    seen = 0
    for i, (x, y) in enumerate(loader):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if train:
            loss = torch.nn.functional.cross_entropy(model(x)[0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
        else:
            with torch.no_grad():
                model.embed(x)
        seen += len(x)
        clock.tick(seen)
        if i == batches:
            break
    return clock


def engine_train(paths, labels, arch, batches, batch_size, workers) -> Clock:
    """engine.method.training.train_epoch on :class:`engine.data.stream.ImageFiles` of the first
    ``batch_size * (batches + 1)`` files: ``batches`` timed after a warm-up one."""
    from engine.data.stream import ImageFiles
    from engine.method.config import TrainConfig
    from engine.method.training import make_optimizer, train_epoch

    n = min(len(paths), batch_size * (batches + 1))
    files = ImageFiles(paths[:n], 224, "RGB", workers=workers)
    model = _model(arch, int(labels.max()) + 1)
    cfg = TrainConfig(batch_size=batch_size, lr=0.01)
    clock = Clock()
    train_epoch(model, make_optimizer(model, cfg), files, torch.as_tensor(labels[:n]), cfg,
                torch.Generator().manual_seed(0), "none", clock.tick)
    return clock


def engine_kd(paths, labels, batches, batch_size, workers, cached: bool) -> Clock:
    """A warm-up student epoch (CE + mixup CE + KD; mobilenet_v3_small) from a frozen resnet18 teacher: run on
    every batch (as before), or its head on cached backbone features (:class:`CachedTeacher`, as now)."""

    from engine.data.stream import ImageFiles
    from engine.method.config import TrainConfig
    from engine.method.training import CachedTeacher, make_optimizer, student_epoch
    from engine.models.features import embed_all
    from engine.models.zoo import load_weights

    n = min(len(paths), batch_size * (batches + 1))
    files = ImageFiles(paths[:n], 224, "RGB", workers=workers)
    classes = int(labels.max()) + 1
    teacher = _model("resnet18", classes)
    load_weights(teacher, "imagenet")
    teacher.freeze()
    if cached:  # computed once per run in the teacher phase: not part of the student's epoch
        teacher = CachedTeacher(teacher.head, torch.as_tensor(embed_all(teacher, files, torch.device("cpu"))))
    student = _model("mobilenet_v3_small", classes)
    cfg = TrainConfig(batch_size=batch_size, lr=0.01)
    clock = Clock()
    student_epoch(student, teacher, make_optimizer(student, cfg), files, torch.as_tensor(labels[:n]), cfg,
                  "warmup", np.random.default_rng(0), torch.Generator().manual_seed(0), None, "crop_flip", clock.tick)
    return clock


def engine_features(folder: Path, batch_size: int) -> Clock:
    """The features command's work (engine.models.features.dataset_features: resnet18 on every training image
    of ``folder``), start-up included."""
    from engine.data import load_dataset
    from engine.models.features import dataset_features

    dataset = load_dataset(f"folder:{folder}")
    clock = Clock(from_start=True)
    features = dataset_features(dataset, "resnet18", "imagenet", batch_size=batch_size)
    clock.tick(features.shape[0])
    return clock


def speed(a, work: Path, largest: Path, first: int) -> None:
    """The throughput table: the engine's loops against bare ones on the same files, workers, threads and batch."""
    from engine.data import load_dataset

    folder = work / f"photos-{first}"
    dataset = load_dataset(f"folder:{folder}")
    paths = [dataset.original_file(i) for i in range(dataset.num_train)]
    labels = np.asarray(dataset.train_true)
    n_feat = min(len(paths), a.batch_size * (a.batches + 1))
    clocks = {}
    for round_ in range(0 if a.skip_train else a.rounds):  # alternated: a change of the machine's load hits all
        suffix = f" #{round_ + 1}" if a.rounds > 1 else ""
        clocks["train engine" + suffix] = engine_train(paths, labels, "mobilenet_v3_small", a.batches,
                                                       a.batch_size, a.workers)
        clocks["train bare" + suffix] = bare_loop(paths, labels, "mobilenet_v3_small", a.batches, a.batch_size,
                                                  a.workers, True)
        clocks["train bare, NHWC" + suffix] = bare_loop(paths, labels, "mobilenet_v3_small", a.batches,
                                                        a.batch_size, a.workers, True, channels_last=True)
    if a.kd:
        clocks["student KD, teacher run"] = engine_kd(paths, labels, a.batches, a.batch_size, a.workers, False)
        clocks["student KD, teacher cached"] = engine_kd(paths, labels, a.batches, a.batch_size, a.workers, True)
    if not a.skip_features:
        feat_folder = make_photos(work / f"photos-{n_feat}", n_feat, a.side, source=largest)
        clocks["features engine"] = engine_features(feat_folder, a.batch_size)
        clocks["features bare"] = bare_loop(paths[:n_feat], labels[:n_feat], "resnet18", a.batches, a.batch_size,
                                            a.workers, False, from_start=True)
        clocks["features bare, NHWC"] = bare_loop(paths[:n_feat], labels[:n_feat], "resnet18", a.batches,
                                                  a.batch_size, a.workers, False, channels_last=True, from_start=True)
    print(f"\nthroughput: training loops {a.batches} batches of {a.batch_size} after a warm-up one; features: "
          f"{n_feat} images from start-up (model, weights, workers) to the last; {a.workers} decoding worker(s), "
          f"{a.threads} thread(s)")
    print(f"\n{'loop':<30}  {'images/s':>8}  {'images/CPU s':>12}")
    rates = {name: clock.rates() for name, clock in clocks.items()}
    for name, (wall, cpu) in rates.items():
        print(f"{name:<30}  {wall:8.2f}  {cpu:12.2f}")

    def ratio(bare: str, ours: str, label: str) -> None:
        keys = [k for k in rates if k.split(" #")[0] == ours]
        for key in keys:
            b = rates[key.replace(ours, bare)]
            r_wall, r_cpu = b[0] / rates[key][0], b[1] / rates[key][1]
            print(f"{label + key[len(ours):]:<36} bare / engine = {r_wall:.2f}x wall, {r_cpu:.2f}x CPU "
                  f"(goal <= 1.25x): {'PASS' if r_wall <= 1.25 else 'MISS'}")

    print()
    if not a.skip_train:
        ratio("train bare", "train engine", "training loop")
        ratio("train bare, NHWC", "train engine", "training loop vs NHWC bare")
    if not a.skip_features:
        ratio("features bare", "features engine", "features")
        ratio("features bare, NHWC", "features engine", "features vs NHWC bare")
    if a.kd:
        kd = rates["student KD, teacher cached"][0] / rates["student KD, teacher run"][0]
        print(f"student KD epoch with a frozen teacher: cached / run = {kd:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,10000,40000")
    parser.add_argument("--side", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="decoding processes, both loops")
    parser.add_argument("--batches", type=int, default=10, help="timed batches per throughput")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "amlkd-photos-bench"))
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-features", action="store_true", help="no features-command rows")
    parser.add_argument("--skip-train", action="store_true", help="no training-loop rows")
    parser.add_argument("--kd", action="store_true", help="also a student KD epoch with the frozen teacher run on "
                        "every batch against its cached features (slow: resnet18 at 224x224)")
    parser.add_argument("--rounds", type=int, default=1, help="training-loop rows, alternated")
    parser.add_argument("--teacher", default="resnet18", help="the frozen teacher of the RSS runs (student: "
                        "mobilenet_v3_small); mobilenet_v3_small computes its features ~30x cheaper")
    parser.add_argument("--stream-size", type=int, default=None, help="the RSS runs read the photos at this side "
                        "(default 224, the backbones' size; 112: about 4x less compute)")
    parser.add_argument("--reuse", action="store_true", help="the RSS rows measured already (work/rss-N.json)")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    home = work / "torch"
    for arch in {"resnet18", a.teacher}:
        seeded_weights(home, arch)
    os.environ["TORCH_HOME"] = str(home)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), TORCH_HOME=str(home))
    sizes = [int(s) for s in a.sizes.split(",")]
    largest = make_photos(work / f"photos-{max(sizes)}", max(sizes), a.side)
    rows = []
    for n in sizes:
        folder = make_photos(work / f"photos-{n}", n, a.side, source=largest)
        tag = f"{n}-at{a.stream_size}" if a.stream_size else str(n)
        saved = work / f"rss-{a.teacher}-{tag}.json"
        if a.skip_rss:
            continue
        if not (a.reuse and saved.exists()):
            saved.write_text(json.dumps(peak_rss_mb(folder, work / f"run-{tag}", a.threads, env, a.teacher,
                                                    a.stream_size)))
        rows.append((n, json.loads(saved.read_text())))
        print(f"{n} images: {saved.read_text()}", flush=True)
    side = a.stream_size or 224
    print(f"photos {a.side}x{a.side} read at {side}x{side} (memory) and 224x224 (speed); {a.threads} thread(s); "
          f"torch {torch.__version__}")
    if rows:
        memory_table(rows, a.teacher)
    if not a.skip_speed:
        speed(a, work, largest, sizes[0])


def memory_table(rows: list, teacher: str) -> None:
    print(f"\nPeak memory (MB) of a frozen-teacher run ({teacher} -> mobilenet_v3_small) through its teacher "
          "phase and stage 0 (run process: ru_maxrss; workers: its decoding workers' PSS together; total: the "
          "PSS of both at once, sampled every 0.2 s)")
    print(f"{'images':>7}  {'run process':>11}  {'growth':>7}  {'workers':>8}  {'total':>7}  {'growth':>7}  "
          f"{'minutes':>7}")
    for i, (n, r) in enumerate(rows):
        before = rows[i - 1][1] if i else None
        grow = (lambda key: "-" if before is None else f"{r[key] - before[key]:+.0f}")
        print(f"{n:>7}  {r['peak']:>11.0f}  {grow('peak'):>7}  {r['workers']:>8.0f}  {r['total']:>7.0f}  "
              f"{grow('total'):>7}  {r['seconds'] / 60:>7.1f}")
    for n, r in rows:  # each worker in the order started (train files' first): its decoded images are its own
        if r.get("each"):
            print(f"  {n:>7} workers one by one, highest PSS / private MB: "
                  + ", ".join(f"{pss:.0f} / {private:.0f}" for pss, private in r["each"]))
    for n, r in rows:  # sampled every 5 ms: where in the engine the run process stood highest in each phase
        for phase, (mb, frames) in r.get("high", {}).items():
            print(f"  {n:>7} {phase:<9} {mb:>6.0f} MB at {frames}")


if __name__ == "__main__":
    main()
