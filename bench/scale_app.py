"""The app at a million samples: page open times in headless Chromium, the Embeddings page's first chart.

Usage::

    .venv/bin/python bench/scale_app.py [--sizes 100000 1000000] [--d 128] [--root DIR] [--shots DIR]

For each size it makes a run directory and opens its pages in headless Chromium at 1024x768 (Playwright, the
app served as ``make run`` serves it: tests/browser/conftest.py), measuring from the navigation to the first
drawn chart (a plotly chart with data and a size on screen), or to the page's script having finished when it
drew no chart (Compare: finished, with its charts drawn or the line saying why it draws none): the Embeddings
page (goal <= 5 s at 1M once the projection is cached), then the Losses, Review, Propagation graph and
Compare pages (Review: to its card). Each page is opened three times (:data:`OPENS`: the
server's caches cold; warm in a new browser profile; warm with the browser's cache of the app's scripts, as a
returning user), each printed with when the app, the page's title, the chart's container and the plot first
appeared. Then, on the Embeddings page, a lasso drawn over the middle of the chart: how many samples the
page selects (computed on the server from the full layout) against how many points are drawn.

The run directory: until ``--dataset vectors:`` is in main, a **synthetic** run, written through the engine's
own snapshot writer (``engine.rundir.snapshot.pack`` + ``validate`` + ``RunStore.write_step``): ``C`` Gaussian
clusters in ``D`` dimensions (seeded), 20% symmetric label noise, 4 steps (teacher, propagate, warmup, refine)
whose per-sample arrays are drawn from the clusters (a kNN graph of same-cluster neighbours, not a search: the
bench times the app, not the kNN). The projection is made by the app's own code (``engine.readers.embed``:
UMAP fit on 20k samples, the rest placed by ``transform``) and timed; the pages then open with it cached.

``bench/scale.py`` (the kNN and training benchmark) calls :func:`main` with its sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "browser"))

GOAL_S = 5.0
VIEWPORT = {"width": 1024, "height": 768}
PAGES = ("embeddings", "losses", "review", "graph", "compare")
#: The three opens of a page: the server's caches cold (a new browser profile); warm (another new profile: the
#: browser loads Streamlit's and plotly's scripts again); cached (the same profile again: those scripts from the
#: browser's cache, as for anyone who has opened the app before).
OPENS = ("cold", "warm", "cached")

#: In the page: seconds since navigation start once a plotly chart is drawn (data, size on screen).
DRAWN_JS = """() => {
  if (document.querySelector('[data-testid="stException"]')) { return -1; }
  const drawn = Array.from(document.querySelectorAll('.js-plotly-plot'))
      .some(el => el._fullData && el._fullData.length && el.getBoundingClientRect().height > 0);
  return drawn ? performance.now() / 1000 : null;
}"""
#: The same, for a page that may draw no chart (Compare with one run): its script finished.
IDLE_JS = """() => {
  if (document.querySelector('[data-testid="stException"]')) { return -1; }
  const idle = document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]')
      && document.querySelector('h1') && !document.querySelector('[data-testid="stSpinner"]');
  return idle ? performance.now() / 1000 : null;
}"""
#: Added to every page before its scripts: when (ms since navigation) the app's frame, the page's title, the
#: chart's container and plotly's plot first appear (where an open's time goes).
MARKS_JS = """window.__marks = {};
new MutationObserver(() => { const m = window.__marks, now = performance.now();
  for (const [name, sel] of [['app', '[data-testid="stApp"]'], ['title', 'h1'],
                             ['chart box', '[data-testid="stPlotlyChart"]'], ['plot', '.js-plotly-plot']]) {
    if (!(name in m) && document.querySelector(sel)) { m[name] = now; } } })
  .observe(document, {subtree: true, childList: true});"""
#: Compare: its script finished with its charts drawn, or with the line that says why it draws none (one run, runs
#: that cannot be compared). An idle state alone is not enough: Streamlit reports it between the page's script and
#: the results' fragment.
COMPARE_JS = """() => {
  if (document.querySelector('[data-testid="stException"]')) { return -1; }
  const idle = document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]')
      && document.querySelector('h1') && !document.querySelector('[data-testid="stSpinner"]');
  const drawn = Array.from(document.querySelectorAll('.js-plotly-plot'))
      .some(el => el._fullData && el._fullData.length && el.getBoundingClientRect().height > 0);
  const none = Array.from(document.querySelectorAll('[data-testid="stAlert"]')).some(el =>
      /Pick two or more runs|cannot be compared|cannot be shown|No runs yet/.test(el.innerText));
  return idle && (drawn || none) ? performance.now() / 1000 : null;
}"""
CARD_JS = """() => document.querySelector('[data-testid="stException"]') ? -1 : document.querySelector('iframe, [class*="st-key-review_card"], [data-testid="stCustomComponentV1"]')
    ? performance.now() / 1000 : null"""


# ---------------------------------------------------------------------- the synthetic run
class _Outputs:
    """A model's outputs as snapshot.pack takes them: pred (N,), loss(labels), probs()."""

    def __init__(self, probs: np.ndarray):
        self._probs = probs
        self.pred = probs.argmax(1)

    def probs(self) -> np.ndarray:
        return self._probs

    def loss(self, labels: np.ndarray) -> np.ndarray:
        return -np.log(np.maximum(self._probs[np.arange(len(labels)), labels], 1e-6)).astype(np.float32)


class _Graph:
    def __init__(self, neighbor_idx, neighbor_sim):
        self.neighbor_idx, self.neighbor_sim = neighbor_idx, neighbor_sim


def _probs(rng, centre: np.ndarray, c: int, sharp: float) -> np.ndarray:
    logits = rng.normal(size=(len(centre), c)).astype(np.float32)
    logits[np.arange(len(centre)), centre] += sharp
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def dataset_spec(vectors: Path) -> str:
    """``vectors:FILE?test=0`` (every row a training sample, in file order) once main has that dataset; until
    then ``digits`` (its class names; the run's samples are not digits' and have no pictures)."""
    from engine.data import available_datasets

    return f"vectors:{vectors}?test=0" if "vectors" in available_datasets() else "digits"


def _synthetic(n: int, d: int, c: int, k: int, seed: int):
    """The run's samples (seeded, so a kept run's vectors file can be written again): the generator after them,
    true and given labels, features (N, D) float16, a kNN graph of same-cluster neighbours, keys."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, size=n)
    flip = rng.random(n) < 0.2
    given = np.where(flip, (true + rng.integers(1, c, size=n)) % c, true).astype(np.int64)
    centres = rng.normal(size=(c, d)).astype(np.float32) * 1.5
    features = np.empty((n, d), np.float16)
    for start in range(0, n, 100_000):  # bounded memory: 100k rows at a time
        rows = slice(start, min(n, start + 100_000))
        features[rows] = centres[true[rows]] + rng.normal(size=(rows.stop - rows.start, d)).astype(np.float32)
    by_class = [np.flatnonzero(true == cls) for cls in range(c)]
    neighbor_idx = np.empty((n, k), np.int32)
    for members in by_class:
        neighbor_idx[members] = members[rng.integers(0, len(members), size=(len(members), k))]
    neighbor_sim = np.sort(rng.uniform(0.5, 1.0, size=(n, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    keys = np.array([f"vec/{i}" for i in range(n)])
    return rng, true, given, features, _Graph(neighbor_idx, neighbor_sim), keys


def vectors_path(path: Path) -> Path:
    return path.parent / f"{path.name}-vectors.npz"


def write_vectors(path: Path, features, keys, true, c: int) -> Path:
    """The samples as a ``vectors:`` file (features, keys, labels = the truth, class names) beside the run."""
    vectors = vectors_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(vectors, features=features, keys=keys, labels=true.astype(np.int64),
             class_names=np.array([str(i) for i in range(c)]))
    return vectors


def build_run(path: Path, n: int, d: int = 128, c: int = 10, k: int = 20, seed: int = 0) -> float:
    """Write the synthetic run (see the module docstring); returns the seconds it took."""
    from engine.method.config import RunConfig, ScheduleConfig
    from engine.method.propagate import PropagationResult
    from engine.rundir import snapshot
    from engine.rundir.store import RunStore

    started = time.perf_counter()
    rng, true, given, features, graph, keys = _synthetic(n, d, c, k, seed)
    vectors = write_vectors(path, features, keys, true, c)
    config = replace(RunConfig(dataset=dataset_spec(vectors), noise="symmetric:0.2", seed=seed),
                     schedule=ScheduleConfig(teacher_epochs=1, warmup_epochs=1, refine_epochs=1, mutual_epochs=1))
    store = RunStore(path)
    store.create(config, force=True)
    store.write_dataset(given=given, true=true.astype(np.int64), keys=keys,
                        class_names=np.array([str(i) for i in range(c)]))
    teacher = _Outputs(_probs(rng, true, c, 3.0))
    store.write_teacher_features(features)
    scores = _probs(rng, true, c, 4.0)
    lp = PropagationResult(scores=scores, labels=scores.argmax(1).astype(np.int64),
                           confidence=rng.uniform(0, 1, n).astype(np.float32), iterations=20)
    refined = np.where(rng.random(n) < 0.85, true, given).astype(np.int64)
    none = np.full(n, -1, np.int64)
    steps = [("teacher", dict(teacher=teacher, features=features, refined=given)),
             ("propagate", dict(teacher=teacher, features=features, graph=graph, lp=lp, refined=refined,
                                clamped=none, outliers=np.zeros(n, bool))),
             ("warmup", dict(teacher=teacher, student=_Outputs(_probs(rng, true, c, 2.0)), graph=graph,
                             refined=refined, clamped=none, outliers=np.zeros(n, bool))),
             ("refine", dict(teacher=teacher, student=_Outputs(_probs(rng, true, c, 2.5)), graph=graph, lp=lp,
                             refined=refined, clamped=none, outliers=np.zeros(n, bool),
                             easy=rng.random(n) < 0.8, working=refined,
                             weights=rng.uniform(0, 1, n).astype(np.float32),
                             weights_given=rng.uniform(0, 1, n).astype(np.float32),
                             selection_loss=rng.exponential(0.5, n).astype(np.float32)))]
    for number, (phase, parts) in enumerate(steps, 1):
        arrays = snapshot.pack(parts.pop("refined"), given=given, **parts)
        snapshot.validate(arrays, phase)
        precision = float(np.mean(arrays["refined"] == true))
        store.write_step(number, arrays, {"step": number, "phase": phase, "phase_epoch": 1, "step_seconds": 0.0,
                                          "refined_label_precision": precision,
                                          "given_label_precision": float(np.mean(given == true)),
                                          "relabelled": int(np.sum(arrays["refined"] != given)),
                                          "graph_source": "teacher", "loss_cutoff": 0.5})
    store.write_status(phase="mutual", step=len(steps), state="idle")
    return time.perf_counter() - started


def name_dataset(path: Path) -> None:
    """Point a kept run's config at its vectors file once main has that dataset (built before: ``digits``)."""
    from engine.rundir.store import RunStore, atomic_write_text

    store = RunStore(path)
    spec = dataset_spec(vectors_path(path))
    config = store.config()
    if config.dataset != spec:
        atomic_write_text(store.config_path, replace(config, dataset=spec).to_json())


def project(path: Path) -> float:
    """The Embeddings page's projection of the last step (teacher features), made and cached; seconds."""
    from engine.readers import embed
    from engine.rundir.store import RunStore

    store = RunStore(path)
    started = time.perf_counter()
    embed.embedding(store, store.steps()[-1], "teacher")
    return time.perf_counter() - started


# ---------------------------------------------------------------------- the browser
def _children_cpu_seconds() -> float:
    """CPU seconds used so far by every process this one started (the app's server, Chromium and theirs):
    on a shared machine, the work a page open cost, whatever the wait for the cores."""
    return sum(_children_cpu_split().values())


def _children_cpu_split() -> dict[str, float]:
    """:func:`_children_cpu_seconds` split: ``server`` (the app's Python processes), ``browser`` (the rest:
    Chromium's)."""
    parent, cpu, command = {}, {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry.name)] = int(fields[1])
        # its own and its waited-for children's (a page's renderer process ends with the page)
        cpu[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick
        command[int(entry.name)] = (entry / "stat").read_text().split("(", 1)[1].split(")", 1)[0] \
            if (entry / "stat").exists() else ""
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - mine
        mine |= frontier
    out = {"server": 0.0, "browser": 0.0}
    for pid in mine:
        out["server" if command.get(pid, "").startswith(("python", "streamlit")) else "browser"] += cpu[pid]
    return out


def open_times(page, url: str, name: str, which: str) -> float:
    """Seconds from navigating to ``which`` to its first drawn chart (Review: its card; else the app idle)."""
    from conftest import wait_for_app

    page.goto(f"{url}/{which}?run={name}")
    probe = {"review": CARD_JS, "compare": COMPARE_JS}.get(which, DRAWN_JS)
    try:
        seconds = float(page.wait_for_function(probe, timeout=600_000, polling=50).json_value())
    except Exception:  # noqa: BLE001 - a page that draws no chart: time to idle
        wait_for_app(page, 600_000)
        return float(page.evaluate("() => performance.now() / 1000"))
    if seconds < 0:
        raise RuntimeError(f"the {which} page shows an exception: "
                           + page.locator('[data-testid="stException"]').first.inner_text()[:400])
    return seconds


def zoom_to_densest(page, coords: np.ndarray) -> None:
    """Zoom the Embeddings chart onto the densest cell of the layout (a screenshot of the density under the
    points)."""
    from app.figures.embedding import density_counts

    counts, x_edges, y_edges = density_counts(coords, 40)
    row, col = np.unravel_index(np.argmax(counts), counts.shape)
    x, y = (x_edges[col] + x_edges[col + 1]) / 2, (y_edges[row] + y_edges[row + 1]) / 2
    dx, dy = (x_edges[-1] - x_edges[0]) / 14, (y_edges[-1] - y_edges[0]) / 14
    page.evaluate("""([x, y, dx, dy]) => Plotly.relayout(document.querySelector('.js-plotly-plot'),
        {'xaxis.range': [x - dx, x + dx], 'yaxis.range': [y - dy, y + dy]})""", [float(x), float(y), dx, dy])
    page.wait_for_timeout(2000)


def lasso(page) -> tuple[int, int]:
    """Draw a lasso over the middle of the Embeddings chart; (samples selected, points drawn)."""
    from conftest import wait_for_app

    plot = page.locator(".js-plotly-plot").first
    box = plot.bounding_box()
    cx, cy, rx, ry = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] / 4, box["height"] / 4
    drawn = int(page.evaluate("""() => { const el = document.querySelector('.js-plotly-plot');
        return el._fullData.filter(t => (t.type === 'scattergl' || t.type === 'scatter') && t.name !== 'selected')
                            .reduce((s, t) => s + (t.x ? t.x.length : 0), 0); }"""))
    page.mouse.move(cx - rx, cy - ry)
    page.mouse.down()
    for x, y in ((cx + rx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry), (cx - rx, cy - ry + 2)):
        page.mouse.move(x, y, steps=12)
    page.mouse.up()
    page.wait_for_timeout(1500)
    wait_for_app(page, 600_000)
    heading = page.get_by_text("Selected samples (").first
    heading.wait_for(timeout=600_000)
    text = heading.inner_text()
    return int(text.split("(")[1].split(")")[0].replace(",", "")), drawn


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--root", default=None, help="runs folder to keep (default: a temporary one)")
    parser.add_argument("--shots", default=None, help="folder for 1024x768 screenshots of the pages")
    parser.add_argument("--pages", nargs="+", default=list(PAGES))
    parser.add_argument("--no-projection", action="store_true",
                        help="do not make the projection first (for --pages that draw none: losses review compare)")
    a = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from conftest import chromium_launch_args, serve_app
    from playwright.sync_api import sync_playwright

    keep = a.root is not None
    root = Path(a.root) if keep else Path(tempfile.mkdtemp(prefix="amlkd-scale-app-"))
    root.mkdir(parents=True, exist_ok=True)
    shots = Path(a.shots) if a.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    print("run directories: SYNTHETIC (the engine's snapshot writer over generated arrays); dataset: "
          + ("vectors:FILE?test=0 (the same arrays)" if dataset_spec(root / "x").startswith("vectors:") else
             "digits (vectors: is not in this checkout: the pages cannot draw the samples' pictures)"))
    results = {}
    for n in a.sizes:
        name = f"synthetic-{n}"
        path = root / name
        from engine.rundir.store import RunStore

        built = build_run(path, n, a.d) if not (path / "snapshots" / "step_00004").is_dir() else 0.0
        if not vectors_path(path).is_file():  # a kept run from before the file was written
            _, true, _, features, _, keys = _synthetic(n, a.d, 10, 20, 0)
            write_vectors(path, features, keys, true, 10)
        name_dataset(path)
        projected = float("nan") if a.no_projection else project(path)
        disk = {s: RunStore(path).snapshot_bytes(s) / 1e6 for s in RunStore(path).steps()}
        print(f"N={n:,} D={a.d}: built in {built:.1f} s; projection (UMAP fit on 20k + transform) "
              f"{projected:.1f} s (0 = cached); snapshot MB per step: "
              + ", ".join(f"{s}: {mb:.0f}" for s, mb in disk.items()), flush=True)
        results[n] = {"build_s": built, "project_s": projected}
    with serve_app(root) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_args())
        for n in a.sizes:
            name = f"synthetic-{n}"
            for which in a.pages:
                times, cpus = [], []
                contexts = []
                for attempt, label in enumerate(OPENS):
                    if attempt < 2:  # a new browser profile (empty HTTP cache); the third open reuses the second's
                        contexts.append(browser.new_context(viewport=VIEWPORT))
                    page = contexts[-1].new_page()
                    page.add_init_script(MARKS_JS)
                    before = _children_cpu_split()
                    times.append(open_times(page, url, name, which))
                    after = _children_cpu_split()
                    cpus.append(sum(after.values()) - sum(before.values()))
                    marks = page.evaluate("() => window.__marks")
                    print(f"  {which} {label}: first seen (s) "
                          + ", ".join(f"{k} {v / 1000:.2f}" for k, v in marks.items())
                          + f"; drawn {times[-1]:.2f}; CPU s: server {after['server'] - before['server']:.1f}, "
                          f"browser {after['browser'] - before['browser']:.1f}", flush=True)
                    last = attempt == len(OPENS) - 1
                    if last and shots:
                        page.wait_for_timeout(1000)
                        page.screenshot(path=str(shots / f"{name}-{which}.png"))
                    if last and which == "embeddings":
                        selected, drawn = lasso(page)
                        results[n]["lasso"] = (selected, drawn)
                        if shots:
                            page.screenshot(path=str(shots / f"{name}-embeddings-lasso.png"))
                            from engine.readers import embed
                            from engine.rundir.store import RunStore

                            store = RunStore(root / name)
                            zoom_to_densest(page, embed.embedding(store, store.steps()[-1], "teacher"))
                            page.screenshot(path=str(shots / f"{name}-embeddings-zoom.png"))
                    page.close()
                for context in contexts:
                    context.close()
                results[n][which] = times + cpus
                print(f"N={n:,} {which:<11} open to first chart: "
                      + ", ".join(f"{label} {t:6.2f} s" for label, t in zip(OPENS, times))
                      + f" (CPU s of server + browser: {', '.join(f'{c:.1f}' for c in cpus)}; load average "
                      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
        browser.close()
    print()
    print(f"{'N':>10} {'page':<11} {'cold s':>8} {'warm s':>8} {'cached s':>9} {'cold CPU':>9} {'warm CPU':>9} "
          f"{'cached CPU':>10}")
    for n in a.sizes:
        for which in a.pages:
            values = results[n][which]
            print(f"{n:>10,} {which:<11} " + " ".join(f"{v:8.2f}" for v in values[:3]) + " "
                  + " ".join(f"{v:9.1f}" for v in values[3:]))
    for n in a.sizes:
        if "lasso" in results[n]:
            selected, drawn = results[n]["lasso"]
            print(f"N={n:,}: a lasso over the chart's middle selected {selected:,} samples with {drawn:,} points "
                  f"drawn ({selected / max(drawn, 1):.1f} selected per drawn point: counted from the full layout)")
    biggest = max(a.sizes)
    if "embeddings" in results[biggest]:
        _, warm, cached, _, warm_cpu, cached_cpu = results[biggest]["embeddings"]
        print(f"goal: Embeddings at N={biggest:,} <= {GOAL_S} s once projected: "
              f"{'met' if cached <= GOAL_S else 'MISSED'} ({cached:.2f} s with the browser's cache warm, "
              f"{cached_cpu:.1f} CPU s; {warm:.2f} s in a new browser profile, {warm_cpu:.1f} CPU s)")
    print("json " + json.dumps({str(n): r for n, r in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
