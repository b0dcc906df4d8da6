"""The CLI (engine/cli.py): ``run``'s flags derived from the declared settings,
their defaults (the teacher's where it has its own), bad values as one line
and exit 2, ``--preset NAME``, and ``--noise-rate known`` by the one rule.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.cli import build_parser, config_from_args, main
from engine.data import load_dataset
from engine.method import (SMALL_PAIR_TEACHER, RunConfig, ScheduleConfig, declared, defaults_for_teacher,
                           load_presets, preset_named, widget_limits)
from engine.method.config import SMALL_PAIR_SCHEDULE
from engine.rundir.store import RunStore

REPO = Path(__file__).resolve().parents[1]
TINY = ["--teacher-epochs", "1", "--warmup-epochs", "1", "--refine-epochs", "1", "--mutual-epochs", "1"]


def run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices["run"]


def config_of(*argv, teacher=None) -> RunConfig:
    return config_from_args(build_parser().parse_args(["run", "--out", "x", *map(str, argv)]), teacher)


def refused(capsys, *argv) -> str:
    """Run the CLI in-process; assert exit 2 and one line; return it."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


# ---------------------------------------------------------------- the flags are the declarations
def test_every_declared_setting_is_a_run_flag_showing_its_default():
    actions = {a.dest: a for a in run_parser()._actions}
    small_schedule, small_train = defaults_for_teacher(SMALL_PAIR_TEACHER)
    for dest, item in declared().items():
        action = actions[dest]
        assert action.option_strings == [item.setting.flag], dest
        if item.default is not None and item.default != ():
            small = getattr({"schedule": small_schedule, "train": small_train}.get(item.path[0], None) or object(),
                            item.path[-1], item.default)
            shown = f"default {item.default}" if small == item.default else f"default: {item.default} for the digits"
            assert shown in action.help, (dest, action.help)
        if item.setting.kind in ("int", "real"):
            assert f"valid: {item.setting.valid()}" in action.help, dest
    assert config_of() == RunConfig()  # nothing given: every declared default


def _other_value(dest: str):
    """A valid value of a numeric setting that is not its default."""
    low, high, _ = widget_limits(dest)
    default = declared()[dest].default
    return low if low != default else high


@pytest.mark.parametrize("dest", [d for d, i in declared().items() if i.setting.kind in ("int", "real")])
def test_each_number_flag_sets_its_own_setting_and_no_other(dest):
    value = _other_value(dest)
    item = declared()[dest]
    config = config_of(item.setting.flag, value)
    assert item.value(config) == pytest.approx(value)
    assert with_default(config, dest) == RunConfig()


#: The number flags the CLI had before the declarations, and the setting each set (names kept).
OLD_FLAGS = {"--seed": ("seed",), "--k": ("graph", "k"), "--edge-power": ("graph", "power"),
             "--alpha": ("propagation", "alpha"), "--lp-iterations": ("propagation", "max_iter"),
             "--temperature": ("train", "temperature"), "--kd-weight": ("train", "kd_weight"),
             "--clean-kd-weight": ("train", "clean_kd_weight"), "--relational-weight": ("train", "relational_weight"),
             "--mixup-alpha": ("train", "mixup_alpha"), "--batch-size": ("train", "batch_size"),
             "--lr": ("train", "lr"), "--teacher-lr": ("train", "teacher_lr"),
             "--teacher-epochs": ("schedule", "teacher_epochs"), "--teacher-patience": ("schedule", "teacher_patience"),
             "--warmup-epochs": ("schedule", "warmup_epochs"), "--refine-epochs": ("schedule", "refine_epochs"),
             "--mutual-epochs": ("schedule", "mutual_epochs")}


def test_the_old_flags_keep_their_names_and_set_the_same_settings():
    for i, (flag, path) in enumerate(OLD_FLAGS.items()):
        value = {"--alpha": "0.5", "--kd-weight": "0.25", "--clean-kd-weight": "0.25"}.get(flag, str(2 + i))
        config = config_of(flag, value)
        for name in path:
            config = getattr(config, name)
        assert config == float(value), flag


def with_default(config: RunConfig, dest: str) -> RunConfig:
    from engine.method import with_settings

    return with_settings(config, {dest: declared()[dest].default})


def test_text_and_choice_flags_set_their_settings():
    config = config_of("--dataset", "moons", "--noise", "pairflip:0.2", "--method", "aml-kd", "--teacher", "mlp-large",
                       "--student", "mlp-small", "--teacher-checkpoint", "t.pt", "--teacher-features", "f.npy",
                       "--key-column", "file", "--label-column", "given", "--truth-column", "truth",
                       "--without", "awe", "--without", "stage0")
    assert (config.dataset, config.noise, config.teacher, config.student) == ("moons", "pairflip:0.2", "mlp-large",
                                                                             "mlp-small")
    assert (config.teacher_checkpoint, config.teacher_features) == ("t.pt", "f.npy")
    assert (config.key_column, config.label_column, config.truth_column) == ("file", "given", "truth")
    assert config.without == ("awe", "stage0")


def test_flags_left_out_take_the_teachers_defaults_and_given_ones_win():
    small = config_of(teacher=SMALL_PAIR_TEACHER)
    assert small.schedule == SMALL_PAIR_SCHEDULE and small.train == defaults_for_teacher(SMALL_PAIR_TEACHER)[1]
    mixed = config_of("--teacher-epochs", "3", "--mixup-alpha", "2", teacher=SMALL_PAIR_TEACHER)
    assert mixed.schedule == replace(SMALL_PAIR_SCHEDULE, teacher_epochs=3)
    assert (mixed.train.mixup_alpha, mixed.train.teacher_lr) == (2.0, 0.05)
    assert config_of(teacher="digits-cnn-large").schedule == ScheduleConfig()


# ---------------------------------------------------------------- bad values: one line, exit 2, in a real process
BAD = {
    "--lr inf": (["--lr", "inf"], "error: --lr inf is not finite; valid: a finite number > 0"),
    "--momentum -1": (["--momentum", "-1"], "error: --momentum -1.0 is out of range; valid: a finite number in (0, 1)"),
    "--awe-iterations -5": (["--awe-iterations", "-5"],
                            "error: --awe-iterations -5 is out of range; valid: a whole number >= 1"),
    "--batch-size 2.5": (["--batch-size", "2.5"], "error: --batch-size 2.5 is not a whole number; valid: a whole "
                                                  "number >= 2"),
    "--lr x": (["--lr", "x"], "error: --lr 'x' is not a number; valid: a finite number > 0"),
    "--preset nope": (["--preset", "nope"], "error: --preset 'nope' is not a preset; valid: digits, teaching, moons (ids: "
                                            + ", ".join(p.id for p in load_presets()[0]) + ")"),
}


@pytest.mark.slow  # six interpreters side by side: about 10 s on two busy cores
def test_bad_values_exit_2_with_one_line_naming_the_flag_in_a_real_process(tmp_path):
    procs = {name: subprocess.Popen([sys.executable, "-m", "engine", "run", "--dataset", "moons", "--out",
                                     str(tmp_path / name.replace(" ", "_")), *args], cwd=REPO, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, (args, _) in BAD.items()}  # side by side: one interpreter start for all of them
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 2, (name, err)
        assert err.splitlines() == [BAD[name][1]], name
        assert out == "" and not (tmp_path / name.replace(" ", "_")).exists()


@pytest.mark.parametrize("args, line", [
    (["--seed", "-1"], "--seed -1 is out of range; valid: a whole number in [0, 2147483647]"),
    (["--alpha", "1"], "--alpha 1.0 is out of range; valid: a finite number in (0, 1)"),
    (["--k", "nan"], "--k nan is not a whole number; valid: a whole number >= 1"),
    (["--noise-rate", "often"], "--noise-rate 'often' is not a number; valid: a finite number in [0, 1), 'known' "
                                "or 'estimate'"),
    (["--teacher-holdout", "0.5"], "--teacher-holdout 0.5 is out of range; valid: a finite number in [0, 0.5)"),
    (["--preset", "moons", "--kd-weight", "2"], "--kd-weight 2.0 is out of range; valid: a finite number in [0, 1]"),
])
def test_more_bad_values_in_process(tmp_path, capsys, args, line):
    assert refused(capsys, "run", "--out", tmp_path / "r", *args) == "error: " + line
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- --preset
def test_preset_with_other_flags_is_the_preset_with_those_values():
    moons = preset_named("moons")
    assert moons.id.startswith("moons") and preset_named(moons.id) == moons
    assert config_of("--preset", "moons", "--seed", "3") == replace(moons.config, seed=3)
    assert config_of("--preset", moons.id, "--seed", "3") == replace(moons.config, seed=3)
    assert config_of("--preset", "moons") == moons.config != RunConfig()
    changed = config_of("--preset", "moons", "--teacher-epochs", "2", "--noise", "symmetric:0.2", "--k", "5")
    assert changed == replace(moons.config, noise="symmetric:0.2", graph=replace(moons.config.graph, k=5),
                              schedule=replace(moons.config.schedule, teacher_epochs=2))
    assert moons.config.schedule != ScheduleConfig()  # so the preset's schedule, not the teacher's, is what is kept


def test_every_app_preset_is_a_cli_preset():
    presets, default_id = load_presets()
    for preset in presets:
        assert config_of("--preset", preset.id) == preset.config
        assert config_of("--preset", preset.short) == preset.config
    assert config_of("--preset", default_id) == RunConfig()  # the default preset is the default config


def test_a_preset_run_stores_the_presets_config_with_the_flags_given(tmp_path, capsys):
    out = tmp_path / "moons"
    code = main(["run", "--preset", "moons", "--seed", "3", *TINY, "--threads", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    moons = preset_named("moons").config
    expected = replace(moons, seed=3, schedule=replace(moons.schedule, teacher_epochs=1, warmup_epochs=1,
                                                       refine_epochs=1, mutual_epochs=1))
    assert RunStore(out).config() == expected


# ---------------------------------------------------------------- --noise-rate known: the one rule
def moons_labels(tmp_path: Path, truth: list | None = None) -> Path:
    keys = list(load_dataset("moons").keys())
    table = {"path": keys, "label": ["class 0"] * len(keys)}
    if truth is not None:
        table["truth"] = truth
    path = tmp_path / "labels.csv"
    pd.DataFrame(table).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("noise, rate", [("symmetric:0.4", 0.4), ("pairflip:0.3", 0.3), ("instance:0.25", 0.25),
                                         ("none", 0.0)])
def test_known_rate_without_data(noise, rate):
    assert config_of("--dataset", "moons", "--noise", noise, "--noise-rate", "known").noise_rate == rate
    assert config_of("--dataset", "moons", "--noise", noise, "--noise-rate", "estimate").noise_rate is None
    assert config_of("--dataset", "moons", "--noise", noise, "--noise-rate", "0.125").noise_rate == 0.125


def test_known_rate_of_a_matrix_is_its_expected_share_on_the_data(tmp_path):
    matrix = tmp_path / "T.csv"
    np.savetxt(matrix, [[0.9, 0.1], [0.3, 0.7]], delimiter=",")
    true = load_dataset("moons").train_true
    expected = float(np.mean(np.where(true == 0, 0.1, 0.3)))
    config = config_of("--dataset", "moons", "--noise", f"matrix:{matrix}", "--noise-rate", "known")
    assert config.noise_rate == pytest.approx(expected) and 0.1 < expected < 0.3


def test_known_rate_of_asym_needs_cifar10_classes(tmp_path, capsys):
    err = refused(capsys, "run", "--dataset", "moons", "--noise", "asym:0.4", "--noise-rate", "known",
                  "--out", tmp_path / "r")
    assert "CIFAR-10" in err and not (tmp_path / "r").exists()


def test_known_rate_of_a_label_file_is_its_disagreement_with_the_truth(tmp_path, capsys):
    labels = moons_labels(tmp_path)  # every label "class 0": wrong for every sample of class 1
    true = load_dataset("moons").train_true
    config = config_of("--dataset", "moons", "--labels", labels, "--noise-rate", "known")
    assert config.noise == "none" and config.noise_rate == pytest.approx(float(np.mean(true != 0)))
    unknown = moons_labels(tmp_path, truth=[""] * len(true))  # a truth column without a single truth
    err = refused(capsys, "run", "--dataset", "moons", "--labels", unknown, "--truth-column", "truth",
                  "--noise-rate", "known", "--out", tmp_path / "r", *TINY)
    assert "--noise-rate known" in err and "as a number" in err and str(unknown) in err
    assert not (tmp_path / "r").exists()
