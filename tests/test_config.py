"""Run settings (engine/method/config.py): each declared once, with its flag,
help, range and reason; validation derived from the declaration; the Setup
page's defaults and widget limits derived from it; the one known-noise-rate
rule (engine/method/noise.py) on every noise kind; the phase sets in one place.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass, replace

import numpy as np
import pytest

from engine.errors import UserError
from engine.method import stages
from engine.method.config import (GraphConfig, PropagationConfig, RunConfig, ScheduleConfig, TrainConfig, declared,
                                  widget_limits, with_settings)
from engine.method.noise import CIFAR10_CLASSES, NoiseSpec, known_noise_rate

#: Every default as it was before the declarations (a declaration must not change one).
DEFAULTS = {
    "dataset": "digits", "noise": "symmetric:0.4", "method": "aml-kd", "seed": 0, "noise_rate": None,
    "teacher": None, "student": None, "teacher_checkpoint": None, "teacher_features": None, "labels": None,
    "key_column": "path", "label_column": "label", "truth_column": None, "without": (),
    "k": 20, "edge_power": 3.0, "knn": "auto", "alpha": 0.99, "lp_iterations": 20, "lp_tol": 1e-6,
    "teacher_epochs": 30, "teacher_patience": 5, "teacher_holdout": 0.1, "warmup_epochs": 4, "refine_epochs": 32,
    "mutual_epochs": 12, "batch_size": 64, "lr": 0.05, "teacher_lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
    "temperature": 4.0, "kd_weight": 0.9, "clean_kd_weight": 0.0, "relational_weight": 0.5, "mixup_alpha": 4.0,
    "keep_least_confident": 0.05, "awe_iterations": 100, "awe_lr": 0.01, "lr_schedule": "cosine", "lr_ramp": 3,
    "start_ramp": 2, "bn_stats": "recomputed",
    "teacher_weights": None, "student_weights": None, "teacher_mode": None, "relabel_rule": "calibrated",
}
NUMBERS = [dest for dest, item in declared().items() if item.setting.kind in ("int", "real")]


# ---------------------------------------------------------------- the declarations
def test_every_field_of_every_config_is_declared_or_a_block_of_them():
    def walk(cls):
        for f in fields(cls):
            if "setting" not in f.metadata:
                assert is_dataclass(f.default_factory), f"{cls.__name__}.{f.name} is not declared"
                walk(f.default_factory)
    walk(RunConfig)
    settings = declared()
    assert len({item.setting.flag for item in settings.values()}) == len(settings)  # one flag each
    for dest, item in settings.items():
        assert item.setting.flag == "--" + dest.replace("_", "-")
        assert item.setting.help and item.setting.why, f"{item.setting.flag} lacks a help or a reason"


def test_declared_defaults_are_the_configs_defaults_unchanged():
    settings = declared()
    assert set(settings) == set(DEFAULTS)
    config = RunConfig()
    for dest, item in settings.items():
        assert item.default == DEFAULTS[dest] and item.value(config) == DEFAULTS[dest], dest
    assert (GraphConfig(), PropagationConfig()) == (GraphConfig(k=20, power=3.0), PropagationConfig(0.99, 20, 1e-6))


# ---------------------------------------------------------------- validation
#: The values the review found accepted (or raising TypeError), and the one line each must give.
BAD = [
    ("lr", math.inf, "--lr inf is not finite; valid: a finite number > 0"),
    ("momentum", -1, "--momentum -1 is out of range; valid: a finite number in (0, 1)"),
    ("awe_iterations", -5, "--awe-iterations -5 is out of range; valid: a whole number >= 1"),
    ("batch_size", 2.5, "--batch-size 2.5 is not a whole number; valid: a whole number >= 2"),
    ("lr", "x", "--lr 'x' is not a number; valid: a finite number > 0"),
    ("k", True, "--k True is not a whole number; valid: a whole number >= 1"),
    ("edge_power", math.nan, "--edge-power nan is not finite; valid: a finite number > 0"),
    ("seed", 2**31, "--seed 2147483648 is out of range; valid: a whole number in [0, 2147483647]"),
    ("teacher_holdout", 0.5, "--teacher-holdout 0.5 is out of range; valid: a finite number in [0, 0.5)"),
    ("noise_rate", 1.0, "--noise-rate 1.0 is out of range; valid: a finite number in [0, 1), 'known' or 'estimate'"),
    ("method", "coteaching", "--method 'coteaching' is not valid; valid: aml-kd, ce, kd"),
    ("knn", "annoy", "--knn 'annoy' is not valid; valid: exact, ivf, hnsw, auto"),
    ("dataset", 5, "--dataset 5 is not text; valid: text"),
]


@pytest.mark.parametrize("dest, value, message", BAD, ids=[f"{d}={v!r}" for d, v, _ in BAD])
def test_a_bad_value_gives_one_user_error_naming_the_flag_and_what_is_valid(dest, value, message):
    with pytest.raises(UserError) as caught:
        with_settings(RunConfig(), {dest: value})
    assert str(caught.value) == message
    block = {"lr": TrainConfig, "momentum": TrainConfig, "awe_iterations": TrainConfig, "batch_size": TrainConfig,
             "k": GraphConfig, "edge_power": GraphConfig}.get(dest)
    if block is not None:  # the block itself says the same words
        name = declared()[dest].path[-1]
        with pytest.raises(UserError, match=f"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
            block(**{name: value})


@pytest.mark.parametrize("dest", NUMBERS)
def test_every_number_refuses_text_infinity_nan_and_bool_with_a_user_error(dest):
    flag = declared()[dest].setting.flag
    for bad in ("x", math.inf, -math.inf, math.nan, True, None if dest != "noise_rate" else "0.1", [1]):
        with pytest.raises(UserError) as caught:  # never TypeError
            with_settings(RunConfig(), {dest: bad})
        line = str(caught.value)
        assert line.startswith(flag + " ") and "; valid: " in line and "\n" not in line, (bad, line)


@pytest.mark.parametrize("dest, good, bad", [
    ("alpha", [0.001, 0.5, 0.999], [0.0, 1.0]),  # open at both ends
    ("kd_weight", [0.0, 1.0], [-0.001, 1.001]),  # closed at both ends
    ("keep_least_confident", [0.0, 0.95], [1.0, -0.1]),  # closed, then open
    ("teacher_holdout", [0.0, 0.49], [0.5, -0.01]),
    ("momentum", [0.01, 0.99], [0.0, 1.0]),  # Nesterov SGD needs momentum > 0
    ("weight_decay", [0.0], [-1e-9]),
    ("batch_size", [2, np.int64(3)], [1, 2.0]),  # numpy integers are whole numbers; 2.0 is a real
    ("teacher_epochs", [0, 1000], [-1]),
    ("noise_rate", [None, 0.0, 0.99], [1.0, -0.01]),
    ("seed", [0, 2**31 - 1], [-1, 2**31]),
])
def test_range_ends_are_open_or_closed_as_declared(dest, good, bad):
    for value in good:
        assert declared()[dest].value(with_settings(RunConfig(), {dest: value})) == value
    for value in bad:
        with pytest.raises(UserError, match="^" + declared()[dest].setting.flag):
            with_settings(RunConfig(), {dest: value})


def test_a_saved_config_with_a_bad_value_is_refused_in_the_same_words():
    with pytest.raises(UserError, match=r"^--lr 'x' is not a number; valid: a finite number > 0$"):
        RunConfig.from_dict({"train": {"lr": "x"}})
    with pytest.raises(UserError, match="unknown config keys"):
        RunConfig.from_dict({"nope": 1})
    assert RunConfig.from_dict({"graph": {"k": 7}}).graph == GraphConfig(k=7)


# ---------------------------------------------------------------- the Setup page derives from the declarations
def test_setup_defaults_equal_the_config_defaults():
    from app.settings import SetupValues

    values = SetupValues()
    config = RunConfig()
    assert values.to_config() == replace(config, teacher=None, student=None)
    pairs = {"teacher_epochs": config.schedule.teacher_epochs, "warmup_epochs": config.schedule.warmup_epochs,
             "refine_epochs": config.schedule.refine_epochs, "mutual_epochs": config.schedule.mutual_epochs,
             "k": config.graph.k, "alpha": config.propagation.alpha, "edge_power": config.graph.power,
             "temperature": config.train.temperature, "kd_weight": config.train.kd_weight,
             "clean_kd_weight": config.train.clean_kd_weight, "relational_weight": config.train.relational_weight,
             "seed": config.seed, "method": config.method, "dataset": config.dataset,
             "key_column": config.key_column, "label_column": config.label_column}
    assert {name: getattr(values, name) for name in pairs} == pairs
    assert (values.noise_kind, values.noise_rate, values.noise_rate_mode) == ("symmetric", 0.4, "estimate")


@pytest.mark.parametrize("dest", NUMBERS)
def test_widget_limits_lie_in_the_valid_range_and_hold_the_default(dest):
    low, high, step = widget_limits(dest)
    item = declared()[dest]
    with_settings(RunConfig(), {dest: low})  # both ends are valid values
    with_settings(RunConfig(), {dest: high})
    assert low < high and 0 < step <= high - low
    if item.default is not None:
        assert low <= item.default <= high
    if item.setting.kind == "int":
        assert all(isinstance(v, int) for v in (low, high, step)) and step == 1


def test_the_setup_widgets_take_their_limits_from_the_declarations(app):
    key = "setup-digits-symmetric-40-"  # the custom form started from the default preset
    widgets = {"k": app.number_input(key=key + "k"), "teacher_epochs": app.number_input(key=key + "teacher_epochs"),
               "mutual_epochs": app.number_input(key=key + "mutual_epochs"), "seed": app.number_input(key=key + "seed"),
               "noise_rate": app.number_input(key=key + "noise_rate_value"), "alpha": app.slider(key=key + "alpha"),
               "edge_power": app.slider(key=key + "edge_power"), "temperature": app.slider(key=key + "temperature"),
               "kd_weight": app.slider(key=key + "kd_weight"),
               "relational_weight": app.slider(key=key + "relational_weight")}
    for dest, widget in widgets.items():
        low, high, step = widget_limits(dest)
        assert (widget.min, widget.max) == (pytest.approx(low), pytest.approx(high)), dest
        assert widget.proto.step == pytest.approx(step), dest
        default = declared()[dest].default
        assert widget.value == pytest.approx(default if default is not None else 0.4), dest


# ---------------------------------------------------------------- the known noise rate, one rule
TRUE = np.array([0, 0, 0, 1])


@pytest.mark.parametrize("noise, expected", [
    ("symmetric:0.4", 0.4), ("pairflip:0.3", 0.3), ("instance:0.25", 0.25), ("none", 0.0)])
def test_known_rate_of_noise_that_needs_no_data_is_its_r(noise, expected):
    assert known_noise_rate(noise) == expected
    assert known_noise_rate(noise, TRUE) == expected  # the data change nothing


def test_known_rate_of_asym_and_matrix_noise_is_their_expected_share_on_the_data(tmp_path):
    assert known_noise_rate("asym:0.4") is None  # not known until the data are
    cifar = np.repeat(np.arange(10), 3)  # balanced: 5 of 10 classes flip
    assert known_noise_rate("asym:0.4", cifar, CIFAR10_CLASSES) == pytest.approx(0.2)
    only_trucks = np.full(4, 9)
    assert known_noise_rate("asym:0.4", only_trucks, CIFAR10_CLASSES) == pytest.approx(0.4)
    matrix = tmp_path / "T.csv"
    np.savetxt(matrix, [[0.8, 0.2], [0.4, 0.6]], delimiter=",")
    assert known_noise_rate(f"matrix:{matrix}") is None
    # three samples of class 0 (0.2 off the diagonal) and one of class 1 (0.4): (3 * 0.2 + 0.4) / 4
    assert known_noise_rate(f"matrix:{matrix}", TRUE, ("a", "b")) == pytest.approx(0.25)


def test_known_rate_of_a_label_file_is_its_disagreement_with_the_known_truth():
    given, true = np.array([0, 1, 1, 2, 0]), np.array([0, 1, 2, -1, 1])  # 2 of the 4 known differ
    assert known_noise_rate("none", true, given_labels=given, label_file=True) == 0.5
    assert known_noise_rate("none", np.full(5, -1), given_labels=given, label_file=True) is None
    assert known_noise_rate("none", label_file=True) is None  # before the file is read
    assert known_noise_rate(NoiseSpec("none", 0.0)) == 0.0  # the same spec without a file


@pytest.mark.parametrize("noise, mode", [
    ("symmetric:0.3", "known"), ("pairflip:0.3", "known"), ("instance:0.3", "known"), ("asym:0.3", "custom")])
def test_setup_shows_known_exactly_where_the_rule_knows_the_rate_without_data(noise, mode):
    from app.settings import SetupValues

    config = RunConfig(noise=noise, noise_rate=0.3)
    values = SetupValues.from_config(config)
    assert (values.noise_rate_mode, values.noise_rate_value) == (mode, 0.3)
    assert values.to_config(config).noise_rate == 0.3
    assert SetupValues.from_config(replace(config, noise_rate=0.2)).noise_rate_mode == "custom"
    labelled = RunConfig(noise="none", labels="/d/l.csv", noise_rate=0.0)  # a label file's rate: the data's
    assert SetupValues.from_config(labelled).noise_rate_mode == "custom"
    assert SetupValues.from_config(replace(labelled, labels=None)).noise_rate_mode == "known"


# ---------------------------------------------------------------- phase sets, one copy
def test_phase_sets_are_one_copy_used_by_every_layer():
    from app import takeaway
    from engine.readers import compare, embed, explain
    from engine.rundir import snapshot
    from engine.steps import phases

    names = {p.value for p in stages.Phase} - {"done"}
    assert set(stages.WORKING_PHASES) == names
    assert stages.LP_PHASES == ("propagate", "refine", "mutual") and stages.REFINE_PHASES == ("refine", "mutual")
    assert set(stages.STUDENT_PHASES) == names - {"teacher", "propagate"}
    assert phases.LP_PHASES is explain.LP_PHASES is snapshot.LP is stages.LP_PHASES is takeaway.LP_PHASES
    assert compare.STUDENT_PHASES is snapshot.STUDENT is stages.STUDENT_PHASES
    assert embed.TEACHER_PHASES is phases.TEACHER_PHASES is stages.TEACHER_PHASES
    assert phases.Phase is stages.Phase
    assert compare.METHOD_NAMES is takeaway.METHOD_NAMES
