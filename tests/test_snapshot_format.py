"""The snapshot format on disk (engine.rundir.snapshot, RunStore.write_snapshot): a folder of .npy per field read
memory-mapped, runs made before it (.npz) still open, the disk a step takes, features kept by the policy."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.readers import explain
from engine.rundir import disk_per_step, snapshot
from engine.rundir.store import RunStore

OLD_RUN = Path(__file__).resolve().parent / "data" / "run-main-npz"  # made by main at ec9b678 (npz snapshots)


@pytest.fixture
def old_run(tmp_path) -> RunStore:
    shutil.copytree(OLD_RUN, tmp_path / "old")
    return RunStore(tmp_path / "old")


def test_a_run_made_before_the_folders_opens_with_every_reader(old_run):
    assert old_run.steps() == [1, 2, 3, 4, 5]
    path = old_run.snapshot_path(4)
    assert path.suffix == ".npz" and path.is_file()
    with np.load(path) as data:
        stored = {name: data[name] for name in data.files}
    arrays = old_run.snapshot(4)
    assert list(arrays) == list(stored)
    for name, values in stored.items():
        np.testing.assert_array_equal(arrays[name], values)
    picked = snapshot.rows(old_run, 4, ("refined", "weight"), np.array([7, 2]))
    np.testing.assert_array_equal(picked["refined"], stored["refined"][[7, 2]])
    steps, values = snapshot.history(old_run, ("refined",), samples=[5])
    assert steps.tolist() == [1, 2, 3, 4, 5] and values["refined"][3, 0] == stored["refined"][5]
    _, losses, _, _ = explain.trajectories(old_run, samples=[0, 5])
    assert losses.shape == (5, 2) and np.isfinite(losses).all()
    sizes = disk_per_step(old_run)
    assert sizes == {s: old_run.snapshot_path(s).stat().st_size for s in range(1, 6)}


def test_a_step_written_again_replaces_an_old_npz_with_a_folder(old_run):
    arrays = old_run.snapshot(5)
    old_run.write_step(5, arrays, {"step": 5, "phase": "mutual"})
    folder = old_run.snapshot_path(5)
    assert folder.is_dir() and not folder.with_suffix(".npz").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{name}.npy" for name in arrays)
    again = old_run.snapshot(5)
    assert list(again) == list(arrays) and isinstance(again["refined"], np.memmap)
    for name in arrays:
        np.testing.assert_array_equal(again[name], arrays[name])
    assert old_run.metrics()[-1]["snapshot_bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert old_run.steps() == [1, 2, 3, 4, 5]
    old_run.truncate_after(3)
    assert old_run.steps() == [1, 2, 3] and not folder.exists()


def test_a_killed_write_leaves_the_last_good_step_and_a_stray_that_is_swept(old_run, monkeypatch):
    arrays = old_run.snapshot(4)
    old_run.write_step(4, arrays, {"step": 4, "phase": "refine"})
    calls = []

    def dying_save(fh, array, allow_pickle=False):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return np.lib.format.write_array(fh, array, allow_pickle=allow_pickle)

    monkeypatch.setattr(np, "save", dying_save)
    changed = {**arrays, "refined": np.zeros_like(arrays["refined"])}
    with pytest.raises(Exception, match="space|disk"):
        old_run.write_snapshot(4, changed)
    monkeypatch.undo()
    np.testing.assert_array_equal(old_run.snapshot(4)["refined"], arrays["refined"])  # the last good step
    assert not list(old_run.snapshot_dir.glob(".*.tmp"))  # the writer cleaned up after itself


def test_a_damaged_field_file_is_one_line_naming_the_step(old_run):
    old_run.write_step(4, old_run.snapshot(4), {"step": 4, "phase": "refine"})
    old_run.snapshot_field_path(4, "weight").write_bytes(b"not numpy")
    with pytest.raises(Exception, match="step_00004.*damaged"):
        snapshot.read(old_run, 4, ("weight",))


def test_the_read_order_lists_every_field():
    assert set(snapshot._ORDER) == set(snapshot.FIELDS)


@pytest.mark.parametrize(("n", "d", "epoch", "length", "kept"), [
    (32_000, 128, 7, 40, True),  # 4.1M values: at every step
    (100_000, 128, 1, 40, True), (100_000, 128, 40, 40, True), (100_000, 128, 20, 40, True),
    (100_000, 128, 7, 40, False), (1_000_000, 128, 11, 40, False), (1_000_000, 128, 2, 2, True)])
def test_features_are_kept_at_every_step_of_a_small_run_and_some_steps_of_a_large_one(n, d, epoch, length, kept):
    assert snapshot.keeps_features(n, d, epoch, length) is kept


def test_a_run_above_the_threshold_keeps_features_only_where_the_policy_says(tmp_path, monkeypatch):
    from engine.method.config import RunConfig, ScheduleConfig
    from engine.steps.run import Run

    monkeypatch.setattr(snapshot, "FEATURES_EVERY_STEP_MAX", 0)
    monkeypatch.setattr(snapshot, "FEATURES_EVERY", 2)
    config = replace(RunConfig(dataset="moons", noise="symmetric:0.3"), schedule=ScheduleConfig(teacher_epochs=1, teacher_patience=2,
                                                                   warmup_epochs=1, refine_epochs=4,
                                                                   mutual_epochs=0))
    run = Run.create(tmp_path / "run", config)
    run.run_until(None)
    store = RunStore(tmp_path / "run")
    phases = {m["step"]: (m["phase"], m["phase_epoch"]) for m in store.metrics()}
    with_features = [s for s in store.steps() if "features" in store.snapshot_fields(s)]
    # teacher 1/1, propagate 1/1, warmup 1/1, refine 1/4 (first), 2/4 (every 2nd), 4/4 (last); not refine 3/4
    assert [phases[s] for s in store.steps() if s not in with_features] == [("refine", 3)]
    sizes = disk_per_step(store)
    missing = [s for s in store.steps() if s not in with_features][0]
    assert sizes[missing] < sizes[missing - 1]
