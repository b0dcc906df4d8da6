"""What the Setup and Train pages compute, without Streamlit: presets, the
Setup form's values to and from a :class:`~engine.method.config.RunConfig`, checks
of settings that cannot run, run names, the table of runs and the plan of
phases. Everything here is pure or reads the run directory only.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from app.byod import (SOURCES, TORCHVISION_SETS, folder_spec, run_name_stem, torchvision_spec, vectors_fields,
                      vectors_spec)
from engine.readers.compare import dataset_label, noise_label, run_results
from engine.method import (METHOD_NAMES, Preset, RunConfig, check_runnable, default_preset,  # noqa: F401
                           known_noise_rate, load_presets)
from engine.data import parse_dataset_spec
from engine.data import TOY_DEFAULTS
from engine.data import TEST_FRACTION, VECTORS_TEST_FRACTION, split_path_options
from engine.data import TORCHVISION_ALIASES
from engine.errors import UserError
from engine.method import GraphConfig
from engine.models import default_pair
from engine.method import parse_noise_spec
from engine.steps import phase_plan  # noqa: F401 - the app's timeline reads it from here
from engine.rundir import RunStore, list_runs

DATASETS = ("digits", "moons", "blobs", "circles")
NOISE_KINDS = ("symmetric", "pairflip", "instance", "asym", "matrix", "none")
METHOD_LABELS = {method: name + {"ce": " (plain training)", "kd": " (plain distillation)"}.get(method, "")
                 for method, name in METHOD_NAMES.items()}
NOISE_RATE_MODES = ("estimate", "known", "custom")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
#: The Setup form's label of each run setting it shows (by its name in engine.method.config.declared): the
#: widgets carry these labels, and messages about a setting name it by them (the CLI names it by its flag).
LABELS = {"method": "Method", "teacher_checkpoint": "Teacher checkpoint (optional)",
          "teacher_epochs": "Teacher (upper bound, early-stopped)", "warmup_epochs": "Warm-up",
          "refine_epochs": "Refine (stage 1)", "mutual_epochs": "Mutual (stage 2)", "k": "k neighbours in the graph",
          "knn": "kNN search"}


# ---------------------------------------------------------------- presets
# Preset, load_presets and default_preset are engine.method.presets' (imported above): the CLI's
# --preset reads the same file the same way.


# ---------------------------------------------------------------- the Setup form
_DEFAULT = RunConfig()  # the form's defaults are the config's (engine.method.config declares them)
_NOISE = parse_noise_spec(_DEFAULT.noise)


@dataclass(frozen=True)
class SetupValues:
    """The Setup form's fields: flat, one per widget. A field that is a run setting takes its default
    from :class:`~engine.method.config.RunConfig`."""

    dataset: str = _DEFAULT.dataset
    toy_size: int = 600
    toy_spread: float = 0.15
    blob_classes: int = 4
    noise_kind: str = _NOISE.kind
    noise_rate: float = _NOISE.rate
    method: str = _DEFAULT.method
    teacher: str = ""
    student: str = ""
    teacher_epochs: int = _DEFAULT.schedule.teacher_epochs
    warmup_epochs: int = _DEFAULT.schedule.warmup_epochs
    refine_epochs: int = _DEFAULT.schedule.refine_epochs
    mutual_epochs: int = _DEFAULT.schedule.mutual_epochs
    k: int = _DEFAULT.graph.k
    knn: str = _DEFAULT.graph.knn
    alpha: float = _DEFAULT.propagation.alpha
    edge_power: float = _DEFAULT.graph.power
    temperature: float = _DEFAULT.train.temperature
    kd_weight: float = _DEFAULT.train.kd_weight
    clean_kd_weight: float = _DEFAULT.train.clean_kd_weight
    relational_weight: float = _DEFAULT.train.relational_weight
    noise_rate_mode: str = "estimate" if _DEFAULT.noise_rate is None else "custom"
    noise_rate_value: float = _NOISE.rate if _DEFAULT.noise_rate is None else _DEFAULT.noise_rate
    seed: int = _DEFAULT.seed
    # bring your own data
    source: str = "builtin"  # one of app.byod.SOURCES
    folder_path: str = ""  # image folder (typed, or where an upload was unpacked)
    image_size: int = 0  # 0: the folder's default
    image_mode: str = "auto"
    test_fraction: float = TEST_FRACTION
    augment: str = "auto"
    tv_name: str = "mnist"
    tv_root: str = ""  # empty: the engine's default ($AMLKD_DATA_DIR or ./data)
    tv_download: bool = False
    tv_n: int = 10_000  # a CPU-sized subset; 0: all
    tv_test_n: int = 0
    vectors_path: str = ""  # an .npz / .npy of embeddings (engine.data.vectors)
    vectors_test: float = VECTORS_TEST_FRACTION
    matrix_path: str = ""
    labels: str = ""  # label CSV; its labels are the given labels (no synthetic noise)
    key_column: str = _DEFAULT.key_column
    label_column: str = _DEFAULT.label_column
    truth_column: str = ""
    known_noise_rate: float | None = None  # what 'known' is where the data decide it (asym, matrix, a label file)
    teacher_checkpoint: str = ""
    teacher_features: str = ""
    teacher_weights: str = ""  # a torchvision teacher's: imagenet, a file or none ("" for other teachers)
    teacher_mode: str = ""  # frozen or finetune ("" for other teachers)

    @classmethod
    def from_config(cls, config: RunConfig) -> SetupValues:
        spec = parse_dataset_spec(config.dataset)
        name = spec.name if spec.name in DATASETS else "digits"
        spread_default, classes_default = TOY_DEFAULTS.get(name, (0.15, 4))
        noise = parse_noise_spec(config.noise)
        kind = noise.kind if noise.kind in NOISE_KINDS else "symmetric"
        teacher, student = default_models(name)
        known = known_noise_rate(noise, label_file=bool(config.labels))  # None: the data decide it
        if config.noise_rate is None:
            mode, value = "estimate", noise.rate
        elif known is not None and abs(config.noise_rate - known) < 1e-12:
            mode, value = "known", config.noise_rate
        else:
            mode, value = "custom", config.noise_rate
        s = config.schedule
        return cls(dataset=name, toy_size=spec.option("n", 600, int),
                   toy_spread=spec.option("spread", spread_default, float),
                   blob_classes=spec.option("classes", classes_default if name == "blobs" else 4, int),
                   noise_kind=kind, noise_rate=noise.rate, method=config.method,
                   teacher=config.teacher or teacher, student=config.student or student,
                   teacher_epochs=s.teacher_epochs, warmup_epochs=s.warmup_epochs,
                   refine_epochs=s.refine_epochs, mutual_epochs=s.mutual_epochs,
                   k=config.graph.k, knn=config.graph.knn, alpha=config.propagation.alpha,
                   edge_power=config.graph.power,
                   temperature=config.train.temperature, kd_weight=config.train.kd_weight,
                   clean_kd_weight=config.train.clean_kd_weight, relational_weight=config.train.relational_weight,
                   noise_rate_mode=mode, noise_rate_value=value,
                   seed=config.seed, matrix_path=noise.matrix_path or "", labels=config.labels or "",
                   key_column=config.key_column, label_column=config.label_column,
                   truth_column=config.truth_column or "", teacher_checkpoint=config.teacher_checkpoint or "",
                   teacher_features=config.teacher_features or "",
                   teacher_weights=config.teacher_weights or "", teacher_mode=config.teacher_mode or "",
                   **_source_fields(config.dataset))

    def dataset_spec(self) -> str:
        """``digits``, ``moons?n=600&spread=0.15`` (blobs add ``classes``), ``folder:DIR[?...]``,
        ``vectors:FILE[?test=F]`` or ``mnist:ROOT[?...]``."""
        if self.source in ("folder", "upload"):
            return folder_spec(self.folder_path.strip(), int(self.image_size), self.image_mode,
                               float(self.test_fraction), self.augment)
        if self.source == "vectors":
            return vectors_spec(self.vectors_path, float(self.vectors_test))
        if self.source == "torchvision":
            return torchvision_spec(self.tv_name, self.tv_root.strip(), int(self.tv_n), int(self.tv_test_n),
                                    bool(self.tv_download))
        if self.source != "builtin":
            raise UserError(f"data source {self.source!r} is not offered; valid: {', '.join(SOURCES)}")
        if self.dataset == "digits":
            return "digits"
        spec = f"{self.dataset}?n={int(self.toy_size)}&spread={float(self.toy_spread):g}"
        return spec + (f"&classes={int(self.blob_classes)}" if self.dataset == "blobs" else "")

    def noise_spec(self) -> str:
        """The synthetic noise; ``none`` when a label file brings the given labels."""
        if self.labels or self.noise_kind == "none":
            return "none"
        if self.noise_kind == "matrix":
            return f"matrix:{self.matrix_path.strip()}"
        return f"{self.noise_kind}:{float(self.noise_rate):g}"

    def to_config(self, base: RunConfig | None = None) -> RunConfig:
        """The run config of these values (knobs the form lacks come from ``base``).

        Raises
        ------
        UserError
            Naming the field and its valid range when a value is out of range.
        """
        base = base or RunConfig()
        try:
            graph = GraphConfig(k=int(self.k), power=float(self.edge_power), knn=self.knn)
            propagation = replace(base.propagation, alpha=float(self.alpha))
            schedule = replace(base.schedule, teacher_epochs=int(self.teacher_epochs),
                               warmup_epochs=int(self.warmup_epochs), refine_epochs=int(self.refine_epochs),
                               mutual_epochs=int(self.mutual_epochs))
            train = replace(base.train, temperature=float(self.temperature), kd_weight=float(self.kd_weight),
                            clean_kd_weight=float(self.clean_kd_weight),
                            relational_weight=float(self.relational_weight))
        except UserError:
            raise
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return replace(base, dataset=self.dataset_spec(), noise=self.noise_spec(), method=self.method,
                       seed=int(self.seed), noise_rate=self._noise_rate(), teacher=self.teacher or None,
                       student=self.student or None, graph=graph, propagation=propagation,
                       schedule=schedule, train=train, labels=self.labels.strip() or None,
                       key_column=self.key_column, label_column=self.label_column,
                       truth_column=self.truth_column or None,
                       teacher_checkpoint=self.teacher_checkpoint.strip() or None,
                       teacher_features=(self.teacher_features.strip() or None) if self.method == "aml-kd" else None,
                       teacher_weights=(self.teacher_weights or None) if self._torchvision_teacher() else None,
                       teacher_mode=(self.teacher_mode or None) if self._torchvision_teacher() else None)

    def _torchvision_teacher(self) -> bool:
        return self.teacher.startswith("torchvision:") and self.method != "ce"

    def _noise_rate(self) -> float | None:
        if self.noise_rate_mode == "estimate":
            return None
        if self.noise_rate_mode == "known":  # engine.method.noise.known_noise_rate: the data's where they decide
            rate = known_noise_rate(self.noise_spec(), label_file=bool(self.labels))
            if rate is not None:
                return rate
            if self.known_noise_rate is None:
                what = "the label file (no truth to compare with)" if self.labels else \
                    f"{self.noise_kind} noise on this data (not known until the data is)"
                raise UserError(f"the noise rate of {what} is not known; choose 'estimate' or 'custom' for the "
                                "noise rate used by small-loss selection")
            return float(self.known_noise_rate)
        return float(self.noise_rate_value)


def _source_fields(dataset: str) -> dict:
    """The form's data-source fields of a dataset spec (built-in ones keep the defaults)."""
    spec = parse_dataset_spec(dataset)
    name = TORCHVISION_ALIASES.get(spec.name, spec.name)
    if spec.name == "folder":
        path, options = split_path_options(spec)
        parsed = replace(spec, options=tuple(options.items()))
        return {"source": "folder", "folder_path": path, "image_size": parsed.option("size", 0, int),
                "image_mode": options.get("mode", "auto"), "augment": options.get("augment", "auto"),
                "test_fraction": parsed.option("test", TEST_FRACTION, float)}
    if spec.name == "vectors":
        path, test = vectors_fields(dataset)
        return {"source": "vectors", "vectors_path": path, "vectors_test": test}
    if name in TORCHVISION_SETS:
        path, options = split_path_options(spec)
        parsed = replace(spec, options=tuple(options.items()))
        return {"source": "torchvision", "tv_name": name, "tv_root": path, "tv_n": parsed.option("n", 0, int),
                "tv_test_n": parsed.option("test_n", 0, int),
                "tv_download": options.get("download", "0").lower() in ("1", "true", "yes")}
    return {}


def default_models(dataset_name: str) -> tuple[str, str]:
    """The engine's (teacher, student) pair for a dataset of the form."""
    if dataset_name == "digits":
        return default_pair("image", (1, 8, 8))
    return default_pair("points", (2,))


def settings_problems(config: RunConfig, num_train: int | None, num_classes: int | None = None) -> list[str]:
    """Reasons the run cannot start, in the engine's words (:func:`engine.method.config.check_runnable`),
    each setting named by its label on the form (:data:`LABELS`).

    ``num_train`` is None when not known yet (a dataset still to be
    downloaded: the engine checks k on Create).
    """
    return check_runnable(config, num_train, num_classes, names=LABELS)


# ---------------------------------------------------------------- runs
def suggest_run_name(config: RunConfig, root: Path) -> str:
    """A free, readable folder name such as ``digits-symmetric40-aml-kd-s0`` or
    ``pets-labels-aml-kd-s0`` (an image folder with a label file)."""
    noise = parse_noise_spec(config.noise)
    noise_part = "labels" if config.labels else "clean" if noise.kind == "none" else \
        "matrix" if noise.kind == "matrix" else f"{noise.kind}{round(noise.rate * 100)}"
    stem = f"{run_name_stem(config.dataset)}-{noise_part}-{config.method}-s{config.seed}"
    name, i = stem, 2
    while (Path(root) / name).exists():
        name, i = f"{stem}-{i}", i + 1
    return name


def validate_run_name(name: str, root: Path) -> Path:
    """The folder a new run or a renamed one would get; :class:`UserError` if unusable."""
    if not RUN_NAME.match(name or ""):
        raise UserError(f"run name {name!r} is not usable; valid: 1-80 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    path = Path(root) / name
    if path.exists():
        raise UserError(f"a run named {name!r} already exists in {str(root)!r}; choose another name")
    return path


def run_rows(root: Path) -> list[dict]:
    """One row per run under ``root`` (newest first): settings, where it is, results.

    ``dataset`` is named as the user named it (an uploaded zip's name, not
    the folder it was unpacked to; :func:`engine.readers.compare.dataset_label`),
    ``noise`` reads ``label file`` (with its disagreement with the truth where
    known) for labels from a file. Results come from ``summary.json`` when the
    run is done, else from the last line of ``metrics.jsonl``.
    """
    rows = []
    for path in list_runs(root):
        store = RunStore(path)
        try:
            config = store.config()
        except UserError as exc:
            rows.append({"name": path.name, "path": str(path), "dataset": "?", "method": "?", "noise": "?",
                         "seed": None, "state": "unreadable", "phase": "", "step": None, "total_steps": None,
                         "student_test_accuracy": None, "refined_label_precision": None, "problem": str(exc)})
            continue
        status = store.status()
        summary, _ = run_results(store, strict=False)  # summary.json, else (none, or damaged) the last metrics
        rows.append({"name": path.name, "path": str(path), "dataset": dataset_label(config.dataset),
                     "method": config.method, "noise": _noise_label(store, config), "seed": config.seed,
                     "state": status.get("state", "idle"),
                     "phase": status.get("phase", ""), "step": status.get("step"),
                     "total_steps": status.get("total_steps"),
                     "student_test_accuracy": summary.get("student_test_accuracy"),
                     "refined_label_precision": summary.get("refined_label_precision"), "problem": None})
    return rows


def _noise_label(store: RunStore, config: RunConfig) -> str:
    """The run's noise as :func:`engine.readers.compare.noise_label` words it (a label file's disagreement with the
    truth read from its dataset.npz)."""
    if not config.labels:
        return noise_label(config)
    try:
        arrays = store.dataset_arrays()
    except UserError:
        return noise_label(config)
    return noise_label(config, arrays.get("given"), arrays.get("true"))


def rename_run(path: Path, new_name: str) -> Path:
    """Move a run directory to a new name in the same folder; returns the new path."""
    path = Path(path)
    if not RunStore(path).exists():
        raise UserError(f"{str(path)!r} is not a run directory (no config.json)")
    target = validate_run_name(new_name, path.parent)
    path.rename(target)
    return target


def delete_run(path: Path) -> None:
    """Remove a run directory (only one that holds a run)."""
    path = Path(path)
    if not RunStore(path).exists():
        raise UserError(f"{str(path)!r} is not a run directory (no config.json); nothing was deleted")
    shutil.rmtree(path)


# ---------------------------------------------------------------- phases
# The phase table lives in engine.steps.phases; phase_plan is imported from there above.


def config_summary(config: RunConfig) -> str:
    """One line: dataset, noise, method, seed, schedule."""
    s = config.schedule
    head = f"{config.dataset} · noise {config.noise} · {METHOD_LABELS.get(config.method, config.method)} · " \
           f"seed {config.seed}"
    if config.method != "aml-kd":  # one plain student phase (CE: no teacher either)
        teacher = "" if config.method == "ce" else f"teacher {s.teacher_epochs}, "
        return f"{head} · epochs {teacher}student {s.student_epochs}"
    return (f"{head} · epochs teacher {s.teacher_epochs}, warm-up {s.warmup_epochs}, "
            f"refine {s.refine_epochs}, mutual {s.mutual_epochs}")
