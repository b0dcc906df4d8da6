"""Exports a spreadsheet cannot run, an edited export kept unless forced, an import that adds nothing twice,
and decisions a browser sends with an id (acknowledged once, refused when another tab decided first)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from engine.cli import main as cli_main
from engine.data.csvcells import FORMULA_START, neutralise, restore, safe_csv
from engine.data.labels import read_label_csv
from engine.errors import UserError
from engine.readers.export import export_run, import_decisions
from engine.readers.exportdir import verify_export
from engine.rundir.review import ReviewStore
from test_review import make_run

EVIL_CLASSES = np.array(["=HYPERLINK(\"http://evil.example/x\",\"y\")", "+cmd|' /C calc'!A0"])
EVIL_REVIEWER = "@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.fixture
def run(tmp_path):
    """12 samples, two classes named like formulas, keys that start with '-'; sample 3 relabelled."""
    refined = np.repeat([0, 1], 6)
    refined[3] = 1
    store = make_run(tmp_path / "run", refined=refined)
    arrays = store.dataset_arrays()
    arrays["class_names"] = EVIL_CLASSES
    arrays["keys"] = np.array([f"-s{i}" for i in range(12)])
    store.write_dataset(**arrays)
    return store


def formula_cells(text: str) -> list[str]:
    """Cells of a CSV text that a spreadsheet would evaluate."""
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, header=None)
    return [c for c in frame.to_numpy().ravel() if c.startswith(FORMULA_START)]


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-x", "@a", "\tA", "\rA", "'=1", "''+x", "plain", "'plain", ""])
def test_neutralise_and_restore_are_inverse(cell):
    out = neutralise(cell)
    assert restore(out) == cell
    assert not out.startswith(FORMULA_START)
    assert (out != cell) == cell.lstrip("'").startswith(FORMULA_START)


def test_numbers_stay_numbers():
    text = safe_csv(pd.DataFrame({"weight": [-0.25, 1.0], "name": ["-a", "b"]}))
    assert text.splitlines() == ["weight,name", "-0.25,'-a", "1.0,b"]


def test_every_csv_of_an_export_is_free_of_formulas(run, tmp_path):
    reviews = ReviewStore(run.path, num_classes=2)
    reviews.record(3, "accept", EVIL_REVIEWER, proposal=1, step=1)
    reviews.record(5, "relabel", "=2+3", 1, step=1)
    out = tmp_path / "out"
    export_run(run, out, report=False)
    for name in ("samples.csv", "decisions.csv", "review_history.csv", "clean_labels.csv"):
        text = (out / name).read_text()
        assert formula_cells(text) == [], name
        assert "'+cmd" in text, name  # class 1 is in every file, quoted
    decisions = (out / "decisions.csv").read_text()
    assert "'@SUM(1+1)" in decisions and "'=2+3" in decisions


def test_an_exported_file_reads_back_to_the_same_names(run, tmp_path):
    reviews = ReviewStore(run.path, num_classes=2)
    reviews.record(3, "accept", EVIL_REVIEWER, proposal=1, step=1, time=1_700_000_000.25)
    out = tmp_path / "out"
    export_run(run, out, report=False)
    labels = read_label_csv(out / "clean_labels.csv")
    assert set(labels["label"]) == set(EVIL_CLASSES) and labels["path"].iloc[0] == "-s0"
    other = make_run(tmp_path / "other", refined=np.r_[np.repeat([0, 1], 6)])
    arrays = run.dataset_arrays()
    other.write_dataset(**arrays)
    added = import_decisions(other, out / "decisions.csv")
    assert [(d.sample, d.decision, d.label, d.reviewer) for d in added] == [(3, "accept", 1, EVIL_REVIEWER)]


def test_importing_a_file_twice_adds_nothing_the_second_time(run, tmp_path):
    reviews = ReviewStore(run.path, num_classes=2)
    reviews.record(3, "accept", "ann", proposal=1, step=1)
    reviews.record(7, "keep", "bob", step=1)
    reviews.record(9, "outlier", "bob", step=1)
    out = tmp_path / "out"
    export_run(run, out, report=False)
    target = make_run(tmp_path / "target", refined=np.repeat([0, 1], 6))
    target.write_dataset(**run.dataset_arrays())
    first = import_decisions(target, out / "decisions.csv")
    assert len(first) == 3 and len(ReviewStore(target.path).history()) == 3
    assert import_decisions(target, out / "decisions.csv") == []
    assert len(ReviewStore(target.path).history()) == 3
    # importing into the run the file came from adds nothing either
    assert import_decisions(run, out / "decisions.csv") == [] and len(ReviewStore(run.path).history()) == 3
    # a row without a time counts as recorded when it is the reviewer's current decision
    rows = "sample,decision,reviewer\n-s7,keep,bob\n-s8,keep,bob\n"
    added = import_decisions(target, rows.encode(), name="no-time.csv")
    assert [(d.sample, d.reviewer) for d in added] == [(8, "bob")]


def test_an_edited_export_is_replaced_only_with_force(run, tmp_path, capsys):
    out = tmp_path / "out"
    export_run(run, out, report=False)
    edited = (out / "clean_labels.csv").read_text().replace("-s0", "-s0-fixed-by-hand")
    (out / "clean_labels.csv").write_text(edited)
    with pytest.raises(UserError, match="was edited since it was exported .clean_labels.csv differs"):
        export_run(run, out, report=False)
    assert (out / "clean_labels.csv").read_text() == edited  # kept
    assert cli_main(["export", str(run.path), "--out", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--force" in err
    assert cli_main(["export", str(run.path), "--out", str(out), "--no-report", "--force"]) == 0
    assert verify_export(out) == [] and "fixed-by-hand" not in (out / "clean_labels.csv").read_text()
    export_run(run, out, report=False)  # an untouched export is replaced without asking


def test_a_browser_decision_is_acknowledged_once(run):
    reviews = ReviewStore(run.path, num_classes=2)
    status, first = reviews.submit(3, "accept", "ann", client_id="tab1-1", seen=0, proposal=1, step=1)
    assert status == "saved" and first.label == 1 and first.client_id == "tab1-1"
    again, same = reviews.submit(3, "accept", "ann", client_id="tab1-1", seen=0, proposal=1, step=1)
    assert (again, same.id) == ("duplicate", first.id) and len(reviews.history()) == 1


def test_a_second_tab_of_the_same_reviewer_gets_a_conflict(run):
    reviews = ReviewStore(run.path, num_classes=2)
    _, tab_a = reviews.submit(3, "accept", "ann", client_id="a-1", seen=0, proposal=1)
    status, current = reviews.submit(3, "keep", "ann", client_id="b-1", seen=0, proposal=1)  # tab B saw no decision
    assert status == "conflict" and current.id == tab_a.id and len(reviews.history()) == 1
    status, changed = reviews.submit(3, "keep", "ann", client_id="b-2", seen=tab_a.id, proposal=1)  # now it knows
    assert status == "saved" and changed.label == 0 and reviews.latest()[3].decision == "keep"
    # another reviewer is never a conflict: both votes count
    assert reviews.submit(3, "accept", "bob", client_id="c-1", seen=0, proposal=1)[0] == "saved"
