"""The Compare page (AppTest) on three tiny runs on the same data (AML-KD, CE,
KD): its table holds engine.readers.compare's values, its charts one trace per run
with a point per student epoch, runs on other data are refused with the
reason; a comparison set is created from one run's settings and trained one
run after another, refused while another run trains. Plus the page's pure
helpers (app.compare_widgets, app.figures.compare)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.compare_widgets import (TRAINING_MESSAGE, filtered_samples, member_name, outcome_patterns, plan_set,
                                 progress_lines,
                                 run_labels, sample_filters, split_shared, table_frame, table_note)
from app.figures.compare import curve_figure
from app.worker import current_queue
from engine.errors import UserError
from engine.readers.compare import comparison_table, curves, per_sample, table_text
from engine.method.config import RunConfig
from engine.rundir.store import RunStore

PAGE = Path(__file__).resolve().parents[1] / "app" / "views" / "compare.py"
NAMES = {"aml-kd": "moons-symmetric30-aml-kd-s0", "ce": "moons-symmetric30-ce-s0", "kd": "moons-symmetric30-kd-s0"}


@pytest.fixture(scope="module")
def trio_runs(make_tiny_run):
    return {"aml-kd": make_tiny_run("moons", "moons", "symmetric:0.3"),
            "ce": make_tiny_run("moons-ce", "moons", "symmetric:0.3", method="ce"),
            "kd": make_tiny_run("moons-kd", "moons", "symmetric:0.3", method="kd")}


@pytest.fixture
def trio(runs_dir, trio_runs):
    """Copies of the three runs in the app's runs folder, named as the app names them."""
    for method, name in NAMES.items():
        shutil.copytree(trio_runs[method], runs_dir / name)
    return [runs_dir / NAMES[m] for m in ("aml-kd", "ce", "kd")]


def open_compare(run_dir: Path | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    if run_dir is not None:
        at.session_state["run_dir"] = str(run_dir)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


# ---------------------------------------------------------------- the page
def test_the_table_holds_engine_compares_values(trio):
    at = open_compare(trio[0])  # the open run's comparable runs are picked by default
    assert at.multiselect(key="compare-runs").value == [p.name for p in trio]
    shown = at.table[0].value
    cells = table_text(comparison_table(trio, chance=True))
    expected = {h: [row[i] for row in cells[1:]] for i, h in enumerate(cells[0])}
    for header in ("run", "method", "given prec", "refined prec", "teacher acc", "steps", "seconds"):
        assert list(shown[header]) == expected[header], header
    assert list(shown["vs CE (95%)"])[1] == "baseline" and list(shown["teacher acc"])[1] == "–"
    for number, interval, header in (("student acc", "95% interval", "student acc (95%)"),
                                     ("student vs CE", "vs CE 95% interval", "vs CE (95%)")):
        assert list(shown[header]) == [n if i == "–" else f"{n} ({i})"
                                       for n, i in zip(expected[number], expected[interval])]
    warnings = [w.value for w in at.warning]  # the KD student is 0.007 (1 of 150 images) under CE: within chance
    assert len(warnings) == 1 and warnings[0].startswith(f"- **{trio[2].name}**: The student's test accuracy 0.880 "
                                                         f"is below CE's ({trio[1].name}) 0.887: 1 test sample of 150 "
                                                         "(McNemar p = ")
    assert warnings[0].endswith("within chance: no evidence either way on this test set.")
    assert list(shown["p (McNemar)"]) == expected["p (McNemar)"] and list(shown["p (McNemar)"])[1] == "–"
    assert all(" (0." in cell for cell in shown["student acc (95%)"])  # every student has its interval
    summary = RunStore(trio[0]).summary()  # the estimate beside its 90% interval, as the Train page shows it
    assert list(shown["refined prec est (90%)"]) == [
        f"{summary['refined_precision_estimate']:.3f} ({summary['refined_precision_low']:.3f}–"
        f"{summary['refined_precision_high']:.3f})", "–", "–"]  # CE and KD estimate nothing
    [info] = [i.value for i in at.info if "test samples" in i.value]
    assert info.startswith("150 test samples: one sample is 0.7 points.")
    assert "dataset" not in shown and any("dataset **moons** · noise **symmetric 30%** · seed **0**" in m.value
                                          for m in at.markdown)


def test_the_curves_have_one_trace_per_run_and_a_point_per_epoch(trio):
    at = open_compare(trio[0])
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(specs) == 2
    points = curves(trio)
    for spec, key in zip(specs, ("student_test_accuracy", "label_precision")):
        assert [t["name"].split(" · ")[1] for t in spec["data"]] == [p.name for p in trio]
        for trace, path in zip(spec["data"], trio):
            assert list(trace["y"]) == [p[key] for p in points if p["run"] == path.name]
            assert list(trace["x"]) == [1, 2, 3, 4, 5]


def test_the_per_sample_view_counts_each_pattern_and_shows_thumbnails(trio):
    at = open_compare(trio[0])
    patterns = at.table[1].value
    expected = outcome_patterns(per_sample(trio), "refined", run_labels(comparison_table(trio)))
    assert list(patterns.columns) == ["AML-KD", "CE", "KD", "samples"]
    assert list(patterns["samples"]) == list(expected["samples"]) and patterns["samples"].sum() == 600
    view = per_sample(trio)
    disagree = int(view.disagree().sum())
    assert any(f"{disagree} samples where the runs disagree; the first 18 shown." in c.value for c in at.caption)
    captions = [caption for img in at.image for caption in img.captions]
    first = int(np.flatnonzero(view.disagree())[0])
    assert len(captions) == 18 and captions[0].startswith(f"#{first} · given ")
    assert captions[0].endswith(" · ".join(f"{m}: {view.class_names[view.refined[r, first]]}"
                                           for r, m in enumerate(("AML-KD", "CE", "KD"))))


@pytest.fixture(scope="module")
def vector_pair(tmp_path_factory):
    """Finished AML-KD and CE runs (tiny schedule) on 240 training rows of 8-D vectors keyed ``row-000``...,
    30% symmetric noise: the same data and given labels."""
    from engine.steps.run import Run
    from tests.conftest import blobs_npz, tiny_config

    folder = tmp_path_factory.mktemp("vector-pair")
    rng = np.random.default_rng(1)
    labels = np.arange(300) % 3
    blobs_npz(folder / "emb.npz", labels, 8, 3, rng, "row-{:03d}")
    runs = {}
    for method in ("aml-kd", "ce"):
        runs[method] = folder / f"emb-symmetric30-{method}-s0"
        Run.create(runs[method], tiny_config(f"vectors:{folder / 'emb.npz'}", "symmetric:0.3", method)).run_until(None)
    return runs


def test_a_vectors_sample_is_a_card_of_its_key_and_labels_without_a_picture(runs_dir, vector_pair):
    for path in vector_pair.values():
        shutil.copytree(path, runs_dir / path.name)
    stores = [runs_dir / vector_pair[m].name for m in ("aml-kd", "ce")]
    at = open_compare(stores[0])
    assert at.multiselect(key="compare-runs").value == [p.name for p in stores]
    view = per_sample(stores)
    shown = np.flatnonzero(view.disagree())[:18]
    assert len(shown) > 1 and not at.image  # no blank tiles
    texts = [t.value for t in at.text]
    assert texts == [view.keys[i] for i in shown] and texts[0].startswith("row-")
    captions = [c.value for c in at.caption if c.value.startswith("#")]
    assert captions == [f"#{i} · given {view.class_names[view.given[i]]} · true {view.class_names[view.true[i]]} · "
                        f"AML-KD: {view.class_names[view.refined[0, i]]} · CE: {view.class_names[view.refined[1, i]]}"
                        for i in shown]
    assert not [b for b in at.get("download_button") if "PNG" in b.proto.label and "samples" in b.proto.label.lower()]


def test_runs_on_other_data_are_refused_with_the_reason(trio, runs_dir, make_tiny_run):
    other = runs_dir / "moons-clean-ce-s0"
    shutil.copytree(make_tiny_run("moons-clean-ce", "moons", "none", method="ce"), other)
    at = open_compare(trio[0], **{"compare-runs": [trio[0].name, other.name]})
    [error] = at.error
    assert "These runs cannot be compared" in error.value
    assert (f"runs '{trio[0].name}' and 'moons-clean-ce-s0' have different given labels" in error.value
            and "noise 'symmetric\\:0.3' and 'none'" in error.value)  # names escaped: shown as text
    assert not at.table and not at.get("plotly_chart")
    assert trio[0].name in at.multiselect(key="compare-runs").value  # the default pick leaves it out otherwise
    assert other.name not in open_compare(trio[0]).multiselect(key="compare-runs").value


def test_fewer_than_two_runs_ask_for_more(trio):
    at = open_compare(None)
    assert at.multiselect(key="compare-runs").value == []
    assert any("Pick two or more runs" in i.value for i in at.info)


# ---------------------------------------------------------------- a comparison set
def test_a_comparison_set_is_created_from_one_run_and_trained_in_turn(runs_dir, trio_runs):
    source = runs_dir / NAMES["ce"]
    shutil.copytree(trio_runs["ce"], source)
    from engine.rundir import AuditStore
    AuditStore(source, 2).record(4, "relabel", "ann", 1)  # an audit of the source: the set's runs start from it
    AuditStore(source, 2).record(9, "outlier", "ann")
    at = open_compare(source)
    assert at.selectbox(key="compare-set-source").value == source.name
    button(at, "compare-set-create").click().run()
    assert not at.exception and not at.error
    queue = current_queue()
    assert [p.name for p in queue.paths] == [NAMES["aml-kd"], NAMES["kd"]]  # the finished CE run is kept
    deadline = time.monotonic() + 300
    while queue.busy and time.monotonic() < deadline:
        time.sleep(0.5)
    assert queue.states == ["done", "done"]
    base = RunStore(source).config()
    for method in ("aml-kd", "kd"):
        store = RunStore(runs_dir / NAMES[method])
        assert store.config() == base.with_changes(method=method) and store.summary() is not None
        assert np.array_equal(store.dataset_arrays()["given"], RunStore(source).dataset_arrays()["given"])
        labels, _ = AuditStore(store.path).audit_labels(len(store.dataset_arrays()["given"]))
        assert labels[4] == 1 and labels[9] == -2 and (labels >= 0).sum() == 1
    at.run()
    assert at.multiselect(key="compare-runs").value == [NAMES["aml-kd"], NAMES["ce"], NAMES["kd"]]
    assert list(at.table[0].value["method"]) == ["AML-KD", "CE", "KD"]
    assert any(f"`{NAMES['kd']}`: done" in m.value for m in at.markdown)


def test_a_comparison_set_is_refused_while_another_run_trains(trio, runs_dir):
    for path in trio[1:]:
        shutil.rmtree(path)
    busy = RunStore(trio[0])
    status = busy.status()
    busy.write_status(**{**status, "state": "running", "updated": time.time(), "pid": os.getpid(),
                         "host": socket.gethostname()})  # as a live CLI run leaves it
    at = open_compare(trio[0])
    button(at, "compare-set-create").click().run()
    [error] = at.error
    assert error.value == TRAINING_MESSAGE.format(name=trio[0].name)
    assert sorted(p.name for p in runs_dir.iterdir()) == [trio[0].name]  # nothing created


# ---------------------------------------------------------------- helpers
def test_member_names_follow_the_source_run():
    assert member_name("digits-symmetric40-aml-kd-s0", "aml-kd", "ce") == "digits-symmetric40-ce-s0"
    assert member_name("digits-symmetric40-ce-s0", "ce", "aml-kd-no-awe") == "digits-symmetric40-aml-kd-no-awe-s0"
    assert member_name("pets-labels-kd", "kd", "aml-kd") == "pets-labels-aml-kd"
    assert member_name("my-trial", "ce", "kd") == "my-trial-kd"


def test_plan_reuses_a_matching_run_and_moves_off_a_different_one(trio, runs_dir):
    plan = plan_set(trio[1])  # from CE: AML-KD and KD exist with the very configs
    assert [(m.method, m.path.name, m.config is None, m.done) for m in plan] == \
        [("aml-kd", trio[0].name, True, True), ("ce", trio[1].name, True, True), ("kd", trio[2].name, True, True)]
    config = RunStore(trio[2]).config()
    shutil.rmtree(trio[2])
    RunStore(trio[2]).create(config.with_changes(seed=5))  # another run holds the KD name
    kd = plan_set(trio[1])[2]
    assert kd.path.name == f"{trio[2].name}-2" and kd.config == RunStore(trio[1]).config().with_changes(method="kd")


def test_plan_with_ablations_adds_one_aml_kd_run_per_component(trio):
    plan = plan_set(trio[1], ablations=True)
    base = RunStore(trio[1]).config()
    assert [m.label for m in plan] == ["AML-KD", "CE", "KD", "AML-KD w/o AWE", "AML-KD w/o mutual",
                                       "AML-KD w/o stage 0"]
    for member, component in zip(plan[3:], ("awe", "mutual", "stage0")):
        assert member.path.name == f"moons-symmetric30-aml-kd-no-{component}-s0"
        assert member.config == base.with_changes(method="aml-kd", without=(component,)) and not member.done


def test_plan_with_seeds_repeats_the_set_per_seed_named_after_it(trio):
    plan = plan_set(trio[1], seeds=3)
    base = RunStore(trio[1]).config()
    assert [m.label for m in plan] == [f"{m}, seed {s}" for s in (0, 1, 2) for m in ("AML-KD", "CE", "KD")]
    assert [m.path.name for m in plan[3:6]] == ["moons-symmetric30-aml-kd-s1", "moons-symmetric30-ce-s1",
                                                "moons-symmetric30-kd-s1"]
    assert plan[4].config == base.with_changes(seed=1) and plan[8].config == base.with_changes(method="kd", seed=2)
    assert all(m.config is None for m in plan[:3])  # seed 0's runs exist
    with pytest.raises(UserError, match="seeds=0 is out of range"):
        plan_set(trio[1], seeds=0)


def test_set_progress_shows_only_beside_its_own_data(trio, tmp_path):
    from types import SimpleNamespace

    from app.compare_widgets import queue_on_data

    other = tmp_path / "other-data"
    RunStore(other).create(RunStore(trio[0]).config().with_changes(dataset="digits"))
    queue = SimpleNamespace(paths=[trio[1], trio[2]])
    assert queue_on_data(queue, trio[0]) and not queue_on_data(queue, other)
    assert queue_on_data(SimpleNamespace(paths=[other]), other)


def test_warnings_are_one_block_with_a_line_per_run():
    from app.compare_widgets import warnings_block

    rows = [{"run": "a", "warnings": [{"code": "x", "message": "First."}, {"code": "y", "message": "Second."}]},
            {"run": "b", "warnings": []}, {"run": "c", "warnings": [{"code": "z", "message": "Third."}]}]
    assert warnings_block(rows) == "- **a**: First. Second.\n- **c**: Third."
    assert warnings_block(rows[1:2]) is None


def test_plan_can_add_the_authors_relabel_rule(trio):
    plan = plan_set(trio[1], authors_rule=True)
    base = RunStore(trio[1]).config()
    assert [m.label for m in plan] == ["AML-KD", "CE", "KD", "AML-KD (authors' rule)"]
    assert plan[3].path.name == "moons-symmetric30-aml-kd-authors-rule-s0" and not plan[3].done
    assert plan[3].config == base.with_changes(method="aml-kd", relabel_rule="authors")
    assert plan_set(trio[1])[0].config is None  # without the option nothing else is planned


def test_table_frame_splits_off_shared_columns_and_labels_runs(trio):
    rows = comparison_table(trio)
    table, line = split_shared(table_frame(rows))
    assert line == "dataset **moons** · noise **symmetric 30%** · seed **0**"
    assert list(table.columns) == ["run", "method", "given prec", "refined prec", "refined prec est",
                                   "refined est 90% interval", "student acc", "95% interval",
                                   "teacher acc", "student vs CE", "vs CE 95% interval", "p (McNemar)", "steps",
                                   "seconds"]
    assert run_labels(rows) == {trio[0].name: "AML-KD", trio[1].name: "CE", trio[2].name: "KD"}
    assert run_labels(rows + [dict(rows[1], run="ce-2")])[trio[1].name] == trio[1].name


def test_sample_filters_pick_the_samples_they_name(trio_runs):
    view = per_sample(list(trio_runs.values()))
    right = view.right()
    assert "only moons right" in sample_filters(view)
    only = filtered_samples(view, "refined", "only moons right")
    assert len(only) and right[0, only].all() and not right[1:, only].any()
    wrong = filtered_samples(view, "refined", "every run wrong")
    assert len(wrong) == np.sum(~right.any(axis=0))
    assert np.array_equal(filtered_samples(view, "refined", "where the runs disagree"),
                          np.flatnonzero(view.disagree()))


def test_curve_figure_leaves_unknown_values_out():
    points = [{"run": "a", "method": "CE", "epoch": 1, "label_precision": None},
              {"run": "a", "method": "CE", "epoch": 2, "label_precision": 0.5},
              {"run": "b", "method": "CE", "epoch": 1, "label_precision": 0.7}]
    figure = curve_figure(points, "label_precision")
    assert [list(t.x) for t in figure.data] == [[2], [1]] and [list(t.y) for t in figure.data] == [[0.5], [0.7]]
    assert figure.data[0].line.dash == "solid" and figure.data[1].line.dash == "dash"  # same method: dashed


def test_the_runs_table_names_the_dataset_and_label_file_noise_as_the_user_gave_them(tmp_path):
    from app.settings import run_rows

    store = RunStore(tmp_path / "pets-labels-aml-kd-s0")
    store.create(RunConfig(dataset=f"folder:{tmp_path}/uploads/pets-0123456789ab/pets?size=32", noise="none",
                           labels=f"{tmp_path}/uploads/labels.csv", truth_column="truth"))
    true = np.arange(10) % 2
    store.write_dataset(given=np.where(np.arange(10) < 3, 1 - true, true), true=true,
                        keys=np.array([f"train/{i}.jpg" for i in range(10)]), holdout=np.zeros(10, bool))
    [row] = run_rows(tmp_path)
    assert (row["dataset"], row["noise"]) == ("pets.zip", "label file (30% wrong)")
    store.write_dataset(given=true, true=np.full(10, -1), keys=np.array([f"train/{i}.jpg" for i in range(10)]),
                        holdout=np.zeros(10, bool))  # no truth column: no rate
    assert run_rows(tmp_path)[0]["noise"] == "label file"


def test_setup_shows_every_run_in_a_table_that_wraps(trio):
    at = AppTest.from_file(str(PAGE.parent / "setup.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(t.value for t in at.table if trio[0].name in list(t.value.index))
    assert list(table.columns) == ["dataset", "method", "noise", "seed", "progress", "student acc", "refined prec"]
    row = table.loc[trio[1].name]
    summary = RunStore(trio[1]).summary()
    assert (row["dataset"], row["method"], row["noise"], row["progress"]) == ("moons", "CE", "symmetric 30%", "done")
    assert row["student acc"] == f"{summary['student_test_accuracy']:.3f}"


def test_the_queue_stops_at_a_run_that_fails_and_leaves_the_next_one_waiting(runs_dir, monkeypatch):
    from app.worker import FAIL_ENV, train_in_turn
    from engine.errors import UserError
    from engine.steps.run import Run
    from tests.conftest import tiny_config

    paths = [runs_dir / "first-ce", runs_dir / "second-ce"]
    for path in paths:
        Run.create(path, tiny_config(method="ce"))
    monkeypatch.setenv(FAIL_ENV, "2")
    queue = train_in_turn(paths)
    deadline = time.monotonic() + 120
    while queue.busy and time.monotonic() < deadline:
        time.sleep(0.2)
    assert queue.states[0].startswith("stopped: step 2 (student) failed: InjectedFault") and \
        queue.states[1] == "waiting"
    assert RunStore(paths[0]).status()["step"] == 1 and not RunStore(paths[1]).steps()


def test_a_second_queue_is_refused_while_one_works(runs_dir, monkeypatch):
    import app.worker as worker
    from engine.errors import UserError

    class Working:
        busy = True

    monkeypatch.setattr(worker, "_QUEUE", Working())
    with pytest.raises(UserError, match="a comparison set is still training"):
        worker.train_in_turn([runs_dir / "any"])
    monkeypatch.undo()  # before runs_dir stops "the queue"


def test_a_damaged_summary_is_one_message_and_the_page_stays_up(trio):
    (trio[2] / "summary.json").write_text('{"method": "kd", "stud')
    at = open_compare(trio[0])
    [error] = at.error
    assert error.value.startswith("These runs cannot be shown: ") and "summary.json" in error.value
    assert "resume" in error.value and not at.table
    assert at.multiselect(key="compare-runs").value == [p.name for p in trio]  # still picked, nothing lost


def test_progress_lines_show_each_runs_state_and_step(trio):
    class Queue:
        paths, states = trio[:2], ["training", "waiting"]

    lines = progress_lines(Queue())
    assert lines == [f"`{trio[0].name}`: training · done · step 8/8", f"`{trio[1].name}`: waiting · step 5/5"]


def test_the_table_note_says_agreement_where_test_labels_are_given_ones():
    assert "agreement" not in table_note([{"test_labels": "truth"}, {"test_labels": None}])
    assert "agreement with the given (noisy) test labels" in table_note([{"test_labels": "given"}])


# ---------------------------------------------------------------- PNG downloads (matplotlib)
def _pixels_near(png: bytes, hex_colour: str, tolerance: int = 40) -> int:
    import io

    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.sum(np.abs(rgb - target).sum(axis=2) < tolerance))


def test_curves_png_draws_each_method_in_its_page_colour_and_refuses_an_empty_chart():
    from app.figures import palette
    from app.figures.compare_png import curves_png

    points = [{"run": r, "method": m, "epoch": e, "student_test_accuracy": 0.5 + 0.1 * e + d, "label_precision": None}
              for r, m, d in (("a", "AML-KD", 0.05), ("b", "KD", 0.0)) for e in (1, 2, 3)]
    png = curves_png(points, "student_test_accuracy")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert _pixels_near(png, palette.BLUE) > 200 and _pixels_near(png, palette.ORANGE) > 200
    with_ce = points + [{"run": "c", "method": "CE", "epoch": e, "student_test_accuracy": 0.4} for e in (1, 2, 3)]
    assert _pixels_near(curves_png(with_ce, "student_test_accuracy"), palette.GREY, 10) > \
        _pixels_near(png, palette.GREY, 10) + 200  # a CE run adds a CE-grey line
    with pytest.raises(ValueError, match="label precision"):
        curves_png(points, "label_precision")


def test_table_and_sample_pngs_grow_with_their_content():
    import io

    from PIL import Image

    from app.figures.compare_png import grid_png, table_png

    small = Image.open(io.BytesIO(table_png(["run", "student"], [["a", "0.90"]])))
    big = Image.open(io.BytesIO(table_png(["run", "student"], [["a", "0.90"]] * 6, "Comparison", "a note")))
    assert big.height > small.height + 80 and small.width > 200
    with pytest.raises(ValueError):
        table_png(["run"], [])
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    one = Image.open(io.BytesIO(grid_png([red], ["#1 · given cat"])))
    eight = Image.open(io.BytesIO(grid_png([red] * 8, ["#1"] * 8, "8 samples")))
    assert eight.height > 1.5 * one.height  # two rows of six
    assert _pixels_near(grid_png([red] * 8, ["#1"] * 8), "#FF0000", 10) > 8 * 150
