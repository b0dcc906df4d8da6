"""engine.rundir.store: the one owner of the run directory's file names, and
the one reader and writer of each file."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.errors import UserError
from engine.rundir.store import RunStore, list_runs

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ("config.json", "status.json", "dataset.npz", "metrics.jsonl", "checkpoint.pt", "summary.json",
             "teacher_features.npy", "teacher_outputs.npz", "skipped.txt", "reviews.sqlite", "error.log",
             "runtime.json", ".lock", "snapshots")  # (folder names that are also page names are left out)


def test_no_module_but_the_store_names_a_file_of_the_run_directory():
    found = []
    for path in sorted([*(ROOT / "engine").rglob("*.py"), *(ROOT / "app").rglob("*.py")]):
        if path == ROOT / "engine" / "rundir" / "store.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in RUN_FILES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not found, "file names of the run directory outside RunStore:\n" + "\n".join(found)


def test_the_checker_would_see_a_name_written_elsewhere(tmp_path):
    probe = ROOT / "engine" / "readers" / "_probe_name.py"
    probe.write_text('PATH = "summary.json"\n')
    try:
        with pytest.raises(AssertionError, match="_probe_name.py:1 'summary.json'"):
            test_no_module_but_the_store_names_a_file_of_the_run_directory()
    finally:
        probe.unlink()


def _copy(tiny_moons_run, tmp_path) -> RunStore:
    shutil.copytree(tiny_moons_run, tmp_path / "run")
    return RunStore(tmp_path / "run")


def test_truncate_after_drops_exactly_the_later_steps(tiny_moons_run, tmp_path):
    store = _copy(tiny_moons_run, tmp_path)
    assert store.steps() == list(range(1, 9))
    store.truncate_after(3)
    assert store.steps() == [1, 2, 3]
    assert [m["step"] for m in store.metrics()] == [1, 2, 3]
    store.truncate_after(0)
    assert store.steps() == [] and store.metrics() == []


def test_write_step_replaces_the_line_of_a_step_written_again_and_keeps_order(tiny_moons_run, tmp_path):
    store = _copy(tiny_moons_run, tmp_path)
    store.truncate_after(4)
    arrays = store.snapshot(3)
    store.write_step(3, arrays, {"step": 3, "phase": "warmup", "marker": "again"})
    assert [m["step"] for m in store.metrics()] == [1, 2, 3]  # step 4's line goes: it came after
    assert store.metrics()[-1]["marker"] == "again"


def test_metrics_reader_skips_and_reports_damaged_lines_by_number(tiny_moons_run, tmp_path):
    store = _copy(tiny_moons_run, tmp_path)
    lines = store.metrics_path.read_text().splitlines()
    lines[1] = "{not json"
    lines[4] = json.dumps({"no": "step"})
    store.metrics_path.write_text("\n".join(lines) + "\n")
    assert store.damaged_metrics() == [2, 5]
    assert [m["step"] for m in store.metrics()] == [1, 3, 4, 6, 7, 8]


def test_dataset_reader_names_a_damaged_or_inconsistent_file(tiny_moons_run, tmp_path):
    store = _copy(tiny_moons_run, tmp_path)
    arrays = {name: np.array(a) for name, a in store.dataset_arrays().items()}  # copies: the file is mapped
    assert {"given", "true", "keys", "class_names", "holdout"} <= set(arrays)
    assert len(arrays["given"]) == len(arrays["keys"]) == 600
    np.savez(store.dataset_path, given=arrays["given"], true=arrays["true"][:-1], keys=arrays["keys"])
    with pytest.raises(UserError, match=r"dataset.npz' is damaged \(ValueError: given, keys and true differ"):
        store.dataset_arrays()
    store.dataset_path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(UserError, match="dataset.npz' is damaged"):
        store.dataset_arrays()
    store.dataset_path.unlink()
    with pytest.raises(UserError, match="dataset.npz' is missing"):
        store.dataset_arrays()


@pytest.mark.parametrize("value, words", [("[1, 2]", "not a summary"), ('{"steps": "8"}', "field 'steps' is \"8\""),
                                          ('{"student_test_accuracy": true}', "'student_test_accuracy' is true")])
def test_summary_reader_refuses_what_tables_cannot_show(tiny_moons_run, tmp_path, value, words):
    store = _copy(tiny_moons_run, tmp_path)
    assert store.summary()["steps"] == 8
    store.summary_path.write_text(value)
    with pytest.raises(UserError, match="summary.json' is damaged") as info:
        store.summary()
    assert words in str(info.value) and f"resume {store.path}" in str(info.value)


def test_list_runs_newest_first_and_only_runs(tmp_path):
    for name, age in (("old", 300), ("new", 0), ("middle", 100)):
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text("{}")
        os.utime(path, (1_700_000_000 - age, 1_700_000_000 - age))
    (tmp_path / "not-a-run").mkdir()
    assert [p.name for p in list_runs(tmp_path)] == ["new", "middle", "old"]
    assert list_runs(tmp_path / "missing") == []


def test_a_running_status_reads_as_stopped_once_its_process_or_heartbeat_is_gone(tmp_path):
    store = RunStore(tmp_path)
    store.write_status(state="running", step=2)
    assert store.live_state() == "running"  # this very process
    assert store.live_state({"state": "running", "pid": 2 ** 22 + 7, "host": os.uname().nodename}) == "stopped"
    other = {"state": "running", "pid": 1, "host": "elsewhere", "updated": 1000.0}
    assert store.live_state(other, now=1000.0 + 119) == "running"
    assert store.live_state(other, now=1000.0 + 121) == "stopped"
    assert store.live_state({"state": "done"}) == "done"


def test_force_clears_every_file_of_the_old_run_but_the_review_log(tiny_moons_run, tmp_path):
    from engine.method.config import RunConfig

    store = _copy(tiny_moons_run, tmp_path)
    store.reviews_path.write_bytes(b"kept")
    store.create(RunConfig(), force=True)
    left = sorted(p.name for p in store.path.iterdir())
    assert left == sorted([".lock", "config.json", "reviews.sqlite", "snapshots"]) or left == sorted(
        ["config.json", "reviews.sqlite", "snapshots"])
    assert store.steps() == [] and store.reviews_path.read_bytes() == b"kept"
