"""Several runs side by side: are they comparable, and how do they compare.

A comparison is fair only when the runs saw the same training samples with
the same given labels (same data, noise, seed or label file); the method,
the schedule and the knobs may differ. :func:`same_data` checks that from
each run's ``dataset.npz`` (sample keys, given labels, class names) and says,
naming the runs, what differs. The other functions read each run's own files
(``summary.json`` when finished, else the last line of ``metrics.jsonl``;
``metrics.jsonl`` for curves; the last snapshot for per-sample labels) and
return plain rows that the CLI prints, the Compare page shows and both write
as CSV. Nothing here trains, writes, or imports the app.

- :func:`comparison_table`: one row per run: method, dataset as the user
  named it, noise, seed, given / refined label precision, student and
  teacher test accuracy, the student's difference to the CE run of the set,
  steps, wall time.
- :func:`add_chance`: how much of each accuracy and of each difference to
  CE is chance: a 95% interval for the student's test accuracy, the paired
  difference to the CE run of the same seed with its interval and an exact
  McNemar test on the same test samples (:mod:`engine.method.stats`);
  :func:`chance_sentence` says it in words, :func:`by_method` gives the mean
  and spread over seeds.
- :func:`curves`: per run and student epoch, test accuracy and (truth
  known) label precision.
- :func:`per_sample`: per sample, each run's final refined label and
  student prediction and whether each is right (truth known), and where the
  runs disagree.

Cost: a table or the curves read a few small JSON files per run; the
statistics load each run's data and final student once and classify the test
set, ``O(R T)`` forward passes for ``T`` test samples; the
per-sample view reads two arrays of one snapshot per run, ``O(R N)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from ..errors import UserError
from ..method.stats import LEVEL, mcnemar_exact, mean_and_spread, paired_difference, wilson_interval
from ..rundir.health import below_baseline, run_warnings
from ..method.config import METHOD_NAMES
from ..method.noise import parse_noise_spec
from ..method.stages import STUDENT_PHASES
from ..rundir.store import UPLOADS, RunStore

ABLATION_NAMES = {"awe": "AWE", "mutual": "mutual", "stage0": "stage 0"}
UPLOAD_HASH = re.compile(r"-[0-9a-f]{12}$")  # app.byod names an unpacked upload NAME-<12 hex digits>

#: Columns of :func:`comparison_table`: (key, header, format of a number).
COLUMNS = (
    ("run", "run", "{}"),
    ("method", "method", "{}"),
    ("dataset", "dataset", "{}"),
    ("noise", "noise", "{}"),
    ("seed", "seed", "{}"),
    ("given_label_precision", "given prec", "{:.3f}"),
    ("refined_label_precision", "refined prec", "{:.3f}"),
    ("refined_precision_estimate", "refined prec est", "{:.3f}"),
    ("student_test_accuracy", "student acc", "{:.3f}"),
    ("student_interval", "95% interval", "{}"),
    ("teacher_test_accuracy", "teacher acc", "{:.3f}"),
    ("student_vs_ce", "student vs CE", "{:+.3f}"),
    ("vs_ce_interval", "vs CE 95% interval", "{}"),
    ("vs_ce_p", "p (McNemar)", "{:.3f}"),
    ("steps", "steps", "{}"),
    ("wall_seconds", "seconds", "{:.1f}"),
)


def within_chance(only_a: int, only_b: int) -> bool:
    """Whether two labellers' difference on the same samples is within chance: exact McNemar on the samples only
    one of them gets right (``only_a``, ``only_b``), at the level Compare uses."""
    return mcnemar_exact(only_a, only_b) >= 1 - LEVEL


def _stores(stores: Sequence[RunStore | str | Path]) -> list[RunStore]:
    return [s if isinstance(s, RunStore) else RunStore(s) for s in stores]


def _name(store: RunStore) -> str:
    return store.path.name


# ---------------------------------------------------------------- names as the user gave them
def dataset_label(spec: str) -> str:
    """A dataset as its user named it.

    ``digits``; ``moons (600 points)``; an image folder by its own name
    (``pets``; a ``train`` folder by its parent's), an uploaded zip by the
    zip's name (``pets.zip``, the content hash the app adds dropped); a
    torchvision set by its name (``mnist``). Parsed here rather than with
    :func:`engine.data.base.parse_dataset_spec`, whose package loads
    scikit-learn: ``python -m engine compare`` starts in well under a second.
    """
    text = str(spec).strip()
    name, _, query = text.partition("?")
    if ":" in name:  # folder:DIR or a torchvision set mnist:ROOT, as engine.data.base.parse_dataset_spec splits it
        kind, path = text.split(":", 1)
        if kind.lower() != "folder":
            return kind.lower()
        path = Path(path.split("?", 1)[0].rstrip("/\\"))
        parts = [p for p in path.parts if p not in ("", "/")]
        if UPLOADS in parts[:-1]:  # <runs>/uploads/NAME-<hash>/...: the upload's folder names the zip
            upload = parts[parts.index(UPLOADS) + 1]
            if UPLOAD_HASH.search(upload):
                return UPLOAD_HASH.sub("", upload) + ".zip"
        label = path.parent.name if path.name.lower() == "train" else path.name
        return label or str(path)
    n = dict(parse_qsl(query)).get("n")
    return f"{name.lower()} ({n} points)" if n else name.lower()


def noise_label(config, given: np.ndarray | None = None, true: np.ndarray | None = None) -> str:
    """The noise of a run: ``symmetric 40%``, ``none``, ``matrix``, or, when a
    label file brought the labels, ``label file`` with its measured
    disagreement with the truth where a truth is known (``label file (20% wrong)``)."""
    if config.labels:
        rate = label_disagreement(given, true)
        return "label file" if rate is None else f"label file ({rate:.0%} wrong)"
    noise = parse_noise_spec(config.noise)
    if noise.kind == "none":
        return "none"
    if noise.kind == "matrix":
        return "matrix"
    return f"{noise.kind} {noise.rate:.0%}"


def label_disagreement(given: np.ndarray | None, true: np.ndarray | None) -> float | None:
    """Fraction of given labels that differ from the truth, over samples whose truth is known."""
    if given is None or true is None:
        return None
    known = np.asarray(true) >= 0
    return float(np.mean(np.asarray(given)[known] != np.asarray(true)[known])) if known.any() else None


def method_label(config) -> str:
    """``AML-KD``, ``CE``, ``KD``, or an ablation: ``AML-KD w/o AWE``, ``AML-KD w/o mutual, stage 0``; a run
    whose graph came from features of elsewhere says so: ``AML-KD + features resnet50.npz``."""
    name = METHOD_NAMES.get(config.method, config.method)
    if config.method == "aml-kd" and getattr(config, "relabel_rule", "calibrated") == "authors":
        name += " (authors' rule)"
    without = getattr(config, "without", ())
    label = f"{name} w/o {', '.join(ABLATION_NAMES.get(w, w) for w in without)}" if without else name
    features = getattr(config, "teacher_features", None)
    return f"{label} + features {Path(features).name}" if features else label


# ---------------------------------------------------------------- comparable?
def same_data(stores: Sequence[RunStore | str | Path]) -> list[str]:
    """Why the runs cannot be compared; empty when they can.

    Runs are comparable when they hold the same training samples (sample
    keys; built-in data, whose keys are only indices, also the same dataset
    spec), the same class names and the same given labels. Each problem
    names the two runs and what differs.

    Keys and given labels are compared by the digests each run stored when it
    was made (:mod:`engine.rundir.digest`): equal digests, equal arrays, and
    no key is read. Where a digest differs, or a run was made before digests
    were stored, the arrays themselves are read and compared (which also names
    the first differing key and counts the differing labels).

    Returns
    -------
    list of str
        Empty when every run matches the first.
    """
    stores = _stores(stores)
    problems, loaded = [], []
    for store in stores:
        try:
            loaded.append(_Samples(_name(store), store.config(), store.dataset_arrays(),
                                   store.dataset_digest("keys_digest"), store.dataset_digest("given_digest")))
        except UserError as exc:
            problems.append(f"run {_name(store)!r} cannot be read: {exc}")
    if len(loaded) < 2:
        return problems
    first = loaded[0]
    seed_refs = {first.config.seed: first}  # seed -> its first run (whose given labels that seed's runs share)
    for run in loaded[1:]:
        problem = _sample_difference(first, run)
        if problem:
            problems.append(problem)
            continue
        ref = first
        if run.config.seed != first.config.seed and _seed_drawn(run.config) and _seed_drawn(first.config):
            # another seed draws other noisy labels: comparable under the same noise; its given labels
            # must match those of the first run of its own seed
            if run.config.noise != first.config.noise:
                problems.append(f"runs {first.name!r} and {run.name!r} differ in seed ({first.config.seed} and "
                                f"{run.config.seed}) and in noise ({first.config.noise!r} and "
                                f"{run.config.noise!r}): runs of several seeds are compared under the same noise")
                continue
            ref = seed_refs.setdefault(run.config.seed, run)
        if ref is run or (ref.given_digest is not None and ref.given_digest == run.given_digest):
            continue  # the same given labels, told by their digests
        wrong = int(np.sum(ref.arrays["given"] != run.arrays["given"]))
        if wrong:
            problems.append(f"runs {ref.name!r} and {run.name!r} have different given labels on {wrong} of "
                            f"{len(ref.arrays['given'])} samples (noise {ref.config.noise!r} and "
                            f"{run.config.noise!r}, seed {ref.config.seed} and {run.config.seed}"
                            f"{_label_files(ref.config, run.config)}): train them with the same noise, seed and "
                            "label file")
    return problems


@dataclass(frozen=True)
class _Samples:
    """A run's samples as :func:`same_data` compares them: its arrays (memory-mapped: read only where a
    digest cannot answer) and the digests stored with them (None: a run made before digests)."""

    name: str
    config: object
    arrays: dict
    keys_digest: str | None
    given_digest: str | None


def _sample_difference(a: _Samples, b: _Samples) -> str | None:
    """Why runs ``a`` and ``b`` do not hold the same samples and classes (counts, keys, data, class names)."""
    n_a, n_b = len(a.arrays["keys"]), len(b.arrays["keys"])
    if n_a != n_b:
        return f"runs {a.name!r} and {b.name!r} have different sample counts ({n_a} and {n_b} training samples)"
    if a.keys_digest is None or a.keys_digest != b.keys_digest:  # not told by the digests: read every key
        keys_a, keys_b = a.arrays["keys"].astype(str), b.arrays["keys"].astype(str)
        differ = np.flatnonzero(keys_a != keys_b)
        if len(differ):
            i = int(differ[0])
            return (f"runs {a.name!r} and {b.name!r} hold different samples: {len(differ)} of {n_a} keys differ "
                    f"(sample {i}: {str(keys_a[i])!r} and {str(keys_b[i])!r})")
    if _index_keys(a.arrays["keys"]) and a.config.dataset != b.config.dataset:
        return f"runs {a.name!r} and {b.name!r} are on different data ({a.config.dataset!r} and {b.config.dataset!r})"
    names_a, names_b = _class_names(a.arrays), _class_names(b.arrays)
    if names_a is not None and names_b is not None and names_a != names_b:
        return f"runs {a.name!r} and {b.name!r} have different classes ({', '.join(names_a)} and {', '.join(names_b)})"
    return None


def _seed_drawn(config) -> bool:
    """Whether the run's given labels are drawn with its seed (synthetic noise on the data's truth)."""
    return not config.labels and parse_noise_spec(config.noise).kind != "none"


def _index_keys(keys: np.ndarray) -> bool:
    """Whether the keys are row numbers (built-in data), told by the first 50."""
    return len(keys) > 0 and all(str(k).isdigit() for k in keys[:50])


def _class_names(arrays: dict) -> tuple[str, ...] | None:
    return tuple(str(c) for c in arrays["class_names"]) if "class_names" in arrays else None


def _label_files(a, b) -> str:
    if not (a.labels or b.labels):
        return ""
    return f", label file {Path(a.labels).name if a.labels else 'none'!r} and " \
           f"{Path(b.labels).name if b.labels else 'none'!r}"


def require_same_data(stores: Sequence[RunStore | str | Path]) -> None:
    """:class:`UserError` with the first reason when the runs are not comparable."""
    problems = same_data(stores)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"cannot compare: {problems[0]}{more}")


# ---------------------------------------------------------------- the table
def run_results(store: RunStore, strict: bool = True) -> tuple[dict, bool]:
    """The run's results and whether it is finished: ``summary.json``, else the
    last metrics line with the wall time summed over its steps.

    A damaged ``summary.json`` raises one :class:`UserError` naming it and how
    to rewrite it (:meth:`engine.rundir.store.RunStore.summary`); with ``strict=False``
    (a list of every run, where one damaged run must not hide the others) the
    metrics stand in for it.
    """
    try:
        summary = store.summary()
    except UserError:
        if strict:
            raise
        summary = None
    if summary is not None:
        return summary, True
    metrics = store.metrics()
    last = dict(metrics[-1]) if metrics else {}
    last["steps"] = last.get("step", 0)
    last["wall_seconds"] = float(sum(m.get("step_seconds") or 0.0 for m in metrics))
    return last, False


def comparison_table(stores: Sequence[RunStore | str | Path], chance: bool = False) -> list[dict]:
    """One row per run (keys: see :data:`COLUMNS`, plus ``finished`` and
    ``total_steps``), in the order given.

    ``student_vs_ce`` is the student's test accuracy minus that of the first
    finished CE run of the set with the same seed (``baseline_run``; ``None``
    where there is none, and for that run itself, whose ``baseline`` is True).
    ``teacher_features``: the file name of the run's features from elsewhere,
    or ``None``. With ``chance``, :func:`add_chance` adds the intervals and the
    paired test. ``warnings``: the run's
    :mod:`engine.rundir.health` warnings (``code``, ``message``), ``below_ce`` added
    where its student falls below that CE run's. Numbers are ``None`` where the
    run does not measure them (no teacher in CE, no truth for a label file).
    """
    rows = []
    for store in _stores(stores):
        config = store.config()
        arrays = store.dataset_arrays()
        results, finished = run_results(store)
        true = arrays.get("true") if config.labels else None  # a label file's disagreement with the truth
        true = None if true is None or not (true >= 0).any() else true  # (read only where it is shown)
        method = method_label(config)
        if not finished:  # a 'running' left by a process that is gone reads as stopped
            state = store.live_state()
            method += f" ({'training' if state == 'running' else 'stopped' if state in ('stopped', 'error') else 'unfinished'})"
        rows.append({
            "run": _name(store), "method": method,
            "method_id": config.method, "dataset": dataset_label(config.dataset),
            "noise": noise_label(config, arrays.get("given"), true), "seed": config.seed,
            "given_label_precision": results.get("given_label_precision"),
            "refined_label_precision": results.get("refined_label_precision"),
            "refined_precision_estimate": results.get("refined_precision_estimate"),
            "refined_precision_low": results.get("refined_precision_low"),  # its 90% interval (the page shows it)
            "refined_precision_high": results.get("refined_precision_high"),
            "student_test_accuracy": results.get("student_test_accuracy"),
            "teacher_test_accuracy": results.get("teacher_test_accuracy") if config.method != "ce" else None,
            "student_vs_ce": None, "baseline": False, "baseline_run": None, "steps": results.get("steps"),
            "teacher_features": Path(config.teacher_features).name if config.teacher_features else None,
            "total_steps": store.status().get("total_steps"), "wall_seconds": results.get("wall_seconds"),
            "finished": finished,
            "warnings": _features_named(_warnings(store, results, finished),
                                        Path(config.teacher_features).name if config.teacher_features else None),
            "test_labels": results.get("test_labels"),  # 'given': test 'accuracy' is agreement with given labels
        })
    baselines = {}  # seed -> its first finished CE run
    for row in rows:
        if row["method_id"] == "ce" and row["finished"] and row["student_test_accuracy"] is not None:
            baselines.setdefault(row["seed"], row)
    for baseline in baselines.values():
        baseline["baseline"] = True
    for row in rows:
        baseline = baselines.get(row["seed"])
        if baseline is not None and row is not baseline and row["student_test_accuracy"] is not None:
            row["baseline_run"] = baseline["run"]
            row["student_vs_ce"] = row["student_test_accuracy"] - baseline["student_test_accuracy"]
            below = below_baseline(row["student_test_accuracy"], baseline["student_test_accuracy"])
            if below is not None and all(w.get("code") != "below_ce" for w in row["warnings"]):
                row["warnings"] = row["warnings"] + [below]
    return add_chance(rows, stores) if chance else rows


# ---------------------------------------------------------------- chance
#: Row fields :func:`add_chance` fills (``None`` where not measured).
CHANCE_FIELDS = ("test_samples", "student_acc_low", "student_acc_high", "vs_ce_low", "vs_ce_high", "vs_ce_p",
                 "vs_ce_samples", "vs_ce_discordant", "vs_ce_margin")


def student_test_right(store: RunStore, dataset=None) -> np.ndarray | None:
    """Per test sample whose label is known, whether the run's student (as its checkpoint left it) classifies
    it right: ``(T,)`` bool; ``None`` without a test set, a checkpoint or a student.

    ``dataset``: the run's :class:`engine.data.Dataset` when the caller has it loaded already.
    """
    import torch

    from ..data import dataset_for_config
    from ..method.training import forward_all
    from ..models import build_model, default_pair
    from ..steps.checkpoint import read

    if not store.checkpoint_path.exists():
        return None
    config = store.config()
    data = dataset if dataset is not None else dataset_for_config(config)
    if data.test_true is None or not (np.asarray(data.test_true) >= 0).any():
        return None
    state = read(store.checkpoint_path).get("student")
    if not isinstance(state, dict):
        return None
    arch = config.student or default_pair(data.kind, data.input_shape)[1]
    model = build_model(arch, data.input_shape, data.num_classes, data.kind)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        return None
    known = np.asarray(data.test_true) >= 0
    with torch.no_grad():
        pred = forward_all(model, torch.as_tensor(data.test_x)).pred
    return pred[known] == np.asarray(data.test_true)[known]


def add_chance(rows: list[dict], stores: Sequence[RunStore | str | Path], right: dict | None = None) -> list[dict]:
    """Add to each row of :func:`comparison_table` (in place, and returned) how much is chance
    (:data:`CHANCE_FIELDS`):

    - ``test_samples`` (T) and ``student_acc_low`` / ``_high``: the Wilson 95% interval of the student's
      test accuracy;
    - against the row's ``baseline_run`` (the CE run of its seed), on the same test samples:
      ``vs_ce_low`` / ``_high`` (Newcombe's paired interval of the difference), ``vs_ce_p`` (exact
      McNemar), ``vs_ce_samples`` (student right and CE wrong, minus the reverse), ``vs_ce_discordant``
      (samples where exactly one is right) and ``vs_ce_margin`` (the smallest difference in samples the
      test calls beyond chance with that many discordant samples; ``None``: none would be).

    ``right``: run name -> :func:`student_test_right`'s array, where the caller has it (else computed).
    """
    stores = _stores(stores)
    right = dict(right or {})
    datasets = {}
    for row, store in zip(rows, stores):
        row.update({key: None for key in CHANCE_FIELDS})
        if row["student_test_accuracy"] is None:
            continue
        if row["run"] not in right:
            config = store.config()
            key = (config.dataset, config.labels, config.key_column, config.label_column, config.truth_column)
            if key not in datasets:
                from ..data import dataset_for_config

                datasets[key] = dataset_for_config(config)
            right[row["run"]] = student_test_right(store, datasets[key])
        correct = right[row["run"]]
        if correct is None or len(correct) == 0:
            continue
        row["test_samples"] = int(len(correct))
        row["student_acc_low"], row["student_acc_high"] = wilson_interval(int(correct.sum()), len(correct))
    for row in rows:
        base = row.get("baseline_run")
        a, b = right.get(row["run"]), right.get(base) if base else None
        if a is None or b is None or len(a) != len(b):
            continue
        d = paired_difference(a, b)
        row.update(vs_ce_low=d.low, vs_ce_high=d.high, vs_ce_p=d.p_value, vs_ce_samples=d.images,
                   vs_ce_discordant=d.only_a + d.only_b, vs_ce_margin=d.margin)
        row["warnings"] = [_below_ce_with_chance(w, row, base) if w.get("code") == "below_ce" else w
                           for w in row["warnings"]]
    return rows


def _below_ce_with_chance(warning: dict, row: dict, base: str) -> dict:
    """The ``below_ce`` warning with how many images it is and whether that is within chance."""
    images, n, p = -row["vs_ce_samples"], row["test_samples"], row["vs_ce_p"]
    count = f"{images} test sample{'s' if images != 1 else ''} of {n}"
    if p >= 1 - LEVEL:
        message = (f"The student's test accuracy {row['student_test_accuracy']:.3f} is below CE's ({base}) "
                   f"{row['student_test_accuracy'] - row['student_vs_ce']:.3f}: {count} (McNemar p = {p:.2f}), "
                   "within chance: no evidence either way on this test set.")
    else:
        message = f"{warning['message']} ({count}, McNemar p = {p:.3f}: beyond chance.)"
    return {**warning, "message": message, "within_chance": p >= 1 - LEVEL}


def _features_named(warnings: list[dict], features: str | None) -> list[dict]:
    """A ``refined_worse`` warning of a run whose graph came from features of elsewhere names those features
    as the first suspect (the teacher network did not build that graph)."""
    if not features:
        return warnings
    out = []
    for w in warnings:
        if w.get("code") == "refined_worse":
            head = w["message"].split(": the method", 1)[0]
            w = {**w, "message": f"{head}: the kNN graph and stage 0 came from the features in {features!r} "
                                 "(--teacher-features), not from the teacher: check that those features separate "
                                 "the classes (and are in the dataset's sample order) before anything else."}
        out.append(w)
    return out


def chance_sentence(rows: list[dict]) -> str | None:
    """The table's statistics in words: how many test images, what one image is worth, and which
    differences to CE are within chance; ``None`` before :func:`add_chance` measured a test set.

    ``36 test samples: one sample is 2.8 points. Differences to CE under 6 samples are within chance
    (exact McNemar test at 5% ...). aml-run: 2 samples fewer right than CE (p = 0.69), within chance.``
    """
    sizes = sorted({r["test_samples"] for r in rows if r.get("test_samples")})
    if not sizes:
        return None
    n = sizes[0]
    text = (f"{n} test samples: one sample is {100 / n:.1f} points." if len(sizes) == 1
            else f"{sizes[0]}-{sizes[-1]} test samples.")
    paired = [r for r in rows if r.get("vs_ce_p") is not None]
    if not paired:
        return text
    margins = [r["vs_ce_margin"] for r in paired]
    alpha = f"{1 - LEVEL:.0%}"
    if all(m is None for m in margins):
        most = max(r["vs_ce_discordant"] for r in paired)
        text += (f" No difference to CE here can be told from chance: the students and CE disagree on at most "
                 f"{most} samples (an exact McNemar test at {alpha} needs 6 or more, all one way).")
    else:
        text += (f" Differences to CE under {max(m for m in margins if m is not None)} samples are within chance "
                 f"(exact McNemar test at {alpha} on the test samples where the student and CE disagree).")
    for r in paired:
        images = r["vs_ce_samples"]
        how = f"{abs(images)} sample{'s' if abs(images) != 1 else ''} {'more' if images > 0 else 'fewer'} right" \
            if images else "as many samples right"
        verdict = "within chance" if r["vs_ce_p"] >= 1 - LEVEL else "beyond chance"
        text += f" {r['run']}: {how} than CE (p = {r['vs_ce_p']:.2f}), {verdict}."
    return text


def by_method(rows: list[dict]) -> list[dict]:
    """Per method (ablations and features apart), over its finished runs (one per seed): ``method``,
    ``runs``, ``seeds``, then mean and spread (sample standard deviation) of the student's test accuracy,
    of its difference to CE and of the refined labels' precision (``*_mean``, ``*_sd``), and the
    lowest and highest student accuracy."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["finished"]:
            groups.setdefault(row["method"], []).append(row)
    out = []
    for method, members in groups.items():
        entry = {"method": method, "runs": len(members), "seeds": sorted({r["seed"] for r in members})}
        for key, name in (("student_test_accuracy", "student_acc"), ("student_vs_ce", "vs_ce"),
                          ("refined_label_precision", "refined")):
            entry[f"{name}_mean"], entry[f"{name}_sd"] = mean_and_spread(r[key] for r in members)
        accs = [r["student_test_accuracy"] for r in members if r["student_test_accuracy"] is not None]
        entry["student_acc_min"], entry["student_acc_max"] = (min(accs), max(accs)) if accs else (None, None)
        out.append(entry)
    return out


#: Columns of :func:`by_method_text`: (key, header).
BY_METHOD_COLUMNS = (("method", "method"), ("runs", "seeds"), ("student_acc", "student acc (mean ± sd)"),
                     ("range", "lowest-highest"), ("vs_ce", "vs CE (mean ± sd)"), ("refined", "refined prec"))


def by_method_text(entries: list[dict]) -> list[list[str]]:
    """Header and body of :func:`by_method` as text cells."""
    def pm(entry, name, sign=""):
        mean, sd = entry[f"{name}_mean"], entry[f"{name}_sd"]
        return "–" if mean is None else f"{mean:{sign}.3f} ± {sd:.3f}"

    body = [[e["method"], str(e["runs"]), pm(e, "student_acc"),
             "–" if e["student_acc_min"] is None else f"{e['student_acc_min']:.3f}–{e['student_acc_max']:.3f}",
             pm(e, "vs_ce", "+"), pm(e, "refined")] for e in entries]
    return [[header for _, header in BY_METHOD_COLUMNS]] + body


def _warnings(store: RunStore, results: dict, finished: bool) -> list[dict]:
    """The run's health warnings (:mod:`engine.rundir.health`): kept in summary.json, else checked now."""
    if finished and isinstance(results.get("warnings"), list):
        return [w for w in results["warnings"] if isinstance(w, dict)]
    try:
        return run_warnings(store)
    except UserError:
        return []


def format_cell(row: dict, key: str, fmt: str) -> str:
    """A table cell as text: ``–`` for unknown, ``baseline`` for the CE run's own difference."""
    if key == "student_vs_ce" and row.get("baseline"):
        return "baseline"
    if key == "student_interval":
        low, high = row.get("student_acc_low"), row.get("student_acc_high")
        return "–" if low is None else f"{low:.3f}–{high:.3f}"
    if key == "vs_ce_interval":
        low, high = row.get("vs_ce_low"), row.get("vs_ce_high")
        return "–" if low is None else f"{low:+.3f} to {high:+.3f}"
    value = row.get(key)
    if value is None:
        return "–"
    if key == "steps" and not row.get("finished") and row.get("total_steps"):
        return f"{value}/{row['total_steps']}"
    return fmt.format(value)


def table_text(rows: list[dict]) -> list[list[str]]:
    """Header and body of the table as text cells (the CLI prints them, the page shows them)."""
    return [[header for _, header, _ in COLUMNS]] + [[format_cell(r, k, f) for k, _, f in COLUMNS] for r in rows]


def format_table(rows: list[dict]) -> str:
    """The table as aligned plain text."""
    return text_table(table_text(rows))


def text_table(cells: list[list[str]]) -> str:
    """Header and body cells as aligned plain text, a rule under the header."""
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------- curves
def curves(stores: Sequence[RunStore | str | Path]) -> list[dict]:
    """Per run and student epoch (1, 2, ...; the phases warm-up, refine,
    mutual, or a baseline's plain epochs): ``run``, ``method``, ``epoch``,
    ``step``, ``phase``, ``student_test_accuracy`` and ``label_precision``
    (the refined labels' precision; ``None`` without a truth)."""
    points = []
    for store in _stores(stores):
        method = method_label(store.config())
        epoch = 0
        for m in store.metrics():
            if m.get("phase") not in STUDENT_PHASES:
                continue
            epoch += 1
            points.append({"run": _name(store), "method": method, "epoch": epoch, "step": m.get("step"),
                           "phase": m.get("phase"), "student_test_accuracy": m.get("student_test_accuracy"),
                           "label_precision": m.get("refined_label_precision")})
    return points


# ---------------------------------------------------------------- per sample
@dataclass(frozen=True)
class PerSample:
    """Each run's final labels of every training sample.

    Attributes
    ----------
    runs : tuple of str, length R
    keys : np.ndarray, shape (N,), str or int
        The sample keys as ``dataset.npz`` stores them (memory-mapped: index the rows shown; ``str()`` each).
    given : np.ndarray, shape (N,), int
        The (shared) given labels, as stored (memory-mapped).
    true : np.ndarray or None, shape (N,), int
        The truth (-1 where unknown), ``None`` when no sample has one.
    refined : np.ndarray, shape (R, N), int
        Each run's refined label after its last step (a baseline's: the given label).
    student : np.ndarray, shape (R, N), int
        Each run's student prediction after its last step (-1 before the student trained).
    class_names : tuple of str
    """

    runs: tuple[str, ...]
    keys: np.ndarray
    given: np.ndarray
    true: np.ndarray | None
    refined: np.ndarray
    student: np.ndarray
    class_names: tuple[str, ...]

    def right(self, which: str = "refined") -> np.ndarray | None:
        """``(R, N)`` bool: the run's label (``refined`` or ``student``) equals the truth; ``None`` without truth."""
        if self.true is None:
            return None
        return getattr(self, which) == self.true[None, :]

    def disagree(self, which: str = "refined") -> np.ndarray:
        """``(N,)`` bool: the runs do not all give the sample the same label."""
        labels = getattr(self, which)
        return np.any(labels != labels[:1], axis=0)

    def rows(self) -> list[dict]:
        """One dict per sample: index, key, given, true, then per run its refined label, student
        prediction and (truth known) whether each is right, and whether the runs disagree."""
        name = lambda c: self.class_names[c] if 0 <= c < len(self.class_names) else ""  # noqa: E731
        right_r, right_s = self.right("refined"), self.right("student")
        dis_r, dis_s = self.disagree("refined"), self.disagree("student")
        out = []
        keys, given = np.asarray(self.keys).astype(str), np.asarray(self.given)  # every row: read each once
        for i in range(len(keys)):
            row = {"index": i, "key": str(keys[i]), "given": name(int(given[i]))}
            if self.true is not None:
                row["true"] = name(int(self.true[i]))
            for r, run in enumerate(self.runs):
                row[f"{run}: refined"] = name(int(self.refined[r, i]))
                if right_r is not None:
                    row[f"{run}: refined right"] = bool(right_r[r, i]) if self.true[i] >= 0 else None
                row[f"{run}: student"] = name(int(self.student[r, i]))
                if right_s is not None:
                    row[f"{run}: student right"] = bool(right_s[r, i]) if self.true[i] >= 0 else None
            row["refined labels disagree"] = bool(dis_r[i])
            row["students disagree"] = bool(dis_s[i])
            out.append(row)
        return out


def per_sample(stores: Sequence[RunStore | str | Path]) -> PerSample:
    """Each run's final refined label and student prediction per sample.

    Raises
    ------
    UserError
        When the runs are not on the same data (:func:`same_data`), or one has no step yet.
    """
    stores = _stores(stores)
    require_same_data(stores)
    from ..rundir.snapshot import read

    arrays = stores[0].dataset_arrays()
    refined, student = [], []
    for store in stores:
        steps = store.steps()
        if not steps:
            raise UserError(f"run {_name(store)!r} has no steps yet: train it first")
        snap = read(store, steps[-1], ("refined", "student_pred"))
        refined.append(np.asarray(snap["refined"], dtype=np.int64))
        student.append(np.asarray(snap.get("student_pred", np.full(len(arrays["given"]), -1)), dtype=np.int64))
    true = arrays.get("true")  # every sample's truth: which runs label each right is the view's content
    true = None if true is None or not (true >= 0).any() else np.asarray(true, dtype=np.int64)
    # keys and given labels as stored (memory-mapped): the view reads the rows it shows, and every row only
    # for the CSV of every sample (PerSample.rows)
    return PerSample(runs=tuple(_name(s) for s in stores), keys=arrays["keys"], given=arrays["given"], true=true,
                     refined=np.stack(refined), student=np.stack(student), class_names=stores[0].class_names())
