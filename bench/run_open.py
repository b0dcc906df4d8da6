"""Opening a run of a large photo folder: what it costs, and what part of it is the input check.

A run records its inputs when it is made (engine/steps/lifecycle.py): a photo folder's content digest and its
stat digest (path, size, mtime, ctime of every file). Opening the run checks the stat digest (one ``stat`` per
file) and reads the files again only when it differs. This script makes a frozen-teacher run on each folder of
bench/photos.py (``--work``, made there first) and prints, per size: creating the run, opening it (a fresh
process each, page cache warm), and the parts of opening: the stat check, the content digest the check would
otherwise read (what every open cost before, up to 20,000 files), and loading the dataset (its file headers).

    python bench/run_open.py --sizes 10000,40000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, sys, time
from pathlib import Path
from engine.method.config import RunConfig
from engine.steps import lifecycle
from engine.steps.run import Run
what, folder, out = sys.argv[1:4]
t = time.perf_counter()
if what == "create":
    config = RunConfig(dataset=f"folder:{folder}", noise="symmetric:0.4", teacher="torchvision:resnet18",
                       student="torchvision:mobilenet_v3_small", teacher_mode="frozen")
    Run.create(out, config, force=True).close()
    print(json.dumps({"create": time.perf_counter() - t}))
elif what == "open":
    Run.open(out).close()
    print(json.dumps({"open": time.perf_counter() - t}))
else:
    files = lifecycle._folder_files(Path(folder))
    t = time.perf_counter(); lifecycle.folder_stat_digest(Path(folder)); stat = time.perf_counter() - t
    t = time.perf_counter(); lifecycle._folder_digest(Path(folder), files, by_content=True)
    content = time.perf_counter() - t
    from engine.data import load_dataset
    t = time.perf_counter(); load_dataset(f"folder:{folder}"); load = time.perf_counter() - t
    print(json.dumps({"stat check": stat, "content digest": content, "dataset load": load}))
"""


def child(what: str, folder: Path, out: Path, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, what, str(folder), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,40000")
    parser.add_argument("--side", type=int, default=160)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "amlkd-photos-bench"))
    a = parser.parse_args()
    from bench.photos import make_photos, seeded_weights

    work = Path(a.work)
    seeded_weights(work / "torch")
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCH_HOME=str(work / "torch"))
    sizes = [int(s) for s in a.sizes.split(",")]
    largest = make_photos(work / f"photos-{max(sizes)}", max(sizes), a.side)
    rows = []
    for n in sizes:
        folder = make_photos(work / f"photos-{n}", n, a.side, source=largest)
        out = work / f"open-run-{n}"
        row = {"images": n, **child("create", folder, out, env), **child("open", folder, out, env),
               **child("parts", folder, out, env)}
        rows.append(row)
    names = ["create", "open", "stat check", "content digest", "dataset load"]
    print("seconds, one process each (page cache warm)")
    print(f"{'images':>7}  " + "  ".join(f"{n:>14}" for n in names))
    for row in rows:
        print(f"{row['images']:>7}  " + "  ".join(f"{row[n]:>14.2f}" for n in names))


if __name__ == "__main__":
    main()
